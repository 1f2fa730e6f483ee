"""What the package keeps between tasks: the cancel ledger.

The ledger records each batch's final cancel outcome once (a fact), a lease
saying which task is cancelling it right now, that task's attempt count, and
the last failure (not final). Outcomes are facts; leases, counts and errors
may expire without losing a cancel.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

__all__ = ["CancelBegin", "StateStore"]

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

    def ping(self) -> bool:
        """Whether the store answers."""
        return True

    def close(self) -> None:  # noqa: B027 - optional for stores without connections
        """Release connections."""
