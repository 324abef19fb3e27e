-- counter_flush: deliver a lax counter's pending deltas exactly once, and read values back.
-- KEYS[1]  the values hash of the prefix
-- KEYS[2]  the flush sequence key of the lax counter object
-- ARGV[1]  the sequence number of this batch (a batch is resent with the same number until
--          it is confirmed, so a resent batch that was already applied is not applied again)
-- ARGV[2]  how long the sequence key lives, in ms
-- ARGV[3]  n, the number of deltas; then n pairs: field, delta (decimal i64)
-- ARGV[4 + 2n ...]  fields to read without changing them
-- Returns { values, failed }: values holds the current value of every field named (deltas
-- first, then reads; false when absent); failed lists 'index code' for deltas that were not
-- applied because they would overflow or the stored value is not an integer.
local hash = KEYS[1]
local sequence = tonumber(ARGV[1])
local delta_count = tonumber(ARGV[3])
local last = redis.call('GET', KEYS[2])
local failed = {}
if (not last) or tonumber(last) < sequence then
  for index = 0, delta_count - 1 do
    local field = ARGV[4 + 2 * index]
    local reply = redis.pcall('HINCRBY', hash, field, ARGV[5 + 2 * index])
    if type(reply) == 'table' and reply.err then
      failed[#failed + 1] = index .. ' ' .. distkit_incr_error_code(reply)
    end
  end
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
end
local fields = {}
for index = 0, delta_count - 1 do
  fields[#fields + 1] = ARGV[4 + 2 * index]
end
for position = 4 + 2 * delta_count, #ARGV do
  fields[#fields + 1] = ARGV[position]
end
local values = {}
if #fields > 0 then
  values = redis.call('HMGET', hash, unpack(fields))
end
return { values, failed }
