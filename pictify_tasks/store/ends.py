"""The store's part in webhooks: a batch's end as Pictify told it, and who waits for it.

A ``batch.completed`` delivery is recorded once per delivery id, with the
batch's final status and counts; the batch then gets an ``already_finished``
cancel outcome, so a later cancel answers without HTTP. A waiting
``wait_for_batch`` registers its own message (as JSON) as a waiter of the
batch; the task a delivery triggers takes the waiters and sends each again at
once. Two runs of one waiter may then meet (the woken one and the delayed
safety poll): the first to claim the wait completes it, the other ends
quietly. Each method is one round trip.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from pictify_tasks.store.records import OutcomeRecord, int_or_none

__all__ = ["BatchEnd", "BatchEnds", "WaitTurn"]


@dataclass(frozen=True)
class BatchEnd:
    """A batch's final status and counts, as a ``batch.completed`` delivery told them."""

    batch_id: str
    status: str
    total_items: int | None = None
    completed_items: int | None = None
    failed_items: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchEnd:
        return cls(
            batch_id=str(data.get("batch_id", "")),
            status=str(data.get("status", "")),
            total_items=int_or_none(data.get("total_items")),
            completed_items=int_or_none(data.get("completed_items")),
            failed_items=int_or_none(data.get("failed_items")),
        )

    def as_outcome(self) -> OutcomeRecord:
        """What a cancel asked after this end answers: nothing left to stop, no HTTP."""
        return OutcomeRecord(
            self.batch_id,
            self.status,
            "already_finished",
            0,
            f"the batch had ended {self.status} (told by Pictify's batch.completed webhook)",
        )


@dataclass(frozen=True)
class WaitTurn:
    """What one run of a waiting task learns from the store.

    ``end``: the batch's end, when known (heard, or given as polled).
    ``mine``: this run claimed the wait (it returns; any other run of the same
    waiter ends quietly). ``webhook``: whether the batch was started with a
    webhook URL (``None``: not recorded, e.g. a batch linked by ``track_batch``).
    """

    end: BatchEnd | None = None
    mine: bool = False
    webhook: bool | None = None


class BatchEnds(abc.ABC):
    """The webhook half of the store contract (see :class:`~pictify_tasks.store.StateStore`)."""

    @abc.abstractmethod
    def hear_batch_end(
        self, end: BatchEnd, delivery_id: str, *, ttl: int, outcome_ttl: int
    ) -> bool:
        """Record a delivered end; ``False`` if this delivery id was heard already.

        In one round trip: the delivery id is remembered for ``ttl``; the end
        is kept (the first heard wins); unless a cancel holds the lease (it
        will record what it did), the batch gets :meth:`BatchEnd.as_outcome`
        as its cancel outcome, if it has none, and is no longer wanted.
        """

    @abc.abstractmethod
    def wait_turn(
        self,
        batch_id: str,
        waiter_id: str,
        ttl: int,
        *,
        message: str | None = None,
        polled: BatchEnd | None = None,
        progress: tuple[int, int] | None = None,
    ) -> WaitTurn:
        """One run of waiter ``waiter_id`` (a task id) asks the store about its batch.

        With ``polled`` (the API said the batch ended), or when an end was
        heard, the run claims the wait (``mine`` for the first claim only)
        and is no longer a waiter. Otherwise ``message`` (the waiter's task
        message, JSON) registers it as a waiter for ``ttl``; without one it
        stops being a waiter. ``progress`` (completed, total items, as the
        run's poll saw them) is noted for ``ttl`` as
        :meth:`~pictify_tasks.store.StateStore.note_progress` notes it, in the
        same round trip.
        """

    @abc.abstractmethod
    def take_waiters(self, batch_id: str) -> list[str]:
        """The registered waiters' messages, removed from the store."""
