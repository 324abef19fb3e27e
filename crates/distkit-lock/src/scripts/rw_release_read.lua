-- rw_release_read: remove a reader and announce it.
-- KEYS     the six rwlock keys (see rw_common)
-- ARGV[1]  the reader's token
-- ARGV[2]  the release channel of the lock
-- Returns 1 when the reader was still registered (and within its lease), else 0.
local now = rw_now_ms()
local expiry = redis.call('ZSCORE', KEYS[2], ARGV[1])
local removed = redis.call('ZREM', KEYS[2], ARGV[1])
if removed == 1 then
  redis.call('PUBLISH', ARGV[2], 'released')
end
if removed == 1 and tonumber(expiry) >= now then
  return 1
end
return 0
