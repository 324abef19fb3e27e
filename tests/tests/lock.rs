//! Mutex and RwLock through the facade, against a private Redis.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{bounded, client, eventually, fresh_key};
use distkit::DistkitError;
use distkit::fred::clients::Client;
use distkit::lock::{LockError, LockGuardState, LockOptions, Mutex, RwLock};
use distkit_test_support::TestRedis;
use tokio::sync::Mutex as AsyncMutex;

#[expect(clippy::panic, reason = "a test helper fails its test")]
fn lock_error(error: DistkitError) -> LockError {
    match error {
        DistkitError::LockError(error) => error,
        other => panic!("expected a lock error, got {other:?}"),
    }
}

fn options(name: &distkit::DistkitRedisKey, client: Client) -> LockOptions {
    LockOptions::builder(name.clone(), client)
        .ttl(Duration::from_secs(5))
        .build()
}

#[tokio::test]
async fn options_have_the_documented_defaults_and_builder() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let name = fresh_key();
    let defaults = LockOptions::new(name.clone(), client.clone());
    assert_eq!(defaults.namespace.as_str(), "distkit-locks");
    assert_eq!(defaults.ttl, Duration::from_secs(30));
    assert_eq!(defaults.retry_interval, Duration::from_millis(50));
    assert_eq!(defaults.owner_id, None);
    assert_eq!(defaults.max_wait, None);
    assert_eq!(defaults.key_retention, Duration::from_secs(600));
    let built = LockOptions::builder(name, client)
        .namespace(fresh_key())
        .ttl(Duration::from_secs(2))
        .owner_id("worker-1")
        .max_wait(Duration::from_secs(1))
        .retry_interval(Duration::from_millis(5))
        .key_retention(Duration::from_secs(1))
        .build();
    assert_eq!(built.ttl, Duration::from_secs(2));
    assert_eq!(built.key_retention, Duration::from_secs(1));
    assert_eq!(built.owner_id.as_deref(), Some("worker-1"));
    assert_eq!(built.max_wait, Some(Duration::from_secs(1)));
    assert_eq!(built.retry_interval, Duration::from_millis(5));
}

#[tokio::test]
async fn invalid_options_fail_every_acquire_before_any_io() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let name = fresh_key();
    let zero_ttl = LockOptions::builder(name.clone(), client.clone())
        .ttl(Duration::ZERO)
        .build();
    let tiny_ttl = LockOptions::builder(name.clone(), client.clone())
        .ttl(Duration::from_micros(500))
        .build();
    let empty_owner = LockOptions::builder(name.clone(), client.clone())
        .owner_id("")
        .build();
    // An id with a space would read as a prefix of another in the scripts ("job" of
    // "job 1"); control characters likewise.
    let spaced_owner = LockOptions::builder(name.clone(), client.clone())
        .owner_id("job 1")
        .build();
    let control_owner = LockOptions::builder(name.clone(), client.clone())
        .owner_id("job\n1")
        .build();
    for (options, expected) in [
        (zero_ttl, LockError::InvalidTtl(0)),
        (tiny_ttl, LockError::InvalidTtl(0)),
        (empty_owner, LockError::InvalidOwner),
        (spaced_owner, LockError::InvalidOwner),
        (control_owner, LockError::InvalidOwner),
    ] {
        let mutex = Mutex::new(options.clone());
        assert_eq!(
            lock_error(bounded(mutex.lock()).await.unwrap_err()),
            expected
        );
        assert_eq!(
            lock_error(bounded(mutex.try_lock()).await.unwrap_err()),
            expected
        );
        assert_eq!(
            lock_error(
                bounded(mutex.try_lock_for(Duration::from_secs(1)))
                    .await
                    .unwrap_err()
            ),
            expected
        );
        assert_eq!(
            lock_error(bounded(mutex.try_lock_with_retries(3)).await.unwrap_err()),
            expected
        );
        let rwlock = RwLock::new(options);
        assert_eq!(
            lock_error(bounded(rwlock.read()).await.unwrap_err()),
            expected
        );
        assert_eq!(
            lock_error(bounded(rwlock.try_write()).await.unwrap_err()),
            expected
        );
    }
    // Nothing reached Redis: no key of this lock exists.
    assert_eq!(redis.cli(&["KEYS", &format!("*{name}*")]), "");
}

#[tokio::test]
async fn lock_and_release_report_their_states() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let mutex = Mutex::new(options(&name, client(&redis).await));
    let guard = bounded(mutex.lock()).await.unwrap();
    assert_eq!(guard.get_state().await, LockGuardState::Acquired);
    assert_eq!(guard.get_on_attempt(), 0);
    bounded(guard.extend()).await.unwrap();
    assert_eq!(
        bounded(guard.release()).await.unwrap(),
        LockGuardState::Released
    );
    let again = bounded(mutex.try_lock()).await.unwrap();
    assert_eq!(again.get_on_attempt(), 0);
}

