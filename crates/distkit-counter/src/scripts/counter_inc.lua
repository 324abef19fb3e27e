-- counter_inc: add a delta to one counter, atomically. The hot path of StrictCounter::inc,
-- so it stands alone (no helper prelude to set up on every call).
-- KEYS[1]  the values hash of the prefix (field = counter key, value = decimal i64)
-- ARGV[1]  the counter key (hash field)
-- ARGV[2]  the delta, a decimal i64
-- Returns the new value: an integer reply when it is exact as a double, else the stored
-- decimal string. Errors: 'DISTKIT_OVERFLOW 0' / 'DISTKIT_NOT_INTEGER 0' (nothing written).
local reply = redis.pcall('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if type(reply) == 'table' then
  if string.find(reply.err or '', 'overflow', 1, true) then
    return redis.error_reply('DISTKIT_OVERFLOW 0')
  end
  if string.find(reply.err or '', 'not an integer', 1, true) then
    return redis.error_reply('DISTKIT_NOT_INTEGER 0')
  end
  return reply
end
if reply > -9007199254740992 and reply < 9007199254740992 then
  return reply
end
return redis.call('HGET', KEYS[1], ARGV[1])
