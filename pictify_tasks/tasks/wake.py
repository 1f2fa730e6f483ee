"""Webhooks on the task side: ``pictify.batch_ended``, and a waiting task's part in it.

A ``wait_for_batch`` run that finds its batch still running registers its
own message (the same task id, chain and headers) as a waiter of the batch
before it schedules its next poll. When the receiver hears the batch's end it
publishes ``pictify.batch_ended``, which marks the batch's links finished
and sends every waiter's message again at once: the woken run finds the end
in the store and returns it without asking the API. The delayed poll still
comes later; whichever run claims the wait first completes it, the other
ends quietly (``Ignore``), so the chain's next step runs once.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable, NoReturn

from celery.exceptions import Ignore
from kombu.utils import json as kombu_json

from pictify_tasks.ids import validate_id
from pictify_tasks.models import BatchInfo
from pictify_tasks.store.base import StateStoreError
from pictify_tasks.store.ends import BatchEnd, WaitTurn
from pictify_tasks.tasks.base import PictifyTask

__all__ = ["WaitEnds", "batch_ended_task", "validate_batch_ended"]

logger = logging.getLogger("pictify_tasks.tasks")

#: A task message to and from text, as Celery's JSON serializer writes it (dates, UUIDs...).
_dumps: Callable[[Any], str] = kombu_json.dumps
_loads: Callable[[str], Any] = kombu_json.loads


def validate_batch_ended(batch_id: Any) -> None:
    validate_id(batch_id)


def batch_ended_task(self: PictifyTask, batch_id: str) -> int:
    """Hand on a heard end: the batch's links finished, its waiters woken; return how many.

    The receiver recorded the end (so no cancel is sent to the batch any
    more) before publishing this. A waiter whose message cannot be sent is
    left to its own safety poll.
    """
    validate_batch_ended(batch_id)
    runtime = self.runtime
    try:
        runtime.store.finish_batch(batch_id, runtime.settings.link_ttl)
        messages = runtime.store.take_waiters(batch_id)
    except StateStoreError as error:
        self.retry_within_deadline(error)
    woken = 0
    with self.app.producer_or_acquire() as producer:
        for message in messages:
            try:
                self.app.signature(_loads(message)).apply_async(producer=producer)
                woken += 1
            except Exception as exc:
                logger.warning(
                    "a waiter of batch %s was not woken (%s); its safety poll will end it",
                    batch_id,
                    exc,
                )
    logger.info("batch %s ended (webhook): %d waiter(s) woken", batch_id, woken)
    return woken


class WaitEnds:
    """One run of ``wait_for_batch`` and the store's record of its batch's end.

    A store that does not answer never stops a wait: the run polls the API
    as it would without webhooks (only a claim, which keeps the chain from
    going on twice, must be made, so it is retried).
    """

    def __init__(self, task: PictifyTask, batch_id: str) -> None:
        self._task = task
        self._batch_id = batch_id
        self._webhook: bool | None = None
        self._registered = False

    def heard(self) -> BatchInfo | None:
        """The batch's end if it was heard (this run claims the wait), else ``None``.

        This run is no longer a waiter after it: while it polls, a delivery
        wakes nobody, and the run itself finds the end when it registers again.
        """
        turn = self._turn()
        return None if turn is None or turn.end is None else self._claimed(turn)

    def claim(self, info: BatchInfo) -> None:
        """The API said the batch ended: claim the wait, or end quietly if another run did."""
        end = BatchEnd(
            info.batch_id, info.status, info.total_items, info.completed_items, info.failed_items
        )
        turn = self._task.runtime.store.wait_turn(
            self._batch_id, self._waiter_id(), self._ttl(), polled=end
        )
        self._claimed(turn)

    def register(self, progress: tuple[int, int] | None = None) -> BatchInfo | None:
        """Become a waiter of the batch; the end instead, if it was heard meanwhile.

        ``progress`` (completed, total: what this run's poll saw) is noted in
        the same round trip; what a later cancel saves is counted from it.
        """
        if self._task.request.is_eager:
            # Nothing could send an eager task again: no waiter, only the progress.
            if progress is not None:
                with contextlib.suppress(StateStoreError):
                    self._task.runtime.store.note_progress(self._batch_id, *progress, self._ttl())
            return None
        message = _dumps(dict(self._task.again()))
        turn = self._turn(message, progress)
        self._registered = turn is not None and turn.end is None
        return None if turn is None or turn.end is None else self._claimed(turn)

    def next_poll(self, poll_interval: float) -> float:
        """Seconds to the next poll: the safety net's interval when a webhook will tell."""
        settings = self._task.runtime.settings
        webhook = self._webhook if self._webhook is not None else bool(settings.webhook_url)
        if webhook and self._registered:
            return settings.webhook_poll_interval
        return poll_interval

    def _turn(
        self, message: str | None = None, progress: tuple[int, int] | None = None
    ) -> WaitTurn | None:
        store = self._task.runtime.store
        with contextlib.suppress(StateStoreError):
            turn = store.wait_turn(
                self._batch_id, self._waiter_id(), self._ttl(), message=message, progress=progress
            )
            if turn.webhook is not None:
                self._webhook = turn.webhook
            return turn
        logger.warning("the state store did not answer: batch %s is polled", self._batch_id)
        return None

    def _claimed(self, turn: WaitTurn) -> BatchInfo:
        if not turn.mine:
            _quiet(self._task, self._batch_id)
        end = turn.end
        assert end is not None
        return _info(end)

    def _waiter_id(self) -> str:
        request = self._task.request
        return str(request.id or f"eager-{id(request)}")

    def _ttl(self) -> int:
        return self._task.runtime.settings.link_ttl


def _quiet(task: PictifyTask, batch_id: str) -> NoReturn:
    logger.info(
        "%s[%s]: another run completed the wait for batch %s; this one ends quietly",
        task.name,
        task.request.id,
        batch_id,
    )
    raise Ignore()


def _info(end: BatchEnd) -> BatchInfo:
    """A heard end as the API's answer would be (no timestamps: the delivery has none)."""
    total, completed, failed = end.total_items, end.completed_items, end.failed_items
    progress = None
    if total and completed is not None:
        progress = float((completed + (failed or 0)) * 100 // total)
    return BatchInfo(end.batch_id, end.status, progress, total, completed, failed)
