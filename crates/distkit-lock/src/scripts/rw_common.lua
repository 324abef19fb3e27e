-- Helpers shared by the rwlock scripts (prepended to each of them).
-- Keys of one rwlock, always passed in this order:
--   KEYS[1] writer   string: the writer's token, with a PX lease
--   KEYS[2] readers  sorted set: reader token -> lease expiry (server ms)
--   KEYS[3] queue    sorted set: waiting writer token -> arrival ticket
--   KEYS[4] alive    sorted set: waiting writer token -> heartbeat expiry (server ms)
--   KEYS[5] tickets  integer: the last arrival ticket handed out (expires with the queue)
--   KEYS[6] fence    integer: the last fencing token handed out (expires with its
--                    retention, see fence.lua)
--   KEYS[7] epoch    the loss guard's epoch (see loss_guard.lua)
--   KEYS[8] quarantine the loss guard's quarantine (see loss_guard.lua)

-- The server clock in ms, a number: the seconds and the first three of the six (padded)
-- microsecond digits of TIME, read as one decimal (one conversion rather than two).
local function rw_now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1] .. string.sub(string.rep('0', 6 - #time[2]) .. time[2], 1, 3))
end

-- Drops expired readers and waiting writers whose heartbeat stopped (a bounded amount).
local function rw_purge(now)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. now)
  local stale = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. now, 'LIMIT', 0, 100)
  for _, token in ipairs(stale) do
    redis.call('ZREM', KEYS[3], token)
    redis.call('ZREM', KEYS[4], token)
  end
end

-- Makes a key live at least `ms` longer (never shorter), so abandoned structures disappear.
local function rw_keep_for(key, ms)
  if redis.call('PTTL', key) < tonumber(ms) then
    redis.call('PEXPIRE', key, ms)
  end
end

-- Announces `message` on the lock's release channel. `target` is 'S<channel>' (a sharded
-- channel, in a cluster: SPUBLISH, or PUBLISH where the server does not know SPUBLISH) or
-- 'P<channel>' (PUBLISH). Called after a script's writes: a refused announcement (an ACL
-- without the channel) leaves them standing (waiters poll) and returns false; else true.
local function rw_announce(target, message)
  local channel = string.sub(target, 2)
  if string.sub(target, 1, 1) == 'S' then
    local reply = redis.pcall('SPUBLISH', channel, message)
    if type(reply) ~= 'table' or not reply.err then
      return true
    end
  end
  local reply = redis.pcall('PUBLISH', channel, message)
  return type(reply) ~= 'table' or not reply.err
end
