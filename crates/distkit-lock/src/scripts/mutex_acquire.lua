-- mutex_acquire: take the lock if it is free (or re-attach an explicit owner id).
-- KEYS[1]  the owner key of the lock (string: the holder's token, with a PX lease)
-- KEYS[2]  the fence key of the lock (integer, never expires)
-- ARGV[1]  the token of this acquisition
-- ARGV[2]  the lease, in ms
-- ARGV[3]  '1' when the token is an explicit owner id that may re-attach, else '0'
-- Returns { 1, fencing token } when acquired, { 0, remaining lease in ms } when held.
local current = redis.call('GET', KEYS[1])
if current == false or (ARGV[3] == '1' and current == ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return { 1, redis.call('INCR', KEYS[2]) }
end
return { 0, redis.call('PTTL', KEYS[1]) }
