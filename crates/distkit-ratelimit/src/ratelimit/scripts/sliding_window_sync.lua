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
-- sliding_window_common.lua is prepended to this script (it defines the SW_* patterns and
-- SW_BAD_STATE); like the sliding_window script, this one defines no function, parses text
-- by arithmetic ('x + 0') once a pattern has checked it, and sends redis.call only strings.
local call = redis.call
local match = string.match
local buckets = KEYS[1]
local total_key = KEYS[2]
local record_key = KEYS[3]
local units = ARGV[1] + 0
local window = ARGV[2] + 0
local bucket = ARGV[3] + 0
local sequence = ARGV[4] + 0
local record_ttl = ARGV[5]
local saturation = 9007199254740991

local time = call('TIME')
local now = time[1] * 1000 + math.floor(time[2] / 1000)

-- The total, then evict the buckets that left the window, oldest first.
local total = 0
local total_text = call('GET', total_key)
if total_text then
  if #total_text > 16 or not string.find(total_text, SW_TOTAL) then
    return redis.error_reply(SW_BAD_STATE)
  end
  total = total_text + 0
end
local changed = false
local oldest = call('LINDEX', buckets, '0')
while oldest do
  local last = match(oldest, SW_LAST)
  if last then
    last = last + 0
  else
    last = match(oldest, SW_OLD_ENTRY)
    if not last then
      return redis.error_reply(SW_BAD_STATE)
    end
    last = last + bucket
  end
  if now - last <= window then
    break
  end
  call('LPOP', buckets)
  total = total - match(oldest, SW_COUNT)
  changed = true
  oldest = call('LINDEX', buckets, '0')
end
-- `oldest` is nil when the window is empty (whatever the total said).
if not oldest or total < 0 then
  total = 0
end

-- The newest bucket (when there is one): its start (text), count (text) and last time.
local newest_start, newest_count, newest_last
if oldest then
  local newest = call('LINDEX', buckets, '-1')
  newest_start, newest_count, newest_last = match(newest, SW_ENTRY)
  if newest_start then
    newest_last = newest_last + 0
  else
    newest_start, newest_count = match(newest, SW_OLD_ENTRY)
    if not newest_start then
      return redis.error_reply(SW_BAD_STATE)
    end
    newest_last = newest_start + bucket
  end
end

local applied = 0
if units > 0 then
  local last = call('GET', record_key)
  if (not last) or tonumber(last) < sequence then
    if units > saturation - total then
      units = saturation - total
    end
    -- Join the newest bucket when it started at most `bucket` ms ago (or when the clock
    -- went back), else start a new one now.
    if newest_start and now - newest_start <= bucket then
      if now > newest_last then
        newest_last = now
      end
      call('LSET', buckets, '-1',
        string.format('%s %d %d', newest_start, newest_count + units, newest_last))
    else
      call('RPUSH', buckets, string.format('%d %d %d', now, units, now))
      newest_last = now
    end
    -- The oldest bucket again: it is the one just written when it is the only one.
    oldest = call('LINDEX', buckets, '0')
    total = total + units
    changed = true
    applied = 1
    call('SET', record_key, ARGV[4], 'PX', record_ttl)
  end
end

local oldest_leaves = 0
local newest_leaves = 0
if oldest then
  local last = match(oldest, SW_LAST)
  if last then
    last = last + 0
  else
    last = match(oldest, SW_OLD_ENTRY) + bucket
  end
  oldest_leaves = last + window + 1 - now
  if oldest_leaves < 0 then
    oldest_leaves = 0
  end
  newest_leaves = newest_last + window + 1 - now
  if newest_leaves < 0 then
    newest_leaves = 0
  end
end

if changed then
  if total == 0 then
    call('DEL', total_key)
  else
    -- The newest bucket counts until now - last > window.
    local ttl = newest_leaves
    if ttl < 1 then
      ttl = 1
    end
    ttl = string.format('%d', ttl)
    call('SET', total_key, string.format('%d', total), 'PX', ttl)
    call('PEXPIRE', buckets, ttl)
  end
end
return { total, oldest_leaves, applied, newest_leaves }
