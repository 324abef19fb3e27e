-- sliding_window_sync: deliver the units a lax sliding-window limiter object admitted locally
-- for one limiter key, exactly once, and read back the window's total. Same keys and bucket
-- rules as the sliding_window script, so strict and lax limiters of one prefix share state.
-- KEYS[1]  the buckets of the key, oldest first: a list of '<start_ms> <count> <last_ms>'
--          strings (see sliding_window_common.lua)
-- KEYS[2]  the total count of those buckets (decimal integer)
-- KEYS[3]  the delivery record of this limiter object for this key: the last sequence
--          number applied (decimal integer), expiring ARGV[5] ms after the last delivery
-- ARGV[1]  units to add (decimal integer >= 0; 0 only reads, and ARGV[4] is then ignored)
-- ARGV[2]  window in ms (>= 1)
-- ARGV[3]  bucket in ms (1 .. window)
-- ARGV[4]  sequence number of this delivery (>= 1); resent with the same number until
--          confirmed, so a delivery applied before (number <= the record) adds nothing again
-- ARGV[5]  how long the delivery record lives, in ms (>= 1)
-- The units were admitted already: they are added without a limit check, to the newest
-- bucket (when it started at most ARGV[3] ms ago) or to a new bucket starting now, on the
-- server clock, and count for a whole window from now. The window saturates at 2^53 - 1
-- units (far above any limit, which is at most 2^52), so every number stays an exact
-- integer in Lua's doubles.
-- Returns { total, oldest_leaves_ms, applied, newest_leaves_ms }: total is the count in the
-- window after the delivery; oldest_leaves_ms is the time until the oldest bucket leaves the
-- window (0 when the window is empty); applied is 1 when the units were added now, 0 when
-- they were added by an earlier send of the same delivery (or there were none);
-- newest_leaves_ms is the time until the newest bucket leaves (0 when the window is empty).
-- Errors: 'DISTKIT_BAD_STATE' when the keys hold entries the sliding-window scripts did not
-- write.
-- sliding_window_common.lua is prepended to this script (it defines sw_parse, sw_bad_state,
-- sw_evict, sw_add and sw_newest_last).
local buckets = KEYS[1]
local total_key = KEYS[2]
local record_key = KEYS[3]
local units = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local bucket = tonumber(ARGV[3])
local sequence = tonumber(ARGV[4])
local record_ttl = ARGV[5]
local saturation = 9007199254740991

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

-- Evict the buckets that left the window.
local total, changed = sw_evict(buckets, total_key, now, window, bucket)
if not total then
  return changed
end

local applied = 0
if units > 0 then
  local last = redis.call('GET', record_key)
  if (not last) or tonumber(last) < sequence then
    if units > saturation - total then
      units = saturation - total
    end
    local newest_last, err = sw_add(buckets, now, bucket, units)
    if not newest_last then
      return err
    end
    total = total + units
    changed = true
    applied = 1
    redis.call('SET', record_key, ARGV[4], 'PX', record_ttl)
  end
end

local oldest_leaves = 0
local oldest = redis.call('LINDEX', buckets, 0)
if oldest then
  local start, _, last = sw_parse(oldest, bucket)
  if not start then
    return sw_bad_state()
  end
  oldest_leaves = last + window + 1 - now
  if oldest_leaves < 0 then
    oldest_leaves = 0
  end
end

local newest_leaves = 0
if oldest then
  local newest_last, err = sw_newest_last(buckets, now, bucket)
  if not newest_last then
    return err
  end
  newest_leaves = newest_last + window + 1 - now
  if newest_leaves < 0 then
    newest_leaves = 0
  end
end

if changed then
  if total == 0 then
    redis.call('DEL', total_key)
  else
    -- The newest bucket counts until now - last > window.
    local ttl = newest_leaves
    if ttl < 1 then
      ttl = 1
    end
    redis.call('SET', total_key, string.format('%.0f', total), 'PX', ttl)
    redis.call('PEXPIRE', buckets, ttl)
  end
end
return { total, oldest_leaves, applied, newest_leaves }
