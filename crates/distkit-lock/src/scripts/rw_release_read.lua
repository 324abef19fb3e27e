-- rw_release_read: remove a reader; announce it when it was the last one and a writer waits
-- (a reader leaving can unblock nobody else).
-- KEYS     the first three rwlock keys (see rw_common): writer, readers, queue
-- ARGV[1]  the reader's token
-- ARGV[2]  where to announce it: 'S' or 'P' and the release channel (see rw_announce)
-- Returns 1 when the reader was still registered (and within its lease), else 0.
-- The clock in ms, as rw_now_ms reads it (rw_common.lua is set up only after the fast path).
local time = redis.call('TIME')
local now = tonumber(time[1] .. string.sub(string.rep('0', 6 - #time[2]) .. time[2], 1, 3))
local expiry = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not expiry then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
-- Whether the reader left within its lease.
local within = 0
if tonumber(expiry) >= now then
  within = 1
end
if redis.call('EXISTS', KEYS[3]) == 0 then
  return within
end
-- (A writer waits: the helpers of rw_common.lua and rw_release_read_wake.lua follow.)
