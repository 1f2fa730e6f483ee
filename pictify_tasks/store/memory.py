"""An in-process store: for tests, the demo, and single-process workers.

It is exact within one process and useless across processes, which is why the
package logs a warning when it falls back to it.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from pictify_tasks.revoke.links import BatchLinks, Scope
from pictify_tasks.store.base import CancelBegin, CancelState, StateStore
from pictify_tasks.store.records import FailureRecord, OutcomeRecord

__all__ = ["MemoryStore"]


class _ExpiringDict:
    """A dict whose entries expire; callers hold the store's lock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._data: dict[str, tuple[Any, float]] = {}

    def get(self, key: str) -> Any:
        entry = self._data.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires <= self._clock():
            del self._data[key]
            return None
        return value

    def ttl(self, key: str) -> float:
        entry = self._data.get(key)
        return max(0.0, entry[1] - self._clock()) if entry else 0.0

    def set(self, key: str, value: Any, seconds: float) -> None:
        self._data[key] = (value, self._clock() + seconds)

    def expire(self, key: str, seconds: float) -> None:
        if self.get(key) is not None:
            self.set(key, self._data[key][0], seconds)

    def delete(self, key: str) -> None:
        self._data.pop(key, None)


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
        # (scope, link id) -> {batch id: "running" | "finished"}
        self._links = _ExpiringDict(clock)
        self._batch_links = _ExpiringDict(clock)
        self._revoked = _ExpiringDict(clock)

    def begin_cancel(self, batch_id: str, owner: str, lease_seconds: float) -> CancelBegin:
        with self._lock:
            outcome = self._outcomes.get(batch_id)
            if outcome is not None:
                return CancelBegin(outcome=outcome)
            holder = self._leases.get(batch_id)
            if holder is not None and holder != owner:
                return CancelBegin(lease_remaining=self._leases.ttl(batch_id))
            attempt = (self._attempts.get(batch_id) or 0) + 1 if holder == owner else 1
            self._leases.set(batch_id, owner, lease_seconds)
            self._attempts.set(batch_id, attempt, max(lease_seconds, 86400))
            return CancelBegin(acquired=True, attempt=attempt)

    def finish_cancel(self, owner: str, outcome: OutcomeRecord, ttl: int) -> OutcomeRecord:
        batch_id = outcome.batch_id
        with self._lock:
            if self._outcomes.get(batch_id) is None:
                self._outcomes.set(batch_id, outcome, ttl)
            if self._leases.get(batch_id) == owner:
                self._leases.delete(batch_id)
            self._attempts.delete(batch_id)
            self._failures.delete(batch_id)
            recorded: OutcomeRecord = self._outcomes.get(batch_id)
            return recorded

    def fail_cancel(self, owner: str, failure: FailureRecord, ttl: int, keep_lease: float) -> None:
        batch_id = failure.batch_id
        with self._lock:
            self._failures.set(batch_id, failure, ttl)
            if self._leases.get(batch_id) != owner:
                return
            if keep_lease > 0:
                self._leases.expire(batch_id, keep_lease)
            else:
                self._leases.delete(batch_id)
                self._attempts.delete(batch_id)

    def cancel_state(self, batch_id: str) -> CancelState:
        with self._lock:
            return CancelState(self._outcomes.get(batch_id), self._failures.get(batch_id))

    def link_batch(self, batch_id: str, links: BatchLinks, ttl: int) -> list[str]:
        with self._lock:
            pairs = links.pairs()
            for scope, link_id in pairs:
                batches = self._links.get(f"{scope}:{link_id}") or {}
                batches.setdefault(batch_id, "running")
                self._links.set(f"{scope}:{link_id}", batches, ttl)
            known = set(self._batch_links.get(batch_id) or ())
            self._batch_links.set(batch_id, known | set(pairs), ttl)
            return sorted({i for scope, i in pairs if self._revoked.get(f"{scope}:{i}")})

    def finish_batch(self, batch_id: str, ttl: int) -> None:
        with self._lock:
            for scope, link_id in self._batch_links.get(batch_id) or ():
                batches = self._links.get(f"{scope}:{link_id}")
                if batches is not None:
                    batches[batch_id] = "finished"
                    self._links.set(f"{scope}:{link_id}", batches, ttl)

    def revoke_ids(self, ids: list[str], scope: Scope, ttl: int | None) -> list[str]:
        with self._lock:
            found: dict[str, None] = {}
            for link_id in ids:
                if ttl:
                    self._revoked.set(f"{scope}:{link_id}", True, ttl)
                for batch_id, state in (self._links.get(f"{scope}:{link_id}") or {}).items():
                    if state == "running":
                        found[batch_id] = None
            return list(found)
