"""What the package keeps between tasks: the cancel ledger, the links, the pending starts.

The ledger records each batch's final cancel outcome once (a fact), a lease
saying which task is cancelling it right now, the batch's attempt count
(shared by every task cancelling it), the last failure, and the cancel as
*wanted* until it has an outcome, so that a sweep can re-send one whose
message was lost. Outcomes are facts; everything else may expire without
losing a cancel.

The links map the ids a revoke may name (task, root, group, chain, chord,
stamps) to the batches started under them, and to starts whose answer is
not known yet; they remember which ids were revoked, so that a batch started
after its workflow was revoked is cancelled too.

One method is one round trip to the store, unless it says otherwise. A store
that cannot be reached raises :class:`StateStoreError`, which is transient:
whoever called retries.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field

from pictify_tasks.errors import PictifyError
from pictify_tasks.limiter import LimiterConfig, StoreLimiter
from pictify_tasks.revoke.links import BatchLinks, Scope
from pictify_tasks.store.ends import BatchEnds
from pictify_tasks.store.records import (
    FailureRecord,
    OutcomeRecord,
    StartMade,
    StartRequest,
    WantedCancel,
)

__all__ = [
    "CancelBegin",
    "CancelState",
    "Linked",
    "RevokedWork",
    "StateStore",
    "StateStoreError",
]

#: What a link entry names when it is a start, not a batch ("/" is never in an id).
START_PREFIX = "start/"


def deadline_cancel(batch_id: str, now: float) -> WantedCancel:
    """The cancel of a batch whose ``max_runtime`` deadline passed, as the sweep takes it."""
    return WantedCancel(batch_id, now, f"max_runtime: {batch_id} ran past its deadline")


class StateStoreError(PictifyError):
    """The state store (Redis) could not be reached or failed: try again later."""

    retryable = True


@dataclass(frozen=True)
class CancelBegin:
    """The answer to "may I send a cancel for this batch now?".

    Exactly one of: ``outcome`` is set (it is done, return that);
    ``failure`` is set (this ask already failed for good, raise that);
    ``acquired`` (you hold the lease; this is the batch's HTTP attempt number
    ``attempt``); or none (another task holds the lease for
    ``lease_remaining`` more seconds). ``links`` are the (scope, id) pairs
    the batch is linked under, to be marked finished with the outcome.
    """

    outcome: OutcomeRecord | None = None
    failure: FailureRecord | None = None
    acquired: bool = False
    attempt: int = 0
    lease_remaining: float = 0.0
    links: tuple[tuple[str, str], ...] = ()
    #: The batch's last known (completed items, total items), if any.
    progress: tuple[int, int] | None = None
    #: An attempt got a 200 that did not confirm the cancel (until the outcome):
    #: the batch's own Idempotency-Key would only replay it, so send a new request.
    fresh_keys: bool = False


@dataclass(frozen=True)
class CancelState:
    """What the ledger knows of one batch's cancel (for operators and the CLI)."""

    outcome: OutcomeRecord | None
    failure: FailureRecord | None


@dataclass(frozen=True)
class Linked:
    """What is linked under an id, as ``celery pictify links`` shows it.

    ``entries`` maps an entry to ``running`` or ``finished``: a batch id, or
    ``start/<start id>`` for a start whose batch id is not known yet.
    ``items_not_rendered`` is what the cancels of the workflow's batches
    saved; ``None`` in task scope, as savings are counted per workflow.
    """

    entries: dict[str, str]
    items_not_rendered: int | None


@dataclass(frozen=True)
class RevokedWork:
    """What a revoke found: running batches, and starts whose batch id is not known yet.

    ``origins`` maps a batch to its workflow's root and the task that started
    it, where the links recorded them.
    """

    batches: list[str]
    starts: list[str]
    origins: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)


def link_value(links: BatchLinks) -> str:
    """What a link entry holds while its batch runs: the state and the batch's origin."""
    return "\x00".join(["running", links.root_id or "", links.started_by or ""])


