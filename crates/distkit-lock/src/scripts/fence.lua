-- Fencing tokens: helpers prepended to every script that grants a lock (no KEYS or ARGV of
-- their own: the caller names the fence key and its retention).
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

-- Retention: the fence key lives `keep` ms (the lease plus LockOptions::key_retention)
-- after the last grant or renewal, and longer while the counter is ahead of the clock: it
-- expires only once the server clock has passed the last token by `keep`, so the next token
-- (the clock alone) is still above every earlier one unless the clock stepped back by more
-- than that.

-- Makes `key` live at least `ms` longer, never shorter (a key without expiry gets one; a
-- missing key stays missing).
local function fence_keep_for(key, ms)
  local left = redis.call('PTTL', key)
  if left ~= -2 and left < tonumber(ms) then
    redis.call('PEXPIRE', key, ms)
  end
end

-- Keeps the fence `key`, whose value `value` is at or ahead of the clock reading `now` (both
-- decimal strings), until `keep` ms after the clock passed it. (Lua numbers are doubles: the
-- difference is rounded, hence the extra millisecond, and capped at about 30 years.)
local function fence_keep_ahead(key, value, now, keep)
  local ahead = math.floor((tonumber(value) - tonumber(now)) / 1000) + 1
  ahead = math.min(math.max(ahead, 0), 1000000000000)
  fence_keep_for(key, string.format('%d', tonumber(keep) + ahead))
end

-- The server clock in microseconds, a decimal string: from `time` (a TIME reply the caller
-- already has), else from a TIME call. TIME gives the microseconds without leading zeros:
-- they are padded to six digits with string operations (no number conversion, which costs
-- Redis more than the rest of this function).
local function fence_now(time)
  time = time or redis.call('TIME')
  return time[1] .. string.rep('0', 6 - #time[2]) .. time[2]
end

-- The next fencing token of the lock whose fence counter is `key`, stored back in `key` and
-- returned as a decimal string; `keep` is the retention in ms (see above).
-- max(last + 1, now) is now whenever last < now: the usual case costs one write, which
-- stores the clock and reads the previous value at once (SET … GET, Redis 6.2); otherwise
-- (only while the clock is behind the last token) the previous value is put back and goes
-- up by one, all within this script (atomic: nobody sees the clock value in between).
local function fence_next(key, keep)
  local now = fence_now()
  local last = redis.call('SET', key, now, 'PX', keep, 'GET')
  if not last or fence_less(last, now) then
    return now
  end
  redis.call('SET', key, last, 'PX', keep)
  redis.call('INCR', key)
  local next = redis.call('GET', key)
  fence_keep_ahead(key, next, now, keep)
  return next
end

-- The fencing token of a reader of the lock whose fence counter is `key`: max(last, now), a
-- decimal string; `keep` as for fence_next. Readers share tokens (one reader does not fence
-- off another), but a reader's token is at least every token issued before it, after a
-- data loss too (the clock part, as for writers), and below every write token issued after
-- it (it is stored when it raised the counter, so the next writer's `last + 1` passes it).
-- `time` is an optional TIME reply the caller already has (see fence_now).
local function fence_floor(key, keep, time)
  local now = fence_now(time)
  local last = redis.call('SET', key, now, 'PX', keep, 'GET')
  if not last or fence_less(last, now) then
    return now
  end
  -- The counter is at or ahead of the clock: put it back.
  redis.call('SET', key, last, 'PX', keep)
  fence_keep_ahead(key, last, now, keep)
  return last
end
