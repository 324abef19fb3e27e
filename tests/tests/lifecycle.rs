//! Lifecycles: every object keeps its promises across the runtimes that use it. Services
//! return from `main`, tests build a runtime per case, libraries bridge from `spawn_blocking`,
//! servers run several runtimes. Each test tries to break one promise: nothing acknowledged
//! is lost at exit, no lock is left held by a dropped guard, no caller hangs because another
//! caller's runtime idled or ended, and renewals and notifications outlive the runtime that
//! started them. The runtime zoo at the end mixes every kind of runtime on shared objects.
//!
//! `DISTKIT_LIFECYCLE_EXITS` (default 8) sets how many process exits each exit test makes;
//! `DISTKIT_ZOO_ROUNDS` (default 3) how many rounds the zoo runs; `DISTKIT_ZOO_SEED` replays
//! a zoo schedule.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failure fails the test"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{bounded, client, fresh_key, key};
use distkit::DistkitError;
use distkit::DistkitRedisKey;
use distkit::counter::{CounterOptions, CounterTrait, LaxCounter, StrictCounter};
use distkit::icounter::{
    InstanceAwareCounterTrait, LaxInstanceAwareCounter, LaxInstanceAwareCounterOptions,
    StrictInstanceAwareCounter, StrictInstanceAwareCounterOptions,
};
use distkit::lock::{LockGuardState, LockOptions, Mutex, RwLock};
use distkit::ratelimit::{GcraLimiter, GcraOptions, GcraRate, LaxGcraLimiter, LaxGcraOptions};
use distkit_test_support::TestRedis;

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Runs the `lifecycle_exit` service once in `mode` on `prefix` and waits for it to end.
fn run_service(redis: &TestRedis, mode: &str, prefix: &DistkitRedisKey) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lifecycle_exit"))
        .args([redis.url(), mode, prefix.as_str()])
        .output()
        .expect("run lifecycle_exit");
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains("done"),
        "lifecycle_exit {mode} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A runtime of one thread, as `#[tokio::main(flavor = "current_thread")]` builds.
fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A multi-thread runtime of two workers.
fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lax_increments_acknowledged_before_main_returns_are_in_redis_after_exit() {
    let redis = TestRedis::start();
    let reader = client(&redis).await;
    for _ in 0..env_count("DISTKIT_LIFECYCLE_EXITS", 8) {
        let prefix = fresh_key();
        tokio::task::block_in_place(|| run_service(&redis, "lax-counter", &prefix));
        let strict = StrictCounter::new(CounterOptions::new(prefix, reader.clone()));
        assert_eq!(
            bounded(strict.get(&key("k"))).await.unwrap(),
            3,
            "acknowledged increments were lost at exit"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lax_instance_aware_increments_are_in_redis_after_exit() {
    let redis = TestRedis::start();
    let reader = client(&redis).await;
    for _ in 0..env_count("DISTKIT_LIFECYCLE_EXITS", 8) {
        let prefix = fresh_key();
        tokio::task::block_in_place(|| run_service(&redis, "lax-icounter", &prefix));
        // Read at once: the exited instance's slice counts until its threshold passes.
        let strict = StrictInstanceAwareCounter::new(StrictInstanceAwareCounterOptions::new(
            prefix,
            reader.clone(),
        ));
        let (total, _mine) = bounded(strict.get(&key("k"))).await.unwrap();
        assert_eq!(total, 3, "acknowledged increments were lost at exit");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_a_lax_limiter_admitted_before_main_returns_are_charged_after_exit() {
    let redis = TestRedis::start();
    let reader = client(&redis).await;
    let rate = GcraRate::new(100, Duration::from_secs(3600), 100).unwrap();
    for _ in 0..env_count("DISTKIT_LIFECYCLE_EXITS", 8) {
        let prefix = fresh_key();
        tokio::task::block_in_place(|| run_service(&redis, "lax-gcra", &prefix));
        let strict = GcraLimiter::new(GcraOptions::new(prefix, reader.clone()));
        let decision = bounded(strict.check(&key("k"), &rate, 1)).await.unwrap();
        // 1 warmed in Redis + 4 in memory + this 1: at most 94 of 100 left (one unit comes
        // back every 36 s, far more than a run takes).
        assert!(
            decision.remaining() <= 94,
            "units admitted in memory were not charged at exit: {decision:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_dropped_as_main_returns_leaves_the_lock_free() {
    let redis = TestRedis::start();
    let contender = client(&redis).await;
    for _ in 0..env_count("DISTKIT_LIFECYCLE_EXITS", 8) {
        for mode in ["mutex-guard", "read-guard"] {
            let prefix = fresh_key();
            tokio::task::block_in_place(|| run_service(&redis, mode, &prefix));
            // The guards had a 30 s ttl: only a release frees the lock this soon.
            let options = LockOptions::new(prefix, contender.clone());
            if mode == "mutex-guard" {
                let guard = bounded(Mutex::new(options).try_lock()).await;
                assert!(guard.is_ok(), "{mode}: the lock was left held: {guard:?}");
            } else {
                let guard = bounded(RwLock::new(options).try_write()).await;
                assert!(guard.is_ok(), "{mode}: the lock was left held: {guard:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_lax_counter_in_a_multi_thread_runtime_delivers_before_the_drop_returns() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let connected = client(&redis).await;
    let strict = StrictCounter::new(CounterOptions::new(prefix.clone(), connected.clone()));
    let mut options = CounterOptions::new(prefix, connected);
    options.allowed_lag = Duration::from_secs(30);
    let lax = LaxCounter::new(options);
    bounded(lax.inc(&key("k"), 5)).await.unwrap();
    bounded(lax.inc(&key("k"), 6)).await.unwrap();
    drop(lax);
    // No wait: the drop returned after the delivery.
    assert_eq!(bounded(strict.get(&key("k"))).await.unwrap(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_delivers_everything_and_later_calls_are_refused() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let mut options = CounterOptions::new(prefix.clone(), client(&redis).await);
    options.allowed_lag = Duration::from_secs(30);
    let lax = LaxCounter::new(options);
    bounded(lax.inc(&key("k"), 7)).await.unwrap();
    bounded(lax.close()).await.unwrap();
    let strict = StrictCounter::new(CounterOptions::new(prefix, client(&redis).await));
    assert_eq!(bounded(strict.get(&key("k"))).await.unwrap(), 7);
    assert!(matches!(
        bounded(lax.inc(&key("k"), 1)).await,
        Err(DistkitError::Closed)
    ));
    assert!(matches!(
        bounded(lax.get(&key("k"))).await,
        Err(DistkitError::Closed)
    ));
    assert_eq!(bounded(strict.get(&key("k"))).await.unwrap(), 7);

    let icounter = LaxInstanceAwareCounter::new(
        LaxInstanceAwareCounterOptions::builder(fresh_key(), client(&redis).await)
            .allowed_lag(Duration::from_secs(30))
            .flush_interval(Duration::from_secs(30))
            .build(),
    );
    bounded(icounter.inc(&key("k"), 2)).await.unwrap();
    bounded(icounter.close()).await.unwrap();
    assert!(matches!(
        bounded(icounter.inc(&key("k"), 1)).await,
        Err(DistkitError::Closed)
    ));

    let limiter = LaxGcraLimiter::new(
        LaxGcraOptions::builder(fresh_key(), client(&redis).await)
            .sync_interval(Duration::from_secs(30))
            .build(),
    )
    .unwrap();
    let rate = GcraRate::per_second(10, 10).unwrap();
    bounded(limiter.check(&key("k"), &rate, 1)).await.unwrap();
    bounded(limiter.close()).await.unwrap();
    assert!(matches!(
        bounded(limiter.check(&key("k"), &rate, 1)).await,
        Err(DistkitError::Closed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_racing_with_close_are_delivered_or_refused_never_lost() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let mut options = CounterOptions::new(prefix.clone(), client(&redis).await);
    options.allowed_lag = Duration::from_secs(30);
    let lax = LaxCounter::new(options);
    bounded(lax.inc(&key("k"), 1)).await.unwrap();
    let acknowledged = Arc::new(AtomicI64::new(1));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (lax, acknowledged) = (Arc::clone(&lax), Arc::clone(&acknowledged));
        tasks.push(tokio::spawn(async move {
            for _ in 0..500 {
                match lax.inc(&key("k"), 1).await {
                    Ok(_) => {
                        acknowledged.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(DistkitError::Closed) => return,
                    Err(error) => panic!("{error}"),
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(2)).await;
    bounded(lax.close()).await.unwrap();
    for task in tasks {
        bounded(task).await.unwrap();
    }
    let strict = StrictCounter::new(CounterOptions::new(prefix, client(&redis).await));
    assert_eq!(
        bounded(strict.get(&key("k"))).await.unwrap(),
        acknowledged.load(Ordering::Relaxed),
        "an increment acknowledged around close() was lost or doubled"
    );
}

/// Group commit: queued callers of one runtime must not hang when the runtime of the caller
/// whose slot their group takes goes idle (a `block_on` that returned).
#[test]
fn queued_increments_are_sent_when_the_runtime_that_freed_the_slot_goes_idle() {
    let main = multi_thread_runtime();
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let counter = main.block_on(async {
        StrictCounter::new(CounterOptions::new(prefix.clone(), client(&redis).await))
    });
    let mut expected = 0_i64;
    for _round in 0..4 {
        let idle = current_thread_runtime();
        // Fill the slots from the current-thread runtime, and return from its block_on as
        // soon as its own calls are answered: it is never driven again.
        let started = Arc::new(tokio::sync::Barrier::new(2));
        let queued = {
            let (counter, started) = (Arc::clone(&counter), Arc::clone(&started));
            main.spawn(async move {
                started.wait().await;
                let mut calls = Vec::new();
                for _ in 0..64 {
                    let counter = Arc::clone(&counter);
                    calls.push(tokio::spawn(async move { counter.inc(&key("k"), 1).await }));
                }
                let mut answered = 0;
                for call in calls {
                    bounded(call).await.unwrap().unwrap();
                    answered += 1;
                }
                answered
            })
        };
        idle.block_on(async {
            let mut calls = Vec::new();
            for _ in 0..4 {
                let counter = Arc::clone(&counter);
                calls.push(tokio::spawn(async move { counter.inc(&key("k"), 1).await }));
            }
            started.wait().await;
            for call in calls {
                bounded(call).await.unwrap().unwrap();
            }
        });
        let answered = main.block_on(async { bounded(queued).await.unwrap() });
        expected += answered + 4;
        // The idle runtime is still alive here: only its thread stopped driving it.
        drop(idle);
    }
    let value = main.block_on(async { bounded(counter.get(&key("k"))).await.unwrap() });
    assert_eq!(value, expected);
}

/// Group commit: a runtime dropped with its calls in flight must give back its slots.
#[test]
fn a_runtime_dropped_mid_increment_never_leaves_the_counter_hanging() {
    let main = multi_thread_runtime();
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let counter = main.block_on(async {
        StrictCounter::new(CounterOptions::new(prefix.clone(), client(&redis).await))
    });
    for _round in 0..6 {
        let doomed = current_thread_runtime();
        doomed.block_on(async {
            for _ in 0..16 {
                let counter = Arc::clone(&counter);
                drop(tokio::spawn(async move { counter.inc(&key("k"), 1).await }));
            }
            // Let the calls reach the wire, then end the runtime under them.
            tokio::task::yield_now().await;
        });
        drop(doomed);
    }
    main.block_on(async {
        let mut calls = Vec::new();
        for _ in 0..32 {
            let counter = Arc::clone(&counter);
            calls.push(tokio::spawn(async move { counter.inc(&key("k"), 1).await }));
        }
        for call in calls {
            bounded(call).await.unwrap().unwrap();
        }
    });
}

/// Group commit: a multi-thread runtime sends the groups its calls freed; dropped while
/// groups are queued or in flight, it must neither strand the callers of another runtime nor
/// keep the slots.
#[test]
fn a_multi_thread_runtime_dropped_with_groups_queued_never_strands_other_callers() {
    let main = multi_thread_runtime();
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let counter = main.block_on(async {
        StrictCounter::new(CounterOptions::new(prefix.clone(), client(&redis).await))
    });
    for _round in 0..6 {
        let doomed = multi_thread_runtime();
        // Callers of the main runtime queue behind the doomed runtime's calls.
        let others: Vec<_> = (0..32)
            .map(|_| {
                let counter = Arc::clone(&counter);
                main.spawn(async move { counter.inc(&key("k"), 1).await })
            })
            .collect();
        doomed.block_on(async {
            for _ in 0..64 {
                let counter = Arc::clone(&counter);
                drop(tokio::spawn(async move { counter.inc(&key("k"), 1).await }));
            }
            tokio::task::yield_now().await;
        });
        drop(doomed);
        main.block_on(async {
            for other in others {
                // Answered (applied, or an unknown outcome for a group cut off in flight):
                // never left waiting.
                let _answer = bounded(other).await.unwrap();
            }
        });
    }
    main.block_on(async {
        let before = bounded(counter.get(&key("k"))).await.unwrap();
        let mut calls = Vec::new();
        for _ in 0..32 {
            let counter = Arc::clone(&counter);
            calls.push(tokio::spawn(async move { counter.inc(&key("k"), 1).await }));
        }
        for call in calls {
            bounded(call).await.unwrap().unwrap();
        }
        assert_eq!(bounded(counter.get(&key("k"))).await.unwrap(), before + 32);
    });
}

/// Replica acknowledgement: a batch `WAIT` whose task dies with a runtime must not leave every
/// later acknowledged write waiting for a task that is gone.
#[test]
fn acknowledged_writes_never_wait_for_a_batch_task_whose_runtime_ended() {
    let main = multi_thread_runtime();
    let topology = distkit_test_support::ReplicatedRedis::start(1);
    let primary = topology.primary_port();
    let replica = topology.replica_ports()[0];
    // The replica follows the primary through a proxy that slows its stream, so every WAIT
    // lasts at least 100 ms: long enough to end a runtime under it.
    let proxy = distkit_test_support::Proxy::start(primary);
    topology.cli(
        replica,
        &["REPLICAOF", "127.0.0.1", &proxy.port().to_string()],
    );
    let linked = Instant::now();
    loop {
        let info = topology.cli(replica, &["INFO", "replication"]);
        if info.contains("master_link_status:up")
            && info.contains(&format!("master_port:{}", proxy.port()))
        {
            break;
        }
        assert!(
            linked.elapsed() < Duration::from_secs(20),
            "the replica never linked"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    proxy.delay(
        distkit_test_support::Direction::Downstream,
        Duration::from_millis(100),
    );
    let counter = main.block_on(async {
        let client = bounded(distkit::connect(&topology.primary_url()))
            .await
            .unwrap();
        let mut options = CounterOptions::new(fresh_key(), client);
        options.replica_acks = Some(distkit::ReplicaAcks::new(1, Duration::from_millis(500)));
        StrictCounter::new(options)
    });
    for _round in 0..4 {
        let doomed = current_thread_runtime();
        doomed.block_on(async {
            for task in 0..16 {
                let counter = Arc::clone(&counter);
                drop(tokio::spawn(async move {
                    counter.inc(&key(&format!("k{task}")), 1).await
                }));
            }
            // A WAIT blocks the connection: the first write's own WAIT ends after ~100 ms,
            // then the others are answered and their batch WAIT is under way (~100-200 ms):
            // end the runtime in its middle.
            tokio::time::sleep(Duration::from_millis(150)).await;
        });
        drop(doomed);
    }
    main.block_on(async {
        let mut writes = Vec::new();
        for task in 0..16 {
            let counter = Arc::clone(&counter);
            writes.push(tokio::spawn(async move {
                counter.inc(&key(&format!("k{task}")), 1).await
            }));
        }
        for write in writes {
            // Acknowledged or not durable, but answered.
            let answered = bounded(write).await.unwrap();
            assert!(
                answered.is_ok()
                    || matches!(
                        answered,
                        Err(DistkitError::CounterError(
                            distkit::counter::CounterError::NotReplicated { .. }
                        ))
                    ),
                "{answered:?}"
            );
        }
    });
}

/// Renewals and release notifications started by a runtime that ended keep serving guards
/// and waiters of another runtime.
#[test]
fn renewals_and_notifications_outlive_the_runtime_that_started_them() {
    let main = multi_thread_runtime();
    let redis = TestRedis::start();
    let connected = main.block_on(client(&redis));
    let options = |key: DistkitRedisKey| {
        LockOptions::builder(key, connected.clone())
            .ttl(Duration::from_millis(900))
            // Polling alone would wake a waiter only after 10 s.
            .retry_interval(Duration::from_secs(10))
            .build()
    };
    let first = current_thread_runtime();
    let (first_lock, held_lock) = (fresh_key(), fresh_key());
    // The first runtime is the first to acquire (starting the renewal scheduler) and the
    // first to wait (connecting the notification subscriber).
    let first_mutex = Mutex::new(options(first_lock.clone()));
    first.block_on(async {
        let holder = bounded(first_mutex.lock()).await.unwrap();
        let waiter = {
            let mutex = Mutex::new(options(first_lock.clone()));
            tokio::spawn(async move { mutex.lock().await.map(|guard| guard.fencing_token()) })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        bounded(holder.release()).await.unwrap();
        bounded(waiter).await.unwrap().unwrap();
    });
    let held = Mutex::new(options(held_lock.clone()));
    let guard = main.block_on(async { bounded(held.lock()).await.unwrap() });
    drop(first);
    main.block_on(async {
        // Three ttls: only renewals keep it.
        tokio::time::sleep(Duration::from_millis(2_700)).await;
        assert_eq!(guard.get_state().await, LockGuardState::Acquired);
        let contender = Mutex::new(options(held_lock.clone()));
        assert!(
            bounded(contender.try_lock()).await.is_err(),
            "the lease expired: renewals died with the first runtime"
        );
        // A waiter is woken by the release's notification, far sooner than its poll.
        let waiter = tokio::spawn(async move {
            let started = Instant::now();
            let guard = contender.lock().await.unwrap();
            (started.elapsed(), guard.fencing_token())
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        bounded(guard.release()).await.unwrap();
        let (waited, _token) = bounded(waiter).await.unwrap();
        assert!(
            waited < Duration::from_secs(5),
            "the waiter was not notified (waited {waited:?})"
        );
    });
}

/// What one driver of the zoo does, and how.
#[derive(Clone, Copy, Debug)]
enum Driver {
    /// A multi-thread runtime of its own, dropped at the end.
    MultiThread,
    /// A current-thread runtime whose `block_on` returns and which is left idle.
    IdleCurrentThread,
    /// A current-thread runtime dropped with its calls in flight.
    DroppedCurrentThread,
    /// `spawn_blocking` on the main runtime, then `Handle::block_on`.
    BlockingBridge,
    /// A new runtime for every call.
    RuntimePerCall,
}

const DRIVERS: [Driver; 5] = [
    Driver::MultiThread,
    Driver::IdleCurrentThread,
    Driver::DroppedCurrentThread,
    Driver::BlockingBridge,
    Driver::RuntimePerCall,
];

/// The shared objects of the zoo and what their callers were told.
struct Zoo {
    strict: Arc<StrictCounter>,
    lax: Arc<LaxCounter>,
    mutex_options: LockOptions,
    holders: AtomicUsize,
    overlaps: AtomicUsize,
    strict_acknowledged: AtomicI64,
    strict_unknown: AtomicI64,
    lax_acknowledged: AtomicI64,
    lax_unknown: AtomicI64,
    lost_guards: AtomicUsize,
}

/// One operation of the zoo, picked by `choice`.
async fn zoo_operation(zoo: &Zoo, choice: u64) {
    match choice % 3 {
        0 => match zoo.strict.inc(&key("k"), 1).await {
            Ok(_) => {
                zoo.strict_acknowledged.fetch_add(1, Ordering::SeqCst);
            }
            Err(_) => {
                zoo.strict_unknown.fetch_add(1, Ordering::SeqCst);
            }
        },
        1 => match zoo.lax.inc(&key("k"), 1).await {
            Ok(_) => {
                zoo.lax_acknowledged.fetch_add(1, Ordering::SeqCst);
            }
            Err(_) => {
                zoo.lax_unknown.fetch_add(1, Ordering::SeqCst);
            }
        },
        _ => {
            let mutex = Mutex::new(zoo.mutex_options.clone());
            if let Ok(guard) = mutex.try_lock_for(Duration::from_millis(300)).await {
                // Declared after the guard: dropped first, even when the call is cut off.
                let held = Held::new(zoo);
                tokio::time::sleep(Duration::from_millis(choice % 5)).await;
                if guard.get_state().await != LockGuardState::Acquired {
                    zoo.lost_guards.fetch_add(1, Ordering::SeqCst);
                }
                drop(held);
                // Half released, half dropped.
                if choice.is_multiple_of(2) {
                    let _ = guard.release().await;
                } else {
                    drop(guard);
                }
            }
        }
    }
}

/// A guard believed held: counts the holders, and an overlap when there was one already.
struct Held<'a>(&'a Zoo);

impl<'a> Held<'a> {
    fn new(zoo: &'a Zoo) -> Self {
        if zoo.holders.fetch_add(1, Ordering::SeqCst) != 0 {
            zoo.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        Self(zoo)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.holders.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts a zoo counter call that may have been cut off before it answered.
struct Pending<'a> {
    zoo: &'a Zoo,
    choice: u64,
    answered: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        match self.choice % 3 {
            0 => self.zoo.strict_unknown.fetch_add(1, Ordering::SeqCst),
            1 => self.zoo.lax_unknown.fetch_add(1, Ordering::SeqCst),
            _ => 0,
        };
    }
}

async fn counted_operation(zoo: Arc<Zoo>, choice: u64) {
    let mut pending = Pending {
        zoo: &zoo,
        choice,
        answered: false,
    };
    zoo_operation(&zoo, choice).await;
    pending.answered = true;
}

/// A seeded xorshift for the zoo's schedule.
struct Schedule(u64);

impl Schedule {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

#[test]
fn the_runtime_zoo_loses_nothing_and_never_hangs() {
    let seed = std::env::var("DISTKIT_ZOO_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            u64::from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .subsec_nanos(),
            ) | 1
        });
    println!(
        "runtime zoo seed {seed} (replay: DISTKIT_ZOO_SEED={seed} cargo test -p distkit-tests --test lifecycle the_runtime_zoo)"
    );
    let mut schedule = Schedule(seed | 1);
    let main = multi_thread_runtime();
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let connected = main.block_on(client(&redis));
    let mut lax_options = CounterOptions::new(prefix.clone(), connected.clone());
    lax_options.allowed_lag = Duration::from_millis(50);
    let zoo = Arc::new(Zoo {
        strict: StrictCounter::new(CounterOptions::new(
            DistkitRedisKey::try_from(format!("{prefix}-strict")).unwrap(),
            connected.clone(),
        )),
        lax: LaxCounter::new(lax_options),
        mutex_options: LockOptions::builder(fresh_key(), connected)
            .ttl(Duration::from_millis(600))
            .retry_interval(Duration::from_millis(50))
            .build(),
        holders: AtomicUsize::new(0),
        overlaps: AtomicUsize::new(0),
        strict_acknowledged: AtomicI64::new(0),
        strict_unknown: AtomicI64::new(0),
        lax_acknowledged: AtomicI64::new(0),
        lax_unknown: AtomicI64::new(0),
        lost_guards: AtomicUsize::new(0),
    });
    let mut idle_runtimes = Vec::new();
    let started = Instant::now();
    for _round in 0..env_count("DISTKIT_ZOO_ROUNDS", 3) {
        let mut threads = Vec::new();
        for _driver in 0..6 {
            let driver = DRIVERS[(schedule.next() % 5) as usize];
            let choices: Vec<u64> = (0..8).map(|_| schedule.next()).collect();
            let zoo = Arc::clone(&zoo);
            let handle = main.handle().clone();
            threads.push(std::thread::spawn(move || {
                let calls = move |zoo: &Arc<Zoo>| {
                    choices
                        .clone()
                        .into_iter()
                        .map(|choice| counted_operation(Arc::clone(zoo), choice))
                        .collect::<Vec<_>>()
                };
                match driver {
                    Driver::MultiThread => {
                        let runtime = multi_thread_runtime();
                        runtime.block_on(async {
                            let tasks: Vec<_> = calls(&zoo).into_iter().map(tokio::spawn).collect();
                            for task in tasks {
                                bounded(task).await.unwrap();
                            }
                        });
                        None
                    }
                    Driver::IdleCurrentThread => {
                        let runtime = current_thread_runtime();
                        runtime.block_on(async {
                            let tasks: Vec<_> = calls(&zoo).into_iter().map(tokio::spawn).collect();
                            for task in tasks {
                                bounded(task).await.unwrap();
                            }
                        });
                        Some(runtime)
                    }
                    Driver::DroppedCurrentThread => {
                        let runtime = current_thread_runtime();
                        runtime.block_on(async {
                            for call in calls(&zoo) {
                                drop(tokio::spawn(call));
                            }
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        });
                        drop(runtime);
                        None
                    }
                    Driver::BlockingBridge => {
                        let inner = handle.clone();
                        let zoo = Arc::clone(&zoo);
                        handle.block_on(async move {
                            bounded(tokio::task::spawn_blocking(move || {
                                for call in calls(&zoo) {
                                    inner.block_on(bounded(call));
                                }
                            }))
                            .await
                            .unwrap();
                        });
                        None
                    }
                    Driver::RuntimePerCall => {
                        for call in calls(&zoo) {
                            current_thread_runtime().block_on(bounded(call));
                        }
                        None
                    }
                }
            }));
        }
        for thread in threads {
            if let Some(runtime) = thread.join().expect("a zoo driver panicked (a call hung?)") {
                idle_runtimes.push(runtime);
            }
        }
    }
    main.block_on(async {
        bounded(zoo.lax.flush()).await.unwrap();
        let strict = bounded(zoo.strict.get(&key("k"))).await.unwrap();
        let (acked, unknown) = (
            zoo.strict_acknowledged.load(Ordering::SeqCst),
            zoo.strict_unknown.load(Ordering::SeqCst),
        );
        assert!(
            (acked..=acked + unknown).contains(&strict),
            "seed {seed}: strict value {strict} outside acknowledged {acked} + unknown {unknown}"
        );
        let lax = bounded(zoo.lax.get(&key("k"))).await.unwrap();
        let (acked, unknown) = (
            zoo.lax_acknowledged.load(Ordering::SeqCst),
            zoo.lax_unknown.load(Ordering::SeqCst),
        );
        assert!(
            (acked..=acked + unknown).contains(&lax),
            "seed {seed}: lax value {lax} outside acknowledged {acked} + unknown {unknown}"
        );
        assert_eq!(
            zoo.overlaps.load(Ordering::SeqCst),
            0,
            "seed {seed}: two holders"
        );
        assert_eq!(
            zoo.lost_guards.load(Ordering::SeqCst),
            0,
            "seed {seed}: a healthy guard was not Acquired"
        );
        // Every guard is gone: the lock is free (dropped guards released it).
        let mutex = Mutex::new(zoo.mutex_options.clone());
        let guard = bounded(mutex.try_lock_for(Duration::from_secs(2))).await;
        assert!(guard.is_ok(), "seed {seed}: the lock was left held");
    });
    drop(idle_runtimes);
    println!("runtime zoo: seed {seed}, {:?}", started.elapsed());
}
