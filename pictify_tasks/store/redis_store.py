"""The Redis store: each ledger step is one Lua script, so it is atomic.

Every key of one batch carries the hash tag ``{b:<batch id>}``, so one script
only touches one slot and the store works on Redis Cluster too.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from pictify_tasks.revoke.links import BatchLinks, Scope
from pictify_tasks.store.base import CancelBegin, CancelState, StateStore
from pictify_tasks.store.records import FailureRecord, OutcomeRecord

__all__ = ["RedisStore"]

# KEYS: outcome, lease, attempts. ARGV: owner, lease ms, attempts ttl s.
_BEGIN = """
local done = redis.call('GET', KEYS[1])
if done then return {'done', done} end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then
  return {'busy', tostring(redis.call('PTTL', KEYS[2]))}
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
local n = 1
if holder then
  n = redis.call('INCR', KEYS[3])
else
  redis.call('SET', KEYS[3], 1)
end
redis.call('EXPIRE', KEYS[3], ARGV[3])
return {'acquired', tostring(n)}
"""

# KEYS: outcome, lease, attempts, failure. ARGV: owner, outcome json, ttl s.
_FINISH = """
redis.call('SET', KEYS[1], ARGV[2], 'NX', 'EX', ARGV[3])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
redis.call('DEL', KEYS[3], KEYS[4])
return redis.call('GET', KEYS[1])
"""

# KEYS: lease, attempts, failure. ARGV: owner, failure json, ttl s, keep lease ms (0: drop).
_FAIL = """
redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[3])
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if tonumber(ARGV[4]) > 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
  else
    redis.call('DEL', KEYS[1], KEYS[2])
  end
end
return 1
"""


class RedisStore(StateStore):
    """The ledger in Redis; safe across worker processes and machines."""

    def __init__(self, client: redis.Redis, *, prefix: str = "pictify") -> None:
        self._redis = client
        self._prefix = prefix
        self._begin = client.register_script(_BEGIN)
        self._finish = client.register_script(_FINISH)
        self._fail = client.register_script(_FAIL)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "pictify") -> RedisStore:
        client = redis.Redis.from_url(
            url, socket_timeout=5.0, socket_connect_timeout=5.0, health_check_interval=30
        )
        return cls(client, prefix=prefix)

    @property
    def redis(self) -> redis.Redis:
        return self._redis

    def batch_key(self, batch_id: str, part: str) -> str:
        return f"{self._prefix}:{{b:{batch_id}}}:{part}"

    def begin_cancel(self, batch_id: str, owner: str, lease_seconds: float) -> CancelBegin:
        keys = [self.batch_key(batch_id, part) for part in ("outcome", "lease", "attempts")]
        lease_ms = max(1, int(lease_seconds * 1000))
        kind, value = self._begin(keys=keys, args=[owner, lease_ms, max(86400, int(lease_seconds))])
        kind = _text(kind)
        if kind == "done":
            return CancelBegin(outcome=OutcomeRecord.from_json(_load(value)))
        if kind == "busy":
            return CancelBegin(lease_remaining=max(0, int(_text(value))) / 1000.0)
        return CancelBegin(acquired=True, attempt=int(_text(value)))

    def finish_cancel(self, owner: str, outcome: OutcomeRecord, ttl: int) -> OutcomeRecord:
        parts = ("outcome", "lease", "attempts", "failure")
        keys = [self.batch_key(outcome.batch_id, part) for part in parts]
        stored = self._finish(keys=keys, args=[owner, json.dumps(outcome.to_json()), int(ttl)])
        return OutcomeRecord.from_json(_load(stored))

    def fail_cancel(self, owner: str, failure: FailureRecord, ttl: int, keep_lease: float) -> None:
        keys = [self.batch_key(failure.batch_id, part) for part in ("lease", "attempts", "failure")]
        keep_ms = max(0, int(keep_lease * 1000))
        self._fail(keys=keys, args=[owner, json.dumps(failure.to_json()), int(ttl), keep_ms])

    def link_key(self, link_id: str, part: str) -> str:
        return f"{self._prefix}:{{w:{link_id}}}:{part}"

    def link_batch(self, batch_id: str, links: BatchLinks, ttl: int) -> list[str]:
        pairs = links.pairs()
        pipe = self._redis.pipeline(transaction=False)
        for scope, link_id in pairs:
            key = self.link_key(link_id, scope)
            pipe.hsetnx(key, batch_id, "running")
            pipe.expire(key, ttl)
        own = self.batch_key(batch_id, "links")
        if pairs:
            pipe.sadd(own, *[f"{scope}\x00{link_id}" for scope, link_id in pairs])
            pipe.expire(own, ttl)
        # A revoke is remembered per scope: under "task" a chain successor's
        # revoke must not reach a batch its predecessor links later.
        for scope, link_id in pairs:
            pipe.exists(self.link_key(link_id, f"revoked:{scope}"))
        replies = pipe.execute()
        flags = replies[len(replies) - len(pairs) :]
        return sorted({link_id for (_, link_id), flag in zip(pairs, flags) if flag})

    def finish_batch(self, batch_id: str, ttl: int) -> None:
        members = self._redis.smembers(self.batch_key(batch_id, "links"))
        pipe = self._redis.pipeline(transaction=False)
        for member in members:
            scope, link_id = _text(member).split("\x00", 1)
            key = self.link_key(link_id, scope)
            pipe.hset(key, batch_id, "finished")
            pipe.expire(key, ttl)
        pipe.execute()

    def revoke_ids(self, ids: list[str], scope: Scope, ttl: int | None) -> list[str]:
        pipe = self._redis.pipeline(transaction=False)
        for link_id in ids:
            if ttl:
                pipe.set(self.link_key(link_id, f"revoked:{scope}"), 1, ex=int(ttl))
            pipe.hgetall(self.link_key(link_id, scope))
        found: dict[str, None] = {}
        for reply in pipe.execute():
            if isinstance(reply, dict):
                for batch_id, state in reply.items():
                    if _text(state) == "running":
                        found[_text(batch_id)] = None
        return list(found)

    def cancel_state(self, batch_id: str) -> CancelState:
        outcome, failure = self._redis.mget(
            [self.batch_key(batch_id, "outcome"), self.batch_key(batch_id, "failure")]
        )
        return CancelState(
            None if outcome is None else OutcomeRecord.from_json(_load(outcome)),
            None if failure is None else FailureRecord.from_json(_load(failure)),
        )

    def close(self) -> None:
        self._redis.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _load(value: Any) -> dict[str, Any]:
    data = json.loads(_text(value))
    if not isinstance(data, dict):
        raise ValueError("a ledger record is not a JSON object")
    return data
