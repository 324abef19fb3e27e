-- sliding_window: one sliding-window decision for one limiter key, atomic: buckets of
-- coalesced calls in a window, as trypema's absolute limiter keeps them, except that a
-- bucket counts until its newest call (not its start) is a window old.
-- KEYS[1]  the buckets of the key, oldest first: a list of '<start_ms> <count> <last_ms>'
--          strings (see sliding_window_common.lua)
-- KEYS[2]  the total count of those buckets (decimal integer)
--          Both expire (PX) when the newest bucket leaves the window.
-- ARGV[1]  limit: the most units admitted within one window (decimal integer >= 1)
-- ARGV[2]  window in ms (>= 1)
-- ARGV[3]  bucket in ms (1 .. window): a call joins the newest bucket when that bucket
--          started at most this long ago, else it starts a new bucket
-- ARGV[4]  cost of this call (1 .. limit)
-- ARGV[5]  '' to read the server clock (redis.call('TIME')); tests give a time in ms
--          instead, and the keys are then written without an expiry
-- ARGV[6]  '1' to peek: the same decision and reply, but the cost is not charged (buckets
--          that left the window are still evicted); '' to decide and charge
-- A bucket counts while now - last <= window (last: the time of its newest call); it leaves
-- the window one ms later. So a call admitted at t counts through t + window, and the units
-- admitted within any window of `window` ms (both ends included) are at most the limit. A
-- call is admitted when total + cost <= limit, counting the buckets still in the window.
-- Returns { allowed, total, retry_after_ms, reset_ms }: allowed is 1 or 0; total is the count
-- in the window after the decision; retry_after_ms (0 when admitted) is the time until enough
-- of the oldest buckets have left the window for this cost to fit, if nothing else is
-- admitted; reset_ms is the time until every bucket has left it (0 when it is empty).
-- Errors: 'DISTKIT_BAD_STATE' when the keys hold entries this script did not write.
-- Every number stays an integer below 2^53, so the double arithmetic of Lua is exact.
-- sliding_window_common.lua is prepended to this script (it defines sw_parse, sw_bad_state,
-- sw_evict, sw_add and sw_newest_last).
local buckets = KEYS[1]
local total_key = KEYS[2]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local bucket = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local explicit_time = ARGV[5] ~= ''
local peek = ARGV[6] == '1'

local now
if explicit_time then
  now = tonumber(ARGV[5])
else
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- Evict the buckets that left the window.
local total, evicted = sw_evict(buckets, total_key, now, window, bucket)
if not total then
  return evicted
end

-- The time until the newest bucket, whose last time is `newest_last`, leaves the window.
local function reset_ms(newest_last)
  if total == 0 then
    return 0
  end
  local reset = newest_last + window + 1 - now
  if reset < 0 then
    reset = 0
  end
  return reset
end

local function store_total(newest_last)
  if total == 0 then
    redis.call('DEL', total_key)
    return
  end
  local text = string.format('%.0f', total)
  if explicit_time then
    redis.call('SET', total_key, text)
  else
    -- The newest bucket counts until now - last > window.
    local ttl = newest_last + window + 1 - now
    if ttl < 1 then
      ttl = 1
    end
    redis.call('SET', total_key, text, 'PX', ttl)
    redis.call('PEXPIRE', buckets, ttl)
  end
end

if total + cost > limit then
  local newest_last, err = sw_newest_last(buckets, now, bucket)
  if not newest_last then
    return err
  end
  if evicted then
    store_total(newest_last)
  end
  -- Walk from the oldest bucket until enough has left for this cost.
  local retry = 0
  local freed = 0
  local entries = redis.call('LRANGE', buckets, 0, -1)
  for i = 1, #entries do
    local start, count, last = sw_parse(entries[i], bucket)
    if not start then
      return sw_bad_state()
    end
    freed = freed + count
    local leaves = last + window + 1 - now
    if leaves > retry then
      retry = leaves
    end
    if total - freed + cost <= limit then
      break
    end
  end
  return { 0, total, retry, reset_ms(newest_last) }
end

if peek then
  local newest_last, err = sw_newest_last(buckets, now, bucket)
  if not newest_last then
    return err
  end
  if evicted then
    store_total(newest_last)
  end
  -- As if charged: the cost would join a bucket whose last time becomes now (or stays
  -- later, when the clock went back).
  if now > newest_last then
    newest_last = now
  end
  total = total + cost
  return { 1, total, 0, reset_ms(newest_last) }
end

local newest_last, err = sw_add(buckets, now, bucket, cost)
if not newest_last then
  return err
end
total = total + cost
store_total(newest_last)
return { 1, total, 0, reset_ms(newest_last) }
