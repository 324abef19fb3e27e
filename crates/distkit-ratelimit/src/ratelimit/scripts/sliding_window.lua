-- sliding_window: one sliding-window decision for one limiter key, atomic, with the
-- semantics of trypema's absolute limiter (buckets of coalesced calls in a window).
-- KEYS[1]  the buckets of the key, oldest first: a list of '<start_ms> <count>' strings
-- KEYS[2]  the total count of those buckets (decimal integer)
--          Both expire (PX) when the newest bucket leaves the window.
-- ARGV[1]  limit: the most units admitted within one window (decimal integer >= 1)
-- ARGV[2]  window in ms (>= 1)
-- ARGV[3]  bucket in ms (1 .. window): a call joins the newest bucket when that bucket
--          started at most this long ago, else it starts a new bucket
-- ARGV[4]  cost of this call (1 .. limit)
-- ARGV[5]  '' to read the server clock (redis.call('TIME')); tests give a time in ms
--          instead, and the keys are then written without an expiry
-- A bucket counts while now - start <= window; it leaves the window one ms later. A call is
-- admitted when total + cost <= limit, counting the buckets still in the window.
-- Returns { allowed, total, retry_after_ms }: allowed is 1 or 0; total is the count in the
-- window after the decision; retry_after_ms (0 when admitted) is the time until enough of the
-- oldest buckets have left the window for this cost to fit, if nothing else is admitted.
-- Errors: 'DISTKIT_BAD_STATE' when the keys hold entries this script did not write.
-- Every number stays an integer below 2^53, so the double arithmetic of Lua is exact.
-- sliding_window_common.lua is prepended to this script (it defines sw_parse, sw_bad_state
-- and sw_evict).
local buckets = KEYS[1]
local total_key = KEYS[2]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local bucket = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local explicit_time = ARGV[5] ~= ''

local now
if explicit_time then
  now = tonumber(ARGV[5])
else
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

local parse = sw_parse
local bad_state = sw_bad_state

-- Evict the buckets that left the window.
local total, evicted = sw_evict(buckets, total_key, now, window)
if not total then
  return evicted
end

local function store_total(newest_start)
  if total == 0 then
    redis.call('DEL', total_key)
    return
  end
  local text = string.format('%.0f', total)
  if explicit_time then
    redis.call('SET', total_key, text)
  else
    -- The newest bucket counts until now - start > window.
    local ttl = newest_start + window + 1 - now
    if ttl < 1 then
      ttl = 1
    end
    redis.call('SET', total_key, text, 'PX', ttl)
    redis.call('PEXPIRE', buckets, ttl)
  end
end

if total + cost > limit then
  if evicted then
    local newest = redis.call('LINDEX', buckets, -1)
    local newest_start = newest and parse(newest) or now
    store_total(newest_start)
  end
  -- Walk from the oldest bucket until enough has left for this cost.
  local retry = 0
  local freed = 0
  local entries = redis.call('LRANGE', buckets, 0, -1)
  for i = 1, #entries do
    local start, count = parse(entries[i])
    if not start then
      return bad_state()
    end
    freed = freed + count
    retry = start + window + 1 - now
    if total - freed + cost <= limit then
      break
    end
  end
  if retry < 0 then
    retry = 0
  end
  return { 0, total, retry }
end

local newest = redis.call('LINDEX', buckets, -1)
local newest_start = now
if newest then
  local start, count = parse(newest)
  if not start then
    return bad_state()
  end
  -- Join the newest bucket while it is young enough (or when the clock went back).
  if now - start <= bucket then
    newest_start = start
    redis.call('LSET', buckets, -1, string.format('%.0f %.0f', start, count + cost))
  else
    redis.call('RPUSH', buckets, string.format('%.0f %.0f', now, cost))
  end
else
  redis.call('RPUSH', buckets, string.format('%.0f %.0f', now, cost))
end
total = total + cost
store_total(newest_start)
return { 1, total, 0 }