#[tokio::test]
async fn every_acquisition_style_reports_its_own_error_when_held() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let holder = Mutex::new(options(&name, client(&redis).await));
    let contender = Mutex::new(
        LockOptions::builder(name.clone(), client(&redis).await)
            .max_wait(Duration::from_millis(200))
            .retry_interval(Duration::from_millis(20))
            .build(),
    );
    let _guard = bounded(holder.lock()).await.unwrap();
    assert!(matches!(
        lock_error(bounded(contender.try_lock()).await.unwrap_err()),
        LockError::AcquireFail
    ));
    match lock_error(
        bounded(contender.try_lock_for(Duration::from_millis(150)))
            .await
            .unwrap_err(),
    ) {
        LockError::Timeout { waited, .. } => {
            assert!(waited >= Duration::from_millis(150), "{waited:?}");
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    match lock_error(
        bounded(contender.try_lock_for(Duration::ZERO))
            .await
            .unwrap_err(),
    ) {
        LockError::Timeout { .. } => {}
        other => panic!("a zero timeout is one attempt then Timeout, got {other:?}"),
    }
    assert!(matches!(
        lock_error(
            bounded(contender.try_lock_with_retries(3))
                .await
                .unwrap_err()
        ),
        LockError::RetriesExhausted { retries: 3, .. }
    ));
    assert!(matches!(
        lock_error(
            bounded(contender.try_lock_with_retries(0))
                .await
                .unwrap_err()
        ),
        LockError::RetriesExhausted { retries: 0, .. }
    ));
    match lock_error(bounded(contender.lock()).await.unwrap_err()) {
        LockError::Timeout { waited, .. } => assert!(waited >= Duration::from_millis(200)),
        other => panic!("lock() with max_wait must time out, got {other:?}"),
    }
}

#[tokio::test]
async fn second_lock_waits_until_first_is_released() {
    let redis = TestRedis::start();
    let name = fresh_key();
    // The first poll comes 30 s or more after the waiter starts (60 s, jittered by half),
    // and every await is bounded by 20 s: only the release notification can serve it.
    let slow_poll = |client| {
        LockOptions::builder(name.clone(), client)
            .retry_interval(Duration::from_secs(60))
            .build()
    };
    let first = Mutex::new(slow_poll(client(&redis).await));
    let second = Mutex::new(slow_poll(client(&redis).await));
    let guard = bounded(first.lock()).await.unwrap();
    let waiter = tokio::spawn(async move {
        let guard = second.lock().await.unwrap();
        (guard.get_on_attempt(), guard.fencing_token())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "the second lock must wait");
    let first_token = guard.fencing_token();
    assert_eq!(
        bounded(guard.release()).await.unwrap(),
        LockGuardState::Released
    );
    let (attempt, token) = bounded(waiter).await.unwrap();
    assert!(attempt >= 1, "the waiter acquired on a later attempt");
    assert!(token > first_token, "fencing tokens increase");
}

#[tokio::test]
async fn fencing_tokens_strictly_increase_across_lock_objects() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let a = Mutex::new(options(&name, client(&redis).await));
    let b = Mutex::new(options(&name, client(&redis).await));
    let mut last = 0;
    for round in 0..10 {
        let mutex = if round % 2 == 0 { &a } else { &b };
        let guard = bounded(mutex.lock()).await.unwrap();
        assert!(
            guard.fencing_token() > last,
            "{} after {last}",
            guard.fencing_token()
        );
        last = guard.fencing_token();
        bounded(guard.release()).await.unwrap();
    }
}

/// A token is max(last + 1, server clock in µs): with the stored token ahead of the clock (as
/// after a failover to a server whose clock is behind), each grant, by attempt or by
/// handover, counts up from it by one.
#[tokio::test]
async fn fencing_tokens_count_up_from_a_stored_token_ahead_of_the_clock() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let ahead: u64 = 9_000_000_000_000_000_000;
    let mutex_fence = format!("distkit-locks:{{{name}}}:fence");
    let rw_fence = format!("distkit-locks:{{{name}}}:rw:fence");
    for fence in [&mutex_fence, &rw_fence] {
        assert_eq!(redis.cli(&["SET", fence, &ahead.to_string()]), "OK");
    }
    let mutex = Mutex::new(options(&name, client(&redis).await));
    let rwlock = RwLock::new(options(&name, client(&redis).await));
    let first = bounded(mutex.lock()).await.unwrap();
    assert_eq!(first.fencing_token(), ahead + 1);
    // The next token comes by handover to a waiter.
    let waiter = Mutex::new(options(&name, client(&redis).await));
    let waiting = tokio::spawn(async move { bounded(waiter.lock()).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(200)).await;
    bounded(first.release()).await.unwrap();
    let handed = bounded(waiting).await.unwrap();
    assert_eq!(handed.fencing_token(), ahead + 2);
    bounded(handed.release()).await.unwrap();
    let writer = bounded(rwlock.write()).await.unwrap();
    assert_eq!(
        writer.fencing_token(),
        ahead + 1,
        "the rwlock has a fence of its own"
    );
    bounded(writer.release()).await.unwrap();
    assert_eq!(redis.cli(&["GET", &mutex_fence]), (ahead + 2).to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_exclusion_holds_across_eight_lock_objects_on_separate_clients() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let shared = Arc::new(AtomicU64::new(0));
    let holders = Arc::new(AtomicUsize::new(0));
    let tokens = Arc::new(AsyncMutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mutex = Mutex::new(
            LockOptions::builder(name.clone(), client(&redis).await)
                .retry_interval(Duration::from_millis(10))
                .build(),
        );
        let (shared, holders, tokens) = (
            Arc::clone(&shared),
            Arc::clone(&holders),
            Arc::clone(&tokens),
        );
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                let guard = bounded(mutex.lock()).await.unwrap();
                assert_eq!(
                    holders.fetch_add(1, Ordering::SeqCst),
                    0,
                    "two holders at once"
                );
                // A deliberately non-atomic read-modify-write.
                let value = shared.load(Ordering::SeqCst);
                tokio::task::yield_now().await;
                shared.store(value + 1, Ordering::SeqCst);
                tokens.lock().await.push(guard.fencing_token());
                holders.fetch_sub(1, Ordering::SeqCst);
                assert_eq!(
                    bounded(guard.release()).await.unwrap(),
                    LockGuardState::Released
                );
            }
        }));
    }
    for task in tasks {
        bounded(task).await.unwrap();
    }
    assert_eq!(shared.load(Ordering::SeqCst), 200, "lost updates");
    let tokens = tokens.lock().await;
    assert!(
        tokens.windows(2).all(|pair| pair[0] < pair[1]),
        "fencing tokens follow acquisition order"
    );
}

