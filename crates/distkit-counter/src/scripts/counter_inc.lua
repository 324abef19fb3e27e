-- counter_inc: add a delta to one counter, atomically.
-- KEYS[1]  the values hash of the prefix (field = counter key, value = decimal i64)
-- ARGV[1]  the counter key (hash field)
-- ARGV[2]  the delta, a decimal i64
-- Returns the new value: an integer reply when it is exact as a double, else the stored
-- decimal string. Errors: DISTKIT_OVERFLOW / DISTKIT_NOT_INTEGER (nothing written).
local reply = redis.pcall('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if type(reply) == 'table' and reply.err then
  return redis.error_reply(distkit_incr_error_code(reply) .. ' 0')
end
if reply > -9007199254740992 and reply < 9007199254740992 then
  return reply
end
return redis.call('HGET', KEYS[1], ARGV[1])
