-- Helpers shared by the sliding-window scripts (sliding_window, sliding_window_sync),
-- prepended to each of them. The buckets of a key are a list of '<start_ms> <count>'
-- strings, oldest first, next to their total count (a decimal integer); a bucket counts
-- while now - start <= window.

-- The start and count of a bucket entry, or nil when it is not distkit's.
local function sw_parse(entry)
  local start_text, count_text = string.match(entry, '^(%d+) (%d+)$')
  if not start_text then
    return nil
  end
  return tonumber(start_text), tonumber(count_text)
end

-- The error of keys holding entries the sliding-window scripts did not write.
local function sw_bad_state()
  return redis.error_reply('DISTKIT_BAD_STATE the sliding window of the key is not distkit\'s')
end

-- Evicts the buckets that left the window at `now` (ms) and returns the count still in the
-- window and whether any bucket left; nil and the error reply when the keys are not
-- distkit's.
local function sw_evict(buckets, total_key, now, window)
  -- A total distkit wrote is a non-negative integer below 2^53 (at most 16 digits): a
  -- negative, fractional or huge one (tonumber would take it) is not distkit's.
  local total_text = redis.call('GET', total_key) or '0'
  if not string.match(total_text, '^%d+$') or #total_text > 16 then
    return nil, sw_bad_state()
  end
  local total = tonumber(total_text)
  local evicted = false
  while true do
    local oldest = redis.call('LINDEX', buckets, 0)
    if not oldest then
      total = 0
      break
    end
    local start, count = sw_parse(oldest)
    if not start then
      return nil, sw_bad_state()
    end
    if now - start <= window then
      break
    end
    redis.call('LPOP', buckets)
    total = total - count
    evicted = true
  end
  if total < 0 then
    total = 0
  end
  return total, evicted
end
