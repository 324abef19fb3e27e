-- mutex_acquire: take the lock if it is free and nobody waits, confirm a handover to this
-- token, or (when asked to) join the line of waiters.
-- KEYS     the mutex keys (see mutex_common; the loss guard's two only with ARGV[7])
-- ARGV[1]  the token of this acquisition
-- ARGV[2]  the lease, in ms
-- ARGV[3]  the retention of the fence and epoch keys, in ms (the lease plus
--          LockOptions::key_retention; see fence.lua)
-- ARGV[4]  the heartbeat window of a waiter, in ms (it leaves the line when it does not try
--          again within this window; a handover to it grants a lease this long, at most)
-- ARGV[5]  two flags: the first '1' to join (or stay in) the line when the lock is not
--          free ('0': a one-shot), the second '1' when the token is an explicit owner id
--          that may re-attach (else '0')
-- ARGV[6]  where to announce a handover to this waiter: 'P<channel>' (PUBLISH), 'S<channel>'
--          (SPUBLISH, a sharded channel in the lock's slot), or '' (nowhere: it polls)
-- ARGV[7]  '1' to refuse grants after a data loss (see loss_guard.lua); absent (or
--          anything else): off, and KEYS[6], KEYS[7] are not passed
-- (Arguments are few on purpose: each one costs the client an encoding and Redis a string.)
-- Returns { 1, fencing token } when acquired ({ 1, fencing token, 1 } when it confirmed a
-- handover to this token), { 0, the fencing counter } when not; tokens and counters are
-- decimal strings (see fence.lua).
local token = ARGV[1]
local ttl = ARGV[2]
local keep = ARGV[3]

if loss_guard_refuses(KEYS[6], KEYS[7], ttl, ARGV[7], keep) then
  return { 0, redis.call('GET', KEYS[2]) or '0' }
end

-- The fast path: nobody waits and the lock is free.
if redis.call('LLEN', KEYS[3]) == 0 and redis.call('SET', KEYS[1], token, 'NX', 'PX', ttl) then
  return { 1, fence_next(KEYS[2], keep) }
end
-- (The helpers of mutex_common.lua and the line handling of mutex_acquire_queue.lua follow:
-- the fast path above returns before they are set up.)
