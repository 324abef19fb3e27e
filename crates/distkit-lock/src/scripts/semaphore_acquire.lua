-- semaphore_acquire: take `n` permits when they are free and every earlier waiter's request
-- still fits beside them; otherwise (when asked to) join or stay in the line of waiters.
-- KEYS     the eight semaphore keys (see semaphore_common)
-- ARGV[1]  the token of this acquisition
-- ARGV[2]  n, the permits asked for (1 to ARGV[3]; checked by the caller)
-- ARGV[3]  the permit count of the caller's handle
-- ARGV[4]  the lease, in ms
-- ARGV[5]  the heartbeat window of a waiter, in ms (it leaves the line when it does not try
--          again within this window)
-- ARGV[6]  '1' to join (or stay in) the line when refused, '0' for a one-shot
-- ARGV[7]  '1' to refuse grants after a data loss (see loss_guard.lua), else '0'
-- ARGV[8]  where to announce that crashed holders or waiters were dropped: 'S' or 'P' and
--          the release channel (see sem_announce)
-- Returns { 1, fencing token (a decimal string, see fence.lua) } when granted, { 0, 0 } when
-- refused.
-- Errors: 'DISTKIT_PERMIT_COUNT <stored count>' when the semaphore is in use with another
-- permit count (nothing is written then).
--
-- Fairness: waiters are ordered by arrival ticket. A request is granted only when its `n`
-- and the requests of every live waiter ahead of it (every waiter, for a newcomer) fit in
-- the free permits together: a later request may be served before an earlier one only while
-- the earlier one's permits stay free for it, so no request is ever overtaken, and a large
-- request at the head holds back every later one until its permits are free.
local token = ARGV[1]
local n = tonumber(ARGV[2])
local ttl = tonumber(ARGV[4])
local member = ARGV[2] .. ' ' .. token
local keep = sem_retention(ARGV[4])

local stored = sem_stored_permits()
if stored and stored ~= ARGV[3] then
  return redis.error_reply('DISTKIT_PERMIT_COUNT ' .. stored .. ' the semaphore is in use with another permit count')
end

-- (The loss guard's fifth argument is the epoch's retention where it takes one.)
local guarded = loss_guard_refuses(KEYS[7], KEYS[8], ARGV[4], ARGV[7], keep)
sem_retain(KEYS[7], keep)

local now = sem_now_ms()
if sem_purge(now) > 0 and redis.call('EXISTS', KEYS[3]) == 1 then
  sem_announce(ARGV[8], 'purged')
end
local queued_at = redis.call('ZSCORE', KEYS[3], member)

-- Whether `n` fits beside what is held and what the waiters ahead asked for.
local function fits()
  local used = tonumber(redis.call('HGET', KEYS[2], '#used') or '0')
  local budget = tonumber(ARGV[3]) - used - n
  if budget < 0 then
    return false
  end
  local rank = nil
  if queued_at then
    rank = redis.call('ZRANK', KEYS[3], member)
  end
  -- Each waiter asks for at least one permit, so at most `budget + 1` are read.
  local start = 0
  while true do
    local stop = start + 99
    if rank then
      if start >= rank then
        return true
      end
      stop = math.min(stop, rank - 1)
    end
    local batch = redis.call('ZRANGE', KEYS[3], start, stop)
    if #batch == 0 then
      return true
    end
    for _, waiting in ipairs(batch) do
      budget = budget - tonumber(string.match(waiting, '^(%d+) '))
      if budget < 0 then
        return false
      end
    end
    start = start + 100
  end
end

local function grant()
  if queued_at then
    sem_leave(member)
  end
  local fence = fence_next(KEYS[6], keep)
  -- Kept for its retention after the clock passed it (see fence.lua).
  local ahead = math.floor(tonumber(fence) / 1000) - now + 1
  if ahead < 0 then
    ahead = 0
  end
  sem_retain(KEYS[6], keep + ahead)
  return { 1, fence }
end

if not guarded then
  if redis.call('ZSCORE', KEYS[1], token) then
    -- This acquisition already holds (an earlier attempt whose reply was lost): renew it.
    redis.call('ZADD', KEYS[1], 'XX', now + ttl, token)
    sem_keep_holders(ttl)
    return grant()
  end
  if fits() then
    redis.call('ZADD', KEYS[1], now + ttl, token)
    redis.call('HSET', KEYS[2], token, ARGV[2], '#permits', ARGV[3])
    redis.call('HINCRBY', KEYS[2], '#used', n)
    sem_keep_holders(ttl)
    return grant()
  end
end

if ARGV[6] == '1' then
  local window = tonumber(ARGV[5])
  if not queued_at then
    local ticket = redis.call('HINCRBY', KEYS[5], 'next', 1)
    redis.call('HSET', KEYS[5], 'permits', ARGV[3])
    redis.call('ZADD', KEYS[3], ticket, member)
  end
  redis.call('ZADD', KEYS[4], now + window, member)
  sem_keep_line(window)
end
return { 0, 0 }