#[tokio::test]
async fn extend_renews_and_reports_a_lost_lease() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let mutex = Mutex::new(options(&name, client(&redis).await));
    let guard = bounded(mutex.lock()).await.unwrap();
    let key = format!("distkit-locks:{{{name}}}");
    assert_eq!(redis.cli(&["PEXPIRE", &key, "2000"]), "1");
    bounded(guard.extend()).await.unwrap();
    let ttl: i64 = redis.cli(&["PTTL", &key]).parse().unwrap();
    assert!(ttl > 4_000, "extend renews to a full ttl, got {ttl}");
    // Someone else's lock now: the guard must notice.
    assert_eq!(redis.cli(&["SET", &key, "intruder"]), "OK");
    assert!(matches!(
        lock_error(bounded(guard.extend()).await.unwrap_err()),
        LockError::NotOwner
    ));
    assert_eq!(guard.get_state().await, LockGuardState::Lost);
    assert_eq!(
        bounded(guard.release()).await.unwrap(),
        LockGuardState::Lost
    );
    assert_eq!(
        redis.cli(&["GET", &key]),
        "intruder",
        "release deletes only its own token"
    );
}

#[tokio::test]
async fn background_renewal_keeps_a_short_lease_alive() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let mutex = Mutex::new(
        LockOptions::builder(name.clone(), client(&redis).await)
            .ttl(Duration::from_millis(2_000))
            .build(),
    );
    let other = Mutex::new(options(&name, client(&redis).await));
    let guard = bounded(mutex.lock()).await.unwrap();
    // Three ttls: the lease lives only because it is renewed (every 667 ms; a renewal may be
    // up to 1.3 s late on a loaded machine before the guard rightly reports it lost).
    for _ in 0..14 {
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(guard.get_state().await, LockGuardState::Acquired);
        assert!(matches!(
            lock_error(bounded(other.try_lock()).await.unwrap_err()),
            LockError::AcquireFail
        ));
    }
    assert_eq!(
        bounded(guard.release()).await.unwrap(),
        LockGuardState::Released
    );
}

#[tokio::test]
async fn a_crashed_holders_lease_expires_after_its_ttl() {
    let redis = TestRedis::start();
    let name = fresh_key();
    // A holder that set its lease and died: nobody renews it.
    let key = format!("distkit-locks:{{{name}}}");
    assert_eq!(
        redis.cli(&["SET", &key, "crashed-holder", "PX", "400"]),
        "OK"
    );
    let mutex = Mutex::new(
        LockOptions::builder(name.clone(), client(&redis).await)
            .retry_interval(Duration::from_millis(20))
            .build(),
    );
    let started = Instant::now();
    let guard = bounded(mutex.lock()).await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "acquired before the lease ran out: {waited:?}"
    );
    assert!(guard.get_on_attempt() >= 1);
}

