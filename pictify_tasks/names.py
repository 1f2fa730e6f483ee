"""The names the package's tasks and message headers go by (stable: users route by them)."""

from __future__ import annotations

CANCEL_BATCH = "pictify.cancel_batch"
CANCEL_START = "pictify.cancel_start"
CANCEL_WORKFLOW = "pictify.cancel_workflow"
START_BATCH = "pictify.start_batch"
WAIT_FOR_BATCH = "pictify.wait_for_batch"
#: Published by the webhook receiver when Pictify tells a batch's end.
BATCH_ENDED = "pictify.batch_ended"

#: Header of a cancel task: the wall time the cancel was first asked for. Its
#: time budget (``pictify_cancel_deadline``) counts from it across retries,
#: redeliveries and re-sends by the sweep.
ASKED_AT_HEADER = "pictify_asked_at"
