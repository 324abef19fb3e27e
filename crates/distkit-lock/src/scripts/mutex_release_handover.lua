-- mutex_release, continued: waiters are in line; hand the lock to the first live one.
-- 2: released and handed over, but the announcement was refused (see mutex_hand_over); the
-- token it went to and that waiter's inbox, if it was handed over.
local announced, head, inbox = mutex_hand_over(ARGV[4], ARGV[3], ARGV[2])
if announced then
  return { 1, head, inbox }
end
return { 2, head, inbox }
