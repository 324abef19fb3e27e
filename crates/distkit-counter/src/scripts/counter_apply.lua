-- counter_apply: a sequence of counter operations, applied in order, all or nothing.
-- KEYS[1]  the values hash of the prefix (field = counter key, value = decimal i64)
-- ARGV     5 arguments per operation:
--            kind      'inc' (add amount), 'set' (store amount) or 'del' (remove the field)
--            field     the counter key
--            op        comparator on the current value: 'nil', 'eq', 'ne', 'lt', 'gt'
--            operand   the comparator's operand, a decimal i64
--            amount    a canonical decimal i64 (ignored by 'del')
-- Returns 2 strings per operation: the new and the old value ('0' when absent). A failed
-- comparison writes nothing and returns the old value twice.
-- Errors: 'DISTKIT_OVERFLOW <index>' or 'DISTKIT_NOT_INTEGER <index>' (index 0-based). The
-- whole sequence is worked out first (exact i64 arithmetic, int64_arith.lua) and written
-- only when every operation succeeded, so a failed call writes nothing: there is no undo,
-- which a user not allowed HDEL (or any other command) could not run.
local hash = KEYS[1]
local results = {}
-- The value of every field read so far (false: absent), and the fields written, in order.
local values = {}
local written = {}

local count = #ARGV / 5
for index = 0, count - 1 do
  local base = index * 5
  local kind, field, op, operand, amount =
    ARGV[base + 1], ARGV[base + 2], ARGV[base + 3], ARGV[base + 4], ARGV[base + 5]
  local current = values[field]
  if current == nil then
    current = redis.call('HGET', hash, field)
    values[field] = current
  end
  local old = current or '0'
  if not distkit_is_int64(old) then
    return redis.error_reply('DISTKIT_NOT_INTEGER ' .. index)
  end
  local new = old
  if distkit_matches(op, old, operand) then
    if kind == 'inc' then
      new = distkit_add(old, amount)
      if new == nil then
        return redis.error_reply('DISTKIT_OVERFLOW ' .. index)
      end
      values[field] = new
    elseif kind == 'set' then
      new = amount
      values[field] = new
    else
      new = '0'
      values[field] = false
    end
    if not written[field] then
      written[field] = true
      written[#written + 1] = field
    end
  end
  results[#results + 1] = new
  results[#results + 1] = old
end
for _, field in ipairs(written) do
  local value = values[field]
  if value then
    redis.call('HSET', hash, field, value)
  else
    redis.call('HDEL', hash, field)
  end
end
return results
