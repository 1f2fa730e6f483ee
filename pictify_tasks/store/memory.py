"""An in-process store: for tests, the demo, and single-process workers.

It is exact within one process and useless across processes, which is why the
package logs a warning when it falls back to it.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from typing import Any, Callable

from pictify_tasks.limiter import LimiterConfig, LimiterState, MemoryLimiter, StoreLimiter
from pictify_tasks.revoke.links import BatchLinks, Scope
from pictify_tasks.store.base import (
    START_PREFIX,
    CancelBegin,
    CancelState,
    Linked,
    RevokedWork,
    StateStore,
    deadline_cancel,
    link_value,
    read_link_value,
    revoked_work,
)
from pictify_tasks.store.ends import BatchEnd, WaitTurn
from pictify_tasks.store.records import (
    FailureRecord,
    OutcomeRecord,
    StartMade,
    StartRequest,
    WantedCancel,
)

__all__ = ["MemoryStore"]


class _ExpiringDict:
    """A dict whose entries expire; callers hold the store's lock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._data: dict[Any, tuple[Any, float]] = {}

    def get(self, key: Any) -> Any:
        entry = self._data.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires <= self._clock():
            del self._data[key]
            return None
        return value

    def ttl(self, key: Any) -> float:
        entry = self._data.get(key)
        return max(0.0, entry[1] - self._clock()) if entry else 0.0

    def set(self, key: Any, value: Any, seconds: float) -> None:
        self._data[key] = (value, self._clock() + seconds)

    def setdefault(self, key: Any, value: Any, seconds: float) -> Any:
        current = self.get(key)
        if current is None:
            self.set(key, value, seconds)
            return value
        return current

    def expire(self, key: Any, seconds: float) -> None:
        if self.get(key) is not None:
            self.set(key, self._data[key][0], seconds)

    def delete(self, key: Any) -> None:
        self._data.pop(key, None)

    def keys(self) -> list[Any]:
        return [key for key in list(self._data) if self.get(key) is not None]


