-- Helpers shared by the GCRA scripts (gcra, gcra_sync), prepended to each of them. The
-- state of a key is the string '<tat_us> <frac> <limit>': the theoretical arrival time (TAT)
-- is tat_us + frac / limit microseconds on the server clock.

-- How far the TAT stored in `key` lies ahead of `now` (µs), as whole microseconds and a rest
-- in 1/limit µs: d_us, d_frac (0, 0 when the key is idle or its TAT passed); nil and the
-- error reply when the key holds a string the GCRA scripts did not write.
local function gcra_ahead(key, limit, now)
  local stored = redis.call('GET', key)
  if not stored then
    return 0, 0
  end
  local tat_text, frac_text, limit_text = string.match(stored, '^(%d+) (%d+) (%d+)$')
  if not tat_text then
    return nil, redis.error_reply('DISTKIT_BAD_STATE the gcra state of the key is not distkit\'s')
  end
  local tat_us = tonumber(tat_text)
  local frac = tonumber(frac_text)
  if tonumber(limit_text) ~= limit and frac > 0 then
    -- The rest was counted in 1/limit of another limit: round the TAT up to a whole
    -- microsecond (never admits more than the stored state allows).
    tat_us = tat_us + 1
    frac = 0
  end
  if tat_us >= now then
    return tat_us - now, frac
  end
  return 0, 0
end
