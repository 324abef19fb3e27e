-- mutex_leave_queue: a waiter gives up (cancelled, timed out): leave the line, and if the
-- lock was handed to its per-acquisition token meanwhile (a handover it never took up),
-- pass it on to the next waiter.
-- KEYS     the mutex keys (see mutex_common; the loss guard's two only with ARGV[4])
-- ARGV[1]  the waiter's token
-- ARGV[2]  the retention of the fence and epoch keys, in ms (see fence.lua)
-- ARGV[3]  '1' when the token is an explicit owner id (shared by other lock objects, whose
--          holds must not be touched), else '0'
-- ARGV[4]  '1' to refuse a handover after a data loss (see loss_guard.lua); absent: off
-- ARGV[5]  the lease, in ms (the loss guard's quarantine; only with ARGV[4])
-- Returns 1 when a lock held by this per-acquisition token was passed on, else 0.
mutex_forget_waiter(ARGV[1])
-- A per-acquisition token can only hold the lock through a handover (or an attempt whose
-- reply was lost): either way nobody holds a guard for it. An explicit owner id may hold it
-- through another acquisition with the same id (another lock object, or a handover another
-- waiter of that id confirmed): it is never passed on; a handover to it
-- that nobody takes up runs out with its provisional lease (the waiter's heartbeat window).
if ARGV[3] ~= '1' and redis.call('GET', KEYS[1]) == ARGV[1] then
  mutex_hand_over(ARGV[5], ARGV[4], ARGV[2])
  return 1
end
return 0
