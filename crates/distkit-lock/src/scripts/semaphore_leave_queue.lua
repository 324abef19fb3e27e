-- semaphore_leave_queue: a waiter gives up (cancelled, timed out): leave the line, and wake
-- the waiters behind it (a request that held them back is gone).
-- KEYS     the eight semaphore keys (see semaphore_common)
-- ARGV[1]  the waiter's member, '<n> <token>'
-- ARGV[2]  where to announce it: 'S' or 'P' and the release channel (see sem_announce)
-- Returns 1 when it was queued, else 0.
local removed = sem_leave(ARGV[1])
if removed == 1 and redis.call('EXISTS', KEYS[3]) == 1 then
  sem_announce(ARGV[2], 'left')
end
return removed
