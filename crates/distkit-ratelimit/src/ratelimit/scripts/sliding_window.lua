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
-- ARGV[5]  optional: absent or '' to read the server clock (redis.call('TIME')); tests give
--          a time in ms instead, and the keys are then written without an expiry
-- ARGV[6]  optional: '1' to peek: the same decision and reply, but the cost is not charged
--          (buckets that left the window are still evicted); absent or '' to decide and
--          charge
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
-- sliding_window_common.lua is prepended to this script (it defines the SW_* patterns and
-- SW_BAD_STATE). This script runs on every call of a strict limiter, so it does the least
-- Lua work per call: it defines no function (each would be a new closure per call), turns
-- text into numbers by arithmetic ('x + 0' parses once; tonumber parses twice) on text a
-- pattern has checked, and sends redis.call only strings (Redis 6.2 and 7.0 format a number
-- argument with '%.17g', slower than string.format('%d') done once for both uses of the ttl).
local call = redis.call
local match = string.match
local buckets = KEYS[1]
local total_key = KEYS[2]
local limit = ARGV[1] + 0
local window = ARGV[2] + 0
local bucket = ARGV[3] + 0
local cost = ARGV[4] + 0
local explicit_time = ARGV[5] ~= nil and ARGV[5] ~= ''

local now
if explicit_time then
  now = ARGV[5] + 0
else
  local time = call('TIME')
  now = time[1] * 1000 + math.floor(time[2] / 1000)
end

-- The total, then evict the buckets that left the window, oldest first.
local total = 0
local total_text = call('GET', total_key)
if total_text then
  if #total_text > 16 or not string.find(total_text, SW_TOTAL) then
    return redis.error_reply(SW_BAD_STATE)
  end
  total = total_text + 0
end
local evicted = false
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
  evicted = true
  oldest = call('LINDEX', buckets, '0')
end
-- `oldest` is nil when the window is empty (whatever the total said).
if not oldest or total < 0 then
  total = 0
end

-- newest_last: the last time of the newest bucket after the decision (now when there is
-- none), which the keys' expiry follows; store: whether the total changed.
local newest_last = now
local store = evicted
local reply
if total + cost > limit then
  -- Refused. Walk from the oldest bucket until enough has left for this cost.
  local entries = {}
  if oldest then
    entries = call('LRANGE', buckets, '0', '-1')
    local newest = entries[#entries]
    local last = match(newest, SW_LAST)
    if last then
      newest_last = last + 0
    else
      last = match(newest, SW_OLD_ENTRY)
      if not last then
        return redis.error_reply(SW_BAD_STATE)
      end
      newest_last = last + bucket
    end
  end
  local retry = 0
  local freed = 0
  for i = 1, #entries do
    local entry = entries[i]
    local start, count, last = match(entry, SW_ENTRY)
    if start then
      last = last + 0
    else
      start, count = match(entry, SW_OLD_ENTRY)
      if not start then
        return redis.error_reply(SW_BAD_STATE)
      end
      last = start + bucket
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
  -- reset_ms: the time until the newest bucket leaves the window (0 when it is empty).
  local reset = 0
  if total > 0 then
    reset = newest_last + window + 1 - now
    if reset < 0 then
      reset = 0
    end
  end
  reply = { 0, total, retry, reset }
else
  -- Admitted: read the newest bucket (when there is one) to join it or start a new one.
  local start_text, count_text, last
  if oldest then
    local newest = call('LINDEX', buckets, '-1')
    start_text, count_text, last = match(newest, SW_ENTRY)
    if start_text then
      last = last + 0
    else
      start_text, count_text = match(newest, SW_OLD_ENTRY)
      if not start_text then
        return redis.error_reply(SW_BAD_STATE)
      end
      last = start_text + bucket
    end
    newest_last = last
  end
  local joins = start_text and now - start_text <= bucket
  -- The newest bucket's last time once the cost is in it (later than now only when the
  -- clock went back).
  local charged_last = now
  if joins and last > now then
    charged_last = last
  end
  if ARGV[6] == '1' then
    -- Peek: as if charged, but nothing is written (except what the eviction changed).
    reply = { 1, total + cost, 0, charged_last + window + 1 - now }
  else
    if joins then
      call('LSET', buckets, '-1',
        string.format('%s %d %d', start_text, count_text + cost, charged_last))
    else
      call('RPUSH', buckets, string.format('%d %d %d', now, cost, now))
    end
    newest_last = charged_last
    total = total + cost
    store = true
    reply = { 1, total, 0, newest_last + window + 1 - now }
  end
end

if store then
  if total == 0 then
    call('DEL', total_key)
  elseif explicit_time then
    call('SET', total_key, string.format('%d', total))
  else
    -- The newest bucket counts until now - last > window.
    local ttl = newest_last + window + 1 - now
    if ttl < 1 then
      ttl = 1
    end
    ttl = string.format('%d', ttl)
    call('SET', total_key, string.format('%d', total), 'PX', ttl)
    call('PEXPIRE', buckets, ttl)
  end
end
return reply
