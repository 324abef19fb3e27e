-- semaphore_available: how many permits no live lease holds (read only).
-- KEYS     the eight semaphore keys (see semaphore_common)
-- ARGV[1]  the permit count of the caller's handle
-- Returns { 1, free permits } or { 0, the stored count } when the semaphore is in use with
-- another permit count.
local stored = sem_stored_permits()
if stored and stored ~= ARGV[1] then
  return { 0, stored }
end
local now = sem_now_ms()
local used = tonumber(redis.call('HGET', KEYS[2], '#used') or '0')
-- Leases that ran out but were not dropped yet hold nothing.
for _, token in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)) do
  used = used - tonumber(redis.call('HGET', KEYS[2], token) or '0')
end
local free = tonumber(ARGV[1]) - used
if free < 0 then
  free = 0
end
return { 1, free }
