-- semaphore_release: give back a holder's permits and wake the waiters.
-- KEYS     the eight semaphore keys (see semaphore_common)
-- ARGV[1]  the holder's token
-- ARGV[2]  where to announce it: 'S' or 'P' and the release channel (see sem_announce)
-- Returns 1 when the holder was registered and within its lease, else 0 (nothing of
-- anybody else's is touched); 2 instead of 1 when the announcement was refused (see
-- sem_announce: the release stands, waiters poll).
local now = sem_now_ms()
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expiry then
  return 0
end
sem_remove_holder(ARGV[1])
local announced = true
if redis.call('EXISTS', KEYS[3]) == 1 then
  announced = sem_announce(ARGV[2], 'released')
end
if tonumber(expiry) < now then
  return 0
end
if announced then
  return 1
end
return 2
