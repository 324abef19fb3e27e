-- Helpers shared by the mutex scripts (prepended to each of them).
-- Keys of one mutex, always passed in this order:
--   KEYS[1] owner    string: the holder's token, with a PX lease
--   KEYS[2] fence    integer: the last fencing token handed out (never expires)
--   KEYS[3] queue    sorted set: waiting token -> arrival ticket (first come, first served)
--   KEYS[4] alive    sorted set: waiting token -> heartbeat expiry (server ms)
--   KEYS[5] tickets  integer: the last arrival ticket handed out
--   KEYS[6] handover string: '<token> <fencing token>' of the last handover (PX: its lease)
--   KEYS[7] ttls     hash: waiting token -> the lease it asked for, in ms

-- The fencing token of the last handover if it went to `token`, else nil.
local function mutex_handover_fence(token)
  local handover = redis.call('GET', KEYS[6])
  if handover and string.sub(handover, 1, #token + 1) == token .. ' ' then
    return tonumber(string.sub(handover, #token + 2))
  end
  return nil
end

local function mutex_now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

local function mutex_forget_waiter(token)
  redis.call('ZREM', KEYS[3], token)
  redis.call('ZREM', KEYS[4], token)
  redis.call('HDEL', KEYS[7], token)
end

-- Drops waiters whose heartbeat stopped (a bounded amount per call).
local function mutex_purge(now)
  local stale = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. now, 'LIMIT', 0, 100)
  for _, token in ipairs(stale) do
    mutex_forget_waiter(token)
  end
end

-- After the owner key was deleted: hands the lock to the first live waiter, with the lease
-- it asked for, and announces 'granted <token> <fencing token>' on `channel` (the waiter
-- holds the lock from then on, as if its own attempt had taken it). Without waiters,
-- announces nothing: nobody is waiting.
local function mutex_hand_over(channel)
  if redis.call('ZCARD', KEYS[3]) == 0 then
    return
  end
  local now = mutex_now_ms()
  mutex_purge(now)
  local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
  if not head then
    redis.call('PUBLISH', channel, 'released')
    return
  end
  local lease = redis.call('HGET', KEYS[7], head) or '1000'
  redis.call('SET', KEYS[1], head, 'PX', lease)
  local fence = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[6], head .. ' ' .. fence, 'PX', lease)
  mutex_forget_waiter(head)
  redis.call('PUBLISH', channel, 'granted ' .. head .. ' ' .. fence)
end
