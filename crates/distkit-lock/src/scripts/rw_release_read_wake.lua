-- rw_release_read, continued: a writer waits; wake it when this was the last live reader.
-- (Same KEYS and ARGV; `now` and `within` come from rw_release_read.lua.)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. now)
if redis.call('EXISTS', KEYS[2]) == 0 then
  rw_announce(ARGV[2], 'released')
end
return within
