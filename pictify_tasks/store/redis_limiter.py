"""The shared rate limiter on Redis: one script call per request, one key per API key.

The script is :class:`pictify_tasks.limiter.LimiterState` in Lua, step for
step (read them side by side). It keeps one hash,
``<prefix>:{rl:<hash of the key>}:limiter``, so it touches one slot and runs
on Redis Cluster too. Time is the Redis server's (``TIME``), one clock for
every worker on every machine; tests pass their own.
"""

from __future__ import annotations

import string
from typing import Any

from pictify_tasks.limiter import (
    DEFAULT_API_WINDOW_MS,
    DEFAULT_HOLD_MS,
    LOAN_MS,
    MAX_GUARD_MS,
    MAX_WAIT_MS,
    MIN_LOAN_MS,
    RESERVED_SHARES,
    LimiterConfig,
    Observation,
    StoreLimiter,
)
from pictify_tasks.store.redis_keys import transient

__all__ = ["ACQUIRE", "RedisLimiter"]

#: How long an idle key's limiter state is kept.
STATE_TTL_MS = 86_400_000

# KEYS: the limiter hash.
# ARGV: now ms ('' = the server's clock), priority (-1: only hear), own limit (0: none),
# own window ms, hold max ms, status (0: nothing heard), limit, remaining, reset ms,
# retry-after ms ('' when unknown), tokens wanted as a loan (1: none). The $NAMES are the
# policy's constants, written in from pictify_tasks.limiter when the module loads (fewer
# arguments to send each time).
ACQUIRE = string.Template("""
local key = KEYS[1]
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local p = tonumber(ARGV[2])
local own_limit, own_window, hold_max = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local shares = {$SHARES}
local names = {'hold', 'own_end', 'own_used', 'api_limit', 'api_end', 'api_used',
               'api_carry', 'api_window', 'q0', 'q1', 'q2'}
local raw = redis.call('HMGET', key, unpack(names))
local s = {}
for i, name in ipairs(names) do s[name] = tonumber(raw[i]) or 0 end
local queue = {s.q0, s.q1, s.q2}
local function cap(limit, prio)
  return math.max(1, limit - math.floor(limit * shares[prio + 1]))
end

-- hear
local status = tonumber(ARGV[6])
if status > 0 then
  local seen_limit, remaining, reset = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
  if seen_limit and seen_limit >= 1 then s.api_limit = seen_limit end
  if s.api_limit > 0 and reset and reset > now then
    local seen_window = math.ceil((reset - now) / 1000) * 1000
    if reset == s.api_end then seen_window = math.max(seen_window, s.api_window) end
    if now >= s.api_end then s.api_used, s.api_carry = s.api_carry, 0 end
    s.api_window = seen_window
    s.api_end = reset
    if remaining then s.api_used = math.max(s.api_used, s.api_limit - remaining) end
  end
  if status == 429 then
    local wait = tonumber(ARGV[10]) or 0
    if reset and reset > now then wait = math.max(wait, reset - now) end
    if wait <= 0 then wait = $DEFAULT_HOLD_MS end
    s.hold = math.max(s.hold, now + math.min(wait, hold_max))
  end
end

-- take
local result = 0
if p >= 0 then
  if own_limit > 0 and now >= s.own_end then
    s.own_end = (math.floor(now / own_window) + 1) * own_window
    s.own_used = 0
  end
  local api_window = s.api_window
  if api_window <= 0 then api_window = $DEFAULT_API_WINDOW_MS end
  if now >= s.api_end then
    s.api_end = now + api_window
    s.api_used, s.api_carry = s.api_carry, 0
  end
  local own_room = own_limit <= 0 or s.own_used < cap(own_limit, p)
  local api_room = s.api_limit <= 0 or s.api_used < cap(s.api_limit, p)
  local ready = s.hold
  for q = 1, p do ready = math.max(ready, queue[q]) end
  local want = tonumber(ARGV[11]) or 1
  local loan = 0
  if own_room and api_room and ready <= now and want > 1 and queue[p + 1] <= now then
    local until_ms, ample = now + $LOAN_MS, true
    if own_limit > 0 then
      if s.own_used + want > math.floor(cap(own_limit, p) / 2) then ample = false end
      until_ms = math.min(until_ms, s.own_end)
    end
    if s.api_limit > 0 then
      if s.api_used + want > math.floor(cap(s.api_limit, p) / 2) then ample = false end
      until_ms = math.min(until_ms, s.api_end - math.min($MAX_GUARD_MS, api_window / 20))
    end
    if ample and until_ms - now >= $MIN_LOAN_MS then loan = until_ms - now end
  end
  if loan > 0 then
    if own_limit > 0 then s.own_used = s.own_used + want end
    s.api_used = s.api_used + want
    result = -loan
  elseif own_room and api_room and ready <= now then
    if own_limit > 0 then s.own_used = s.own_used + 1 end
    s.api_used = s.api_used + 1
    if now >= s.api_end - math.min($MAX_GUARD_MS, api_window / 20) then
      s.api_carry = s.api_carry + 1
    end
  else
    if not own_room then ready = math.max(ready, s.own_end) end
    if not api_room then ready = math.max(ready, s.api_end) end
    local start = math.max(ready, queue[p + 1], now)
    local spacing, boundary, window = 0, start, 0
    if own_limit > 0 then
      spacing = own_window / cap(own_limit, p)
      boundary, window = s.own_end, own_window
    end
    if s.api_limit > 0 and api_window / cap(s.api_limit, p) > spacing then
      spacing = api_window / cap(s.api_limit, p)
      boundary, window = s.api_end, api_window
    end
    queue[p + 1] = start + spacing
    local slot = start
    if window > 0 and start >= boundary then
      slot = boundary + math.floor((start - boundary) / window + 1e-9) * window
    end
    result = math.min(math.max(slot, ready) - now, $MAX_WAIT_MS)
  end
end

s.q0, s.q1, s.q2 = queue[1], queue[2], queue[3]
local changed = {}
for i, name in ipairs(names) do
  if s[name] ~= (tonumber(raw[i]) or 0) or not raw[i] then
    changed[#changed + 1] = name
    changed[#changed + 1] = string.format('%.17g', s[name])
  end
end
if #changed > 0 then redis.call('HSET', key, unpack(changed)) end
redis.call('PEXPIRE', key, $STATE_TTL_MS)
return tostring(result)
""").substitute(
    SHARES=", ".join(repr(share) for share in RESERVED_SHARES),
    DEFAULT_HOLD_MS=repr(DEFAULT_HOLD_MS),
    DEFAULT_API_WINDOW_MS=repr(DEFAULT_API_WINDOW_MS),
    MAX_GUARD_MS=repr(MAX_GUARD_MS),
    MAX_WAIT_MS=repr(MAX_WAIT_MS),
    LOAN_MS=repr(LOAN_MS),
    MIN_LOAN_MS=repr(MIN_LOAN_MS),
    STATE_TTL_MS=STATE_TTL_MS,
)


class RedisLimiter(StoreLimiter):
    """The limiter of one API key, shared through Redis by every process that uses it."""

    def __init__(self, client: Any, key: str, config: LimiterConfig) -> None:
        super().__init__(config)
        self.key = key
        self._script = client.register_script(ACQUIRE)

    @transient
    def _run(
        self, priority: int | None, heard: Observation | None, now_ms: float | None, want: int = 1
    ) -> float:
        config = self.config
        args: list[str | int | float] = [
            "" if now_ms is None else repr(now_ms),
            -1 if priority is None else priority,
            config.limit,
            repr(config.window_ms),
            repr(config.hold_max_ms),
            *_heard_args(heard),
            want,
        ]
        reply = self._script(keys=[self.key], args=args)
        return float(reply.decode() if isinstance(reply, bytes) else reply)


def _heard_args(heard: Observation | None) -> list[str | int]:
    """An answer's status and headers as script arguments ('' for a missing header)."""
    if heard is None:
        return [0, "", "", "", ""]
    values = (heard.limit, heard.remaining, heard.reset_ms, heard.retry_after_ms)
    return [heard.status, *("" if value is None else repr(value) for value in values)]
