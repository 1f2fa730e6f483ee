"""The webhook half of the Redis store: two Lua scripts on the batch's hash slot.

Every key here carries the batch's hash tag ``{b:<batch id>}`` (the same as
the ledger's), so a delivery's de-duplication, the batch's end and its cancel
outcome change together, atomically, on one Redis Cluster node.
"""

from __future__ import annotations

import json

from pictify_tasks.store.ends import BatchEnd, BatchEnds, WaitTurn
from pictify_tasks.store.redis_keys import (
    RedisClient,
    RedisKeys,
    load,
    progress_value,
    text,
    transient,
)

__all__ = ["RedisBatchEnds"]

# KEYS: delivery, ended, outcome, lease, wanted.
# ARGV: end json, ttl s, outcome json, outcome ttl s.
# A cancel holding the lease records what it did itself: the end does not
# take the outcome's place under it (it may be the very cancel that ended it).
HEAR = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2])
if redis.call('EXISTS', KEYS[4]) == 0 then
  redis.call('SET', KEYS[3], ARGV[3], 'NX', 'EX', ARGV[4])
  redis.call('DEL', KEYS[5])
end
return 1
"""

# KEYS: ended, the waiter's done mark, waiters, webhook flag, progress.
# ARGV: waiter id, ttl s, message ('' to stop waiting), polled end json ('' if none),
# progress "completed/total" ('' if none).
WAIT = """
if ARGV[5] ~= '' then redis.call('SET', KEYS[5], ARGV[5], 'EX', ARGV[2]) end
local ended = redis.call('GET', KEYS[1])
if ended or ARGV[4] ~= '' then
  redis.call('HDEL', KEYS[3], ARGV[1])
  local mine = redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) and 1 or 0
  return {ended or ARGV[4], mine, ''}
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
  redis.call('EXPIRE', KEYS[3], ARGV[2])
else
  redis.call('HDEL', KEYS[3], ARGV[1])
end
return {'', 0, redis.call('GET', KEYS[4]) or ''}
"""


class RedisBatchEnds(RedisKeys, BatchEnds):
    """Mixed into :class:`~pictify_tasks.store.RedisStore`; the keys are its."""

    def __init__(self, client: RedisClient, *, prefix: str = "pictify") -> None:
        super().__init__(client, prefix=prefix)
        self._hear = client.register_script(HEAR)
        self._wait = client.register_script(WAIT)

    @transient
    def hear_batch_end(
        self, end: BatchEnd, delivery_id: str, *, ttl: int, outcome_ttl: int
    ) -> bool:
        parts = (f"delivery:{delivery_id}", "ended", "outcome", "lease", "wanted")
        keys = [self.batch_key(end.batch_id, part) for part in parts]
        outcome = json.dumps(end.as_outcome().to_json())
        args: list[str | int] = [json.dumps(end.to_json()), int(ttl), outcome, int(outcome_ttl)]
        return bool(self._hear(keys=keys, args=args))

    @transient
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
        parts = ("ended", f"waited:{waiter_id}", "waiters", "webhook", "progress")
        keys = [self.batch_key(batch_id, part) for part in parts]
        given = "" if polled is None else json.dumps(polled.to_json())
        seen = "" if progress is None else progress_value(*progress)
        args: list[str | int] = [waiter_id, int(ttl), message or "", given, seen]
        ended, mine, flag = self._wait(keys=keys, args=args)
        end = BatchEnd.from_json(load(ended)) if text(ended) else None
        webhook = {"1": True, "0": False}.get(text(flag))
        return WaitTurn(end=end, mine=bool(mine), webhook=webhook)

    @transient
    def take_waiters(self, batch_id: str) -> list[str]:
        key = self.batch_key(batch_id, "waiters")
        pipe = self.redis.pipeline(transaction=True)
        pipe.hvals(key)
        pipe.delete(key)
        messages, _ = pipe.execute()
        return [text(message) for message in messages]
