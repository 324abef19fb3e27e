-- rw_release_read: remove a reader; announce it when it was the last one and a writer waits
-- (a reader leaving can unblock nobody else).
-- KEYS     the first three rwlock keys (see rw_common): writer, readers, queue
-- ARGV[1]  the reader's token
-- ARGV[2]  where to announce it: 'S' or 'P' and the release channel (see rw_announce)
-- Returns 1 when the reader was still registered (and within its lease), else 0.
local now = rw_now_ms()
local expiry = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not expiry then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. now)
  if redis.call('EXISTS', KEYS[2]) == 0 then
    rw_announce(ARGV[2], 'released')
  end
end
if tonumber(expiry) >= now then
  return 1
end
return 0
