-- counter_inc_group_shards: counter_inc_group for a group whose increments fall in several
-- shards of a prefix, on a server that is not a cluster (where no slot separates the shards'
-- hashes; a cluster client sends one counter_inc_group per shard instead). The increments
-- come grouped by shard, each shard's in their order (increments of one key keep theirs).
-- Each increment is applied on its own, in one atomic script: one failing increment (its key
-- would overflow, or holds no integer) changes nothing of its own and does not stop the
-- others, exactly as if each had run `counter_inc` alone, one after the other.
-- KEYS[j]      the values hash of the j-th shard the group touches (field = counter key)
-- ARGV         per shard j in KEYS order: n_j, the number of its increments, then n_j pairs
--              (counter key, delta as a decimal i64)
-- Returns one element per increment, in ARGV order: its new value (an integer when exact as
-- a double, else the stored decimal string), or the error of that increment alone as a
-- string: 'DISTKIT_OVERFLOW', 'DISTKIT_NOT_INTEGER', or 'DISTKIT_REDIS <the server error>'.
local results = {}
local position = 1
for j = 1, #KEYS do
  local hash = KEYS[j]
  local last = position + 2 * tonumber(ARGV[position])
  for i = position + 1, last, 2 do
    local reply = redis.pcall('HINCRBY', hash, ARGV[i], ARGV[i + 1])
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
      reply = redis.call('HGET', hash, ARGV[i])
    end
    results[#results + 1] = reply
  end
  position = last + 1
end
return results
