-- mutex_acquire, continued: the lock is held or waiters are queued.
local owner = redis.call('GET', KEYS[1])
if owner == token then
  local handed = mutex_handover_fence(token)
  if handed or ARGV[5] == '1' then
    -- A handover to this waiter whose announcement it missed, or a re-attach.
    redis.call('PEXPIRE', KEYS[1], ttl)
    mutex_forget_waiter(token)
    if handed then
      return { 1, handed }
    end
    return { 1, redis.call('INCR', KEYS[2]) }
  end
end

local now = mutex_now_ms()
mutex_purge(now)
if owner == false then
  local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
  if head == nil or head == token then
    redis.call('SET', KEYS[1], token, 'PX', ttl)
    mutex_forget_waiter(token)
    return { 1, redis.call('INCR', KEYS[2]) }
  end
end

if ARGV[4] == '1' then
  if not redis.call('ZSCORE', KEYS[3], token) then
    redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[5]), token)
    redis.call('HSET', KEYS[7], token, ttl)
  end
  local window = tonumber(ARGV[3])
  redis.call('ZADD', KEYS[4], now + window, token)
  for _, key in ipairs({ KEYS[3], KEYS[4], KEYS[7] }) do
    if redis.call('PTTL', key) < window then
      redis.call('PEXPIRE', key, window)
    end
  end
end
return { 0, redis.call('PTTL', KEYS[1]) }
