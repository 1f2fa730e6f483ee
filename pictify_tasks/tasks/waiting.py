"""``pictify.wait_for_batch``: a chain's step that waits for its batch, visibly, with a deadline."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from pictify_tasks.errors import (
    BatchCancelledError,
    BatchEndedError,
    BatchFailedError,
    BatchNotFoundError,
    PictifyError,
    WaitTimeoutError,
)
from pictify_tasks.ids import validate_id
from pictify_tasks.models import BatchInfo
from pictify_tasks.polling import ProgressSample, next_poll_interval
from pictify_tasks.ratelimit import Priority
from pictify_tasks.results import BatchProgress
from pictify_tasks.revoke.links import links_from_request
from pictify_tasks.store.base import StateStoreError
from pictify_tasks.tasks.base import PictifyTask, asked_at, header, set_header
from pictify_tasks.tasks.wake import WaitEnds

__all__ = ["validate_wait_for_batch", "wait_for_batch_task"]

logger = logging.getLogger("pictify_tasks.tasks")

MAX_POLL_INTERVAL = 3600.0
#: The longest an adaptive wait lets pass between two polls of a running batch.
POLL_CAP = 60.0
#: The header that carries the last poll's progress to the next run.
PROGRESS_HEADER = "pictify_progress"
#: The state a waiting task shows between polls, with the batch's progress as its meta.
PROGRESS = "PROGRESS"
#: What ``raise_on`` may name, and the error each raises.
_ENDINGS: dict[str, type[BatchEndedError]] = {
    "cancelled": BatchCancelledError,
    "failed": BatchFailedError,
}
DEFAULT_RAISE_ON = ("cancelled", "failed")


def validate_wait_for_batch(
    batch_id: Any,
    poll_interval: Any = 5,
    *,
    timeout: Any = None,
    raise_on: Any = DEFAULT_RAISE_ON,
) -> None:
    validate_id(batch_id)
    if not _seconds(poll_interval) or poll_interval > MAX_POLL_INTERVAL:
        raise ValueError(
            f"poll_interval must be a number of seconds in (0, {MAX_POLL_INTERVAL:g}], "
            f"got {poll_interval!r}"
        )
    if timeout is not None and not _seconds(timeout):
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    if isinstance(raise_on, str) or not isinstance(raise_on, Sequence):
        raise ValueError(f"raise_on must be a list of statuses, got {raise_on!r}")
    unknown = [status for status in raise_on if status not in _ENDINGS]
    if unknown:
        raise ValueError(f"raise_on may hold {sorted(_ENDINGS)}, got {unknown!r}")


def wait_for_batch_task(
    self: PictifyTask,
    batch_id: str,
    poll_interval: float = 5,
    *,
    timeout: float | None = None,
    raise_on: Sequence[str] = DEFAULT_RAISE_ON,
) -> BatchProgress:
    """Poll a batch until it ends; return its final state.

    Every final status ends the wait, polled or heard: ``completed`` and
    ``partial`` as much as ``failed`` and ``cancelled`` (Pictify tells each
    in the same ``batch.completed`` webhook event). Between polls the task
    shows state ``PROGRESS`` with the batch's completed and total items, and
    comes back later; it never sleeps in a worker. When the batch ends its
    links are marked finished, so no later revoke sends it a cancel. Each run
    registers it as a waiter of the batch: when Pictify's webhook tells the
    batch's end, it runs again at once and ends the wait without polling;
    with webhooks on (the batch was started with a webhook URL, or
    ``pictify_webhook_url`` is set) the polls are only a safety net, every
    ``pictify_webhook_poll_interval`` seconds instead of ``poll_interval``.
    A batch that ends in a status of ``raise_on`` (``cancelled`` or
    ``failed`` by default) raises a :class:`~pictify_tasks.BatchEndedError`
    so the chain stops; pass ``raise_on=()`` to get it as a result instead.
    After ``timeout`` seconds the batch is cancelled and the task fails with
    :class:`~pictify_tasks.WaitTimeoutError`.
    """
    validate_wait_for_batch(batch_id, poll_interval, timeout=timeout, raise_on=raise_on)
    runtime = self.runtime
    runtime.settings.require_api_key()
    ends = WaitEnds(self, batch_id)
    heard = ends.heard()
    if heard is not None:
        return _ended(self, heard, raise_on)
    waited = time.time() - asked_at(self.request)
    if timeout is not None and waited >= timeout:
        _time_out(self, batch_id, timeout)
    try:
        # The poll's own timeout bounds the wait, not the cancel deadline.
        self.wait_for_token(Priority.POLL, within_deadline=False)
        info = runtime.client.get_batch(batch_id)
        if info.is_terminal:
            runtime.store.finish_batch(batch_id, runtime.settings.link_ttl)
            ends.claim(info)
    except BatchNotFoundError:
        # Gone (or its results expired): nothing left to cancel either. Marking its
        # links is a courtesy (a later cancel is answered not_found): the store being
        # down must not hide why the wait ended.
        with contextlib.suppress(StateStoreError):
            runtime.store.finish_batch(batch_id, runtime.settings.link_ttl)
        raise
    except PictifyError as error:
        if not error.retryable:
            raise
        self.come_back(max(poll_interval, runtime.policy.countdown(1, error)), error=error)
    if info.is_terminal:
        return _ended(self, info, raise_on)
    if not self.request.is_eager:
        self.update_state(state=PROGRESS, meta=_progress(info))
    # After the PROGRESS state: a run woken from here on stores its result after it.
    # The progress rides along: what a later cancel saves is counted from it.
    seen = None
    if info.completed_items is not None and info.total_items is not None:
        seen = (info.completed_items, info.total_items)
    heard = ends.register(seen)
    if heard is not None:
        return _ended(self, heard, raise_on)
    # With a webhook to tell the end, the safety net's interval; else aimed at the end.
    countdown = ends.next_poll(_next_poll(self.request, info, poll_interval))
    if timeout is not None:
        countdown = max(0.0, min(countdown, timeout - waited))
    self.come_back(countdown)


def _revoked(task: PictifyTask) -> list[str]:
    """The task's ids remembered as revoked (a store that does not answer stops nothing)."""
    if task.request.is_eager:
        return []
    with contextlib.suppress(StateStoreError):
        return task.runtime.store.revoked_among(links_from_request(task.request))
    return []


