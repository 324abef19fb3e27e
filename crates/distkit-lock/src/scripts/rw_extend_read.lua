-- rw_extend_read: renew a reader's lease to a full ttl if it is still registered.
-- KEYS     the six rwlock keys (see rw_common)
-- ARGV[1]  the reader's token
-- ARGV[2]  the lease, in ms
-- ARGV[3]  the retention of the fence and epoch keys, in ms (see fence.lua)
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
-- The fence and the epoch stay for their retention from the last renewal (never shorter:
-- a fence ahead of the clock is kept longer, see fence.lua).
for _, key in ipairs({ KEYS[6], KEYS[7] }) do
  local left = redis.call('PTTL', key)
  if left ~= -2 and left < tonumber(ARGV[3]) then
    redis.call('PEXPIRE', key, ARGV[3])
  end
end
return 1
