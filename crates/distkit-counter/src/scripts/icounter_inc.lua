-- icounter_inc: the hot path of the instance-aware counters, one unconditional `inc` of a live
-- instance while nothing is due. It stands alone (no helper prelude) and runs
-- TIME, GET, ZSCORE (and ZADD when the lease moves) and two HINCRBYs. Whenever anything else may be needed it writes nothing
-- but the lease renewal, which the full `icounter` script would make anyway, and returns an
-- empty array: the caller then sends the same operation through `icounter`, whose header
-- documents the model, the keys and `due`. It bails out when:
--   - steps 2 and 3 of `icounter` may find work (no `due`, or the server clock is past it);
--   - the instance is not in `alive` (it joins, or was reaped and must revive first);
--   - the amount, the slice or C is 10^15 or more in magnitude (exact i64 arithmetic on
--     large values needs `icounter`'s decimal helpers; below 10^15 Lua's doubles are exact),
--     or an HINCRBY fails (overflow, wrong type: `icounter` reports it): writes are undone.
--
-- KEYS[1]  totals    KEYS[2]  alive    KEYS[3]  slices
-- KEYS[4]  owned     KEYS[5]  by_key   KEYS[6]  due      (as KEYS[1, 2, 5, 6, 9, 12] of icounter)
-- ARGV[1]  the calling instance id
-- ARGV[2]  its dead-instance threshold, in ms
-- ARGV[3]  the counter key
-- ARGV[4]  the amount, a decimal i64
-- Returns new C, new I, old C, old I and 0 (no instance found dead), as integers; or an
-- empty array when `icounter` must run the operation instead.
local totals, alive, slices, owned, by_key, due = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local me, key, amount = ARGV[1], ARGV[3], ARGV[4]
local LIMIT = 1e15

local n = tonumber(amount)
if not n or n >= LIMIT or n <= -LIMIT then return {} end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local next_due = tonumber(redis.call('GET', due))
if not next_due or now > next_due then return {} end

-- Renews the lease of a live instance only: its deadline is read first (a missing member
-- bails out) and written only when it moves, so the many calls of one millisecond make one
-- command here instead of two (the same writes as `ZADD XX CH` followed by `ZSCORE` when it
-- changed nothing).
local deadline = now + tonumber(ARGV[2])
local lease = redis.call('ZSCORE', alive, me)
if not lease then
  return {}
end
if tonumber(lease) ~= deadline then
  redis.call('ZADD', alive, 'XX', deadline, me)
end
if deadline < next_due then
  -- As in icounter: this lease is now the earliest deadline, and `due` follows it down.
  redis.call('SET', due, string.format('%.0f', deadline))
end

local field = me .. ':' .. key
local slice = redis.pcall('HINCRBY', slices, field, amount)
if type(slice) ~= 'number' then return {} end
if slice < LIMIT and slice > -LIMIT then
  local total = redis.pcall('HINCRBY', totals, key, amount)
  if type(total) == 'number' then
    if total < LIMIT and total > -LIMIT then
      local old_slice = slice - n
      if old_slice == 0 then
        -- The slice may be new (one of 0 may also exist already: adding it again is a no-op).
        redis.call('ZADD', owned, 0, field)
        redis.call('ZADD', by_key, 0, key .. ':' .. me)
      end
      return { total, slice, total - n, old_slice, 0 }
    end
    -- C existed before (a new C equals the amount, which is below the limit). Undoing adds
    -- -n through HINCRBY: exact, where a reply beyond 2^53 (a Lua double) is not.
    redis.call('HINCRBY', totals, key, string.format('%d', -n))
  end
end
-- Puts the slice back as it was (removed again when it did not exist), and declines.
if slice == n and not redis.call('ZSCORE', owned, field) then
  redis.call('HDEL', slices, field)
else
  redis.call('HINCRBY', slices, field, string.format('%d', -n))
end
return {}
