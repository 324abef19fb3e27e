-- mutex_acquire, continued: the lock is held or waiters are in line.
local owner = redis.call('GET', KEYS[1])
if owner == token then
  -- A per-acquisition token confirms a handover to it whose announcement it missed (or
  -- ignored): only this acquisition knows the token, so nobody else can have taken the
  -- handover's fencing token. An explicit owner id re-attaches, and always with a new
  -- fencing token: another acquisition with the id may already have taken the handover's
  -- token from its announcement (that took nothing in Redis), and no token is issued twice.
  local explicit = string.sub(ARGV[5], 2, 2) == '1'
  local handed = not explicit and mutex_handover_fence(token)
  if handed or explicit then
    -- A confirmed handover is no longer pending: nothing may pass it on any more.
    redis.call('PEXPIRE', KEYS[1], ttl)
    redis.call('DEL', KEYS[5])
    mutex_forget_waiter(token)
    if handed then
      return { 1, handed, 1 }
    end
    return { 1, fence_next(KEYS[2], keep) }
  end
end

local now = mutex_now_ms()
if owner == false then
  -- Free, but waiters are in line (a lease ran out): the first live one is served.
  local head = mutex_live_head(now)
  -- No live head found while the line is not empty: more than 100 dead waiters were ahead,
  -- and live ones may wait behind them. Nobody takes the lock in this call (a newcomer must
  -- not jump them); the next call drops the next hundred.
  local exhausted = head == nil and redis.call('LLEN', KEYS[3]) > 0
  if (head == nil and not exhausted) or head == token then
    redis.call('SET', KEYS[1], token, 'PX', ttl)
    if head then
      redis.call('LPOP', KEYS[3])
      redis.call('HDEL', KEYS[4], token)
    end
    return { 1, fence_next(KEYS[2], keep) }
  end
  -- (The loss guard passed at the top of this call.)
  mutex_hand_over(ttl, '0', keep)
end

if string.sub(ARGV[5], 1, 1) == '1' then
  local window = tonumber(ARGV[4])
  local entry = (now + window) .. ' ' .. ttl .. ' ' .. window .. ' ' .. ARGV[6]
  if redis.call('HSET', KEYS[4], token, entry) == 1 then
    redis.call('RPUSH', KEYS[3], token)
  end
  -- The waitlist and the waiters hash always expire together.
  if redis.call('PTTL', KEYS[3]) < window then
    redis.call('PEXPIRE', KEYS[3], window)
    redis.call('PEXPIRE', KEYS[4], window)
  end
end
return { 0, redis.call('GET', KEYS[2]) or '0' }
