"""What the package keeps between tasks: the cancel ledger and the workflow links.

The ledger records each batch's final cancel outcome once (a fact), a lease
saying which task is cancelling it right now, that task's attempt count, and
the last failure (not final). Outcomes are facts; leases, counts and errors
may expire without losing a cancel.

The links map the ids a revoke may name (task, root, group, chain, chord,
stamps) to the batches started under them, and remember which ids were
revoked, so that a batch started after its workflow was revoked is cancelled
too.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

__all__ = ["SCOPES", "BatchLinks", "CancelBegin", "StateStore"]

#: ``workflow``: revoking any linked id cancels; ``task``: only the task's own
#: id, its ancestors and its stamps do.
SCOPES = ("workflow", "task")

Record = dict[str, Any]


@dataclass(frozen=True)
class CancelBegin:
    """The answer to "may I send a cancel for this batch now?".

    Exactly one of: ``outcome`` is set (it is done, return that); ``acquired``
    (you hold the lease; this is HTTP attempt number ``attempt``); or neither
    (another task holds the lease for ``lease_remaining`` more seconds).
    """

    outcome: Record | None = None
    acquired: bool = False
    attempt: int = 0
    lease_remaining: float = 0.0


@dataclass(frozen=True)
class BatchLinks:
    """The ids under which one batch is found, per revoke scope."""

    workflow: frozenset[str]
    task: frozenset[str]

    def for_scope(self, scope: str) -> frozenset[str]:
        return self.workflow if scope == "workflow" else self.task


class StateStore(abc.ABC):
    """The state behind the cancel tasks; one method is one round trip."""

    @abc.abstractmethod
    def begin_cancel(self, batch_id: str, owner: str, lease_seconds: float) -> CancelBegin:
        """Return the recorded outcome, or take (or renew) the lease and count an attempt."""

    @abc.abstractmethod
    def finish_cancel(self, batch_id: str, owner: str, outcome: Record, ttl: int) -> Record:
        """Record ``outcome`` unless one is recorded already; return the recorded one."""

    @abc.abstractmethod
    def fail_cancel(
        self,
        batch_id: str,
        owner: str,
        error: Record,
        ttl: int,
        *,
        keep_lease_for: float | None = None,
    ) -> None:
        """Record a failure (not final).

        With ``keep_lease_for`` the owner will retry, so it keeps the lease that
        long; without, the lease and attempt count are dropped so that a later
        cancel starts afresh.
        """

    @abc.abstractmethod
    def get_outcome(self, batch_id: str) -> Record | None:
        """The recorded final outcome of a batch's cancel, if any."""

    @abc.abstractmethod
    def get_failure(self, batch_id: str) -> Record | None:
        """The last recorded failure of a batch's cancel, if any."""

    @abc.abstractmethod
    def link_batch(self, batch_id: str, links: BatchLinks, ttl: int) -> list[str]:
        """Link a running batch under its ids; return those of its ids already revoked."""

    @abc.abstractmethod
    def finish_batch(self, batch_id: str, ttl: int) -> None:
        """Mark a linked batch finished, so that no revoke cancels it."""

    @abc.abstractmethod
    def revoke_ids(self, ids: list[str], scope: str, ttl: int | None) -> list[str]:
        """The running batches linked under ``ids`` for ``scope``, in one round trip.

        With ``ttl`` the ids are also remembered as revoked for that long, so
        that :meth:`link_batch` reports a batch linked under them later.
        """

    def ping(self) -> bool:
        """Whether the store answers."""
        return True

    def close(self) -> None:  # noqa: B027 - optional for stores without connections
        """Release connections."""
