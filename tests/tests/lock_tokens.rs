//! Fencing tokens that never repeat or go backwards (re-attaches during a pending handover,
//! readers after data loss), and lock keys that never outlive their retention.

mod common;

use std::time::{Duration, Instant};

use common::{LIMIT, bounded, client, fresh_key};
use distkit::DistkitRedisKey;
use distkit::fred::clients::Client;
use distkit::lock::{LockGuardState, LockOptions, Mutex, RwLock, RwLockReadGuard};
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

/// Restarts the server empty (SIGKILL, then a new process on the same port) from a blocking
/// section, so the runtime's other tasks go on.
fn restart_empty(redis: &mut TestRedis) {
    tokio::task::block_in_place(|| redis.restart());
}

/// A read lease on `rwlock` once its Redis answers again (errors while the client
/// reconnects are retried).
async fn read_eventually(rwlock: &RwLock) -> RwLockReadGuard {
    let started = Instant::now();
    loop {
        match rwlock.try_read_for(Duration::from_secs(1)).await {
            Ok(guard) => return guard,
            Err(error) => assert!(
                started.elapsed() < LIMIT,
                "no read lease within {LIMIT:?}: {error}"
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readers_token_after_a_restart_without_persistence_is_at_least_every_earlier_token() {
    let mut redis = TestRedis::start_standalone();
    let name = fresh_key();
    let rwlock = RwLock::new(
        LockOptions::builder(name, client(&redis).await)
            .ttl(Duration::from_secs(2))
            .retry_interval(Duration::from_millis(20))
            .build(),
    );
    let mut issued = Vec::new();
    for _ in 0..5 {
        let writer = bounded(rwlock.write()).await.unwrap();
        issued.push(writer.fencing_token());
        bounded(writer.release()).await.unwrap();
        let reader = bounded(rwlock.read()).await.unwrap();
        issued.push(reader.fencing_token());
        bounded(reader.release()).await.unwrap();
    }
    assert!(
        issued.windows(2).all(|pair| pair[0] <= pair[1]),
        "tokens fell while the state was kept: {issued:?}"
    );
    let newest = issued.iter().max().copied().unwrap_or(0);
    restart_empty(&mut redis);
    let reader = read_eventually(&rwlock).await;
    let read_token = reader.fencing_token();
    assert!(
        read_token >= newest,
        "the reader's token after the loss ({read_token}) is below the newest before it ({newest})"
    );
    bounded(reader.release()).await.unwrap();
    // A writer after the reader is fenced above it.
    let writer = bounded(rwlock.write()).await.unwrap();
    assert!(
        writer.fencing_token() > read_token,
        "the writer's token ({}) is not above the reader's before it ({read_token})",
        writer.fencing_token()
    );
    bounded(writer.release()).await.unwrap();
}