def read_link_value(value: str) -> tuple[str, str | None, str | None]:
    """(state, root id, started by) of a link entry."""
    state, _, rest = value.partition("\x00")
    root, _, started_by = rest.partition("\x00")
    return state, root or None, started_by or None


def revoked_work(entries: dict[str, str]) -> RevokedWork:
    """The running batches and starts among link entries (entry -> stored value)."""
    batches: list[str] = []
    starts: list[str] = []
    origins: dict[str, tuple[str | None, str | None]] = {}
    for entry, value in entries.items():
        state, root, started_by = read_link_value(value)
        if state != "running":
            continue
        if entry.startswith(START_PREFIX):
            starts.append(entry[len(START_PREFIX) :])
        else:
            batches.append(entry)
            origins[entry] = (root, started_by)
    return RevokedWork(batches, starts, origins)


class StateStore(BatchEnds, abc.ABC):
    """The state behind the cancel tasks and the revoke side (and webhooks: :class:`BatchEnds`)."""

    # -- the ledger ----------------------------------------------------------------------

    @abc.abstractmethod
    def want_cancels(self, wanted: Sequence[WantedCancel], ttl: int) -> None:
        """Record cancels as asked for, before their tasks are published.

        The first ask's time is kept, and each is marked as sent now. Until an
        outcome is recorded, the sweep may re-send them (see
        :meth:`take_stale_wanted`).
        """

    @abc.abstractmethod
    def begin_cancel(
        self, batch_id: str, owner: str, lease_seconds: float, asked_at: float
    ) -> CancelBegin:
        """Return the recorded outcome, or take (or renew) the lease.

        ``attempt`` is the batch's failed attempts so far plus one: holding the
        lease is not an attempt, a failure recorded by :meth:`fail_cancel` is.

        A cancel asked at ``asked_at`` or before the batch's last final
        failure gets that failure instead: it was asked and answered already.
        """

    @abc.abstractmethod
    def finish_cancel(
        self,
        owner: str,
        outcome: OutcomeRecord,
        ttl: int,
        links: Sequence[tuple[str, str]],
        workflow_id: str | None = None,
    ) -> OutcomeRecord:
        """Record ``outcome`` unless one is recorded already; return the recorded one.

        In the same round trip the batch's ``links`` are marked finished (no
        revoke will look for it again), it is no longer wanted nor has a
        deadline, and its ``items_not_rendered`` are kept under ``workflow_id``,
        per batch: the same batch's outcome recorded again counts once.
        """

    @abc.abstractmethod
    def fail_cancel(self, owner: str, failure: FailureRecord, ttl: int, keep_lease: float) -> None:
        """Record a failed attempt of ``failure.batch_id``'s cancel.

        With ``keep_lease`` seconds (> 0) the owner will retry, so it keeps the
        lease that long; with 0 the lease is given back. A ``final`` failure
        also resets the attempt count and the wanted record: a later ask
        starts afresh. An ``unconfirmed`` one makes every later
        :meth:`begin_cancel` say ``fresh_keys`` until the outcome.
        """

    @abc.abstractmethod
    def keep_lease(self, batch_id: str, owner: str, seconds: float) -> bool:
        """Keep ``owner``'s lease on the batch ``seconds`` more; ``False`` if it is not theirs.

        For a cancel that holds the lease but waits (for a rate-limit token)
        longer than the lease lasts: no duplicate takes it over meanwhile.
        """

    @abc.abstractmethod
    def cancel_state(self, batch_id: str) -> CancelState:
        """The recorded outcome and last failure of a batch's cancel."""

    @abc.abstractmethod
    def note_progress(self, batch_id: str, completed: int, total: int, ttl: int) -> None:
        """The batch's last known progress (what a cancel saves is counted from it)."""

    @abc.abstractmethod
    def items_not_rendered(self, workflow_id: str) -> int:
        """The items the cancels of a workflow's batches saved, summed (each batch once)."""

    # -- the sweep -----------------------------------------------------------------------

    @abc.abstractmethod
    def claim_sweep(self, owner: str, seconds: float, *, part: str = "sweep") -> bool:
        """Whether ``owner`` may sweep for the next ``seconds`` (one sweeper at a time).

        ``part`` names one of the sweep's jobs (``"sweep"``: stale wanted
        cancels; ``"deadlines"``: passed ``max_runtime`` deadlines), each with
        a lock of its own, as they run at different intervals. While a claim
        lives, every other is refused, the same owner's too.
        """

    @abc.abstractmethod
    def take_due_deadlines(self, now: float, limit: int, wanted_ttl: int) -> list[WantedCancel]:
        """The cancels of batches whose deadline has passed, taken off the list.

        Each is recorded as a cancel wanted since ``now`` (kept ``wanted_ttl``)
        before it is taken off (three round trips when any is due, one when none
        is): the caller only publishes them, and if it never does (the sweeper
        killed in between), the next sweep re-sends them. A failure before the
        take leaves the deadline to the next look.
        """

    @abc.abstractmethod
    def take_stale_wanted(self, before: float, now: float, limit: int) -> list[WantedCancel]:
        """Wanted cancels last sent before ``before`` with no outcome and no live lease.

        They are marked as sent at ``now``, so the next sweep leaves them for
        one interval; a leased one counts as sent when its lease ends, so no
        sweep reads it again before then (nor spends its ``limit`` on it);
        entries that have an outcome or expired are dropped. Several round trips.
        """

    # -- links and starts ----------------------------------------------------------------

    @abc.abstractmethod
    def link_batch(
        self, batch_id: str, links: BatchLinks, ttl: int, *, deadline: float | None = None
    ) -> list[str]:
        """Link a running batch under its ids; return those of its ids already revoked.

        ``deadline`` (wall time) is its ``max_runtime`` end, set in the same round trip.
        """

    @abc.abstractmethod
    def finish_batch(self, batch_id: str, ttl: int) -> None:
        """Mark a linked batch finished, so that no revoke cancels it."""

    @abc.abstractmethod
    def revoke_ids(self, ids: list[str], scope: Scope, ttl: int | None) -> RevokedWork:
        """The running batches and pending starts linked under ``ids`` for ``scope``.

        With ``ttl`` the ids are also remembered as revoked for that long, so
        that :meth:`link_batch` and :meth:`begin_start` report them later.
        """

    @abc.abstractmethod
    def revoked_among(self, links: BatchLinks) -> list[str]:
        """The ids among ``links`` remembered as revoked, each in the scope it is linked under.

        What :meth:`link_batch` reports, without linking anything: a task that
        runs again (a woken or delayed ``wait_for_batch``) asks it, since the
        worker running it may never have heard the revoke.
        """

    @abc.abstractmethod
    def begin_start(self, start: StartRequest, links: BatchLinks, ttl: int) -> list[str]:
        """Record a start before its POST, linked like a batch; return its ids already revoked."""

    @abc.abstractmethod
    def finish_start(self, made: StartMade, links: BatchLinks, ttl: int) -> list[str]:
        """The start made its batch: link it in the start's place; return ids already revoked.

        In the same round trip its progress and deadline are kept (see :class:`StartMade`).
        """

    @abc.abstractmethod
    def start_request(self, start_id: str) -> StartRequest | None:
        """The recorded start, with its batch id once known."""

    # -- the rate limiter ----------------------------------------------------------------

    @abc.abstractmethod
    def rate_limiter(self, bucket: str, config: LimiterConfig) -> StoreLimiter:
        """The limiter of ``bucket`` (a hash of an API key), shared by all who use this store."""

    def close(self) -> None:
        """Release connections."""

    # -- for operators -------------------------------------------------------------------

    @abc.abstractmethod
    def linked(self, link_id: str, scope: Scope) -> Linked:
        """What is linked under ``link_id`` for ``scope``, and (workflow scope) what it saved.

        Read-only: for ``celery pictify links``, which shows an operator what
        a revoke of that id would cancel.
        """
