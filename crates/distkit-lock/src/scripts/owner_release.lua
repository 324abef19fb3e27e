-- owner_release: delete a lock's owner key if it still holds this token, and announce it.
-- KEYS[1]  the owner key (the mutex, or the writer of a rwlock)
-- ARGV[1]  the token
-- ARGV[2]  the release channel of the lock
-- Returns 1 when this token was deleted, 0 when the lease was gone or someone else's.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], 'released')
  return 1
end
return 0
