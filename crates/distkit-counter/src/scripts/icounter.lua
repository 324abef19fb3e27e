-- icounter: instance-aware counter operations, applied in order, all or nothing.
-- C (the total of a key) is the sum of the slices of the live instances. Every call first
-- marks the calling instance alive (restoring its parked slices if it had been reaped), then
-- reaps a bounded number of slices of dead instances, then applies its operations.
-- KEYS[1]   totals         hash: key -> C
-- KEYS[2]   epochs         hash: key -> stamp of the last global set/del of the key;
--                          ':clear' -> stamp of the last clear; ':reaping' -> '1' while
--                          the reaping set may hold instances (keys never contain ':')
-- KEYS[3]   meta           hash: 'seq' (last stamp handed out)
-- KEYS[4]   alive          sorted set: instance -> last heartbeat (server ms)
-- KEYS[5]   slices         hash: '<instance>:<key>' -> I
-- KEYS[6]   stamps         hash: '<instance>:<key>' -> stamp the slice was made under
-- KEYS[7]   owned          sorted set (score 0): '<instance>:<key>' of counted slices
-- KEYS[8]   parked         hash: '<instance>:<key>' -> I of a reaped instance (not counted)
-- KEYS[9]   parked_stamps  hash: '<instance>:<key>' -> stamp of a parked slice
-- KEYS[10]  parked_owned   sorted set (score 0): '<instance>:<key>' of parked slices
-- KEYS[11]  reaping        sorted set: dead instance -> when it was found dead
-- KEYS[12]  flushes        hash: instance -> sequence number of its last applied lax flush
-- ARGV[1]   the calling instance id (a ULID: no ':')
-- ARGV[2]   how long without a heartbeat makes an instance dead, in ms
-- ARGV[3]   how many slices one call may reap at most
-- ARGV[4]   '' or the sequence number of a lax flush: a flush already applied is not
--           applied again (its operations then only read)
-- ARGV[5..] 5 arguments per operation: kind, key, comparator op, operand, amount
--           kind: 'inc' (I += amount, C += amount; compares C), 'set' (global: C = I = amount,
--           every other slice made stale; compares C), 'seti' (I = amount, C moves by the
--           difference; compares I), 'get', 'del' (global delete), 'deli' (remove this
--           instance's slice), 'clear' (everything), 'cleari' (all of this instance's slices),
--           'beat' (nothing: a heartbeat). 'clear' and 'cleari' are sent alone, never in a
--           batch: they are not part of the undo log.
-- Returns 4 strings per operation: new C, new I, old C, old I. A failed comparison changes
-- nothing and returns the old pair twice.
-- Errors: 'DISTKIT_OVERFLOW <index>' (every write of the call undone first).
local totals, epochs, meta, alive = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local slices, stamps, owned = KEYS[5], KEYS[6], KEYS[7]
local parked, parked_stamps, parked_owned = KEYS[8], KEYS[9], KEYS[10]
local reaping, flushes = KEYS[11], KEYS[12]
local me = ARGV[1]
local threshold = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

