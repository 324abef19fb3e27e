-- counter_flush: deliver a lax counter's pending deltas exactly once, and read values back.
-- KEYS[1]  the values hash of the prefix
-- KEYS[2]  the flush sequence key of the lax counter object
-- ARGV[1]  the sequence number of this batch (a batch is resent with the same number until
--          it is confirmed, so a resent batch that was already applied is not applied again)
-- ARGV[2]  how long the sequence key lives, in ms
-- ARGV[3]  '1' when this batch was first sent longer ago than its record surely lives (half
--          the sequence key's ttl), else '0': a missing record then does not prove that the
--          batch was not applied
-- ARGV[4]  n, the number of deltas; then n pairs: field, delta (decimal i64)
-- ARGV[5 + 2n ...]  fields to read without changing them
-- Returns { values, failed }: values holds the current value of every field named (deltas
-- first, then reads; false when absent); failed lists 'index code' for deltas that were not
-- applied because they would overflow, the stored value is not an integer, or the values
-- key is not a hash (written by something else: the deltas are dropped, not retried forever,
-- and `clear` repairs the key).
-- Errors: 'DISTKIT_FLUSH_EXPIRED' when a stale batch (ARGV[3]) finds no sequence record: it
-- may have been applied before the record expired, so it is not applied again. A batch that
-- is not stale and finds no record was not applied (or its effect was lost with the record).
local hash = KEYS[1]
local sequence = tonumber(ARGV[1])
local stale = ARGV[3] == '1'
local delta_count = tonumber(ARGV[4])
local last = redis.call('GET', KEYS[2])
if stale and not last then
  return redis.error_reply('DISTKIT_FLUSH_EXPIRED no record of the applied batches')
end
local kind = redis.call('TYPE', hash)['ok']
local usable = kind == 'hash' or kind == 'none'
local failed = {}
if (not last) or tonumber(last) < sequence then
  for index = 0, delta_count - 1 do
    if usable then
      local field = ARGV[5 + 2 * index]
      local reply = redis.pcall('HINCRBY', hash, field, ARGV[6 + 2 * index])
      if type(reply) == 'table' and reply.err then
        failed[#failed + 1] = index .. ' ' .. distkit_incr_error_code(reply)
      end
    else
      failed[#failed + 1] = index .. ' WRONGTYPE'
    end
  end
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
end
local fields = {}
for index = 0, delta_count - 1 do
  fields[#fields + 1] = ARGV[5 + 2 * index]
end
for position = 5 + 2 * delta_count, #ARGV do
  fields[#fields + 1] = ARGV[position]
end
local values = {}
if #fields > 0 and usable then
  values = redis.call('HMGET', hash, unpack(fields))
else
  for index = 1, #fields do
    values[index] = false
  end
end
return { values, failed }
