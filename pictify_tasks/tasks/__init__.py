"""The Celery tasks, as specs that :func:`pictify_tasks.install` registers on an app.

The task functions are plain functions; ``install`` registers them on the
user's app, so that nothing is registered on an app that did not ask for it.
"""

from __future__ import annotations

from typing import Any

from pictify_tasks.errors import BatchEndedError
from pictify_tasks.ids import validate_id
from pictify_tasks.names import (
    BATCH_ENDED,
    CANCEL_BATCH,
    CANCEL_START,
    CANCEL_WORKFLOW,
    START_BATCH,
    WAIT_FOR_BATCH,
)
from pictify_tasks.store.base import StateStoreError
from pictify_tasks.tasks.base import PictifyTask, TaskSpec
from pictify_tasks.tasks.batches import start_batch_task, validate_start_batch
from pictify_tasks.tasks.cancelling import (
    CancelBatchTask,
    cancel_batch_task,
    cancel_start_task,
    validate_cancel_batch,
    validate_cancel_start,
)
from pictify_tasks.tasks.waiting import validate_wait_for_batch, wait_for_batch_task
from pictify_tasks.tasks.wake import batch_ended_task, validate_batch_ended

__all__ = ["TASKS", "PictifyTask", "TaskSpec"]


def validate_cancel_workflow(workflow_id: Any) -> None:
    validate_id(workflow_id, kind="workflow or task id")


def cancel_workflow_task(self: PictifyTask, workflow_id: str) -> list[str]:
    """Cancel every running batch linked to a workflow or task id; return their ids.

    A state store that does not answer is waited for, within the deadline.
    """
    validate_cancel_workflow(workflow_id)
    try:
        return self.runtime.fanout.cancel_ids([workflow_id])
    except StateStoreError as error:
        self.retry_within_deadline(error)


# At least once: a worker killed mid-task leaves the message to be redelivered.
_AT_LEAST_ONCE = {"acks_late": True, "reject_on_worker_lost": True}
# Retries are bounded by the policy (a deadline), not by Celery's count.
_RETRYING = {**_AT_LEAST_ONCE, "max_retries": None}

#: What ``install`` registers, by task name.
TASKS: dict[str, TaskSpec] = {
    CANCEL_BATCH: TaskSpec(cancel_batch_task, validate_cancel_batch, _RETRYING, CancelBatchTask),
    CANCEL_START: TaskSpec(cancel_start_task, validate_cancel_start, _RETRYING),
    START_BATCH: TaskSpec(start_batch_task, validate_start_batch, _RETRYING),
    # A batch that ended cancelled or failed is an expected answer, not a crash.
    WAIT_FOR_BATCH: TaskSpec(
        wait_for_batch_task,
        validate_wait_for_batch,
        {**_RETRYING, "throws": (BatchEndedError,)},
    ),
    CANCEL_WORKFLOW: TaskSpec(cancel_workflow_task, validate_cancel_workflow, _RETRYING),
    BATCH_ENDED: TaskSpec(batch_ended_task, validate_batch_ended, _RETRYING),
}