-- The stamp a slice of `key` must carry to be counted (cached for this call; every change
-- of a stamp below goes through the cache). One HMGET fetches the stamps of the call's keys,
-- the clear stamp and the reaping flag.
local stamp_cache = {}
local clear_stamp, reaping_flag
do
  local fields = { ':clear', ':reaping' }
  -- (Calls carry at most 2 000 operations; the bound keeps unpack within Lua's stack.)
  if #ARGV <= 4 + 5 * 2000 then
    for base = 4, #ARGV - 1, 5 do
      fields[#fields + 1] = ARGV[base + 2]
    end
  end
  local values = redis.call('HMGET', epochs, unpack(fields))
  clear_stamp = values[1] or '0'
  reaping_flag = values[2] ~= false
  for i = 3, #fields do
    stamp_cache[fields[i]] = values[i] or clear_stamp
  end
end
local function current_stamp(key)
  local stamp = stamp_cache[key]
  if stamp then return stamp end
  stamp = redis.call('HGET', epochs, key) or clear_stamp
  stamp_cache[key] = stamp
  return stamp
end

local function next_stamp()
  return tostring(redis.call('HINCRBY', meta, 'seq', 1))
end

-- Undo log: { key, field, previous value or false }, replayed backwards on failure. An
-- operation checks everything before its first write, so a single-operation call needs none.
local undo = {}
local logging = (#ARGV - 4) / 5 > 1
local function put(hash, field, value)
  if logging then
    undo[#undo + 1] = { hash, field, redis.call('HGET', hash, field) }
  end
  if value then
    redis.call('HSET', hash, field, value)
  else
    redis.call('HDEL', hash, field)
  end
end
local function rollback()
  for i = #undo, 1, -1 do
    local entry = undo[i]
    if entry[3] then
      redis.call('HSET', entry[1], entry[2], entry[3])
    else
      redis.call('HDEL', entry[1], entry[2])
    end
    -- Keep the index of counted slices in step with the slices themselves.
    if entry[1] == slices then
      if entry[3] then
        redis.call('ZADD', owned, 0, entry[2])
      else
        redis.call('ZREM', owned, entry[2])
      end
    end
  end
end

-- The key of a '<instance>:<key>' field.
local function key_of(field)
  return string.sub(field, string.find(field, ':', 1, true) + 1)
end

local function total(key)
  return redis.call('HGET', totals, key) or '0'
end

-- This instance's counted slice of `key` ('0' when absent or stale), and whether it exists
-- with the current stamp.
local function own_slice(key)
  local field = me .. ':' .. key
  local value = redis.call('HGET', slices, field)
  if value and redis.call('HGET', stamps, field) == current_stamp(key) then
    return value, true
  end
  return '0', false
end

-- Sets this instance's slice of `key` (nil removes it), stamped as current. `current` says
-- the slice already exists with the current stamp (then only its value changes).
local function put_own_slice(key, value, current)
  local field = me .. ':' .. key
  if value then
    put(slices, field, value)
    if not current then
      put(stamps, field, current_stamp(key))
      redis.call('ZADD', owned, 0, field)
    end
  else
    put(slices, field, false)
    put(stamps, field, false)
    redis.call('ZREM', owned, field)
  end
end

-- 1. Heartbeat; an instance that was reaped comes back with its slices that are still current.
if redis.call('ZADD', alive, now, me) == 1 then
  redis.call('ZREM', reaping, me)
  local fields = redis.call('ZRANGEBYLEX', parked_owned, '[' .. me .. ':', '[' .. me .. ';')
  for _, field in ipairs(fields) do
    local key = key_of(field)
    local value = redis.call('HGET', parked, field)
    if value and redis.call('HGET', parked_stamps, field) == current_stamp(key) then
      local restored = distkit_add(total(key), value)
      if restored then
        redis.call('HSET', totals, key, restored)
        redis.call('HSET', slices, field, value)
        redis.call('HSET', stamps, field, redis.call('HGET', parked_stamps, field))
        redis.call('ZADD', owned, 0, field)
      end
    end
    redis.call('HDEL', parked, field)
    redis.call('HDEL', parked_stamps, field)
    redis.call('ZREM', parked_owned, field)
  end
end

-- 2. Reap: instances silent for longer than the threshold leave C, a bounded amount per call.
local dead = redis.call('ZRANGEBYSCORE', alive, '-inf', '(' .. (now - threshold), 'LIMIT', 0, 16)
for _, instance in ipairs(dead) do
  redis.call('ZREM', alive, instance)
  redis.call('ZADD', reaping, now, instance)
end
if #dead > 0 and not reaping_flag then
  redis.call('HSET', epochs, ':reaping', '1')
  reaping_flag = true
end
while reaping_flag and budget > 0 do
  local instance = redis.call('ZRANGE', reaping, 0, 0)[1]
  if not instance then
    redis.call('HDEL', epochs, ':reaping')
    reaping_flag = false
    break
  end
  local fields = redis.call('ZRANGEBYLEX', owned, '[' .. instance .. ':', '[' .. instance .. ';', 'LIMIT', 0, budget)
  if #fields == 0 then
    redis.call('ZREM', reaping, instance)
  end
  for _, field in ipairs(fields) do
    budget = budget - 1
    local key = key_of(field)
    local value = redis.call('HGET', slices, field)
    local stamp = redis.call('HGET', stamps, field)
    if value and stamp == current_stamp(key) then
      local reduced = distkit_sub(total(key), value)
      if reduced then
        redis.call('HSET', totals, key, reduced)
        redis.call('HSET', parked, field, value)
        redis.call('HSET', parked_stamps, field, stamp)
        redis.call('ZADD', parked_owned, 0, field)
      end
    end
    redis.call('HDEL', slices, field)
    redis.call('HDEL', stamps, field)
    redis.call('ZREM', owned, field)
  end
end

-- 3. The operations.
local replay = false
if ARGV[4] ~= '' then
  local last = redis.call('HGET', flushes, me)
  replay = last ~= false and tonumber(last) >= tonumber(ARGV[4])
end

local results = {}
local count = (#ARGV - 4) / 5
for index = 0, count - 1 do
  local base = 4 + index * 5
  local kind, key, op, operand, amount =
    ARGV[base + 1], ARGV[base + 2], ARGV[base + 3], ARGV[base + 4], ARGV[base + 5]
  local old_total, old_slice, slice_current = '0', '0', false
  if kind ~= 'clear' and kind ~= 'cleari' and kind ~= 'beat' then
    old_total = total(key)
    old_slice, slice_current = own_slice(key)
  end
  local new_total, new_slice = old_total, old_slice
  local compared = old_total
  if kind == 'seti' then compared = old_slice end
  if replay and kind == 'inc' then
    -- This flush was applied before: report the values without applying it again.
  elseif not distkit_matches(op, compared, operand) then
    -- A failed comparison changes nothing.
  elseif kind == 'inc' then
    new_slice = distkit_add(old_slice, amount)
    new_total = distkit_add(old_total, amount)
    if not new_slice or not new_total then
      rollback()
      return redis.error_reply('DISTKIT_OVERFLOW ' .. index)
    end
    put(totals, key, new_total)
    put_own_slice(key, new_slice, slice_current)
  elseif kind == 'set' then
    local stamp = next_stamp()
    put(epochs, key, stamp)
    stamp_cache[key] = stamp
    put(totals, key, amount)
    put_own_slice(key, amount, false)
    new_total, new_slice = amount, amount
  elseif kind == 'seti' then
    -- C + (amount - I), or (C - I) + amount when the difference alone does not fit.
    local difference = distkit_sub(amount, old_slice)
    new_total = difference and distkit_add(old_total, difference)
    if not new_total then
      local others = distkit_sub(old_total, old_slice)
      new_total = others and distkit_add(others, amount)
    end
    if not new_total then
      rollback()
      return redis.error_reply('DISTKIT_OVERFLOW ' .. index)
    end
    put(totals, key, new_total)
    put_own_slice(key, amount, slice_current)
    new_slice = amount
  elseif kind == 'del' then
    local stamp = next_stamp()
    put(epochs, key, stamp)
    stamp_cache[key] = stamp
    put(totals, key, false)
    put_own_slice(key, false)
    new_total, new_slice = '0', '0'
  elseif kind == 'deli' then
    local reduced = distkit_sub(old_total, old_slice)
    if not reduced then
      rollback()
      return redis.error_reply('DISTKIT_OVERFLOW ' .. index)
    end
    put(totals, key, reduced)
    put_own_slice(key, false)
    new_total, new_slice = reduced, '0'
  elseif kind == 'clear' then
    clear_stamp = next_stamp()
    stamp_cache = {}
    redis.call('DEL', totals, epochs, slices, stamps, owned, parked, parked_stamps, parked_owned)
    redis.call('HSET', epochs, ':clear', clear_stamp)
    if reaping_flag then
      redis.call('HSET', epochs, ':reaping', '1')
    end
  elseif kind == 'cleari' then
    local fields = redis.call('ZRANGEBYLEX', owned, '[' .. me .. ':', '[' .. me .. ';')
    for _, field in ipairs(fields) do
      local slice_key = key_of(field)
      local value = own_slice(slice_key)
      local reduced = distkit_sub(total(slice_key), value)
      if not reduced then
        rollback()
        return redis.error_reply('DISTKIT_OVERFLOW ' .. index)
      end
      put(totals, slice_key, reduced)
      put_own_slice(slice_key, false)
    end
  end
  results[#results + 1] = new_total
  results[#results + 1] = new_slice
  results[#results + 1] = old_total
  results[#results + 1] = old_slice
end
-- Recorded only now: a flush that failed part-way (and was undone) is applied when resent.
if ARGV[4] ~= '' and not replay then
  redis.call('HSET', flushes, me, ARGV[4])
end
return results
