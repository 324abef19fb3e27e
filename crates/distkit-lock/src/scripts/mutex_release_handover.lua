-- mutex_release, continued: waiters are queued; hand the lock to the first live one.
mutex_hand_over(ARGV[2])
return 1
