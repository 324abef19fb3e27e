-- rw_release_write: delete a rwlock's writer key if it still holds this token, and announce
-- it to every waiter.
-- KEYS[1]  the writer key of the rwlock (see rw_common; the other keys are not needed)
-- ARGV[1]  the token
-- ARGV[2]  where to announce it: 'S' or 'P' and the release channel (see rw_announce)
-- Returns 1 when this token was deleted, 0 when the lease was gone or someone else's, 2 when
-- it was deleted but the announcement was refused (see rw_announce).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if rw_announce(ARGV[2], 'released') then
    return 1
  end
  return 2
end
return 0
