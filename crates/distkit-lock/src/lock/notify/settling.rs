//! Handovers this process is confirming: while a waiter of this process, woken by a handover,
//! confirms it in Redis, a new `lock()` of the same lock in this process waits for that
//! confirmation (a bounded time) before its first attempt.
//!
//! Such a newcomer would be refused anyway (the lock is handed over, and the newcomer is not
//! in the queue yet); sent at once, its attempt only competes with the confirmation for the
//! client's CPU and for Redis, on the critical path of every handover. This typically is the
//! releasing task itself, calling `lock()` again as soon as `release()` returned. A wait, never
//! a grant: the newcomer then makes its attempt as before, whatever happened meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex as StdMutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

/// How long a newcomer waits for a handover's confirmation at most: past this, the
/// confirmation is late (Redis stalls, or the woken waiter was cancelled before its attempt
/// cleared it) and the newcomer makes its attempt.
pub(crate) const SETTLE_BOUND: Duration = Duration::from_millis(5);

/// A handover being confirmed: the token it was handed to, and where its confirmation is
/// announced.
#[derive(Debug)]
struct Settling {
    token: String,
    settled: Arc<Notify>,
}

/// The handovers being confirmed in this process, by lock (its release channel).
static SETTLING: LazyLock<StdMutex<HashMap<String, Settling>>> =
    LazyLock::new(|| StdMutex::new(HashMap::new()));

/// A waiter of this process for the handover of `lock` to `token` was woken: its confirming
/// attempt is under way.
pub(super) fn begin(lock: &str, token: &str) {
    let mut settling = SETTLING.lock().unwrap_or_else(PoisonError::into_inner);
    let replaced = settling.insert(
        lock.to_owned(),
        Settling {
            token: token.to_owned(),
            settled: Arc::new(Notify::new()),
        },
    );
    drop(settling);
    // An earlier handover of the lock that nobody confirmed: its newcomers go on.
    if let Some(replaced) = replaced {
        replaced.settled.notify_waiters();
    }
}

/// A waiter for the handover of `lock` to `token` made an attempt (or gave up): the
/// handover, if it was being confirmed, is settled.
pub(super) fn end(lock: &str, token: &str) {
    let mut settling = SETTLING.lock().unwrap_or_else(PoisonError::into_inner);
    let ended = settling.get(lock).is_some_and(|entry| entry.token == token);
    let removed = if ended { settling.remove(lock) } else { None };
    drop(settling);
    if let Some(removed) = removed {
        removed.settled.notify_waiters();
    }
}

/// Waits, at most [`SETTLE_BOUND`], until no handover of `lock` is being confirmed in this
/// process. Returns at once when none is.
pub(crate) async fn wait(lock: &str) {
    let Some(settled) = SETTLING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(lock)
        .map(|entry| Arc::clone(&entry.settled))
    else {
        return;
    };
    let notified = settled.notified();
    tokio::pin!(notified);
    // Registered before the second look: a confirmation between the two is not missed.
    notified.as_mut().enable();
    let still_settling = SETTLING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(lock)
        .is_some_and(|entry| Arc::ptr_eq(&entry.settled, &settled));
    if still_settling {
        drop(tokio::time::timeout(SETTLE_BOUND, notified).await);
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::{Pin, pin};

    use super::*;

    /// Polls `future` once, the clock standing still: whether it finished.
    async fn finishes_at_once<F: Future>(future: Pin<&mut F>) -> bool {
        tokio::time::timeout(Duration::ZERO, future).await.is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn a_newcomer_waits_until_the_woken_waiter_has_made_its_attempt() {
        let lock = "settling-test-1";
        // Nothing settling: no wait.
        assert!(finishes_at_once(pin!(wait(lock))).await);
        begin(lock, "token-a");
        let mut waiting = pin!(wait(lock));
        assert!(!finishes_at_once(waiting.as_mut()).await, "went on at once");
        // Another token's attempt settles nothing, nor does another lock's.
        end(lock, "token-b");
        end("settling-test-other", "token-a");
        assert!(
            !finishes_at_once(waiting.as_mut()).await,
            "settled by another"
        );
        end(lock, "token-a");
        assert!(
            finishes_at_once(waiting.as_mut()).await,
            "still waits once settled"
        );
        assert!(finishes_at_once(pin!(wait(lock))).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_handover_nobody_confirms_holds_a_newcomer_back_only_for_the_bound() {
        let lock = "settling-test-2";
        begin(lock, "token-a");
        let started = tokio::time::Instant::now();
        // The clock is paused: it moves only to the next timer when nothing else can run.
        wait(lock).await;
        assert_eq!(started.elapsed(), SETTLE_BOUND);
        // A later handover of the same lock replaces it, and frees its newcomers.
        let mut held_back = pin!(wait(lock));
        assert!(!finishes_at_once(held_back.as_mut()).await);
        begin(lock, "token-b");
        assert!(finishes_at_once(held_back.as_mut()).await);
        end(lock, "token-b");
    }
}
