-- Refusal after data loss (LockOptions::loss_quarantine): a helper prepended to every
-- script that grants a lock (no KEYS or ARGV of its own: the caller passes them).
--   epoch       string key, in the lock's hash tag: the run id of the Redis process that
--               last checked the lock (written with the lock's other keys, so it is
--               replicated and persisted with them); it expires `keep` ms (the lease plus
--               the key retention) after the last check, grant or renewal, so it outlives
--               every lease Redis may still hold
--   quarantine  string key with a PX expiry, in the lock's hash tag: while it exists the
--               lock is granted to nobody
-- What it catches:
--   * the lock's state was written by another Redis process (the epoch is someone else's
--     run id): a restart that kept data (AOF, RDB) or a failover to a replica; the state may
--     be stale (a lagging replica), so nothing is granted for one ttl from this detection;
--   * the lock has no state at all (no epoch) and the server started less than a ttl ago: a
--     restart without persistence (or a fresh server: the two cannot be told apart), so
--     nothing is granted until the server has been up for a ttl and 1 s (uptime is whole
--     seconds).
-- What it cannot catch: a lock without state on a server up for longer than a ttl (its
-- first use, its epoch expired with its retention, or its keys lost to FLUSHALL, eviction,
-- or a failover to a replica that received none of this lock's writes for longer than the
-- retention) is granted at once.

-- Whether the lock must not be granted now. `ttl` is the lease in ms (a decimal string),
-- `enabled` is '1' when the option is on (anything else: never refuses, touches nothing),
-- `keep` the epoch's retention in ms.
local function loss_guard_refuses(epoch, quarantine, ttl, enabled, keep)
  if enabled ~= '1' then
    return false
  end
  if redis.call('EXISTS', quarantine) == 1 then
    return true
  end
  local info = redis.call('INFO', 'server')
  local run_id = string.match(info, 'run_id:(%x+)') or ''
  local stored = redis.call('GET', epoch)
  if stored == run_id then
    if redis.call('PTTL', epoch) < tonumber(keep) then
      redis.call('PEXPIRE', epoch, keep)
    end
    return false
  end
  redis.call('SET', epoch, run_id, 'PX', keep)
  local wait = tonumber(ttl)
  if not stored then
    local uptime = tonumber(string.match(info, 'uptime_in_seconds:(%d+)') or '0')
    wait = wait + 1000 - uptime * 1000
  end
  if wait > 0 then
    redis.call('SET', quarantine, '1', 'PX', wait)
    return true
  end
  return false
end
