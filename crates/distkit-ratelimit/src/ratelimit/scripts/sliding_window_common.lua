-- Definitions shared by the sliding-window scripts (sliding_window, sliding_window_sync),
-- prepended to each of them. The buckets of a key are a list of '<start_ms> <count> <last_ms>'
-- strings, oldest first, next to their total count (a decimal integer): start is when the
-- bucket began (a call joins it while now - start <= bucket), last when its newest call
-- joined. A bucket counts while now - last <= window, so every call counts for a whole
-- window after it was admitted, whichever bucket it joined. An entry '<start_ms> <count>'
-- (written before the last time was kept) is read with last = start + bucket, the latest a
-- call could have joined it. Buckets leave oldest first: a bucket's last time is at most the
-- next one's start (unless the clock went back), so an older bucket never outlives a newer
-- one by more than that.
-- Only constants live here: a function defined in a script is a new closure on every call,
-- so the scripts spell their few steps out instead. Numbers are written exactly, with
-- string.format('%d') (Lua's %d formats a C long, 64 bits), never with Lua's tostring or
-- '..', which keep only 14 significant digits; redis.call gets only strings.

-- A bucket entry: start, count and last time.
local SW_ENTRY = '^(%d+) (%d+) (%d+)$'
-- The last time of a bucket entry alone.
local SW_LAST = '^%d+ %d+ (%d+)$'
-- An entry written before the last time was kept: start and count.
local SW_OLD_ENTRY = '^(%d+) (%d+)$'
-- The count of an entry already matched by SW_ENTRY or SW_OLD_ENTRY.
local SW_COUNT = '^%d+ (%d+)'
-- A total distkit wrote: a non-negative integer below 2^53 (at most 16 digits, checked
-- apart): a negative, fractional or huge one (tonumber would take it) is not distkit's.
local SW_TOTAL = '^%d+$'
-- The error of keys holding entries the sliding-window scripts did not write.
local SW_BAD_STATE = 'DISTKIT_BAD_STATE the sliding window of the key is not distkit\'s'
