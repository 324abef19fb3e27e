-- mutex_release, continued: waiters are in line; hand the lock to the first live one.
mutex_hand_over(ARGV[2], ARGV[4], ARGV[3], ARGV[5])
return 1
