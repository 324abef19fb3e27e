-- mutex_release: delete the lock if it still holds this token, or hand it to the first
-- waiter.
-- KEYS     the mutex keys (see mutex_common; the loss guard's two only with ARGV[3])
-- ARGV[1]  the token
-- ARGV[2]  the retention of the fence and epoch keys, in ms (see fence.lua)
-- ARGV[3]  '1' to refuse a handover after a data loss (see loss_guard.lua); absent: off
-- ARGV[4]  the lease, in ms (the loss guard's quarantine; only with ARGV[3])
-- Returns 1 when this token was released (and nobody was waiting), 0 when the lease was gone
-- or someone else's; when waiters were in line, { 1, token, inbox } after it was handed to
-- the waiter `token` whose inbox is `inbox` (see mutex_acquire's ARGV[6]; or deleted:
-- { 1 }), { 2, token, inbox } when it was handed over but the
-- announcement to the waiter was refused (an ACL without the waiter's inbox channel): the
-- waiter finds the handover on its next poll.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
-- A handover still pending to this holder is over (its record goes with the lock, or
-- before the lock is handed on).
if redis.call('LLEN', KEYS[3]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[5])
  return 1
end
redis.call('DEL', KEYS[5])
-- (The helpers of fence.lua, loss_guard.lua and mutex_common.lua and the handover of
-- mutex_release_handover.lua follow: without waiters the call returns before they are set
-- up, which saves Redis making their closures on every release.)
