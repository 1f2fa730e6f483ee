"""The Redis store's upkeep: wanted cancels and the sweep, deadlines, progress, reads.

What keeps cancels from being lost or late without being on a cancel's own
path: the ledger's hot path is in :mod:`pictify_tasks.store.redis_store`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from pictify_tasks.revoke.links import Scope
from pictify_tasks.store.base import (
    Linked,
    deadline_cancel,
    read_link_value,
)
from pictify_tasks.store.records import WantedCancel
from pictify_tasks.store.redis_keys import RedisKeys, progress_value, text, transient

__all__ = ["RedisUpkeep"]


class RedisUpkeep(RedisKeys):
    """Wanted cancels, the sweep's lock, deadlines, progress, and what an operator reads."""

    @transient
    def want_cancels(self, wanted: Sequence[WantedCancel], ttl: int) -> None:
        if wanted:
            pipe = self._redis.pipeline(transaction=False)
            self._want(pipe, wanted, ttl, time.time())  # the index orders by when last sent
            pipe.execute()

    def _want(self, pipe: Any, wanted: Sequence[WantedCancel], ttl: int, sent: float) -> None:
        """Queue the records of cancels wanted (the first ask kept), sent at ``sent``."""
        for item in wanted:
            key = self.batch_key(item.batch_id, "wanted")
            pipe.hsetnx(key, "asked_at", repr(item.asked_at))
            fields: dict[Any, Any] = {  # redis-py's stubs want its own key type here
                "reason": item.reason,
                "root_id": item.root_id or "",
                "parent_id": item.parent_id or "",
            }
            pipe.hset(key, mapping=fields)
            pipe.expire(key, int(ttl))
        pipe.zadd(self._wanted_index(), {w.batch_id: sent for w in wanted})
        pipe.expire(self._wanted_index(), int(ttl))

    @transient
    def note_progress(self, batch_id: str, completed: int, total: int, ttl: int) -> None:
        self._redis.set(
            self.batch_key(batch_id, "progress"), progress_value(completed, total), ex=int(ttl)
        )

    @transient
    def items_not_rendered(self, workflow_id: str) -> int:
        return sum(int(n) for n in self._redis.hvals(self.link_key(workflow_id, "saved")))

    def _queue_deadline(self, pipe: Any, batch_id: str, at: float, ttl: int) -> None:
        pipe.zadd(self._deadlines(), {batch_id: at})
        pipe.expire(self._deadlines(), int(ttl))

    @transient
    def take_due_deadlines(self, now: float, limit: int, wanted_ttl: int) -> list[WantedCancel]:
        index = self._deadlines()
        due = [text(m) for m in self._redis.zrangebyscore(index, "-inf", now, 0, limit)]
        cancels = [deadline_cancel(batch_id, now) for batch_id in due]
        if due:
            # The wanted records first, the take only once they are all there: a
            # pipeline is no transaction (a write refused for memory, a cluster node
            # down), and a deadline taken with no wanted record would be dropped.
            pipe = self._redis.pipeline(transaction=False)
            self._want(pipe, cancels, wanted_ttl, now)
            pipe.execute()
            self._redis.zrem(index, *due)
        return cancels

    @transient
    def claim_sweep(self, owner: str, seconds: float, *, part: str = "sweep") -> bool:
        key = (
            f"{self._prefix}:{{sweep}}:lock"
            if part == "sweep"
            else f"{self._prefix}:{{sweep}}:{part}"
        )
        return bool(self._redis.set(key, owner, nx=True, px=max(1, int(seconds * 1000))))

    @transient
    def take_stale_wanted(self, before: float, now: float, limit: int) -> list[WantedCancel]:
        index = self._wanted_index()
        members = [text(m) for m in self._redis.zrangebyscore(index, "-inf", before, 0, limit)]
        if not members:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for batch_id in members:
            pipe.exists(self.batch_key(batch_id, "outcome"))
            pipe.pttl(self.batch_key(batch_id, "lease"))
            pipe.hgetall(self.batch_key(batch_id, "wanted"))
        replies = pipe.execute()
        stale: list[WantedCancel] = []
        gone: list[str] = []
        sent: dict[Any, float] = {}  # member -> when it counts as last sent
        for i, batch_id in enumerate(members):
            done, lease_ms, fields = replies[3 * i : 3 * i + 3]
            record = {text(k): text(v) for k, v in fields.items()}
            if done or "asked_at" not in record:
                gone.append(batch_id)
            elif lease_ms != -2:  # a task holds the lease (-2: none): sent when it ends
                sent[batch_id] = now + max(0, lease_ms) / 1000.0
            else:
                sent[batch_id] = now
                stale.append(
                    WantedCancel(
                        batch_id,
                        float(record["asked_at"]),
                        record.get("reason", ""),
                        record.get("root_id") or None,
                        record.get("parent_id") or None,
                    )
                )
        pipe = self._redis.pipeline(transaction=False)
        if gone:
            pipe.zrem(index, *gone)
        if sent:
            pipe.zadd(index, sent, xx=True)
        pipe.execute()
        return stale

    @transient
    def linked(self, link_id: str, scope: Scope) -> Linked:
        pipe = self._redis.pipeline(transaction=False)  # one round trip, one slot
        pipe.hgetall(self.link_key(link_id, scope))
        if scope is Scope.WORKFLOW:
            pipe.hvals(self.link_key(link_id, "saved"))
        entries, *saved = pipe.execute()
        return Linked(
            {text(entry): read_link_value(text(value))[0] for entry, value in entries.items()},
            sum(int(n) for n in saved[0]) if saved else None,
        )