#[tokio::test]
async fn a_paused_redis_makes_the_holder_lost_and_its_stale_release_deletes_nothing() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let ttl = Duration::from_millis(600);
    let holder = Mutex::new(
        LockOptions::builder(name.clone(), client(&redis).await)
            .ttl(ttl)
            .build(),
    );
    let guard = bounded(holder.lock()).await.unwrap();
    redis.pause();
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let state = guard.get_state().await;
    redis.resume();
    assert_eq!(
        state,
        LockGuardState::Lost,
        "the holder must learn before anybody else can acquire"
    );
    let next = Mutex::new(
        LockOptions::builder(name.clone(), client(&redis).await)
            .ttl(Duration::from_secs(5))
            .build(),
    );
    let next_guard = bounded(next.lock()).await.unwrap();
    assert_eq!(next_guard.get_state().await, LockGuardState::Acquired);
    assert_ne!(
        guard.get_state().await,
        LockGuardState::Acquired,
        "never two guards reporting Acquired"
    );
    assert_eq!(
        bounded(guard.release()).await.unwrap(),
        LockGuardState::Lost
    );
    let third = Mutex::new(options(&name, client(&redis).await));
    assert!(
        matches!(
            lock_error(bounded(third.try_lock()).await.unwrap_err()),
            LockError::AcquireFail
        ),
        "the stale release deleted the next holder's lock"
    );
    assert!(next_guard.fencing_token() > 0);
}

#[tokio::test]
async fn dropping_a_guard_releases_the_lock_even_outside_a_runtime() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let mutex = Mutex::new(options(&name, client(&redis).await));
    let other = Mutex::new(options(&name, client(&redis).await));
    let guard = bounded(mutex.lock()).await.unwrap();
    drop(guard);
    eventually("the release on drop", || async {
        other.try_lock().await.map(drop).is_ok()
    })
    .await;

    let guard = bounded(mutex.lock()).await.unwrap();
    // Dropped on a plain thread, with no runtime context.
    std::thread::spawn(move || drop(guard)).join().unwrap();
    eventually("the release on drop outside a runtime", || async {
        other.try_lock().await.map(drop).is_ok()
    })
    .await;
}

#[tokio::test]
async fn cancelling_a_waiting_acquire_leaves_no_lock_behind() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let holder = Mutex::new(options(&name, client(&redis).await));
    let waiter = Mutex::new(options(&name, client(&redis).await));
    let guard = bounded(holder.lock()).await.unwrap();
    for _ in 0..5 {
        assert!(
            tokio::time::timeout(Duration::from_millis(60), waiter.lock())
                .await
                .is_err()
        );
    }
    bounded(guard.release()).await.unwrap();
    let third = Mutex::new(options(&name, client(&redis).await));
    // Cancelled mid-flight: an acquire may have landed; its cleanup must release it.
    for _ in 0..20 {
        let _ = tokio::time::timeout(Duration::from_micros(50), waiter.lock()).await;
    }
    eventually(
        "the lock to be free after cancelled acquisitions",
        || async { third.try_lock().await.map(drop).is_ok() },
    )
    .await;
}

#[tokio::test]
async fn an_explicit_owner_id_re_attaches_and_other_owners_are_refused() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let owned = |id: &str, client| {
        LockOptions::builder(name.clone(), client)
            .owner_id(id)
            .ttl(Duration::from_secs(5))
            .build()
    };
    let first = Mutex::new(owned("worker-1", client(&redis).await));
    let restarted = Mutex::new(owned("worker-1", client(&redis).await));
    let stranger = Mutex::new(owned("worker-2", client(&redis).await));
    let guard = bounded(first.lock()).await.unwrap();
    let reattached = bounded(restarted.try_lock()).await.unwrap();
    assert!(reattached.fencing_token() > guard.fencing_token());
    assert!(matches!(
        lock_error(bounded(stranger.try_lock()).await.unwrap_err()),
        LockError::AcquireFail
    ));
    std::mem::forget(guard);
    assert_eq!(
        bounded(reattached.release()).await.unwrap(),
        LockGuardState::Released
    );
    bounded(stranger.try_lock()).await.unwrap();
}

#[tokio::test]
async fn without_an_owner_id_the_lock_is_not_reentrant() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let mutex = Mutex::new(options(&name, client(&redis).await));
    let _guard = bounded(mutex.lock()).await.unwrap();
    assert!(matches!(
        lock_error(bounded(mutex.try_lock()).await.unwrap_err()),
        LockError::AcquireFail
    ));
}

#[tokio::test]
async fn a_zero_retry_interval_still_waits() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let holder = Mutex::new(options(&name, client(&redis).await));
    let spinner = Mutex::new(
        LockOptions::builder(name.clone(), client(&redis).await)
            .retry_interval(Duration::ZERO)
            .build(),
    );
    let guard = bounded(holder.lock()).await.unwrap();
    let waiting =
        tokio::spawn(async move { spinner.lock().await.map(|guard| guard.get_on_attempt()) });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished());
    bounded(guard.release()).await.unwrap();
    assert!(bounded(waiting).await.unwrap().unwrap() >= 1);
}

