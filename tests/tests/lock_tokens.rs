//! Fencing tokens that never repeat or go backwards (re-attaches during a pending handover,
//! readers after data loss), and lock keys that never outlive their retention.

mod common;

use std::time::Duration;

use common::{bounded, client, fresh_key};
use distkit::DistkitRedisKey;
use distkit::fred::clients::Client;
use distkit::lock::{LockGuardState, LockOptions, Mutex};
use distkit_test_support::TestRedis;

/// Options of a lock object acting for `owner` (a worker's explicit id).
fn owned(name: &DistkitRedisKey, client: Client, owner: &str) -> LockOptions {
    LockOptions::builder(name.clone(), client)
        .owner_id(owner)
        .ttl(Duration::from_secs(5))
        // Waiters are served only by announcements: their first poll would come a minute
        // after their first attempt, beyond every bound of this test.
        .retry_interval(Duration::from_secs(60))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_attach_while_a_handover_is_pending_gets_a_token_above_the_handed_over_one() {
    let redis = TestRedis::start();
    for round in 0..5 {
        let name = fresh_key();
        let holder = Mutex::new(
            LockOptions::builder(name.clone(), client(&redis).await)
                .ttl(Duration::from_secs(5))
                .build(),
        );
        let held = bounded(holder.lock()).await.unwrap();
        // A worker waits; a release hands it the lock, announced in its client's inbox.
        let worker = Mutex::new(owned(&name, client(&redis).await, "worker-7"));
        let waiting = tokio::spawn(async move {
            let guard = worker.lock().await;
            (worker, guard)
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !waiting.is_finished(),
            "round {round}: the lock is still held"
        );
        assert_eq!(
            bounded(held.release()).await.unwrap(),
            LockGuardState::Released
        );
        let (_worker, handed) = bounded(waiting).await.unwrap();
        let handed = handed.unwrap();
        // The worker restarts (the old guard is neither released nor renewed before this)
        // and re-attaches with the same id while the handover record is still pending.
        let restarted = Mutex::new(owned(&name, client(&redis).await, "worker-7"));
        let reattached = bounded(restarted.try_lock()).await.unwrap();
        assert!(
            reattached.fencing_token() > handed.fencing_token(),
            "round {round}: the re-attach got {} after the handover's {}",
            reattached.fencing_token(),
            handed.fencing_token()
        );
        std::mem::forget(handed);
        assert_eq!(
            bounded(reattached.release()).await.unwrap(),
            LockGuardState::Released
        );
    }
}
