-- Definitions shared by the GCRA scripts (gcra, gcra_sync), prepended to each of them. The
-- state of a key is the string '<tat_us> <frac> <limit>': the theoretical arrival time (TAT)
-- is tat_us + frac / limit microseconds on the server clock.
-- Only constants live here: a function defined in a script is a new closure on every call,
-- so the scripts spell their few steps out instead (reading the state: GET, match
-- GCRA_STATE, else the error GCRA_BAD_STATE; when the stored limit is not the call's and
-- frac > 0, the rest was counted in 1/limit of another limit: the TAT is rounded up to a
-- whole microsecond, which never admits more than the stored state allows). Numbers are
-- parsed by arithmetic ('x + 0' parses once; tonumber parses twice) on text a pattern has
-- checked, written with string.format('%d') (Lua's %d formats a C long, 64 bits), and
-- redis.call gets only strings (Redis 6.2 and 7.0 format a number argument with '%.17g',
-- slower).

-- The state of a key: TAT in whole µs, the rest in 1/limit µs, and that limit.
local GCRA_STATE = '^(%d+) (%d+) (%d+)$'
-- The error of a key holding a string the GCRA scripts did not write.
local GCRA_BAD_STATE = 'DISTKIT_BAD_STATE the gcra state of the key is not distkit\'s'
