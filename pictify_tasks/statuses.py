"""A batch's statuses, as the API names them; stdlib only (the emulator uses them too)."""

from __future__ import annotations

__all__ = ["BATCH_STATUSES", "FINISHED_STATUSES", "RUNNING_STATUSES", "TERMINAL_STATUSES"]

#: Still rendering: a cancel stops it.
RUNNING_STATUSES: tuple[str, ...] = ("pending", "processing")
#: Ended, one way or another: nothing left to cancel.
TERMINAL_STATUSES: tuple[str, ...] = ("completed", "partial", "failed", "cancelled")
#: Ended by itself (not by a cancel).
FINISHED_STATUSES: tuple[str, ...] = ("completed", "partial", "failed")
BATCH_STATUSES: tuple[str, ...] = RUNNING_STATUSES + TERMINAL_STATUSES
