-- Helpers shared by the sliding-window scripts (sliding_window, sliding_window_sync),
-- prepended to each of them. The buckets of a key are a list of '<start_ms> <count> <last_ms>'
-- strings, oldest first, next to their total count (a decimal integer): start is when the
-- bucket began (a call joins it while now - start <= bucket), last when its newest call
-- joined. A bucket counts while now - last <= window, so every call counts for a whole
-- window after it was admitted, whichever bucket it joined. An entry '<start_ms> <count>'
-- (written before the last time was kept) is read with last = start + bucket, the latest a
-- call could have joined it.

-- The start, count and last time of a bucket entry, or nil when it is not distkit's.
local function sw_parse(entry, bucket)
  local start_text, count_text, last_text = string.match(entry, '^(%d+) (%d+) (%d+)$')
  if not start_text then
    start_text, count_text = string.match(entry, '^(%d+) (%d+)$')
    if not start_text then
      return nil
    end
    local start = tonumber(start_text)
    return start, tonumber(count_text), start + bucket
  end
  return tonumber(start_text), tonumber(count_text), tonumber(last_text)
end

-- The text of a bucket entry.
local function sw_entry(start, count, last)
  return string.format('%.0f %.0f %.0f', start, count, last)
end

-- The error of keys holding entries the sliding-window scripts did not write.
local function sw_bad_state()
  return redis.error_reply('DISTKIT_BAD_STATE the sliding window of the key is not distkit\'s')
end

-- Evicts the buckets that left the window at `now` (ms) and returns the count still in the
-- window and whether any bucket left; nil and the error reply when the keys are not
-- distkit's. Buckets leave oldest first: a bucket's last time is at most the next one's
-- start (unless the clock went back), so an older bucket never outlives a newer one by
-- more than that.
local function sw_evict(buckets, total_key, now, window, bucket)
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
    local start, count, last = sw_parse(oldest, bucket)
    if not start then
      return nil, sw_bad_state()
    end
    if now - last <= window then
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

-- Adds `units` admitted at `now` to the newest bucket when it started at most `bucket` ms
-- ago (or when the clock went back), else to a new bucket starting now; returns the newest
-- bucket's last time (when its units leave the window, minus the window), or nil and the
-- error reply when the newest entry is not distkit's.
local function sw_add(buckets, now, bucket, units)
  local newest = redis.call('LINDEX', buckets, -1)
  if newest then
    local start, count, last = sw_parse(newest, bucket)
    if not start then
      return nil, sw_bad_state()
    end
    if now - start <= bucket then
      if now > last then
        last = now
      end
      redis.call('LSET', buckets, -1, sw_entry(start, count + units, last))
      return last
    end
  end
  redis.call('RPUSH', buckets, sw_entry(now, units, now))
  return now
end

-- The last time of the newest bucket (`now` when there is none), or nil and the error reply.
local function sw_newest_last(buckets, now, bucket)
  local newest = redis.call('LINDEX', buckets, -1)
  if not newest then
    return now
  end
  local start, _, last = sw_parse(newest, bucket)
  if not start then
    return nil, sw_bad_state()
  end
  return last
end
