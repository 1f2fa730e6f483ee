"""Renders cards with Pictify; cancelling a render cancels its batch."""
