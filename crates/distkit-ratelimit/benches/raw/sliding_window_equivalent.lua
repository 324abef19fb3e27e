-- sliding_window_equivalent: the least Redis work of one sliding-window decision, sent raw
-- as the baseline of the limiter benchmarks (the ratelimit bench and the report's window.64
-- row): evict the buckets that left the window, compare, join or start a bucket, store the
-- total. Not used by the library.
-- KEYS[1]  the bucket list ('<start_ms> <count>' strings, oldest first)
-- KEYS[2]  the total count of those buckets
-- ARGV[1]  window in ms
-- ARGV[2]  bucket in ms
-- ARGV[3]  limit
-- Returns { 1, total } when admitted, { 0, total } when refused.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window, bucket, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local total = tonumber(redis.call('GET', KEYS[2]) or '0')
while true do
  local oldest = redis.call('LINDEX', KEYS[1], 0)
  if not oldest then total = 0 break end
  local s, c = string.match(oldest, '^(%d+) (%d+)$')
  if now - tonumber(s) <= window then break end
  redis.call('LPOP', KEYS[1])
  total = total - tonumber(c)
end
if total + 1 > limit then return { 0, total } end
local newest = redis.call('LINDEX', KEYS[1], -1)
local s, c
if newest then s, c = string.match(newest, '^(%d+) (%d+)$') end
if s and now - tonumber(s) <= bucket then
  redis.call('LSET', KEYS[1], -1, s .. ' ' .. (tonumber(c) + 1))
else
  redis.call('RPUSH', KEYS[1], now .. ' 1')
end
total = total + 1
redis.call('SET', KEYS[2], total, 'PX', window + 1)
redis.call('PEXPIRE', KEYS[1], window + 1)
return { 1, total }
