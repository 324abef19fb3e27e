-- Exact signed 64-bit addition on canonical decimal strings (prepended to the
-- instance-aware counter script and to counter_apply). Never uses Lua numbers for values.

-- Compares two unsigned digit strings without leading zeros.
local function distkit_magnitude_compare(a, b)
  if #a ~= #b then
    if #a < #b then return -1 end
    return 1
  end
  if a == b then return 0 end
  if a < b then return -1 end
  return 1
end

local function distkit_magnitude_add(a, b)
  local digits = {}
  local carry = 0
  local i, j = #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local sum = carry
    if i > 0 then sum = sum + string.byte(a, i) - 48 end
    if j > 0 then sum = sum + string.byte(b, j) - 48 end
    digits[#digits + 1] = string.char(48 + sum % 10)
    carry = math.floor(sum / 10)
    i = i - 1
    j = j - 1
  end
  return string.reverse(table.concat(digits))
end

-- a - b for unsigned digit strings with a >= b.
local function distkit_magnitude_sub(a, b)
  local digits = {}
  local borrow = 0
  local i, j = #a, #b
  while i > 0 do
    local difference = string.byte(a, i) - 48 - borrow
    if j > 0 then difference = difference - (string.byte(b, j) - 48) end
    if difference < 0 then
      difference = difference + 10
      borrow = 1
    else
      borrow = 0
    end
    digits[#digits + 1] = string.char(48 + difference)
    i = i - 1
    j = j - 1
  end
  local result = string.gsub(string.reverse(table.concat(digits)), '^0+', '')
  if result == '' then return '0' end
  return result
end

local function distkit_split(value)
  if string.sub(value, 1, 1) == '-' then return true, string.sub(value, 2) end
  return false, value
end

local function distkit_in_range(negative, magnitude)
  if #magnitude < 19 then return true end
  if #magnitude > 19 then return false end
  if negative then return magnitude <= '9223372036854775808' end
  return magnitude <= '9223372036854775807'
end

-- a + b, or nil when the sum is outside the i64 range.
local function distkit_add(a, b)
  -- Fast path: below 10^15 in magnitude both fit a double exactly, and so does their sum
  -- (below 2^53); '%d' prints it without an exponent.
  if #a <= 15 and #b <= 15 then
    return string.format('%d', tonumber(a) + tonumber(b))
  end
  local a_negative, a_magnitude = distkit_split(a)
  local b_negative, b_magnitude = distkit_split(b)
  local negative, magnitude
  if a_negative == b_negative then
    negative, magnitude = a_negative, distkit_magnitude_add(a_magnitude, b_magnitude)
  else
    local order = distkit_magnitude_compare(a_magnitude, b_magnitude)
    if order == 0 then return '0' end
    if order > 0 then
      negative, magnitude = a_negative, distkit_magnitude_sub(a_magnitude, b_magnitude)
    else
      negative, magnitude = b_negative, distkit_magnitude_sub(b_magnitude, a_magnitude)
    end
  end
  if not distkit_in_range(negative, magnitude) then return nil end
  if magnitude == '0' then return '0' end
  if negative then return '-' .. magnitude end
  return magnitude
end

-- -a, or nil for -(i64::MIN).
local function distkit_negate(a)
  if a == '0' then return '0' end
  local negative, magnitude = distkit_split(a)
  if not negative and not distkit_in_range(true, magnitude) then return nil end
  if negative then
    if not distkit_in_range(false, magnitude) then return nil end
    return magnitude
  end
  return '-' .. magnitude
end

-- a - b, or nil when outside the i64 range.
local function distkit_sub(a, b)
  local negated = distkit_negate(b)
  if negated == nil then
    -- b is i64::MIN: a - MIN = a + MAX + 1.
    local partial = distkit_add(a, '9223372036854775807')
    if partial == nil then return nil end
    return distkit_add(partial, '1')
  end
  return distkit_add(a, negated)
end
