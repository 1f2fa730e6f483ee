"""The Celery tasks, and a base class that checks arguments before publishing.

The task functions are plain functions here; :func:`pictify_tasks.install`
registers them on the user's app, so that nothing is registered on an app
that did not ask for it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping, Sequence
from typing import Any, Callable

from celery import Task

from pictify_tasks._runtime import runtime_for
from pictify_tasks.cancel import RetryLater, cancel_step
from pictify_tasks.client import batch_render_body
from pictify_tasks.errors import BatchNotFoundError, PictifyError
from pictify_tasks.ids import idempotency_key_for, validate_id
from pictify_tasks.names import CANCEL_BATCH, CANCEL_WORKFLOW, START_BATCH, WAIT_FOR_BATCH
from pictify_tasks.results import BatchProgress, CancelBatchResult
from pictify_tasks.revoke.api import track_batch

__all__ = ["TASKS", "PictifyTask"]

MAX_POLL_INTERVAL = 3600.0


@functools.cache
def _signature(function: Callable[..., None]) -> inspect.Signature:
    """A validator's signature, built once: it is checked on every publish."""
    return inspect.signature(function)


class PictifyTask(Task):  # type: ignore[misc]
    """Base of the package's tasks: arguments are validated in the caller.

    ``apply_async`` (and so ``delay``, signatures, chains and groups) runs the
    task's validator first, so bad input raises in the caller's process and
    is never published. The worker validates again before running.
    """

    #: Called with the task's arguments; raises on bad input.
    validator: Callable[..., None] | None = None

    def apply_async(
        self,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        *rest: Any,
        **options: Any,
    ) -> Any:
        self.check_arguments(args, kwargs)
        return super().apply_async(args, kwargs, *rest, **options)

    def check_arguments(self, args: tuple[Any, ...] | None, kwargs: dict[str, Any] | None) -> None:
        validator = type(self).validator
        if validator is None:
            return
        try:
            _signature(validator).bind(*(args or ()), **(kwargs or {}))
        except TypeError as exc:
            raise TypeError(f"{self.name}() {exc}") from None
        validator(*(args or ()), **(kwargs or {}))

    def retry_transient(self, error: PictifyError) -> Any:
        """Retry after a retryable API error, within the policy's attempt budget."""
        policy = runtime_for(self.app).policy
        attempt = (self.request.retries or 0) + 1
        if not policy.should_retry(error, attempt):
            raise error
        return self.retry(
            exc=error,
            countdown=policy.countdown(attempt, error),
            max_retries=policy.max_attempts - 1,
        )


# -- pictify.cancel_batch --------------------------------------------------------


def _validate_cancel_batch(batch_id: Any) -> None:
    validate_id(batch_id)


def cancel_batch_task(self: PictifyTask, batch_id: str) -> CancelBatchResult:
    """Cancel a Pictify batch, exactly once however often it is asked.

    Returns a :class:`~pictify_tasks.CancelBatchResult`.
    """
    batch_id = validate_id(batch_id)
    runtime = runtime_for(self.app)
    settings = runtime.settings
    settings.require_api_key()
    decision = cancel_step(
        batch_id,
        self.request.id or f"eager-{id(self.request)}",
        store=runtime.store,
        client=lambda: runtime.client,
        policy=runtime.policy,
        lease_seconds=2 * settings.timeout + 5.0,
        ttl=settings.outcome_ttl,
        waits=self.request.retries or 0,
    )
    if isinstance(decision, RetryLater):
        raise self.retry(exc=decision.error, countdown=decision.countdown)
    return decision.as_result()


# -- pictify.start_batch ---------------------------------------------------------


def _validate_start_batch(
    template_uid: Any, variable_sets: Sequence[Mapping[str, Any]], **options: Any
) -> None:
    validate_id(template_uid, kind="template uid")
    batch_render_body(variable_sets, **options)