#[tokio::test]
async fn readers_share_and_writers_exclude() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let a = RwLock::new(options(&name, client(&redis).await));
    let b = RwLock::new(options(&name, client(&redis).await));
    let r1 = bounded(a.read()).await.unwrap();
    let r2 = bounded(b.read()).await.unwrap();
    let r3 = bounded(a.try_read()).await.unwrap();
    assert!(matches!(
        lock_error(bounded(b.try_write()).await.unwrap_err()),
        LockError::AcquireFail
    ));
    for guard in [r1, r2, r3] {
        assert_eq!(guard.get_state().await, LockGuardState::Acquired);
        assert_eq!(
            bounded(guard.release()).await.unwrap(),
            LockGuardState::Released
        );
    }
    let w = bounded(b.try_write()).await.unwrap();
    assert!(w.fencing_token() >= 1);
    assert!(matches!(
        lock_error(bounded(a.try_read()).await.unwrap_err()),
        LockError::AcquireFail
    ));
    assert!(matches!(
        lock_error(bounded(a.try_write()).await.unwrap_err()),
        LockError::AcquireFail
    ));
    match lock_error(
        bounded(a.try_read_for(Duration::from_millis(100)))
            .await
            .unwrap_err(),
    ) {
        LockError::Timeout { .. } => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        lock_error(bounded(a.try_write_with_retries(2)).await.unwrap_err()),
        LockError::RetriesExhausted { retries: 2, .. }
    ));
    let token = w.fencing_token();
    bounded(w.extend()).await.unwrap();
    assert_eq!(
        bounded(w.release()).await.unwrap(),
        LockGuardState::Released
    );
    let reader = bounded(a.try_read_with_retries(1)).await.unwrap();
    assert!(
        reader.fencing_token() >= token,
        "a reader's fencing token is at least the last writer's"
    );
    bounded(reader.extend()).await.unwrap();
    let writer = bounded(b.try_write_for(Duration::from_millis(100))).await;
    assert!(writer.is_err());
}

/// A writer's place in line refuses new readers (writer preference), so a writer whose
/// `try_write_with_retries` gave up must be out of line when the call returns, not some time
/// later. The library's background thread is kept busy meanwhile, so that a leave left to it
/// would come too late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_ran_out_of_retries_is_out_of_line_when_its_call_returns() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let a = RwLock::new(options(&name, client(&redis).await));
    let b = RwLock::new(options(&name, client(&redis).await));
    let reader = bounded(a.read()).await.unwrap();
    for round in 0..3 {
        let busy = distkit_core::task::spawn_background(async {
            std::thread::sleep(Duration::from_millis(400));
        });
        let gave_up = bounded(b.try_write_with_retries(1)).await.unwrap_err();
        assert!(
            matches!(
                lock_error(gave_up),
                LockError::RetriesExhausted { retries: 1 }
            ),
            "round {round}"
        );
        let second_reader = bounded(a.try_read()).await;
        assert!(
            second_reader.is_ok(),
            "round {round}: a new reader was refused after the writer gave up: {second_reader:?}"
        );
        bounded(second_reader.unwrap().release()).await.unwrap();
        drop(busy);
        tokio::time::sleep(Duration::from_millis(450)).await;
    }
    bounded(reader.release()).await.unwrap();
}

#[tokio::test]
async fn a_waiting_writer_blocks_new_readers_and_writers_are_served_in_arrival_order() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let reader_lock = RwLock::new(options(&name, client(&redis).await));
    let reader = bounded(reader_lock.read()).await.unwrap();
    let order = Arc::new(AsyncMutex::new(Vec::new()));
    let mut writers = Vec::new();
    for id in 0..3 {
        let rwlock = RwLock::new(
            LockOptions::builder(name.clone(), client(&redis).await)
                .retry_interval(Duration::from_millis(10))
                .build(),
        );
        let order = Arc::clone(&order);
        writers.push(tokio::spawn(async move {
            let guard = rwlock.write().await.unwrap();
            order.lock().await.push((id, guard.fencing_token()));
            tokio::time::sleep(Duration::from_millis(20)).await;
            guard.release().await.unwrap();
        }));
        // Let this writer take its place in the queue before the next one arrives.
        let queue = format!("distkit-locks:{{{name}}}:rw:queue");
        let queued = (id + 1).to_string();
        eventually("the writer to take its place in the queue", || async {
            redis.cli(&["ZCARD", &queue]) == queued
        })
        .await;
    }
    // Writer preference: a new reader cannot get in while writers wait.
    let late_reader = RwLock::new(options(&name, client(&redis).await));
    assert!(matches!(
        lock_error(bounded(late_reader.try_read()).await.unwrap_err()),
        LockError::AcquireFail
    ));
    bounded(reader.release()).await.unwrap();
    for writer in writers {
        bounded(writer).await.unwrap();
    }
    let order = order.lock().await;
    assert_eq!(
        order.iter().map(|&(id, _)| id).collect::<Vec<_>>(),
        vec![0, 1, 2],
        "arrival order"
    );
    assert!(order.windows(2).all(|pair| pair[0].1 < pair[1].1));
    bounded(late_reader.try_read()).await.unwrap();
}

