-- mutex_release, continued: waiters are in line; hand the lock to the first live one.
-- 2: released and handed over, but the announcement was refused (see mutex_hand_over).
if mutex_hand_over(ARGV[4], ARGV[3], ARGV[2]) then
  return 1
end
return 2
