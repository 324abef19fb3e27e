-- counter_apply: a sequence of counter operations, applied in order, all or nothing.
-- KEYS[1]  the values hash of the prefix (field = counter key, value = decimal i64)
-- ARGV     5 arguments per operation:
--            kind      'inc' (add amount), 'set' (store amount) or 'del' (remove the field)
--            field     the counter key
--            op        comparator on the current value: 'nil', 'eq', 'ne', 'lt', 'gt'
--            operand   the comparator's operand, a decimal i64
--            amount    a decimal i64 (ignored by 'del')
-- Returns 2 strings per operation: the new and the old value ('0' when absent). A failed
-- comparison writes nothing and returns the old value twice.
-- Errors: 'DISTKIT_OVERFLOW <index>' or 'DISTKIT_NOT_INTEGER <index>' (index 0-based): every
-- write of this call is undone first, so a failed call changes nothing.
local hash = KEYS[1]
local results = {}
local undo = {}

local function rollback()
  for i = #undo, 1, -1 do
    local entry = undo[i]
    if entry[2] then
      redis.call('HSET', hash, entry[1], entry[2])
    else
      redis.call('HDEL', hash, entry[1])
    end
  end
end

local count = #ARGV / 5
for index = 0, count - 1 do
  local base = index * 5
  local kind, field, op, operand, amount =
    ARGV[base + 1], ARGV[base + 2], ARGV[base + 3], ARGV[base + 4], ARGV[base + 5]
  local raw = redis.call('HGET', hash, field)
  local old = raw or '0'
  if not distkit_is_int64(old) then
    rollback()
    return redis.error_reply('DISTKIT_NOT_INTEGER ' .. index)
  end
  local new = old
  if distkit_matches(op, old, operand) then
    if kind == 'inc' then
      local reply = redis.pcall('HINCRBY', hash, field, amount)
      if type(reply) == 'table' and reply.err then
        rollback()
        return redis.error_reply(distkit_incr_error_code(reply) .. ' ' .. index)
      end
      undo[#undo + 1] = { field, raw }
      new = redis.call('HGET', hash, field)
    elseif kind == 'set' then
      redis.call('HSET', hash, field, amount)
      undo[#undo + 1] = { field, raw }
      new = amount
    else
      redis.call('HDEL', hash, field)
      undo[#undo + 1] = { field, raw }
      new = '0'
    end
  end
  results[#results + 1] = new
  results[#results + 1] = old
end
return results
