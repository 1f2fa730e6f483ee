"""Test helpers: the Pictify API emulator (the pytest plugin lives beside it)."""

from pictify_tasks.testing.emulator import Fault, PictifyEmulator, RecordedRequest

__all__ = ["Fault", "PictifyEmulator", "RecordedRequest"]
