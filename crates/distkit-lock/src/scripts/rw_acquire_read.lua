-- rw_acquire_read: add a reader unless a writer holds the lock or waits for it.
-- KEYS     the rwlock keys (see rw_common), the loss guard's two (KEYS[7], KEYS[8]) only
--          with ARGV[3]
-- ARGV[1]  the reader's token (unique per read guard)
-- ARGV[2]  the lease, in ms
-- ARGV[3]  '1' to refuse grants after a data loss (see loss_guard.lua), else '0'
-- ARGV[4]  the retention of the fence and epoch keys, in ms (the lease plus
--          LockOptions::key_retention; see fence.lua)
-- Returns { 1, the reader's fencing token (see fence_floor in fence.lua) } when acquired,
-- { 0, 0 } when not.
if loss_guard_refuses(KEYS[7], KEYS[8], ARGV[2], ARGV[3], ARGV[4]) then
  return { 0, 0 }
end
-- One clock reading for the reader's expiry and its fencing token: the clock in ms as text
-- (the seconds and the first three of the six padded microsecond digits) and as a number.
local time = redis.call('TIME')
local now_text = time[1] .. string.sub(string.rep('0', 6 - #time[2]) .. time[2], 1, 3)
local now = tonumber(now_text)
-- The common case in one call: no writer holds the lock and none waits.
if redis.call('EXISTS', KEYS[1], KEYS[3]) > 0 then
  -- GET, not EXISTS: a writer key of another type fails with WRONGTYPE, as in
  -- rw_acquire_write, rather than reading as a writer that holds the lock for ever.
  if redis.call('GET', KEYS[1]) then
    return { 0, 0 }
  end
  -- Writers wait: drop those whose heartbeat stopped, then look again.
  rw_purge(now)
  if redis.call('EXISTS', KEYS[3]) == 1 then
    return { 0, 0 }
  end
end
-- Readers whose lease ran out (crashed holders) leave the set.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. now_text)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
rw_keep_for(KEYS[2], ttl)
return { 1, fence_floor(KEYS[6], ARGV[4], time) }