class MemoryStore(StateStore):
    """Thread-safe, in-process; the same semantics as the Redis store.

    Records are frozen values, so they are stored and handed out as they are.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._outcomes = _ExpiringDict(clock)
        self._leases = _ExpiringDict(clock)
        self._attempts = _ExpiringDict(clock)
        self._failures = _ExpiringDict(clock)
        self._failed = _ExpiringDict(clock)  # batch id -> its last final failure
        self._fresh = _ExpiringDict(clock)  # batch id -> True: an answer was unconfirmed
        self._wanted = _ExpiringDict(clock)  # batch id -> WantedCancel
        self._sent: dict[str, float] = {}  # batch id -> when last sent (the sweep's index)
        self._sweeper = _ExpiringDict(clock)
        # (scope, link id) -> {entry: "running" | "finished"}; an entry is a batch or a start
        self._links = _ExpiringDict(clock)
        self._batch_links = _ExpiringDict(clock)
        self._revoked = _ExpiringDict(clock)
        self._starts = _ExpiringDict(clock)
        self._progress = _ExpiringDict(clock)  # batch id -> (completed, total)
        self._not_rendered = _ExpiringDict(clock)  # workflow id -> {batch id: items saved}
        self._deadlines: dict[str, float] = {}  # batch id -> wall time to cancel it
        self._ended = _ExpiringDict(clock)  # batch id -> BatchEnd; (batch, delivery) -> True
        # batch id -> {waiter id: message}; (batch id, waiter id) -> "done" once claimed
        self._waiters = _ExpiringDict(clock)
        self._webhook = _ExpiringDict(clock)  # batch id -> started with a webhook URL
        self._limiters: dict[str, tuple[LimiterState, threading.Lock]] = {}

    # -- the ledger ----------------------------------------------------------------------

    def want_cancels(self, wanted: Sequence[WantedCancel], ttl: int) -> None:
        with self._lock:
            self._want(wanted, ttl, time.time())

    def begin_cancel(
        self, batch_id: str, owner: str, lease_seconds: float, asked_at: float
    ) -> CancelBegin:
        with self._lock:
            outcome = self._outcomes.get(batch_id)
            if outcome is not None:
                return CancelBegin(outcome=outcome)
            failed: FailureRecord | None = self._failed.get(batch_id)
            if failed is not None and failed.at >= asked_at:
                return CancelBegin(failure=failed)
            holder = self._leases.get(batch_id)
            if holder is not None and holder != owner:
                return CancelBegin(lease_remaining=self._leases.ttl(batch_id))
            attempt = (self._attempts.get(batch_id) or 0) + 1
            self._leases.set(batch_id, owner, lease_seconds)
            links = tuple(sorted(self._batch_links.get(batch_id) or ()))
            return CancelBegin(
                acquired=True,
                attempt=attempt,
                links=links,
                progress=self._progress.get(batch_id),
                fresh_keys=bool(self._fresh.get(batch_id)),
            )

    def finish_cancel(
        self,
        owner: str,
        outcome: OutcomeRecord,
        ttl: int,
        links: Sequence[tuple[str, str]],
        workflow_id: str | None = None,
    ) -> OutcomeRecord:
        batch_id = outcome.batch_id
        with self._lock:
            recorded: OutcomeRecord = self._outcomes.setdefault(batch_id, outcome, ttl)
            if workflow_id and outcome.items_not_rendered:
                saved = dict(self._not_rendered.get(workflow_id) or {})
                saved.setdefault(batch_id, outcome.items_not_rendered)
                self._not_rendered.set(workflow_id, saved, ttl)
            if self._leases.get(batch_id) == owner:
                self._leases.delete(batch_id)
            for table in (self._attempts, self._failures, self._wanted, self._failed, self._fresh):
                table.delete(batch_id)
            self._sent.pop(batch_id, None)
            self._mark_finished(batch_id, links, ttl)
            return recorded

    def fail_cancel(self, owner: str, failure: FailureRecord, ttl: int, keep_lease: float) -> None:
        batch_id = failure.batch_id
        with self._lock:
            self._failures.set(batch_id, failure, ttl)
            if failure.unconfirmed:
                self._fresh.set(batch_id, True, ttl)
            self._attempts.set(batch_id, (self._attempts.get(batch_id) or 0) + 1, ttl)
            if self._leases.get(batch_id) == owner:
                if keep_lease > 0:
                    self._leases.expire(batch_id, keep_lease)
                else:
                    self._leases.delete(batch_id)
            if failure.final:
                self._failed.set(batch_id, failure, ttl)
                self._attempts.delete(batch_id)
                self._wanted.delete(batch_id)
                self._sent.pop(batch_id, None)

    def keep_lease(self, batch_id: str, owner: str, seconds: float) -> bool:
        with self._lock:
            if self._leases.get(batch_id) != owner:
                return False
            self._leases.expire(batch_id, seconds)
            return True

    def cancel_state(self, batch_id: str) -> CancelState:
        with self._lock:
            return CancelState(self._outcomes.get(batch_id), self._failures.get(batch_id))

    def note_progress(self, batch_id: str, completed: int, total: int, ttl: int) -> None:
        with self._lock:
            self._progress.set(batch_id, (completed, total), ttl)

    def items_not_rendered(self, workflow_id: str) -> int:
        with self._lock:
            return sum((self._not_rendered.get(workflow_id) or {}).values())

    # -- the sweep -----------------------------------------------------------------------

    def take_due_deadlines(self, now: float, limit: int, wanted_ttl: int) -> list[WantedCancel]:
        with self._lock:
            due = sorted((at, b) for b, at in self._deadlines.items() if at <= now)[:limit]
            cancels = [deadline_cancel(batch_id, now) for _, batch_id in due]
            for cancel in cancels:
                del self._deadlines[cancel.batch_id]
            self._want(cancels, wanted_ttl, now)
            return cancels

    def claim_sweep(self, owner: str, seconds: float, *, part: str = "sweep") -> bool:
        with self._lock:
            if self._sweeper.get(part) is not None:
                return False  # held, by anyone: as Redis's SET NX answers
            self._sweeper.set(part, owner, seconds)
            return True

    def take_stale_wanted(self, before: float, now: float, limit: int) -> list[WantedCancel]:
        with self._lock:
            due = sorted((t, b) for b, t in self._sent.items() if t <= before)[:limit]
            stale = []
            for _, batch_id in due:
                wanted = self._wanted.get(batch_id)
                if wanted is None or self._outcomes.get(batch_id) is not None:
                    self._sent.pop(batch_id, None)
                elif self._leases.get(batch_id) is None:
                    stale.append(wanted)
                    self._sent[batch_id] = now
                else:  # a task holds the lease: counted as sent when it ends
                    self._sent[batch_id] = now + self._leases.ttl(batch_id)
            return stale

    # -- links and starts ----------------------------------------------------------------

    def link_batch(
        self, batch_id: str, links: BatchLinks, ttl: int, *, deadline: float | None = None
    ) -> list[str]:
        with self._lock:
            if deadline is not None:
                self._deadlines[batch_id] = deadline
            return self._link(batch_id, links, ttl, replace=None)

    def finish_batch(self, batch_id: str, ttl: int) -> None:
        with self._lock:
            self._mark_finished(batch_id, list(self._batch_links.get(batch_id) or ()), ttl)

    def revoke_ids(self, ids: list[str], scope: Scope, ttl: int | None) -> RevokedWork:
        with self._lock:
            found: dict[str, str] = {}
            for link_id in ids:
                if ttl:
                    self._revoked.set((str(scope), link_id), True, ttl)
                for entry, value in (self._links.get((str(scope), link_id)) or {}).items():
                    found.setdefault(entry, value)
            return revoked_work(found)

    def revoked_among(self, links: BatchLinks) -> list[str]:
        with self._lock:
            return self._revoked_of([(str(scope), link_id) for scope, link_id in links.pairs()])

    def begin_start(self, start: StartRequest, links: BatchLinks, ttl: int) -> list[str]:
        with self._lock:
            self._starts.set(start.start_id, start, ttl)
            return self._link(START_PREFIX + start.start_id, links, ttl, replace=None)

    def finish_start(self, made: StartMade, links: BatchLinks, ttl: int) -> list[str]:
        start_id, batch_id = made.start_id, made.batch_id
        with self._lock:
            if made.total_items is not None:
                self._progress.set(batch_id, (0, made.total_items), ttl)
            if made.deadline is not None:
                self._deadlines[batch_id] = made.deadline
            if made.webhook is not None:
                self._webhook.set(batch_id, made.webhook, ttl)
            start = self._starts.get(start_id)
            if start is not None:
                self._starts.set(start_id, dataclasses.replace(start, batch_id=batch_id), ttl)
            return self._link(batch_id, links, ttl, replace=START_PREFIX + start_id)

    def start_request(self, start_id: str) -> StartRequest | None:
        with self._lock:
            start: StartRequest | None = self._starts.get(start_id)
            return start

    # -- webhooks ------------------------------------------------------------------------

    def hear_batch_end(
        self, end: BatchEnd, delivery_id: str, *, ttl: int, outcome_ttl: int
    ) -> bool:
        batch_id = end.batch_id
        with self._lock:
            if self._ended.get((batch_id, delivery_id)):
                return False
            self._ended.set((batch_id, delivery_id), True, ttl)
            self._ended.setdefault(batch_id, end, ttl)
            if self._leases.get(batch_id) is None:
                self._outcomes.setdefault(batch_id, end.as_outcome(), outcome_ttl)
                self._wanted.delete(batch_id)
            return True

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
        with self._lock:
            if progress is not None:
                self._progress.set(batch_id, progress, ttl)
            waiters = dict(self._waiters.get(batch_id) or {})
            waiters.pop(waiter_id, None)
            end: BatchEnd | None = self._ended.get(batch_id) or polled
            if end is None and message:
                waiters[waiter_id] = message
            self._waiters.set(batch_id, waiters, ttl)
            if end is None:
                return WaitTurn(webhook=self._webhook.get(batch_id))
            mine = self._waiters.get((batch_id, waiter_id)) is None
            self._waiters.set((batch_id, waiter_id), "done", ttl)
            return WaitTurn(end=end, mine=mine)

    def take_waiters(self, batch_id: str) -> list[str]:
        with self._lock:
            waiters = self._waiters.get(batch_id) or {}
            self._waiters.delete(batch_id)
            return list(waiters.values())

    # -- the rate limiter ----------------------------------------------------------------

    def rate_limiter(self, bucket: str, config: LimiterConfig) -> StoreLimiter:
        with self._lock:
            state, lock = self._limiters.setdefault(bucket, (LimiterState(), threading.Lock()))
        return MemoryLimiter(state, lock, config)

    # -- plumbing (the lock is held) -----------------------------------------------------

    def _want(self, wanted: Sequence[WantedCancel], ttl: int, sent: float) -> None:
        """Record cancels as wanted (the first ask kept), last sent at ``sent``."""
        for item in wanted:
            first = self._wanted.get(item.batch_id)
            asked_at = first.asked_at if first is not None else item.asked_at
            self._wanted.set(item.batch_id, dataclasses.replace(item, asked_at=asked_at), ttl)
            self._sent[item.batch_id] = sent

    def _link(self, entry: str, links: BatchLinks, ttl: int, *, replace: str | None) -> list[str]:
        pairs = [(str(scope), link_id) for scope, link_id in links.pairs()]
        for pair in pairs:
            entries = self._links.get(pair) or {}
            if replace is not None:
                entries.pop(replace, None)
            entries.setdefault(entry, link_value(links))
            self._links.set(pair, entries, ttl)
        if not entry.startswith(START_PREFIX):
            known = set(self._batch_links.get(entry) or ())
            self._batch_links.set(entry, known | set(pairs), ttl)
        return self._revoked_of(pairs)

    def _revoked_of(self, pairs: list[tuple[str, str]]) -> list[str]:
        """The ids among ``pairs`` (scope, id) remembered as revoked."""
        return sorted({link_id for scope, link_id in pairs if self._revoked.get((scope, link_id))})

    def _mark_finished(self, batch_id: str, links: Sequence[tuple[str, str]], ttl: int) -> None:
        self._deadlines.pop(batch_id, None)
        for scope, link_id in links:
            entries = self._links.get((str(scope), link_id))
            if entries is not None:
                entries[batch_id] = "finished"
                self._links.set((str(scope), link_id), entries, ttl)

    # -- for operators -------------------------------------------------------------------

    def linked(self, link_id: str, scope: Scope) -> Linked:
        with self._lock:
            entries = self._links.get((str(scope), link_id)) or {}
            by_batch = self._not_rendered.get(link_id) or {}
            saved = sum(by_batch.values()) if scope is Scope.WORKFLOW else None
            return Linked({e: read_link_value(v)[0] for e, v in entries.items()}, saved)
