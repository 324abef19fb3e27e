-- Exact 64-bit integer helpers shared by the counter scripts (prepended to each of them).
-- Values travel as canonical decimal strings and are never turned into Lua numbers
-- (doubles), so every i64 compares and stores exactly.

-- true when s is a canonical decimal i64 ("0", "-12", no leading zeros, in range).
local function distkit_is_int64(s)
  if type(s) ~= 'string' then return false end
  if s == '0' then return true end
  local digits = s
  local negative = false
  if string.sub(s, 1, 1) == '-' then
    negative = true
    digits = string.sub(s, 2)
  end
  if not string.match(digits, '^[1-9]%d*$') then return false end
  if #digits < 19 then return true end
  if #digits > 19 then return false end
  if negative then return digits <= '9223372036854775808' end
  return digits <= '9223372036854775807'
end

-- -1, 0 or 1 as a is less than, equal to or greater than b (both canonical).
local function distkit_compare(a, b)
  if a == b then return 0 end
  local a_negative = string.sub(a, 1, 1) == '-'
  local b_negative = string.sub(b, 1, 1) == '-'
  if a_negative ~= b_negative then
    if a_negative then return -1 end
    return 1
  end
  local order
  if #a ~= #b then
    if #a < #b then order = -1 else order = 1 end
  else
    if a < b then order = -1 else order = 1 end
  end
  if a_negative then return -order end
  return order
end

-- Whether the stored value `current` satisfies the comparator `op` with `operand`.
local function distkit_matches(op, current, operand)
  if op == 'nil' then return true end
  local order = distkit_compare(current, operand)
  if op == 'eq' then return order == 0 end
  if op == 'ne' then return order ~= 0 end
  if op == 'lt' then return order < 0 end
  if op == 'gt' then return order > 0 end
  return false
end

-- The error code of a failed HINCRBY.
local function distkit_incr_error_code(reply)
  local message = reply.err or ''
  if string.find(message, 'overflow', 1, true) then return 'DISTKIT_OVERFLOW' end
  if string.find(message, 'not an integer', 1, true) then return 'DISTKIT_NOT_INTEGER' end
  return 'DISTKIT_REDIS'
end
