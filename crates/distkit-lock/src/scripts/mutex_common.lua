-- Helpers shared by the mutex scripts (appended to the fast path of each of them).
-- Keys of one mutex, always passed in this order:
--   KEYS[1] owner    string: the holder's token, with a PX lease
--   KEYS[2] fence    integer: the last fencing token handed out (expires with its
--                    retention, see fence.lua)
--   KEYS[3] waitlist list: the tokens of the waiters, in arrival order
--   KEYS[4] waiters  hash: waiting token -> '<heartbeat expiry, server ms> <lease it asked
--                    for, ms> <heartbeat window, ms> <inbox>', the inbox as mutex_acquire's
--                    ARGV[6] gives it
--   KEYS[5] handover string: '<token> <fencing token>' of the last handover while it is
--                    pending (PX: its provisional lease); deleted when the waiter confirms
--                    it or its holder releases, and ignored once a later acquisition
--                    raised the fencing counter
--   KEYS[6] epoch    the loss guard's epoch (see loss_guard.lua)
--   KEYS[7] quarantine the loss guard's quarantine (see loss_guard.lua)
-- (KEYS[6] and KEYS[7] are passed only when the loss guard is on: off, no script reads them.)
-- A token is in the waitlist exactly when it is in the waiters hash: both are changed
-- together, and a waiter whose heartbeat stopped is dropped when it reaches the head.

-- The fencing token of the pending handover (a decimal string) if it went to `token` and no
-- acquisition came after it (its fencing token is still the latest), else nil.
local function mutex_handover_fence(token)
  local handover = redis.call('GET', KEYS[5])
  if handover and string.sub(handover, 1, #token + 1) == token .. ' ' then
    local fence = string.sub(handover, #token + 2)
    if fence == (redis.call('GET', KEYS[2]) or '') then
      return fence
    end
  end
  return nil
end

local function mutex_now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- Takes a waiter out of the line, wherever it stands (a rare path: leaving, re-attaching).
local function mutex_forget_waiter(token)
  if redis.call('HDEL', KEYS[4], token) == 1 then
    redis.call('LREM', KEYS[3], 0, token)
  end
end

-- The first waiter whose heartbeat is current, with the provisional lease of a handover to
-- it (its heartbeat window, or its lease when shorter) and its inbox; waiters ahead of it
-- whose heartbeat stopped leave the line (at most 100 per call). Nil when none is left.
local function mutex_live_head(now)
  for _ = 1, 100 do
    local head = redis.call('LINDEX', KEYS[3], 0)
    if not head then
      return nil
    end
    local expiry, lease, window, inbox =
      string.match(redis.call('HGET', KEYS[4], head) or '', '^(%d+) (%d+) (%d+) ?(.*)$')
    if expiry and tonumber(expiry) >= now then
      return head, math.min(tonumber(lease), tonumber(window)), inbox
    end
    redis.call('LPOP', KEYS[3])
    redis.call('HDEL', KEYS[4], head)
  end
  return nil
end

-- After the holder's token was checked: hands the lock to the first live waiter and
-- announces 'granted <fencing token> <previous fencing token> <length of lock> <lock><token>'
-- in the waiter's inbox (the lock holds the waiter's token from then on; the message only
-- wakes the waiter, whose next mutex_acquire confirms the handover; `lock` names the lock
-- to the waiter's client: its release channel, KEYS[1] .. ':released', as the client's key
-- schema names it). The lease is provisional, the waiter's heartbeat window at most
-- (the confirming attempt renews it to a full ttl): a waiter that died just before its turn
-- blocks the lock no longer than that. A waiter without an inbox finds the handover on its
-- next attempt. Without live waiters, the lock is deleted; so it is when more than 100 dead
-- waiters stand first in line (live waiters behind them then take the lock on their next
-- attempt, which drops the next hundred, rather than by a handover). `ttl` and `guard` are
-- the loss guard's arguments (see loss_guard.lua): while it refuses grants, the lock is
-- deleted rather than handed over, and waiters are refused until the quarantine ends.
-- The announcement comes last and may be refused (an ACL without the channel): the writes
-- stand all the same (the waiter finds the handover on its next poll), and the call
-- returns false; otherwise true. The second and third values are the token the lock was
-- handed to and that waiter's inbox (nil when the lock was deleted), for the releasing
-- client to wake the waiters the announcement is for at once when they are in its own
-- process (a wake only, like the announcement). `keep` is the retention of the fence and epoch keys, in
-- ms (see fence.lua).
local function mutex_hand_over(ttl, guard, keep)
  local head, lease, inbox = mutex_live_head(mutex_now_ms())
  if not head or loss_guard_refuses(KEYS[6], KEYS[7], ttl, guard, keep) then
    redis.call('DEL', KEYS[1])
    return true
  end
  redis.call('SET', KEYS[1], head, 'PX', lease)
  local previous = redis.call('GET', KEYS[2]) or '0'
  local fence = fence_next(KEYS[2], keep)
  redis.call('SET', KEYS[5], head .. ' ' .. fence, 'PX', lease)
  redis.call('LPOP', KEYS[3])
  redis.call('HDEL', KEYS[4], head)
  if inbox ~= '' then
    local publish = string.sub(inbox, 1, 1) == 'S' and 'SPUBLISH' or 'PUBLISH'
    local lock = KEYS[1] .. ':released'
    local message = 'granted ' .. fence .. ' ' .. previous .. ' ' .. #lock .. ' ' .. lock .. head
    local reply = redis.pcall(publish, string.sub(inbox, 2), message)
    if type(reply) == 'table' and reply.err then
      return false, head, inbox
    end
  end
  return true, head, inbox
end
