-- rw_acquire_write: take the write lock when no reader or writer holds it and no earlier
-- writer waits; otherwise (when asked to) join the queue of waiting writers.
-- KEYS     the six rwlock keys (see rw_common)
-- ARGV[1]  the writer's token
-- ARGV[2]  the lease, in ms
-- ARGV[3]  the heartbeat window of a waiting writer, in ms (its place in the queue is lost
--          when it does not try again within this window)
-- ARGV[4]  '1' to join (or stay in) the queue when the lock is not free, '0' for a one-shot
-- ARGV[5]  '1' when the token is an explicit owner id that may re-attach, else '0'
-- ARGV[6]  '1' to refuse grants after a data loss (see loss_guard.lua), else '0'
-- ARGV[7]  the retention of the fence and epoch keys, in ms (the lease plus
--          LockOptions::key_retention; see fence.lua)
-- Returns { 1, fencing token (a decimal string, see fence.lua) } when acquired,
-- { 0, position in the queue or -1 } when not.
if loss_guard_refuses(KEYS[7], KEYS[8], ARGV[2], ARGV[6], ARGV[7]) then
  return { 0, -1 }
end
local now = rw_now_ms()
rw_purge(now)
local token = ARGV[1]
local ttl = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local writer = redis.call('GET', KEYS[1])

local function acquire()
  redis.call('SET', KEYS[1], token, 'PX', ttl)
  redis.call('ZREM', KEYS[3], token)
  redis.call('ZREM', KEYS[4], token)
  return { 1, fence_next(KEYS[6], ARGV[7]) }
end

if writer ~= false and ARGV[5] == '1' and writer == token then
  return acquire()
end

local free = writer == false and redis.call('ZCARD', KEYS[2]) == 0
local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
if free and (head == nil or head == token) then
  return acquire()
end

if ARGV[4] ~= '1' then
  return { 0, -1 }
end
if not redis.call('ZSCORE', KEYS[3], token) then
  redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[5]), token)
end
redis.call('ZADD', KEYS[4], now + window, token)
rw_keep_for(KEYS[3], window)
rw_keep_for(KEYS[4], window)
-- The tickets expire with the queue (the same expiry, set in the same call): a new queue
-- starts its tickets anew.
rw_keep_for(KEYS[5], window)
return { 0, redis.call('ZRANK', KEYS[3], token) }