#[tokio::test]
async fn a_cancelled_waiting_writer_stops_blocking_readers_at_once() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let a = RwLock::new(options(&name, client(&redis).await));
    let b = RwLock::new(options(&name, client(&redis).await));
    let reader = bounded(a.read()).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), b.write())
            .await
            .is_err()
    );
    eventually(
        "readers to be admitted after the writer gave up",
        || async { a.try_read().await.map(drop).is_ok() },
    )
    .await;
    // A writer whose attempt timed out leaves the queue as well.
    assert!(
        bounded(b.try_write_for(Duration::from_millis(100)))
            .await
            .is_err()
    );
    eventually(
        "readers to be admitted after the timed-out writer",
        || async { a.try_read().await.map(drop).is_ok() },
    )
    .await;
    drop(reader);
}

#[tokio::test]
async fn a_crashed_waiting_writer_stops_blocking_readers_within_its_heartbeat() {
    let redis = TestRedis::start();
    let name = fresh_key();
    // A writer that queued itself and died: its heartbeat is not renewed.
    let queue = format!("distkit-locks:{{{name}}}:rw:queue");
    let alive = format!("distkit-locks:{{{name}}}:rw:alive");
    let now_ms: i64 = redis
        .cli(&["TIME"])
        .lines()
        .next()
        .unwrap()
        .parse::<i64>()
        .unwrap()
        * 1000;
    assert_eq!(redis.cli(&["ZADD", &queue, "1", "dead-writer"]), "1");
    assert_eq!(
        redis.cli(&["ZADD", &alive, &(now_ms + 3_000).to_string(), "dead-writer"]),
        "1"
    );
    let rwlock = RwLock::new(
        LockOptions::builder(name.clone(), client(&redis).await)
            .retry_interval(Duration::from_millis(20))
            .build(),
    );
    assert!(matches!(
        lock_error(bounded(rwlock.try_read()).await.unwrap_err()),
        LockError::AcquireFail
    ));
    // Admitted once the dead writer's heartbeat lapses (a lapse that never came would hang
    // here until `bounded` fails the test).
    let guard = bounded(rwlock.read()).await.unwrap();
    drop(guard);
}

#[tokio::test]
async fn guards_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Mutex>();
    assert_send_sync::<RwLock>();
    assert_send_sync::<distkit::lock::MutexGuard>();
    assert_send_sync::<distkit::lock::RwLockReadGuard>();
    assert_send_sync::<distkit::lock::RwLockWriteGuard>();
    assert_send_sync::<LockOptions>();
}

#[tokio::test]
async fn mutex_waiters_are_served_first_come_first_served() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let holder = Mutex::new(options(&name, client(&redis).await));
    let guard = bounded(holder.lock()).await.unwrap();
    let order = Arc::new(AsyncMutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for id in 0..4 {
        // The first poll comes 30 s or more after the first attempts and every await is
        // bounded by 20 s: only the handover by name can serve the waiters.
        let mutex = Mutex::new(
            LockOptions::builder(name.clone(), client(&redis).await)
                .retry_interval(Duration::from_secs(60))
                .build(),
        );
        let order = Arc::clone(&order);
        waiters.push(tokio::spawn(async move {
            let guard = mutex.lock().await.unwrap();
            order.lock().await.push((id, guard.fencing_token()));
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(guard.release().await.unwrap(), LockGuardState::Released);
        }));
        // Let this waiter take its place before the next one arrives.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        bounded(guard.release()).await.unwrap(),
        LockGuardState::Released
    );
    for waiter in waiters {
        bounded(waiter).await.unwrap();
    }
    let order = order.lock().await;
    assert_eq!(
        order.iter().map(|&(id, _)| id).collect::<Vec<_>>(),
        vec![0, 1, 2, 3],
        "arrival order"
    );
    assert!(order.windows(2).all(|pair| pair[0].1 < pair[1].1));
}

#[test]
fn lock_objects_can_be_built_outside_a_runtime_and_used_inside_one() {
    let redis = TestRedis::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = runtime.block_on(async { client(&redis).await });
    let name = fresh_key();
    // Built on a plain thread, with no runtime context: nothing may panic.
    let (mutex, rwlock) = std::thread::spawn({
        move || {
            (
                Mutex::new(options(&name, client.clone())),
                RwLock::new(options(&name, client)),
            )
        }
    })
    .join()
    .unwrap();
    runtime.block_on(async {
        let guard = bounded(mutex.lock()).await.unwrap();
        assert_eq!(guard.get_state().await, LockGuardState::Acquired);
        assert_eq!(
            bounded(guard.release()).await.unwrap(),
            LockGuardState::Released
        );
        let reader = bounded(rwlock.read()).await.unwrap();
        assert_eq!(
            bounded(reader.release()).await.unwrap(),
            LockGuardState::Released
        );
    });
}

