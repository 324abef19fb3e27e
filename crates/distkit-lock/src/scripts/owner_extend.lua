-- owner_extend: renew a lock's lease to a full ttl if it still holds this token.
-- KEYS[1]  the owner key (the mutex, or the writer of a rwlock)
-- ARGV[1]  the token
-- ARGV[2]  the lease, in ms
-- Returns 1 when renewed, 0 when the lease was gone or someone else's.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
