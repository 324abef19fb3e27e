-- rw_extend_read: renew a reader's lease to a full ttl if it is still registered.
-- KEYS     the six rwlock keys (see rw_common)
-- ARGV[1]  the reader's token
-- ARGV[2]  the lease, in ms
-- Returns 1 when renewed, 0 when the reader's lease was gone.
local now = rw_now_ms()
local expiry = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not expiry or tonumber(expiry) < now then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[2], 'XX', now + ttl, ARGV[1])
rw_keep_for(KEYS[2], ttl)
return 1
