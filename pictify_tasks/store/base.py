"""What the package keeps between tasks: the cancel ledger and the workflow links.

The ledger records each batch's final cancel outcome once (a fact), a lease
saying which task is cancelling it right now, that task's attempt count, and
the last failure (not final). Outcomes are facts; leases, counts and errors
may expire without losing a cancel.

The links map the ids a revoke may name (task, root, group, chain, chord,
stamps) to the batches started under them, and remember which ids were
revoked, so that a batch started after its workflow was revoked is cancelled
too.

One method is one round trip to the store.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from pictify_tasks.revoke.links import BatchLinks, Scope
from pictify_tasks.store.records import FailureRecord, OutcomeRecord

__all__ = ["CancelBegin", "CancelState", "StateStore"]


@dataclass(frozen=True)
class CancelBegin:
    """The answer to "may I send a cancel for this batch now?".

    Exactly one of: ``outcome`` is set (it is done, return that); ``acquired``
    (you hold the lease; this is HTTP attempt number ``attempt``); or neither
    (another task holds the lease for ``lease_remaining`` more seconds).
    """

    outcome: OutcomeRecord | None = None
    acquired: bool = False
    attempt: int = 0
    lease_remaining: float = 0.0


@dataclass(frozen=True)
class CancelState:
    """What the ledger knows of one batch's cancel (for operators and the CLI)."""

    outcome: OutcomeRecord | None
    failure: FailureRecord | None


class StateStore(abc.ABC):
    """The state behind the cancel tasks and the revoke side."""

    @abc.abstractmethod
    def begin_cancel(self, batch_id: str, owner: str, lease_seconds: float) -> CancelBegin:
        """Return the recorded outcome, or take (or renew) the lease and count an attempt."""

    @abc.abstractmethod
    def finish_cancel(self, owner: str, outcome: OutcomeRecord, ttl: int) -> OutcomeRecord:
        """Record ``outcome`` unless one is recorded already; return the recorded one."""

    @abc.abstractmethod
    def fail_cancel(self, owner: str, failure: FailureRecord, ttl: int, keep_lease: float) -> None:
        """Record a failure of ``failure.batch_id``'s cancel.

        With ``keep_lease`` seconds (> 0) the owner will retry, so it keeps the
        lease that long; with 0 the lease and attempt count are dropped so
        that a later cancel starts afresh.
        """

    @abc.abstractmethod
    def cancel_state(self, batch_id: str) -> CancelState:
        """The recorded outcome and last failure of a batch's cancel."""

    @abc.abstractmethod
    def link_batch(self, batch_id: str, links: BatchLinks, ttl: int) -> list[str]:
        """Link a running batch under its ids; return those of its ids already revoked."""

    @abc.abstractmethod
    def finish_batch(self, batch_id: str, ttl: int) -> None:
        """Mark a linked batch finished, so that no revoke cancels it."""

    @abc.abstractmethod
    def revoke_ids(self, ids: list[str], scope: Scope, ttl: int | None) -> list[str]:
        """The running batches linked under ``ids`` for ``scope``, in one round trip.

        With ``ttl`` the ids are also remembered as revoked for that long, so
        that :meth:`link_batch` reports a batch linked under them later.
        """

    def close(self) -> None:  # noqa: B027 - optional for stores without connections
        """Release connections."""
