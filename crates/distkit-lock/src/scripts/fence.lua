-- Fencing tokens: helpers prepended to every script that grants a lock (no KEYS or ARGV of
-- their own: the caller names the fence key).
-- A fencing token is max(the lock's last token + 1, the server clock in microseconds). While
-- the fence key is kept, tokens strictly increase (the counter part), whatever the clock
-- does; when the key was lost (a restart without persistence, a failover to a replica that
-- missed it) the clock part still puts the next token above every earlier one, as long as
-- the clock of the server issuing it is not behind the clock that issued the earlier ones
-- by more than the time between them. Tokens are handled as decimal strings, never as Lua
-- numbers (doubles), so every int64 stays exact.

-- Whether the decimal integer string `a` is less than `b` (no leading zeros; a negative `a`,
-- which distkit never writes, is less than anything).
local function fence_less(a, b)
  if string.sub(a, 1, 1) == '-' then
    return true
  end
  if #a ~= #b then
    return #a < #b
  end
  return a < b
end

-- The next fencing token of the lock whose fence counter is `key` (a string key without
-- TTL), stored back in `key` and returned as a decimal string.
-- max(last + 1, now) is now whenever last < now (the usual case: one write); otherwise the
-- counter goes up by one (only while the clock is behind the last token).
local function fence_next(key)
  local time = redis.call('TIME')
  local now = time[1] .. string.format('%06d', tonumber(time[2]))
  local last = redis.call('GET', key)
  if not last or fence_less(last, now) then
    redis.call('SET', key, now)
    return now
  end
  redis.call('INCR', key)
  return redis.call('GET', key)
end

-- The fencing token of a reader of the lock whose fence counter is `key`: max(last, now), a
-- decimal string. Readers share tokens (one reader does not fence off another), but a
-- reader's token is at least every token issued before it, after a data loss too (the clock
-- part, as for writers), and below every write token issued after it (it is stored when it
-- raised the counter, so the next writer's `last + 1` passes it).
local function fence_floor(key)
  local time = redis.call('TIME')
  local now = time[1] .. string.format('%06d', tonumber(time[2]))
  local last = redis.call('GET', key)
  if not last or fence_less(last, now) then
    redis.call('SET', key, now)
    return now
  end
  return last
end
