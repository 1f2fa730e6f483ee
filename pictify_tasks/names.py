"""The names the package's tasks are registered under (stable: users route by them)."""

from __future__ import annotations

CANCEL_BATCH = "pictify.cancel_batch"
CANCEL_WORKFLOW = "pictify.cancel_workflow"
START_BATCH = "pictify.start_batch"
WAIT_FOR_BATCH = "pictify.wait_for_batch"