def _next_poll(request: Any, info: BatchInfo, poll_interval: float) -> float:
    """When to look again: aimed at the batch's expected end (see :mod:`pictify_tasks.polling`).

    The last sample travels with the task (a header), so the next run, on any
    worker, measures the progress since.
    """
    current = ProgressSample.from_info(info, time.time())
    last = header(request, PROGRESS_HEADER)
    previous = ProgressSample(*last) if isinstance(last, list) and len(last) == 3 else None
    set_header(request, PROGRESS_HEADER, [current.completed, current.total, current.at])
    return next_poll_interval(
        previous, current, poll_interval=poll_interval, cap=max(poll_interval, POLL_CAP)
    )


def _ended(task: PictifyTask, info: BatchInfo, raise_on: Sequence[str]) -> BatchProgress:
    """The wait's end: an error that stops the chain, or the result that moves it on.

    Before it moves the chain on, the wait asks whether its workflow was
    revoked: a woken run, or its next poll, may reach a worker that never
    heard the revoke (one started after it), and the next step must not run.
    """
    error = _ENDINGS.get(info.status)
    if error is not None and info.status in raise_on:
        raise error(
            f"batch {info.batch_id} ended {info.status}: "
            f"{info.completed_items} of {info.total_items} item(s) rendered"
        )
    revoked = _revoked(task)
    if revoked:
        task.end_as_revoked(f"batch {info.batch_id} ended, but {', '.join(revoked)} was revoked")
    return info.as_dict()


def _time_out(task: PictifyTask, batch_id: str, timeout: float) -> None:
    reason = f"timeout: {task.name} {task.request.id} waited {timeout:g}s"
    logger.warning("batch %s still running after %gs: cancelling it", batch_id, timeout)
    task.runtime.fanout.enqueue([batch_id], reason=reason)
    raise WaitTimeoutError(
        f"batch {batch_id} did not end within {timeout:g}s; it was cancelled ({reason})"
    )


def _progress(info: BatchInfo) -> dict[str, Any]:
    return {
        "batch_id": info.batch_id,
        "status": info.status,
        "completed_items": info.completed_items,
        "failed_items": info.failed_items,
        "total_items": info.total_items,
        "progress": info.progress,
    }


def _seconds(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and value > 0
        and value != float("inf")
    )
