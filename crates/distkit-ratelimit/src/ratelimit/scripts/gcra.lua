-- gcra: one GCRA (generic cell rate algorithm) decision for one limiter key, atomic.
-- KEYS[1]  the state of the key: the string '<tat_us> <frac> <limit>', absent when idle.
--          The theoretical arrival time (TAT) is tat_us + frac / limit microseconds on the
--          server clock; it expires (PX) once it lies in the past.
-- ARGV[1]  limit: L, the units per period (decimal integer, 1 .. 2^48)
-- ARGV[2]  cost * T in whole microseconds, T = period / L being the emission interval
-- ARGV[3]  the rest of cost * T, in units of 1/L microsecond (0 .. L-1)
-- ARGV[4]  burst * T (how far the TAT may run ahead of now) in whole microseconds
-- ARGV[5]  the rest of burst * T, in units of 1/L microsecond (0 .. L-1)
-- ARGV[6]  optional: absent or '' to read the server clock (redis.call('TIME')); tests give
--          a time in microseconds instead, and the state is then written without an expiry
-- ARGV[7]  optional: '1' to peek: the same decision and reply, but nothing is written
--          (nothing charged); absent or '' to decide and charge
-- Returns { allowed, d_us, d_frac, now }: allowed is 1 or 0; d = d_us + d_frac / L is how far
-- the TAT lies ahead of now after the decision (0 when idle); now is the time of the decision
-- in microseconds (the server clock, or ARGV[6]). The caller computes the remaining quota and
-- retry_after from d with exact integers; a lax limiter warming a key also keeps now.
-- Errors: 'DISTKIT_BAD_STATE' when KEYS[1] holds a string this script did not write.
-- Every number stays an integer below 2^53, so the double arithmetic of Lua is exact; there
-- is no division.
-- gcra_common.lua is prepended to this script (it defines GCRA_STATE and GCRA_BAD_STATE).
-- This script runs on every call of a strict limiter, so it does the least Lua work per
-- call: no function definitions, one parse per number, only strings to redis.call.
local limit_text = ARGV[1]
local limit = limit_text + 0
local cost_us = ARGV[2] + 0
local cost_frac = ARGV[3] + 0
local burst_us = ARGV[4] + 0
local burst_frac = ARGV[5] + 0
local explicit_time = ARGV[6] ~= nil and ARGV[6] ~= ''

local now
if explicit_time then
  now = ARGV[6] + 0
else
  local time = redis.call('TIME')
  now = time[1] * 1000000 + time[2]
end

-- d = max(tat - now, 0), as whole microseconds and a rest over `limit`.
local d_us, d_frac = 0, 0
local stored = redis.call('GET', KEYS[1])
if stored then
  local tat_text, frac_text, stored_limit = string.match(stored, GCRA_STATE)
  if not tat_text then
    return redis.error_reply(GCRA_BAD_STATE)
  end
  local tat_us = tat_text + 0
  local frac = frac_text + 0
  if frac > 0 and stored_limit ~= limit_text and stored_limit + 0 ~= limit then
    -- The rest was counted in 1/limit of another limit: round the TAT up to a whole
    -- microsecond (never admits more than the stored state allows).
    tat_us = tat_us + 1
    frac = 0
  end
  if tat_us >= now then
    d_us, d_frac = tat_us - now, frac
  end
end

-- The TAT if this call is admitted: max(tat, now) + cost * T.
local new_us = d_us + cost_us
local new_frac = d_frac + cost_frac
if new_frac >= limit then
  new_frac = new_frac - limit
  new_us = new_us + 1
end

if new_us < burst_us or (new_us == burst_us and new_frac <= burst_frac) then
  if ARGV[7] == '1' then
    return { 1, new_us, new_frac, now }
  end
  local state = string.format('%d %d %s', now + new_us, new_frac, limit_text)
  if explicit_time then
    redis.call('SET', KEYS[1], state)
  else
    -- Alive until the TAT has passed: whole ms rounded down, plus one.
    redis.call('SET', KEYS[1], state, 'PX', string.format('%d', math.floor(new_us / 1000) + 1))
  end
  return { 1, new_us, new_frac, now }
end
return { 0, d_us, d_frac, now }
