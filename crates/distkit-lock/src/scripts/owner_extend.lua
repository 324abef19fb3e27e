-- owner_extend: renew a lock's lease to a full ttl if it still holds this token, and keep
-- the lock's fence and epoch for their retention from now.
-- KEYS[1]  the owner key (the mutex, or the writer of a rwlock)
-- KEYS[2]  the lock's fence key (see fence.lua)
-- KEYS[3]  the lock's epoch key (see loss_guard.lua; absent without loss_quarantine)
-- ARGV[1]  the token
-- ARGV[2]  the lease, in ms
-- ARGV[3]  the retention of the fence and epoch keys, in ms (see fence.lua)
-- Returns 1 when renewed, 0 when the lease was gone or someone else's.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  -- Never shortens a retention (a fence ahead of the clock is kept longer: see fence.lua).
  local keep = tonumber(ARGV[3])
  for index = 2, #KEYS do
    local left = redis.call('PTTL', KEYS[index])
    if left ~= -2 and left < keep then
      redis.call('PEXPIRE', KEYS[index], keep)
    end
  end
  return 1
end
return 0
