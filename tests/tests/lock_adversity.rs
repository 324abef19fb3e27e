//! Locks under adversity: stalled waiters, cancelled re-attaching acquisitions, a stalled
//! Redis, options at the edges of their range.

mod common;

use std::sync::Arc;
use std::sync::mpsc;
use std::task::Poll;
use std::time::{Duration, Instant};

use common::{bounded, client, fresh_key};
use distkit::DistkitError;
use distkit::fred::clients::Client;
use distkit::lock::{LockError, LockGuardState, LockOptions, Mutex, RwLock};
use distkit_test_support::TestRedis;
use tokio::sync::Notify;

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

/// What the stalled waiter's thread reports.
#[derive(Debug)]
enum Stalled {
    /// Its runtime is blocked from now on, for 700 ms.
    Blocking,
    /// Its `lock()` returned: the guard's state right then, and its fencing token.
    Returned(Result<(LockGuardState, u64), String>),
}

/// Receives the stalled waiter's next report within `limit`, without blocking the runtime.
async fn next_report(
    reports: &Arc<std::sync::Mutex<mpsc::Receiver<Stalled>>>,
    limit: Duration,
) -> Option<Stalled> {
    let reports = Arc::clone(reports);
    bounded(tokio::task::spawn_blocking(move || {
        reports.lock().ok()?.recv_timeout(limit).ok()
    }))
    .await
    .ok()
    .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_stalled_across_its_handover_never_returns_a_guard_while_another_holds_the_lock() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let holder = Mutex::new(options(&name, client(&redis).await));
    let held = bounded(holder.lock()).await.unwrap();

    // The stalled waiter: its own thread, a current-thread runtime, its own client, so that
    // blocking the runtime stalls everything of it (its socket reads included), like a long
    // GC pause or a starved process.
    let (report, reports) = mpsc::channel();
    let reports = Arc::new(std::sync::Mutex::new(reports));
    let (block, finish) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let stalled_thread = {
        let (url, name) = (redis.url().to_owned(), name.clone());
        let (block, finish) = (Arc::clone(&block), Arc::clone(&finish));
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let client = bounded(distkit::connect(&url)).await.unwrap();
                let mutex = Mutex::new(options(&name, client));
                let stall = async {
                    block.notified().await;
                    let _ = report.send(Stalled::Blocking);
                    // Blocks the whole runtime on purpose.
                    std::thread::sleep(Duration::from_millis(700));
                    std::future::pending::<()>().await;
                };
                let acquired = tokio::select! {
                    acquired = mutex.lock() => acquired,
                    () = stall => unreachable!("the stall never ends by itself"),
                };
                let guard = match acquired {
                    Ok(guard) => guard,
                    Err(error) => {
                        let _ = report.send(Stalled::Returned(Err(error.to_string())));
                        return;
                    }
                };
                let state = guard.get_state().await;
                let _ = report.send(Stalled::Returned(Ok((state, guard.fencing_token()))));
                bounded(finish.notified()).await;
                drop(guard);
            });
        })
    };
    // Let the stalled waiter join the line first, then a second waiter behind it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let next = Mutex::new(
        LockOptions::builder(name.clone(), client(&redis).await)
            .ttl(Duration::from_secs(5))
            .retry_interval(Duration::from_millis(20))
            .build(),
    );
    let next_task = tokio::spawn(async move {
        let guard = next.lock().await;
        (guard, next)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Stall the first waiter, then hand it the lock: its provisional lease runs out during
    // the stall, and the second waiter takes the lock.
    block.notify_one();
    assert!(matches!(
        next_report(&reports, Duration::from_secs(5)).await,
        Some(Stalled::Blocking)
    ));
    assert_eq!(
        bounded(held.release()).await.unwrap(),
        LockGuardState::Released
    );
    let (next_guard, _next) = bounded(next_task).await.unwrap();
    let next_guard = next_guard.unwrap();
    assert_eq!(next_guard.get_state().await, LockGuardState::Acquired);

    // The stalled waiter wakes up with the old announcement in its socket: while the second
    // guard holds the lock it must keep waiting (or at least not report `Acquired`).
    if let Some(Stalled::Returned(returned)) =
        next_report(&reports, Duration::from_millis(1_500)).await
    {
        let (state, fencing_token) = returned.unwrap();
        assert_ne!(
            (state, next_guard.get_state().await),
            (LockGuardState::Acquired, LockGuardState::Acquired),
            "two guards report Acquired (stale fencing token {fencing_token}, holder's {})",
            next_guard.fencing_token()
        );
    } else {
        // Still waiting, as it should: it gets the lock once the holder releases it.
        assert_eq!(
            bounded(next_guard.release()).await.unwrap(),
            LockGuardState::Released
        );
        match next_report(&reports, Duration::from_secs(10)).await {
            Some(Stalled::Returned(Ok((state, _)))) => {
                assert_eq!(state, LockGuardState::Acquired);
            }
            other => panic!("the stalled waiter did not get the released lock: {other:?}"),
        }
    }
    finish.notify_one();
    bounded(tokio::task::spawn_blocking(move || stalled_thread.join()))
        .await
        .unwrap()
        .unwrap();
}

fn owned(name: &distkit::DistkitRedisKey, id: &str, client: Client) -> LockOptions {
    // Polls a minute apart: only announcements serve these waiters within the test, and the
    // provisional lease of a handover to them is the whole 5 s ttl.
    LockOptions::builder(name.clone(), client)
        .owner_id(id)
        .ttl(Duration::from_secs(5))
        .retry_interval(Duration::from_secs(60))
        .build()
}

#[tokio::test]
async fn a_cancelled_acquire_never_passes_on_a_lock_its_owner_id_holds() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let holder = Mutex::new(options(&name, client(&redis).await));
    let held = bounded(holder.lock()).await.unwrap();
    // Two waiters with the same owner id on two clients: one place in line, whose inbox is
    // the one of the later waiter; the earlier one only polls (a minute apart).
    let earlier = Mutex::new(owned(&name, "worker", client(&redis).await));
    let earlier_task = tokio::spawn(async move { earlier.lock().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = Mutex::new(owned(&name, "worker", client(&redis).await));
    let later_task = tokio::spawn(async move { later.lock().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let behind = Mutex::new(
        LockOptions::builder(name.clone(), client(&redis).await)
            .retry_interval(Duration::from_millis(20))
            .build(),
    );
    let behind_task = tokio::spawn(async move { behind.lock().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        bounded(held.release()).await.unwrap(),
        LockGuardState::Released
    );
    let handed = bounded(later_task).await.unwrap().unwrap();
    assert_eq!(handed.get_state().await, LockGuardState::Acquired);
    // The earlier waiter gives up: its queue cleanup must not pass the lock, held by its
    // owner id, to the waiter behind.
    earlier_task.abort();
    assert!(bounded(earlier_task).await.is_err(), "it was still waiting");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !(behind_task.is_finished() && handed.get_state().await == LockGuardState::Acquired),
        "the lock was passed on while its holder reports Acquired"
    );
    assert_eq!(
        bounded(handed.release()).await.unwrap(),
        LockGuardState::Released
    );
    let behind = bounded(behind_task).await.unwrap().unwrap();
    assert_eq!(behind.get_state().await, LockGuardState::Acquired);
}

#[tokio::test]
async fn a_re_attach_never_returns_a_fencing_token_older_than_the_latest() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let holder = Mutex::new(options(&name, client(&redis).await));
    let held = bounded(holder.lock()).await.unwrap();
    let waiter = Mutex::new(owned(&name, "worker", client(&redis).await));
    let waiting = tokio::spawn(async move { waiter.lock().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        bounded(held.release()).await.unwrap(),
        LockGuardState::Released
    );
    let handed = bounded(waiting).await.unwrap().unwrap();
    assert_eq!(
        bounded(handed.release()).await.unwrap(),
        LockGuardState::Released
    );
    // Within the old handover's lease: the same owner id acquires afresh, then re-attaches.
    let fresh = bounded(Mutex::new(owned(&name, "worker", client(&redis).await)).try_lock())
        .await
        .unwrap();
    let reattached = bounded(Mutex::new(owned(&name, "worker", client(&redis).await)).try_lock())
        .await
        .unwrap();
    assert!(
        reattached.fencing_token() >= fresh.fencing_token(),
        "re-attached with {} after {}",
        reattached.fencing_token(),
        fresh.fencing_token()
    );
    std::mem::forget(fresh);
    assert_eq!(
        bounded(reattached.release()).await.unwrap(),
        LockGuardState::Released
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_acquisitions_time_out_within_their_bound_while_redis_is_stopped() {
    // SIGSTOP needs a private server.
    let redis = TestRedis::start_standalone();
    let (mutex_name, rw_name) = (fresh_key(), fresh_key());
    let client = client(&redis).await;
    let bound = Duration::from_secs(2);
    let mutex = Mutex::new(options(&mutex_name, client.clone()));
    let waiting = Mutex::new(
        LockOptions::builder(mutex_name.clone(), client.clone())
            .ttl(Duration::from_secs(5))
            .max_wait(bound)
            .build(),
    );
    let rwlock = RwLock::new(options(&rw_name, client.clone()));

    redis.pause();
    let started = Instant::now();
    let (for_lock, max_wait, for_read, for_write) = bounded(async {
        tokio::join!(
            mutex.try_lock_for(bound),
            waiting.lock(),
            rwlock.try_read_for(bound),
            rwlock.try_write_for(bound),
        )
    })
    .await;
    let elapsed = started.elapsed();
    redis.resume();

    for outcome in [for_lock.map(drop), max_wait.map(drop)]
        .into_iter()
        .chain([for_read.map(drop), for_write.map(drop)])
    {
        match lock_error(outcome.unwrap_err()) {
            LockError::Timeout { waited, .. } => assert!(waited >= bound, "waited {waited:?}"),
            other => panic!("expected Timeout, got {other:?}"),
        }
    }
    // The promise is the bound plus a small margin, whatever Redis does (the command
    // timeout of the client is 10 s); the margin here allows for a loaded machine.
    assert!(
        elapsed < bound.saturating_add(Duration::from_millis(1_500)),
        "bounded acquisitions took {elapsed:?} for a bound of {bound:?}"
    );
    // Once Redis answers again, whatever the cut-off attempts took is released.
    let other = client_for(&redis).await;
    let (mutex, rwlock) = (
        Mutex::new(options(&mutex_name, other.clone())),
        RwLock::new(options(&rw_name, other)),
    );
    common::eventually("the cut-off mutex attempts to be cleaned up", || async {
        mutex.try_lock().await.map(drop).is_ok()
    })
    .await;
    common::eventually("the cut-off rwlock attempts to be cleaned up", || async {
        rwlock.try_write().await.map(drop).is_ok()
    })
    .await;
}

async fn client_for(redis: &TestRedis) -> Client {
    client(redis).await
}

#[tokio::test]
async fn durations_out_of_range_fail_every_acquire_of_both_locks_with_a_lock_error() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let name = fresh_key();
    let built = |ttl: Duration, retry_interval: Duration| {
        LockOptions::builder(name.clone(), client.clone())
            .ttl(ttl)
            .retry_interval(retry_interval)
            .build()
    };
    let retry = Duration::from_millis(50);
    let one_ms_more = Duration::from_millis(1);
    for (options, expected) in [
        (built(Duration::MAX, retry), LockError::InvalidTtl(i64::MAX)),
        (
            built(LockOptions::MAX_TTL.saturating_add(one_ms_more), retry),
            LockError::InvalidTtl(2_592_000_001),
        ),
        (
            built(Duration::from_secs(5), Duration::MAX),
            LockError::InvalidRetryInterval(i64::MAX),
        ),
        (
            built(
                Duration::from_secs(5),
                LockOptions::MAX_RETRY_INTERVAL.saturating_add(one_ms_more),
            ),
            LockError::InvalidRetryInterval(3_600_001),
        ),
    ] {
        assert_eq!(lock_error(options.validate().unwrap_err()), expected);
        let mutex = Mutex::new(options.clone());
        let rwlock = RwLock::new(options);
        let bound = Duration::from_secs(1);
        let outcomes = [
            bounded(mutex.lock()).await.map(drop),
            bounded(mutex.try_lock()).await.map(drop),
            bounded(mutex.try_lock_for(bound)).await.map(drop),
            bounded(mutex.try_lock_with_retries(2)).await.map(drop),
            bounded(rwlock.read()).await.map(drop),
            bounded(rwlock.try_read_for(bound)).await.map(drop),
            bounded(rwlock.write()).await.map(drop),
            bounded(rwlock.try_write_with_retries(2)).await.map(drop),
        ];
        for outcome in outcomes {
            assert_eq!(lock_error(outcome.unwrap_err()), expected);
        }
    }
    // Nothing reached Redis.
    assert_eq!(redis.cli(&["KEYS", &format!("*{name}*")]), "");
}

#[tokio::test]
async fn durations_at_the_ends_of_their_range_work_for_both_locks() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let name = fresh_key();
    let longest = LockOptions::builder(name.clone(), client.clone())
        .ttl(LockOptions::MAX_TTL)
        .retry_interval(LockOptions::MAX_RETRY_INTERVAL)
        .build();
    longest.validate().unwrap();
    let mutex = Mutex::new(longest.clone());
    let guard = bounded(mutex.try_lock()).await.unwrap();
    // A waiter polling once an hour is bounded by its timeout all the same.
    let other = Mutex::new(longest.clone());
    assert!(matches!(
        lock_error(
            bounded(other.try_lock_for(Duration::from_millis(200)))
                .await
                .unwrap_err()
        ),
        LockError::Timeout { .. }
    ));
    assert_eq!(
        bounded(guard.release()).await.unwrap(),
        LockGuardState::Released
    );
    let rwlock = RwLock::new(longest);
    let writer = bounded(rwlock.try_write()).await.unwrap();
    assert!(matches!(
        lock_error(
            bounded(rwlock.try_read_for(Duration::from_millis(200)))
                .await
                .unwrap_err()
        ),
        LockError::Timeout { .. }
    ));
    assert_eq!(
        bounded(writer.release()).await.unwrap(),
        LockGuardState::Released
    );
    let reader = bounded(rwlock.try_read()).await.unwrap();
    bounded(reader.extend()).await.unwrap();
    assert_eq!(
        bounded(reader.release()).await.unwrap(),
        LockGuardState::Released
    );
    let shortest = LockOptions::builder(name, client)
        .ttl(LockOptions::MIN_TTL)
        .retry_interval(Duration::ZERO)
        .build();
    shortest.validate().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn braces_in_a_namespace_keep_each_lock_in_one_slot_of_a_cluster() {
    let cluster = TestRedis::start_cluster();
    let client = client(&cluster).await;
    for namespace in ["team{}locks", "a{x}", "{"] {
        let namespace = common::key(namespace);
        for _ in 0..3 {
            let options = LockOptions::builder(fresh_key(), client.clone())
                .namespace(namespace.clone())
                .ttl(Duration::from_secs(5))
                .build();
            let mutex = Mutex::new(options.clone());
            let guard = bounded(mutex.try_lock()).await.unwrap();
            assert_eq!(
                bounded(guard.release()).await.unwrap(),
                LockGuardState::Released
            );
            let rwlock = RwLock::new(options);
            let writer = bounded(rwlock.write()).await.unwrap();
            assert_eq!(
                bounded(writer.release()).await.unwrap(),
                LockGuardState::Released
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_explicit_owner_acquire_leaves_the_lock_to_its_id_as_documented_for_both_locks() {
    // SIGSTOP needs a private server.
    let redis = TestRedis::start_standalone();
    let (mutex_name, rw_name) = (fresh_key(), fresh_key());
    let with_id = |name: &distkit::DistkitRedisKey, id: &str, client: Client| {
        LockOptions::builder(name.clone(), client)
            .owner_id(id)
            .ttl(Duration::from_secs(5))
            .build()
    };
    let client = client(&redis).await;
    let mutex = Mutex::new(with_id(&mutex_name, "worker", client.clone()));
    let rwlock = RwLock::new(with_id(&rw_name, "worker", client.clone()));
    // Scripts loaded first, so that the attempts below are single EVALSHA calls.
    bounded(bounded(mutex.try_lock()).await.unwrap().release())
        .await
        .unwrap();
    bounded(bounded(rwlock.try_write()).await.unwrap().release())
        .await
        .unwrap();
    // Attempts sent while Redis is stopped are cut off by the bound, and land once it goes on.
    redis.pause();
    let bound = Duration::from_millis(300);
    let (for_lock, for_write) =
        bounded(async { tokio::join!(mutex.try_lock_for(bound), rwlock.try_write_for(bound)) })
            .await;
    redis.resume();
    for outcome in [for_lock.map(drop), for_write.map(drop)] {
        assert!(matches!(
            lock_error(outcome.unwrap_err()),
            LockError::Timeout { .. }
        ));
    }
    let other = client_for(&redis).await;
    let stranger_mutex = Mutex::new(with_id(&mutex_name, "stranger", other.clone()));
    let stranger_rwlock = RwLock::new(with_id(&rw_name, "stranger", other.clone()));
    // The leftovers stay held by the id (up to a ttl) ...
    common::eventually("the cut-off attempts to land", || async {
        redis.cli(&["EXISTS", &format!("distkit-locks:{{{mutex_name}}}")]) == "1"
            && redis.cli(&["EXISTS", &format!("distkit-locks:{{{rw_name}}}:rw:writer")]) == "1"
    })
    .await;
    assert!(matches!(
        lock_error(bounded(stranger_mutex.try_lock()).await.unwrap_err()),
        LockError::AcquireFail
    ));
    assert!(matches!(
        lock_error(bounded(stranger_rwlock.try_write()).await.unwrap_err()),
        LockError::AcquireFail
    ));
    // ... and the next acquisition with the id re-attaches to them.
    let mutex_guard = bounded(Mutex::new(with_id(&mutex_name, "worker", other.clone())).try_lock())
        .await
        .unwrap();
    let write_guard = bounded(RwLock::new(with_id(&rw_name, "worker", other)).try_write())
        .await
        .unwrap();
    assert_eq!(
        bounded(mutex_guard.release()).await.unwrap(),
        LockGuardState::Released
    );
    assert_eq!(
        bounded(write_guard.release()).await.unwrap(),
        LockGuardState::Released
    );
    bounded(stranger_mutex.try_lock()).await.unwrap();
    bounded(stranger_rwlock.try_write()).await.unwrap();
}

/// Counts the WARN events of the lock crate.
struct LockWarnings(Arc<std::sync::atomic::AtomicUsize>);

impl tracing::Subscriber for LockWarnings {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let metadata = event.metadata();
        if *metadata.level() == tracing::Level::WARN
            && metadata.target().starts_with("distkit::lock")
        {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn a_lost_lease_logs_one_warning_and_completes_lost() {
    let redis = TestRedis::start();
    let warnings = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let subscriber = LockWarnings(Arc::clone(&warnings));
    // Everything on this thread, so the scoped subscriber sees the renewals too.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let name = fresh_key();
            // Renewed every 500 ms (a ttl long enough that a loaded machine's late
            // renewals still keep it).
            let mutex = Mutex::new(
                LockOptions::builder(name.clone(), client(&redis).await)
                    .ttl(Duration::from_millis(1_500))
                    .build(),
            );
            let guard = bounded(mutex.lock()).await.unwrap();
            assert!(
                tokio::time::timeout(Duration::from_millis(1_600), guard.lost())
                    .await
                    .is_err(),
                "lost() completed while the lease is renewed"
            );
            assert_eq!(guard.get_state().await, LockGuardState::Acquired);
            // Someone else takes the key: every renewal from now on is refused.
            let owner = format!("distkit-locks:{{{name}}}");
            assert_eq!(redis.cli(&["SET", &owner, "thief", "PX", "10000"]), "OK");
            bounded(guard.lost()).await;
            assert_eq!(guard.get_state().await, LockGuardState::Lost);
            // Several refused renewals.
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(guard.get_state().await, LockGuardState::Lost);
            assert_eq!(
                bounded(guard.release()).await.unwrap(),
                LockGuardState::Lost
            );
        });
    });
    assert_eq!(
        warnings.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one warning for one lost lease"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_completes_when_redis_stalls_for_a_ttl_and_when_the_guard_is_read_or_written() {
    // SIGSTOP needs a private server.
    let redis = TestRedis::start_standalone();
    let ttl = Duration::from_millis(600);
    let build = |name: &distkit::DistkitRedisKey, client: Client| {
        LockOptions::builder(name.clone(), client).ttl(ttl).build()
    };
    let client = client(&redis).await;
    let mutex = Mutex::new(build(&fresh_key(), client.clone()));
    let rwlock = RwLock::new(build(&fresh_key(), client.clone()));
    let other = RwLock::new(build(&fresh_key(), client));
    let guard = bounded(mutex.lock()).await.unwrap();
    let reader = bounded(rwlock.read()).await.unwrap();
    let writer = bounded(other.write()).await.unwrap();
    redis.pause();
    // No renewal is confirmed: every guard learns it within its ttl, without Redis.
    let lost = bounded(async {
        tokio::join!(guard.lost(), reader.lost(), writer.lost());
        (
            guard.get_state().await,
            reader.get_state().await,
            writer.get_state().await,
        )
    })
    .await;
    redis.resume();
    assert_eq!(
        lost,
        (
            LockGuardState::Lost,
            LockGuardState::Lost,
            LockGuardState::Lost
        )
    );
}

#[tokio::test]
async fn a_newcomer_never_jumps_a_live_waiter_behind_more_than_a_hundred_dead_ones() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let holder = Mutex::new(options(&name, client(&redis).await));
    let held = bounded(holder.lock()).await.unwrap();
    // 250 waiters that died long ago stand first in line.
    let owner = format!("distkit-locks:{{{name}}}");
    let ghosts: Vec<String> = (0..250).map(|ghost| format!("ghost-{ghost}")).collect();
    let mut push = vec!["RPUSH".to_owned(), format!("{owner}:waitlist")];
    push.extend(ghosts.iter().cloned());
    let mut register = vec!["HSET".to_owned(), format!("{owner}:waiters")];
    for ghost in &ghosts {
        register.extend([ghost.clone(), "1 30000 250 ".to_owned()]);
    }
    for command in [push, register] {
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        assert_eq!(redis.cli(&args), "250");
    }
    // A live waiter behind them, polling a minute apart: only a handover serves it.
    let waiter = Mutex::new(
        LockOptions::builder(name.clone(), client(&redis).await)
            .ttl(Duration::from_secs(5))
            .retry_interval(Duration::from_secs(60))
            .build(),
    );
    let waiting = tokio::spawn(async move { waiter.lock().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        bounded(held.release()).await.unwrap(),
        LockGuardState::Released
    );
    // The release dropped a hundred of them; a newcomer must not take the lock past the
    // live waiter still behind the rest.
    let newcomer = Mutex::new(options(&name, client(&redis).await));
    assert!(matches!(
        lock_error(bounded(newcomer.try_lock()).await.unwrap_err()),
        LockError::AcquireFail
    ));
    let handed = bounded(waiting).await.unwrap().unwrap();
    assert_eq!(handed.get_state().await, LockGuardState::Acquired);
    assert_eq!(
        bounded(handed.release()).await.unwrap(),
        LockGuardState::Released
    );
}

#[tokio::test]
async fn a_release_cancelled_part_way_still_releases_the_lock() {
    // SCRIPT FLUSH on the one server: standalone only.
    let redis = TestRedis::start_standalone();
    let name = fresh_key();
    let long = |client| {
        LockOptions::builder(name.clone(), client)
            .ttl(Duration::from_secs(30))
            .build()
    };
    let mutex = Mutex::new(long(client(&redis).await));
    let other = Mutex::new(long(client(&redis).await));
    for _ in 0..3 {
        let guard = bounded(mutex.lock()).await.unwrap();
        // The release script is gone: the release needs `EVALSHA`, `NOSCRIPT`, then `EVAL`,
        // and is cancelled after its first step: polled once (which queues the `EVALSHA`; on
        // this current-thread runtime no reply can arrive during that poll), then dropped.
        // (A zero timeout would not do: its timer may fire only after a later poll, by which
        // time the release may have finished.)
        assert_eq!(redis.cli(&["SCRIPT", "FLUSH"]), "OK");
        let mut release = Box::pin(guard.release());
        let first_poll =
            std::future::poll_fn(|context| Poll::Ready(release.as_mut().poll(context))).await;
        assert!(first_poll.is_pending(), "the release finished in one poll");
        drop(release);
        // Not after the 30 s lease: at once, in the background.
        common::eventually("the cancelled release to take effect", || async {
            other.try_lock().await.map(drop).is_ok()
        })
        .await;
    }
}
