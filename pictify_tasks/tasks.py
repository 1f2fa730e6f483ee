"""The Celery tasks, and a base class that checks arguments before publishing.

The task functions are plain functions here; :func:`pictify_tasks.install`
registers them on the user's app, so that nothing is registered on an app
that did not ask for it.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from celery import Task

from pictify_tasks._runtime import runtime_for
from pictify_tasks.cancel import RetryLater, cancel_step
from pictify_tasks.ids import validate_id

__all__ = ["CANCEL_BATCH", "TASKS", "PictifyTask", "cancel_batch_task"]

CANCEL_BATCH = "pictify.cancel_batch"


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
            inspect.signature(validator).bind(*(args or ()), **(kwargs or {}))
        except TypeError as exc:
            raise TypeError(f"{self.name}() {exc}") from None
        validator(*(args or ()), **(kwargs or {}))


def _validate_cancel_batch(batch_id: Any) -> None:
    validate_id(batch_id)


def cancel_batch_task(self: PictifyTask, batch_id: str) -> dict[str, Any]:
    """Cancel a Pictify batch, exactly once however often it is asked.

    Returns ``{"batch_id", "status", "outcome", "attempts", "message"}``.
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
    return decision


#: name -> (function, validator, task options); what ``install`` registers.
TASKS: dict[str, tuple[Callable[..., Any], Callable[..., None], dict[str, Any]]] = {
    CANCEL_BATCH: (
        cancel_batch_task,
        _validate_cancel_batch,
        {
            "acks_late": True,
            "reject_on_worker_lost": True,
            # The attempt budget is counted per batch in the ledger, not here:
            # waiting for another task's lease must not use it up.
            "max_retries": None,
        },
    ),
}