def start_batch_task(
    self: PictifyTask,
    template_uid: str,
    variable_sets: Sequence[Mapping[str, Any]],
    **options: Any,
) -> str:
    """Start a batch and link it to this task's workflow; return its id.

    The Idempotency-Key comes from this task's id, which a retry keeps: a
    retried start returns the batch the first attempt made.
    """
    _validate_start_batch(template_uid, variable_sets, **options)
    runtime = runtime_for(self.app)
    runtime.settings.require_api_key()
    try:
        start = runtime.client.start_batch(
            template_uid,
            variable_sets,
            idempotency_key=idempotency_key_for("start", str(self.request.id)),
            **options,
        )
    except PictifyError as error:
        raise self.retry_transient(error) from None
    track_batch(start.batch_id, app=self.app)
    return start.batch_id


# -- pictify.wait_for_batch --------------------------------------------------------


def _validate_wait_for_batch(batch_id: Any, poll_interval: Any = 5) -> None:
    validate_id(batch_id)
    if (
        isinstance(poll_interval, bool)
        or not isinstance(poll_interval, (int, float))
        or not 0 < poll_interval <= MAX_POLL_INTERVAL
    ):
        raise ValueError(
            f"poll_interval must be a number of seconds in (0, {MAX_POLL_INTERVAL:g}], "
            f"got {poll_interval!r}"
        )


def wait_for_batch_task(
    self: PictifyTask, batch_id: str, poll_interval: float = 5
) -> BatchProgress:
    """Poll a batch until it is terminal, rescheduling itself between polls.

    It never sleeps in a worker. When the batch ends, its links are marked
    finished, so that no later revoke sends it a cancel.
    """
    _validate_wait_for_batch(batch_id, poll_interval)
    runtime = runtime_for(self.app)
    runtime.settings.require_api_key()
    try:
        info = runtime.client.get_batch(batch_id)
    except BatchNotFoundError:
        # Gone (or its results expired): nothing left to cancel either.
        runtime.store.finish_batch(batch_id, runtime.settings.link_ttl)
        raise
    except PictifyError as error:
        if not error.retryable:
            raise
        countdown = max(poll_interval, runtime.policy.countdown(1, error))
        raise self.retry(exc=error, countdown=countdown, max_retries=None) from None
    if not info.is_terminal:
        raise self.retry(countdown=poll_interval, max_retries=None)
    runtime.store.finish_batch(batch_id, runtime.settings.link_ttl)
    return info.as_dict()


# -- pictify.cancel_workflow -------------------------------------------------------


def _validate_cancel_workflow(workflow_id: Any) -> None:
    validate_id(workflow_id, kind="workflow or task id")


def cancel_workflow_task(self: PictifyTask, workflow_id: str) -> list[str]:
    """Cancel every running batch linked to a workflow or task id; return their ids."""
    _validate_cancel_workflow(workflow_id)
    return runtime_for(self.app).fanout.cancel_ids([workflow_id])


_AT_LEAST_ONCE = {"acks_late": True, "reject_on_worker_lost": True}

#: name -> (function, validator, task options); what ``install`` registers.
TASKS: dict[str, tuple[Callable[..., Any], Callable[..., None], dict[str, Any]]] = {
    CANCEL_BATCH: (
        cancel_batch_task,
        _validate_cancel_batch,
        # The attempt budget is counted per batch in the ledger, not by Celery:
        # waiting for another task's lease must not use it up.
        {**_AT_LEAST_ONCE, "max_retries": None},
    ),
    START_BATCH: (start_batch_task, _validate_start_batch, dict(_AT_LEAST_ONCE)),
    WAIT_FOR_BATCH: (
        wait_for_batch_task,
        _validate_wait_for_batch,
        {**_AT_LEAST_ONCE, "max_retries": None},
    ),
    CANCEL_WORKFLOW: (cancel_workflow_task, _validate_cancel_workflow, dict(_AT_LEAST_ONCE)),
}
