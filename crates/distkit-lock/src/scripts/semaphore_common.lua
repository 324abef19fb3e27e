-- Helpers shared by the semaphore scripts (prepended to each of them, after fence.lua and
-- loss_guard.lua where a script grants).
-- Keys of one semaphore, always passed in this order, all under the semaphore's hash tag:
--   KEYS[1] holders  sorted set: holder token -> lease expiry (server ms)
--   KEYS[2] held     hash: holder token -> permits it holds; '#used' -> the sum of those;
--                    '#permits' -> the permit count the semaphore is in use with
--   KEYS[3] queue    sorted set: '<n> <token>' of each waiter -> arrival ticket
--   KEYS[4] alive    sorted set: the same members -> heartbeat expiry (server ms)
--   KEYS[5] line     hash: 'next' -> the last arrival ticket; 'permits' -> the permit count
--                    the waiters use
--   KEYS[6] fence    the last fencing token (see fence.lua), kept for its retention
--   KEYS[7] epoch    the loss guard's epoch (see loss_guard.lua), kept for its retention
--   KEYS[8] quarantine the loss guard's quarantine (see loss_guard.lua)
-- A token is in `holders` exactly when it is in `held`, and a member is in `queue` exactly
-- when it is in `alive`: both are changed together. `holders` and `held` always carry the
-- same expiry (the latest lease), as do `queue`, `alive` and `line` (the latest heartbeat),
-- and each group is deleted as soon as it is empty: no key of a semaphore outlives its
-- last lease, heartbeat or retention.

-- How long the fence and the epoch are kept after the last grant or renewal: the lease
-- plus ten minutes (see the `semaphore` module docs, Keys and retention).
local SEM_RETENTION_MS = 600000

local function sem_now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- The retention of the fence and epoch keys for a lease of `ttl` ms (a decimal string).
local function sem_retention(ttl)
  return tonumber(ttl) + SEM_RETENTION_MS
end

-- Makes `key` live at least `ms` longer, never shorter; a missing key stays missing.
local function sem_retain(key, ms)
  local left = redis.call('PTTL', key)
  if left ~= -2 and left < ms then
    redis.call('PEXPIRE', key, ms)
  end
end

-- Makes the keys of a group live at least `ms` longer, all with the same expiry.
local function sem_keep_group(keys, ms)
  for _, key in ipairs(keys) do
    if redis.call('PTTL', key) < ms then
      for _, each in ipairs(keys) do
        redis.call('PEXPIRE', each, ms)
      end
      return
    end
  end
end

local function sem_keep_holders(ms)
  sem_keep_group({ KEYS[1], KEYS[2] }, ms)
end

local function sem_keep_line(ms)
  sem_keep_group({ KEYS[3], KEYS[4], KEYS[5] }, ms)
end

-- The permit count the semaphore is in use with (a decimal string), or nil when it is idle.
local function sem_stored_permits()
  return redis.call('HGET', KEYS[2], '#permits') or redis.call('HGET', KEYS[5], 'permits')
end

-- Removes a holder and gives back its permits; deletes the holders' keys once empty.
local function sem_remove_holder(token)
  local n = redis.call('HGET', KEYS[2], token)
  redis.call('ZREM', KEYS[1], token)
  if n then
    redis.call('HDEL', KEYS[2], token)
    redis.call('HINCRBY', KEYS[2], '#used', -tonumber(n))
  end
  if redis.call('ZCARD', KEYS[1]) == 0 then
    redis.call('DEL', KEYS[1], KEYS[2])
  end
end

-- Removes a waiter (its member '<n> <token>'); deletes the line's keys once empty.
-- Returns 1 when it was queued, else 0.
local function sem_leave(member)
  local removed = redis.call('ZREM', KEYS[3], member)
  redis.call('ZREM', KEYS[4], member)
  if redis.call('ZCARD', KEYS[3]) == 0 then
    redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
  end
  return removed
end

-- Drops holders whose lease ran out (crashed holders) and waiters whose heartbeat stopped
-- (crashed waiters), at most 100 of each per call (what is left over only holds permits
-- back until a later call drops it: never too many are granted). Returns how many went.
local function sem_purge(now)
  local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now, 'LIMIT', 0, 100)
  for _, token in ipairs(expired) do
    sem_remove_holder(token)
  end
  local stale = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. now, 'LIMIT', 0, 100)
  for _, member in ipairs(stale) do
    sem_leave(member)
  end
  return #expired + #stale
end

-- Announces `message` on the semaphore's release channel, for its waiters. `target` is
-- 'S<channel>' (a sharded channel, in a cluster: SPUBLISH, or PUBLISH where the server does
-- not know SPUBLISH) or 'P<channel>' (PUBLISH). An announcement is a hint: one the server
-- refuses (an ACL without the channel) never fails the call, whose writes are done; it
-- returns false then (waiters poll), else true.
local function sem_announce(target, message)
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
