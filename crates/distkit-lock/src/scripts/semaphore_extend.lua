-- semaphore_extend: renew a holder's lease to a full ttl if it is still registered and
-- within its lease, and keep the fence and the epoch for their retention from now.
-- Idempotent (it may be replayed after a reconnect).
-- KEYS     the eight semaphore keys (see semaphore_common)
-- ARGV[1]  the holder's token
-- ARGV[2]  the lease, in ms
-- ARGV[3]  (optional) the retention of the fence and epoch, in ms; default the lease plus
--          SEM_RETENTION_MS
-- Returns 1 when renewed, 0 when the lease was gone (a lapsed entry is removed).
local now = sem_now_ms()
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expiry then
  return 0
end
if tonumber(expiry) < now then
  sem_remove_holder(ARGV[1])
  return 0
end
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[1])
sem_keep_holders(ttl)
local keep = tonumber(ARGV[3]) or sem_retention(ARGV[2])
sem_retain(KEYS[6], keep)
sem_retain(KEYS[7], keep)
return 1
