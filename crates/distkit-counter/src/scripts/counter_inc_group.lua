-- counter_inc_group: the increments of several concurrent `StrictCounter::inc` calls (a group
-- commit), each applied on its own, in order, in one atomic script: one failing increment
-- (its key would overflow, or holds no integer) changes nothing of its own and does not stop
-- the others, exactly as if each had run `counter_inc` alone, one after the other.
-- KEYS[1]      the values hash of the prefix (field = counter key, value = decimal i64)
-- ARGV[2i-1]   the counter key of increment i
-- ARGV[2i]     its delta, a decimal i64
-- Returns one element per increment: its new value (an integer when exact as a double, else
-- the stored decimal string), or the error of that increment alone as a string:
-- 'DISTKIT_OVERFLOW', 'DISTKIT_NOT_INTEGER', or 'DISTKIT_REDIS <the server error>'.
local results = {}
for i = 1, #ARGV, 2 do
  local reply = redis.pcall('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  if type(reply) == 'table' then
    local message = reply.err or ''
    if string.find(message, 'overflow', 1, true) then
      reply = 'DISTKIT_OVERFLOW'
    elseif string.find(message, 'not an integer', 1, true) then
      reply = 'DISTKIT_NOT_INTEGER'
    else
      reply = 'DISTKIT_REDIS ' .. message
    end
  elseif reply <= -9007199254740992 or reply >= 9007199254740992 then
    reply = redis.call('HGET', KEYS[1], ARGV[i])
  end
  results[#results + 1] = reply
end
return results