#[tokio::test]
async fn a_handover_reaches_only_the_waiter_of_the_released_lock() {
    let redis = TestRedis::start();
    let (first, second) = (fresh_key(), fresh_key());
    let holders = client(&redis).await;
    let first_guard = bounded(Mutex::new(options(&first, holders.clone())).lock())
        .await
        .unwrap();
    let second_guard = bounded(Mutex::new(options(&second, holders)).lock())
        .await
        .unwrap();
    // One client, one owner id, waiting on both locks: the announcement of a handover names
    // the lock, so the waiter of the other lock must not take it for its own. The first poll
    // comes 30 s or more after the first attempts and every await is bounded by 20 s: only
    // announcements can serve the waiters.
    let waiters = client(&redis).await;
    let waiting_on = |name: &distkit::DistkitRedisKey| {
        Mutex::new(
            LockOptions::builder(name.clone(), waiters.clone())
                .owner_id("worker-7")
                .retry_interval(Duration::from_secs(60))
                .build(),
        )
    };
    let (first_waiter, second_waiter) = (waiting_on(&first), waiting_on(&second));
    let first_task = tokio::spawn(async move { first_waiter.lock().await });
    let second_task = tokio::spawn(async move { second_waiter.lock().await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(
        bounded(first_guard.release()).await.unwrap(),
        LockGuardState::Released
    );
    let first_acquired = bounded(first_task).await.unwrap().unwrap();
    assert_eq!(first_acquired.get_state().await, LockGuardState::Acquired);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second_task.is_finished(), "the second lock is still held");
    bounded(second_guard.extend()).await.unwrap();

    assert_eq!(
        bounded(second_guard.release()).await.unwrap(),
        LockGuardState::Released
    );
    let second_acquired = bounded(second_task).await.unwrap().unwrap();
    assert!(second_acquired.fencing_token() > 1);
    for guard in [first_acquired, second_acquired] {
        assert_eq!(
            bounded(guard.release()).await.unwrap(),
            LockGuardState::Released
        );
    }
}

#[tokio::test]
async fn a_release_channel_nobody_waits_on_is_unsubscribed_after_a_while() {
    // PUBSUB NUMSUB counts the subscribers of one server: standalone only.
    let redis = TestRedis::start_standalone();
    let name = fresh_key();
    let client = client(&redis).await;
    let channel = format!("distkit-locks:{{{name}}}:rw:released");
    let subscribers = |redis: &TestRedis| {
        let reply = redis.cli(&["PUBSUB", "NUMSUB", &channel]);
        reply.lines().nth(1).unwrap_or_default().trim().to_owned()
    };
    let writer = RwLock::new(options(&name, client.clone()))
        .write()
        .await
        .unwrap();
    let reader = RwLock::new(
        LockOptions::builder(name.clone(), client)
            .retry_interval(Duration::from_secs(20))
            .build(),
    );
    // The lock object stays alive throughout: it holds the client's subscriber.
    let waiting = tokio::spawn({
        let reader = Arc::clone(&reader);
        async move { reader.try_read_for(Duration::from_secs(8)).await }
    });
    let redis_ref = &redis;
    eventually("the subscription", || async move {
        subscribers(redis_ref) == "1"
    })
    .await;
    assert_eq!(
        bounded(writer.release()).await.unwrap(),
        LockGuardState::Released
    );
    let read = bounded(waiting).await.unwrap().unwrap();
    bounded(read.release()).await.unwrap();
    // The subscription lingers (a lock waited on again soon needs no new SUBSCRIBE), then
    // goes: 10 s after the last waiter left, at the next sweep (every 2 s).
    assert_eq!(
        subscribers(&redis),
        "1",
        "lingers right after the last waiter"
    );
    let started = Instant::now();
    while subscribers(&redis) != "0" {
        assert!(
            started.elapsed() < Duration::from_secs(18),
            "still subscribed after 18 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(reader);
}

#[tokio::test]
async fn the_last_reader_to_leave_wakes_a_waiting_writer() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let readers = RwLock::new(options(&name, client(&redis).await));
    let first = bounded(readers.read()).await.unwrap();
    let second = bounded(readers.read()).await.unwrap();
    // The first poll comes 30 s or more after the first attempts and every await is bounded
    // by 20 s: only the announcement of the last reader leaving can serve the writer.
    let writer = RwLock::new(
        LockOptions::builder(name.clone(), client(&redis).await)
            .retry_interval(Duration::from_secs(60))
            .build(),
    );
    let waiting = tokio::spawn({
        let writer = Arc::clone(&writer);
        async move { writer.write().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        bounded(first.release()).await.unwrap(),
        LockGuardState::Released
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a reader still holds the lock");
    assert_eq!(
        bounded(second.release()).await.unwrap(),
        LockGuardState::Released
    );
    let written = bounded(waiting).await.unwrap().unwrap();
    assert_eq!(written.get_state().await, LockGuardState::Acquired);
    assert_eq!(
        bounded(written.release()).await.unwrap(),
        LockGuardState::Released
    );
}

/// The server's clock, in ms.
#[expect(
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    reason = "a test helper fails its test; a clock reading far from overflow"
)]
fn server_now_ms(redis: &TestRedis) -> i64 {
    let time = redis.cli(&["TIME"]);
    let mut parts = time.lines().map(|part| part.trim().parse::<i64>().unwrap());
    let (seconds, micros) = (parts.next().unwrap(), parts.next().unwrap());
    seconds * 1000 + micros / 1000
}

#[tokio::test]
async fn a_waiter_that_died_just_before_its_turn_blocks_the_mutex_only_for_its_heartbeat_window() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let holder = Mutex::new(options(&name, client(&redis).await));
    let guard = bounded(holder.lock()).await.unwrap();
    // A waiter that joined the line asking for a 30 s lease, with a 400 ms heartbeat window,
    // and died: it is still first in line, its last heartbeat still current.
    let owner = format!("distkit-locks:{{{name}}}");
    let expiry = server_now_ms(&redis) + 5_000;
    assert_eq!(
        redis.cli(&["RPUSH", &format!("{owner}:waitlist"), "ghost"]),
        "1"
    );
    assert_eq!(
        redis.cli(&[
            "HSET",
            &format!("{owner}:waiters"),
            "ghost",
            &format!("{expiry} 30000 400 "),
        ]),
        "1"
    );
    assert_eq!(
        bounded(guard.release()).await.unwrap(),
        LockGuardState::Released
    );
    // Handed to the dead waiter, but only provisionally.
    assert_eq!(redis.cli(&["GET", &owner]), "ghost");
    let lease: i64 = redis.cli(&["PTTL", &owner]).parse().unwrap();
    assert!(
        (1..=400).contains(&lease),
        "a provisional lease, not the 30 s asked for: {lease} ms"
    );
    // The next waiter gets the lock once that runs out (30 s would fail the bounded await).
    let next = Mutex::new(
        LockOptions::builder(name.clone(), client(&redis).await)
            .retry_interval(Duration::from_millis(20))
            .build(),
    );
    let guard = bounded(next.lock()).await.unwrap();
    assert_eq!(guard.get_state().await, LockGuardState::Acquired);
    assert_eq!(
        bounded(guard.release()).await.unwrap(),
        LockGuardState::Released
    );
}

#[tokio::test]
async fn a_handed_over_mutex_is_renewed_to_its_full_lease_while_held() {
    let redis = TestRedis::start();
    let name = fresh_key();
    // A 5 s lease; waiters' heartbeat window (and so a handover's provisional lease) 250 ms.
    let holder = Mutex::new(options(&name, client(&redis).await));
    let waiter = Mutex::new(options(&name, client(&redis).await));
    let guard = bounded(holder.lock()).await.unwrap();
    let waiting = tokio::spawn(async move {
        let guard = waiter.lock().await;
        (guard, waiter)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        bounded(guard.release()).await.unwrap(),
        LockGuardState::Released
    );
    let (handed, _waiter) = bounded(waiting).await.unwrap();
    let handed = handed.unwrap();
    // Held well past the provisional lease: the guard renewed it to the full 5 s.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(handed.get_state().await, LockGuardState::Acquired);
    let owner = format!("distkit-locks:{{{name}}}");
    let lease: i64 = redis.cli(&["PTTL", &owner]).parse().unwrap();
    assert!(lease > 3_000, "renewed to the full lease: {lease} ms left");
    assert_eq!(
        bounded(handed.release()).await.unwrap(),
        LockGuardState::Released
    );
}

#[tokio::test]
async fn a_waiter_handed_the_lock_after_a_long_wait_gets_a_guard_that_holds_it() {
    let redis = TestRedis::start();
    let name = fresh_key();
    // A 2 s lease and polls 30 s or more apart: the waiter's last refused attempt is older
    // than the lease when the handover comes, so the lease it can count on from there has
    // run out; lock() must confirm the handover rather than return a guard already `Lost`.
    let slow = |client| {
        LockOptions::builder(name.clone(), client)
            .ttl(Duration::from_secs(2))
            .retry_interval(Duration::from_secs(60))
            .build()
    };
    let holder = Mutex::new(slow(client(&redis).await));
    let waiter = Mutex::new(slow(client(&redis).await));
    let guard = bounded(holder.lock()).await.unwrap();
    let waiting = tokio::spawn(async move {
        let guard = waiter.lock().await.unwrap();
        let state = guard.get_state().await;
        (guard, state)
    });
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(guard.get_state().await, LockGuardState::Acquired);
    assert_eq!(
        bounded(guard.release()).await.unwrap(),
        LockGuardState::Released
    );
    let (handed, state) = bounded(waiting).await.unwrap();
    assert_eq!(
        state,
        LockGuardState::Acquired,
        "right when lock() returned"
    );
    assert_eq!(
        bounded(handed.release()).await.unwrap(),
        LockGuardState::Released
    );
}
