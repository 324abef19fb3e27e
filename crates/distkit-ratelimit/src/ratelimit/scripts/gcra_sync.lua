-- gcra_sync: deliver the units a lax GCRA limiter object admitted locally for one limiter
-- key, exactly once, and read back the key's TAT. Same key and state format as the gcra
-- script, so strict and lax limiters of one prefix share state.
-- KEYS[1]  the state of the key: the string '<tat_us> <frac> <limit>', absent when idle
--          (see gcra.lua): the TAT is tat_us + frac / limit microseconds on the server clock
-- KEYS[2]  the delivery record of this limiter object for this key: the last sequence
--          number applied (decimal integer), expiring ARGV[5] ms after the last delivery
-- ARGV[1]  limit: L, the units per period of the delivery's rate (decimal integer, 1 .. 2^48)
-- ARGV[2]  units * T in whole microseconds, T = period / L being the emission interval
--          (0 .. 2^52: the caller saturates it there)
-- ARGV[3]  the rest of units * T, in units of 1/L microsecond (0 .. L-1); ARGV[2] and
--          ARGV[3] both 0 only read (ARGV[4] is then ignored)
-- ARGV[4]  sequence number of this delivery (>= 1); resent with the same number until
--          confirmed, so a delivery applied before (number <= the record) adds nothing again
-- ARGV[5]  how long the delivery record lives, in ms (>= 1)
-- The units were admitted already: they are added without a limit check, on the server
-- clock: TAT = max(TAT, now) + units * T. How far the TAT lies ahead of now saturates at
-- 2^52 microseconds (about 142 years), so every number stays an exact integer in Lua's
-- doubles. The state then expires (PX) once the TAT lies in the past, as with the gcra
-- script.
-- Returns { d_us, d_frac, now }: d = d_us + d_frac / L is how far the TAT lies ahead of now
-- after the delivery (0 when idle), now the server time in microseconds.
-- Errors: 'DISTKIT_BAD_STATE' when KEYS[1] holds a string the gcra scripts did not write.
-- gcra_common.lua is prepended to this script (it defines GCRA_STATE and GCRA_BAD_STATE);
-- like the gcra script, it defines no function and parses each number once.
local limit_text = ARGV[1]
local limit = limit_text + 0
local add_us = ARGV[2] + 0
local add_frac = ARGV[3] + 0
local sequence = ARGV[4] + 0
local record_ttl = ARGV[5]
local saturation = 4503599627370496

local time = redis.call('TIME')
local now = time[1] * 1000000 + time[2]

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

if add_us > 0 or add_frac > 0 then
  local last = redis.call('GET', KEYS[2])
  if (not last) or tonumber(last) < sequence then
    d_us = d_us + add_us
    d_frac = d_frac + add_frac
    if d_frac >= limit then
      d_frac = d_frac - limit
      d_us = d_us + 1
    end
    if d_us >= saturation then
      d_us = saturation
      d_frac = 0
    end
    local state = string.format('%d %d %s', now + d_us, d_frac, limit_text)
    -- Alive until the TAT has passed: whole ms rounded down, plus one.
    local ttl_ms = string.format('%d', math.floor(d_us / 1000) + 1)
    redis.call('SET', KEYS[1], state, 'PX', ttl_ms)
    redis.call('SET', KEYS[2], ARGV[4], 'PX', record_ttl)
  end
end
return { d_us, d_frac, now }
