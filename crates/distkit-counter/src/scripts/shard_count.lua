-- shard_count: reads the shard count a prefix's counters were written with, recording it on
-- first use. Run once per counter handle before its first operation.
-- KEYS[1]      the shard-count record of the prefix (in the prefix's unsharded hash tag)
-- KEYS[2..]    keys of the single-slot layout (same tag): when the record is missing and any
--              of them exists, the data predates the record and was written with one shard
-- ARGV[1]      the shard count of the calling handle (a decimal, 1..=1024)
-- Returns the recorded shard count as a string (the caller's own when it was just recorded).
-- Idempotent: a replay reads back what the first attempt recorded.
local stored = redis.call('GET', KEYS[1])
if stored then return stored end
stored = ARGV[1]
for index = 2, #KEYS do
  if redis.call('EXISTS', KEYS[index]) == 1 then
    stored = '1'
    break
  end
end
redis.call('SET', KEYS[1], stored)
return stored
