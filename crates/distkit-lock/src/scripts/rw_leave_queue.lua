-- rw_leave_queue: remove a waiting writer from the queue (its acquire was cancelled or
-- gave up), and wake the other waiters: readers may be free to go now.
-- KEYS     the six rwlock keys (see rw_common)
-- ARGV[1]  the writer's token
-- ARGV[2]  where to announce it: 'S' or 'P' and the release channel (see rw_announce)
-- Returns 1 when the token was queued, else 0.
local removed = redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
if removed == 1 then
  rw_announce(ARGV[2], 'left')
end
return removed
