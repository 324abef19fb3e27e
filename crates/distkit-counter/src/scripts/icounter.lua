-- icounter: instance-aware counter operations, applied in order, all or nothing.
--
-- C (the total of a key) is the sum of the slices of the live instances. Every call, in order:
--   0. refuses a possibly-applied lax flush whose instance's flush record is gone
--      (DISTKIT_FLUSH_EXPIRED);
--   1. renews the calling instance's lease (alive score = server now + its own threshold) and,
--      if it had been reaped, restores its parked slices (drops them if it comes back after
--      its revival window);
--   2. only when something may be due (the server clock is past `due`, see below): moves
--      every instance whose own lease ran out to `reaping`, then reaps (takes out of C
--      and parks) up to `budget` slices; when the budget runs out with instances left in
--      `reaping`, it also reaps their slices of the keys this call touches, so the answer is
--      right: a dead instance's slices leave C at the latest on the next operation;
--   3. (with step 2) collects, with what is left of the budget, the parked state of instances
--      dead for longer than their own revival window: parked slices, then the instance's
--      `flushes` and `windows` entries; then stores the new `due`;
--   4. applies its operations.
--
-- `due` is a lower bound of every time at which steps 2 and 3 could find work: at most the
-- earliest lease deadline in `alive` and the earliest expiry in `buried`, and 0 while
-- `reaping` holds an instance. Only this script and `icounter_inc` (lease renewals of live
-- instances) write those three sets, and every write that could lower their minimum lowers
-- `due` with it (a lease renewal to a deadline below `due`, as after the server clock
-- stepped back; steps 2 and 3 recompute it), so skipping
-- steps 2 and 3 while the clock is not past `due` finds every dead instance as early as a
-- scan on every call would. A missing `due` reads as 0: the next call scans and stores it.
-- (Whoever edits `alive`, `reaping` or `buried` by hand must delete `due`.) A warm call of
-- this script thus runs TIME, GET and ZADD before its operations; the warm unconditional
-- `inc` has a script of its own, `icounter_inc`, which hands anything else to this one.
--
-- Stale slices do not exist: a global set/del of a key removes every instance's slice of the
-- key (counted or parked) through the `by_key` index, and clear removes them all, so nothing
-- needs to remember which slices are stale and a deleted key leaves nothing behind.
--
-- Cost bounds (steps are single O(log n) commands):
--   - reaping and collection: at most `budget` slices per call, plus one step per instance
--     found dead (moving it to `reaping` is cheap and must not wait: its slices must leave C);
--   - reaping for the answer, only when the budget ran out: per distinct key of the call,
--     the smaller of (instances still in `reaping`) and (instances holding a slice of it);
--   - revival: one step per parked slice of the reviving instance (all must count again
--     before it answers; they are its own slices, which it built one operation at a time);
--   - global set/del of a key: one step per instance holding a slice of that key;
--   - cleari: one step per slice of the calling instance (all or nothing);
--   - clear: a constant number of UNLINKs (large values are freed in the background).
--
-- KEYS[1]   totals        hash: key -> C
-- KEYS[2]   alive         sorted set: instance -> lease deadline (server ms = last call or
--                         heartbeat + the instance's own dead-instance threshold)
-- KEYS[3]   windows       hash: instance -> its revival window in ms (written when it joins or
--                         revives, removed with its parked state)
-- KEYS[4]   flushes       hash: instance -> sequence number of its last applied lax flush
--                         ('0': a lax instance that has not flushed yet)
-- KEYS[5]   slices        hash: '<instance>:<key>' -> I (counted in C)
-- KEYS[6]   owned         sorted set (score 0): '<instance>:<key>' of counted slices
-- KEYS[7]   parked        hash: '<instance>:<key>' -> I of a reaped instance (not counted)
-- KEYS[8]   parked_owned  sorted set (score 0): '<instance>:<key>' of parked slices
-- KEYS[9]   by_key        sorted set (score 0): '<key>:<instance>' of every slice, counted or
--                         parked (keys and instance ids never contain ':')
-- KEYS[10]  reaping       sorted set: dead instance -> when it was found dead (server ms)
-- KEYS[11]  buried        sorted set: reaped instance -> when its parked state expires
--                         (found dead + its revival window, server ms)
-- KEYS[12]  due           string: server ms before which steps 2 and 3 find nothing to do
--                         (a lower bound, see above)
-- ARGV[1]   the calling instance id (a ULID: no ':')
-- ARGV[2]   the calling instance's dead-instance threshold, in ms
-- ARGV[3]   the calling instance's revival window, in ms (>= the threshold)
-- ARGV[4]   how many slices one call may reap or collect at most (the budget)
-- ARGV[5]   '' or the sequence number of a lax flush: a flush already applied is not
--           applied again (its operations then only read)
-- ARGV[6]   '1' when that flush may have been applied before and its record collected since
--           (a resend whose first attempt may be older than the revival window), else '0'
-- ARGV[7]   '1' to record the instance in `flushes` (a lax instance that has not sent any
--           flush yet), else '0'
-- ARGV[8..] 5 arguments per operation: kind, key, comparator op, operand, amount
--           kind: 'inc' (I += amount, C += amount; compares C), 'set' (global: C = I = amount,
--           every other slice removed; compares C), 'seti' (I = amount, C moves by the
--           difference; compares I), 'get', 'del' (global delete), 'deli' (remove this
--           instance's slice), 'clear' (everything), 'cleari' (all of this instance's slices),
--           'beat' (nothing: a heartbeat). 'clear' and 'cleari' are sent alone, never in a
--           batch: they are not part of the undo log.
-- Returns 4 strings per operation: new C, new I, old C, old I (a failed comparison changes
-- nothing and returns the old pair twice), then the number of instances this call found dead
-- (step 2), for observability.
-- Errors: 'DISTKIT_OVERFLOW <index>' (every write of the operations undone first);
-- 'DISTKIT_FLUSH_EXPIRED' (a flush flagged by ARGV[6] whose instance has no `flushes` entry:
-- it may have been applied before the record was collected, so it is not applied; nothing
-- changed).
local totals, alive, windows, flushes = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local slices, owned, parked, parked_owned = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local by_key, reaping, buried, due = KEYS[9], KEYS[10], KEYS[11], KEYS[12]
local me = ARGV[1]
local threshold = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local budget = tonumber(ARGV[4])
local flush = ARGV[5]
local resend = ARGV[6] == '1'
local register = ARGV[7] == '1'
local HEADER = 7
local count = (#ARGV - HEADER) / 5

-- 0. A resent flush is applied only if the record that makes it idempotent still exists.
if flush ~= '' and resend and redis.call('HEXISTS', flushes, me) == 0 then
  return redis.error_reply('DISTKIT_FLUSH_EXPIRED no record of the applied flushes')
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

-- Undo log of the operations: { hash, field, previous value or false } or
-- { zset, member, was a member, true }, replayed backwards on failure. An operation checks
-- everything before its first write, so a single-operation call needs none.
local undo = {}
local logging = count > 1
local function hput(hash, field, value)
  if logging then
    undo[#undo + 1] = { hash, field, redis.call('HGET', hash, field) }
  end
  if value then
    redis.call('HSET', hash, field, value)
  else
    redis.call('HDEL', hash, field)
  end
end
local function zput(zset, member, present)
  if logging then
    undo[#undo + 1] = { zset, member, redis.call('ZSCORE', zset, member) ~= false, true }
  end
  if present then
    redis.call('ZADD', zset, 0, member)
  else
    redis.call('ZREM', zset, member)
  end
end
local function rollback()
  for i = #undo, 1, -1 do
    local entry = undo[i]
    if entry[4] then
      if entry[3] then
        redis.call('ZADD', entry[1], 0, entry[2])
      else
        redis.call('ZREM', entry[1], entry[2])
      end
    elseif entry[3] then
      redis.call('HSET', entry[1], entry[2], entry[3])
    else
      redis.call('HDEL', entry[1], entry[2])
    end
  end
end

-- The instance and the key of a '<instance>:<key>' field.
local function split(field)
  local colon = string.find(field, ':', 1, true)
  return string.sub(field, 1, colon - 1), string.sub(field, colon + 1)
end

-- The '<key>:<instance>' member of `by_key` for a slice.
local function index_of(instance, key)
  return key .. ':' .. instance
end

local function total(key)
  return redis.call('HGET', totals, key) or '0'
end

-- Whether any instance holds a slice (counted or parked) of `key`.
local function has_slices(key)
  return #redis.call('ZRANGEBYLEX', by_key, '[' .. key .. ':', '[' .. key .. ';', 'LIMIT', 0, 1) > 0
end

-- Drops a total of '0' that no slice makes up any more (an absent total reads as '0').
local function tidy(key)
  if redis.call('HGET', totals, key) == '0' and not has_slices(key) then
    redis.call('HDEL', totals, key)
  end
end

-- The revival window of a dead instance (the caller's when the record is missing).
local function window_of(instance)
  return tonumber(redis.call('HGET', windows, instance)) or window
end

-- 1. Lease; an instance that joins or comes back restores its parked slices.
local deadline = now + threshold
local next_due = tonumber(redis.call('GET', due)) or 0
if deadline < next_due then
  -- This lease is now the earliest deadline (a new instance with a short threshold, or the
  -- server clock stepped back): due follows it down.
  next_due = deadline
  redis.call('SET', due, string.format('%.0f', deadline))
end
if redis.call('ZADD', alive, deadline, me) == 1 then
  -- Back after its revival window (its state may be partly collected already): nothing of
  -- it returns, so a late revival never restores only some of its slices.
  local expires = redis.call('ZSCORE', buried, me)
  local expired = expires ~= false and tonumber(expires) < now
  redis.call('HSET', windows, me, window)
  redis.call('ZREM', reaping, me)
  redis.call('ZREM', buried, me)
  local fields = redis.call('ZRANGEBYLEX', parked_owned, '[' .. me .. ':', '[' .. me .. ';')
  for _, field in ipairs(fields) do
    local _, key = split(field)
    local value = redis.call('HGET', parked, field)
    local restored = value and not expired and distkit_add(total(key), value)
    if restored then
      redis.call('HSET', totals, key, restored)
      redis.call('HSET', slices, field, value)
      redis.call('ZADD', owned, 0, field)
    else
      -- Expired, or C plus this slice is out of the i64 range: the slice is dropped.
      redis.call('ZREM', by_key, index_of(me, key))
      tidy(key)
    end
    redis.call('HDEL', parked, field)
    redis.call('ZREM', parked_owned, field)
  end
end
if register then
  redis.call('HSETNX', flushes, me, '0')
end

-- 2. Reap. Takes a counted slice of a dead instance out of C and parks it.
local function reap(field)
  local instance, key = split(field)
  local value = redis.call('HGET', slices, field)
  if value then
    local reduced = distkit_sub(total(key), value)
    if reduced then
      redis.call('HSET', totals, key, reduced)
      redis.call('HSET', parked, field, value)
      redis.call('ZADD', parked_owned, 0, field)
    else
      -- C minus this slice is out of the i64 range (so is the sum of the other slices):
      -- the slice is dropped and C left as it is.
      redis.call('ZREM', by_key, index_of(instance, key))
    end
  end
  redis.call('HDEL', slices, field)
  redis.call('ZREM', owned, field)
end

local found_dead = 0
if now > next_due then
  for _, instance in ipairs(redis.call('ZRANGEBYSCORE', alive, '-inf', '(' .. now)) do
    redis.call('ZREM', alive, instance)
    redis.call('ZADD', reaping, now, instance)
    found_dead = found_dead + 1
  end
  while budget > 0 do
    local head = redis.call('ZRANGE', reaping, 0, 0, 'WITHSCORES')
    local instance = head[1]
    if not instance then break end
    local fields = redis.call('ZRANGEBYLEX', owned, '[' .. instance .. ':', '[' .. instance .. ';', 'LIMIT', 0, budget)
    if #fields == 0 then
      -- Reaped: its parked state is kept for its revival window from when it was found dead.
      redis.call('ZREM', reaping, instance)
      redis.call('ZADD', buried, tonumber(head[2]) + window_of(instance), instance)
      budget = budget - 1
    end
    for _, field in ipairs(fields) do
      reap(field)
      budget = budget - 1
    end
  end
  if budget <= 0 then
    local pending = redis.call('ZRANGE', reaping, 0, -1)
    if #pending > 0 then
      local seen = {}
      for base = HEADER, #ARGV - 1, 5 do
        local key = ARGV[base + 2]
        if key ~= '' and not seen[key] then
          seen[key] = true
          -- Whichever is shorter: the instances being reaped, or those holding a slice of key.
          local low, high = '[' .. key .. ':', '[' .. key .. ';'
          if redis.call('ZLEXCOUNT', by_key, low, high) < #pending then
            for _, member in ipairs(redis.call('ZRANGEBYLEX', by_key, low, high)) do
              local instance = string.sub(member, #key + 2)
              local field = instance .. ':' .. key
              if redis.call('ZSCORE', reaping, instance) and redis.call('ZSCORE', owned, field) then
                reap(field)
              end
            end
          else
            for _, instance in ipairs(pending) do
              local field = instance .. ':' .. key
              if redis.call('ZSCORE', owned, field) then
                reap(field)
              end
            end
          end
        end
      end
    end
  end

  -- 3. Collect the parked state of instances whose revival window is over.
  while budget > 0 do
    local instance = redis.call('ZRANGEBYSCORE', buried, '-inf', '(' .. now, 'LIMIT', 0, 1)[1]
    if not instance then break end
    local fields = redis.call('ZRANGEBYLEX', parked_owned, '[' .. instance .. ':', '[' .. instance .. ';', 'LIMIT', 0, budget)
    if #fields == 0 then
      redis.call('HDEL', flushes, instance)
      redis.call('HDEL', windows, instance)
      redis.call('ZREM', buried, instance)
      budget = budget - 1
    end
    for _, field in ipairs(fields) do
      local _, key = split(field)
      redis.call('HDEL', parked, field)
      redis.call('ZREM', parked_owned, field)
      redis.call('ZREM', by_key, index_of(instance, key))
      tidy(key)
      budget = budget - 1
    end
  end

  -- The next time steps 2 and 3 may find work: now, while instances wait in `reaping`;
  -- else the earliest lease deadline (this instance's at the latest) or expiry.
  if redis.call('EXISTS', reaping) == 1 then
    next_due = 0
  else
    next_due = deadline
    local earliest = redis.call('ZRANGE', alive, 0, 0, 'WITHSCORES')[2]
    if earliest and tonumber(earliest) < next_due then next_due = tonumber(earliest) end
    earliest = redis.call('ZRANGE', buried, 0, 0, 'WITHSCORES')[2]
    if earliest and tonumber(earliest) < next_due then next_due = tonumber(earliest) end
  end
  redis.call('SET', due, string.format('%.0f', next_due))
end

-- 4. The operations.
local replay = false
if flush ~= '' then
  local last = redis.call('HGET', flushes, me)
  replay = last ~= false and tonumber(last) >= tonumber(flush)
end

-- This instance's slice of `key` ('0' when absent), and whether it exists.
local function own_slice(key)
  local value = redis.call('HGET', slices, me .. ':' .. key)
  if value then return value, true end
  return '0', false
end

-- Sets this instance's slice of `key` (false removes it). `exists` says it exists already.
local function put_own_slice(key, value, exists)
  local field = me .. ':' .. key
  hput(slices, field, value)
  if value then
    if not exists then
      zput(owned, field, true)
      zput(by_key, index_of(me, key), true)
    end
  else
    zput(owned, field, false)
    zput(by_key, index_of(me, key), false)
  end
end

-- Stores C of `key` once its slices are in place; a '0' no slice makes up is removed.
local function put_total(key, value)
  if value == '0' and not has_slices(key) then
    hput(totals, key, false)
  else
    hput(totals, key, value)
  end
end

-- Removes every instance's slice of `key`, counted or parked (a global set or delete).
local function remove_slices(key)
  local members = redis.call('ZRANGEBYLEX', by_key, '[' .. key .. ':', '[' .. key .. ';')
  for _, member in ipairs(members) do
    local field = string.sub(member, #key + 2) .. ':' .. key
    if redis.call('HEXISTS', slices, field) == 1 then
      hput(slices, field, false)
      zput(owned, field, false)
    end
    if redis.call('HEXISTS', parked, field) == 1 then
      hput(parked, field, false)
      zput(parked_owned, field, false)
    end
    zput(by_key, member, false)
  end
end

local results = {}
for index = 0, count - 1 do
  local base = HEADER + index * 5
  local kind, key, op, operand, amount =
    ARGV[base + 1], ARGV[base + 2], ARGV[base + 3], ARGV[base + 4], ARGV[base + 5]
  local old_total, old_slice, slice_exists = '0', '0', false
  if kind ~= 'clear' and kind ~= 'cleari' and kind ~= 'beat' then
    old_total = total(key)
    old_slice, slice_exists = own_slice(key)
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
    put_own_slice(key, new_slice, slice_exists)
    put_total(key, new_total)
  elseif kind == 'set' then
    remove_slices(key)
    put_own_slice(key, amount, false)
    put_total(key, amount)
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
    put_own_slice(key, amount, slice_exists)
    put_total(key, new_total)
    new_slice = amount
  elseif kind == 'del' then
    remove_slices(key)
    put_total(key, '0')
    new_total, new_slice = '0', '0'
  elseif kind == 'deli' then
    local reduced = distkit_sub(old_total, old_slice)
    if not reduced then
      rollback()
      return redis.error_reply('DISTKIT_OVERFLOW ' .. index)
    end
    if slice_exists then
      put_own_slice(key, false)
    end
    put_total(key, reduced)
    new_total, new_slice = reduced, '0'
  elseif kind == 'clear' then
    redis.call('UNLINK', totals, slices, owned, parked, parked_owned, by_key)
  elseif kind == 'cleari' then
    -- Every reduction is checked before the first write: all or nothing.
    local fields = redis.call('ZRANGEBYLEX', owned, '[' .. me .. ':', '[' .. me .. ';')
    local reduced = {}
    for position, field in ipairs(fields) do
      local _, slice_key = split(field)
      reduced[position] = distkit_sub(total(slice_key), own_slice(slice_key))
      if not reduced[position] then
        return redis.error_reply('DISTKIT_OVERFLOW ' .. index)
      end
    end
    for position, field in ipairs(fields) do
      local _, slice_key = split(field)
      put_own_slice(slice_key, false)
      put_total(slice_key, reduced[position])
    end
  end
  results[#results + 1] = new_total
  results[#results + 1] = new_slice
  results[#results + 1] = old_total
  results[#results + 1] = old_slice
end
-- Recorded only now: a flush that failed part-way (and was undone) is applied when resent.
if flush ~= '' and not replay then
  redis.call('HSET', flushes, me, flush)
end
results[#results + 1] = found_dead
return results
