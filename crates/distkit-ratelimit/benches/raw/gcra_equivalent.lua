-- gcra_equivalent: the least Redis work of one GCRA decision, sent raw as the baseline of
-- the limiter benchmarks (the ratelimit bench and the report's gcra.64 row): TIME, GET,
-- compare, SET PX (the TAT in whole µs). Not used by the library.
-- KEYS[1]  the state (the theoretical arrival time, decimal µs)
-- ARGV[1]  the emission interval in µs
-- ARGV[2]  the burst span in µs
-- Returns { 1, new - now } when admitted, { 0, tat - now } when refused.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new = tat + tonumber(ARGV[1])
if new - now <= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.floor((new - now) / 1000) + 1)
  return { 1, new - now }
end
return { 0, tat - now }
