"""The Lua scripts of the Redis ledger: each step is atomic, on one batch's hash slot.

Every key a script touches carries the batch's hash tag, so on Redis Cluster
each script runs on one node.
"""

from __future__ import annotations

__all__ = ["BEGIN", "FAIL", "FINISH", "KEEP_LEASE"]

# KEYS: outcome, lease, attempts, links, failed, progress, fresh.
# ARGV: owner, lease ms, asked at (wall seconds).
# "failed" is the batch's last final failure, a hash: its time ("at") and
# its record, which answers every ask made before it (as "done" answers all).
# The attempt count belongs to the batch, not to the task, and counts the
# failed attempts (FAIL adds one): a task taking over a lease goes on
# counting, so duplicates never multiply the attempts, and a task that holds
# the lease but waits (for a rate-limit token) has made no attempt.
# A cancel asked before the batch's last final failure shares that failure.
# "fresh" is set once an attempt got a 200 that did not confirm the cancel:
# from then on every attempt is a new request (see FAIL).
BEGIN = """
local done = redis.call('GET', KEYS[1])
if done then return {'done', done} end
local failed = redis.call('HMGET', KEYS[5], 'at', 'record')
if failed[1] and tonumber(failed[1]) >= tonumber(ARGV[3]) then
  return {'failed', failed[2]}
end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then
  return {'busy', tostring(redis.call('PTTL', KEYS[2]))}
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
local n = tonumber(redis.call('GET', KEYS[3]) or '0') + 1
local progress = redis.call('GET', KEYS[6]) or ''
local fresh = redis.call('EXISTS', KEYS[7])
return {'acquired', tostring(n), redis.call('SMEMBERS', KEYS[4]), progress, fresh}
"""

# KEYS: outcome, lease, attempts, failure, wanted, failed, fresh.
# ARGV: owner, outcome json, ttl s.
FINISH = """
redis.call('SET', KEYS[1], ARGV[2], 'NX', 'EX', ARGV[3])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
return redis.call('GET', KEYS[1])
"""

# KEYS: lease, attempts, failure, wanted, failed, fresh.
# ARGV: owner, failure json, ttl s, keep lease ms (0: give it back), final (1/0), its time,
# unconfirmed (1/0). After an unconfirmed 200 the batch's own Idempotency-Key
# only replays that answer: "fresh" stays set until the outcome (a final
# failure does not end it, the API keeps the answer for 24 hours).
FAIL = """
redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[3])
if ARGV[7] == '1' then redis.call('SET', KEYS[6], 1, 'EX', ARGV[3]) end
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if tonumber(ARGV[4]) > 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
  else
    redis.call('DEL', KEYS[1])
  end
end
if ARGV[5] == '1' then
  redis.call('DEL', KEYS[2], KEYS[4])
  redis.call('HSET', KEYS[5], 'at', ARGV[6], 'record', ARGV[2])
  redis.call('EXPIRE', KEYS[5], ARGV[3])
end
return 1
"""

# KEYS: lease. ARGV: owner, ms.
KEEP_LEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
