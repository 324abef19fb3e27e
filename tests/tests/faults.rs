//! The reliability suite: faults injected into a private Redis, and the invariants that
//! must survive them.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{bounded, client, fresh_key, key};
use distkit::counter::{CounterError, CounterOptions, CounterTrait, LaxCounter, StrictCounter};
use distkit::icounter::{
    InstanceAwareCounterTrait, LaxInstanceAwareCounter, LaxInstanceAwareCounterOptions,
    StrictInstanceAwareCounter, StrictInstanceAwareCounterOptions,
};
use distkit::lock::{LockGuardState, LockOptions, Mutex};
use distkit::{CounterComparator, DistkitError, DistkitRedisKey};
use distkit_test_support::TestRedis;
use tokio::sync::Mutex as AsyncMutex;

/// Cuts every client connection (commands and pub/sub) every `period` until stopped.
struct ConnectionKiller {
    stop: Arc<AtomicBool>,
    kills: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ConnectionKiller {
    fn start(redis: &TestRedis, period: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let kills = Arc::new(AtomicUsize::new(0));
        let port = redis.port().to_string();
        let thread = std::thread::spawn({
            let (stop, kills) = (Arc::clone(&stop), Arc::clone(&kills));
            move || {
                while !stop.load(Ordering::SeqCst) {
                    for kind in ["normal", "pubsub"] {
                        let output = distkit_test_support::cli_command()
                            .args(["-h", "127.0.0.1", "-p", &port])
                            .args(["CLIENT", "KILL", "TYPE", kind])
                            .stdin(Stdio::null())
                            .output();
                        if let Ok(output) = output {
                            let killed: usize = String::from_utf8_lossy(&output.stdout)
                                .trim()
                                .parse()
                                .unwrap_or(0);
                            kills.fetch_add(killed, Ordering::SeqCst);
                        }
                    }
                    std::thread::sleep(period);
                }
            }
        });
        Self {
            stop,
            kills,
            thread: Some(thread),
        }
    }

    /// Stops killing; returns how many connections were cut.
    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            assert!(thread.join().is_ok(), "the connection killer panicked");
        }
        self.kills.load(Ordering::SeqCst)
    }
}

fn is_outcome_unknown(error: &DistkitError) -> bool {
    matches!(
        error,
        DistkitError::CounterError(CounterError::OutcomeUnknown { .. })
    )
}

/// Increments every key by one, round after round, for at least 120 000 increments and 3 s,
/// while every client connection is cut every 3 ms; returns how many increments succeeded.
async fn increments_under_connection_kills<'k, F, Fut>(
    redis: &TestRedis,
    keys: &'k [DistkitRedisKey],
    inc: F,
) -> i64
where
    F: Fn(&'k DistkitRedisKey) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let killer = ConnectionKiller::start(redis, Duration::from_millis(3));
    let mut applied = 0_i64;
    let started = Instant::now();
    while applied < 120_000 || started.elapsed() < Duration::from_secs(3) {
        for k in keys {
            if bounded(inc(k)).await {
                applied = applied.saturating_add(1);
            }
        }
        if applied.checked_rem(2_000) == Some(0) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let kills = killer.stop();
    assert!(kills >= 3, "the fault was not injected ({kills} kills)");
    applied
}

/// Retries `flush` until it goes through (the client reconnects by itself).
async fn flush_until_ok<F, Fut>(mut flush: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), DistkitError>>,
{
    let started = Instant::now();
    while bounded(flush()).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "flush never recovered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_increments_under_connection_kills_are_never_applied_twice() {
    let redis = TestRedis::start_standalone();
    let prefix = fresh_key();
    let k = key("k");
    let (ok, unknown, other) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut counters = Vec::new();
    for _ in 0..4 {
        counters.push(StrictCounter::new(CounterOptions::new(
            prefix.clone(),
            client(&redis).await,
        )));
    }
    let killer = ConnectionKiller::start(&redis, Duration::from_millis(5));
    let mut tasks = Vec::new();
    for counter in counters {
        let (k, ok, unknown, other) = (
            k.clone(),
            Arc::clone(&ok),
            Arc::clone(&unknown),
            Arc::clone(&other),
        );
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(2) {
                match bounded(counter.inc(&k, 1)).await {
                    Ok(_) => ok.fetch_add(1, Ordering::SeqCst),
                    Err(error) if is_outcome_unknown(&error) => {
                        unknown.fetch_add(1, Ordering::SeqCst)
                    }
                    Err(_) => other.fetch_add(1, Ordering::SeqCst),
                };
            }
        }));
    }
    for task in tasks {
        bounded(task).await.unwrap();
    }
    let kills = killer.stop();
    let reader = StrictCounter::new(CounterOptions::new(prefix, client(&redis).await));
    let total = u64::try_from(bounded(reader.get(&k)).await.unwrap()).unwrap();
    let (ok, unknown) = (ok.load(Ordering::SeqCst), unknown.load(Ordering::SeqCst));
    assert!(kills >= 3, "the fault was not injected ({kills} kills)");
    assert!(ok > 0, "no call succeeded");
    assert!(
        total >= ok,
        "an acknowledged increment was lost: total {total} < ok {ok}"
    );
    assert!(
        total <= ok + unknown,
        "an increment was applied twice: total {total} > ok {ok} + unknown {unknown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_counter_survives_a_redis_kill_and_restart() {
    let mut redis = TestRedis::start_standalone();
    let prefix = fresh_key();
    let k = key("k");
    let counter = StrictCounter::new(CounterOptions::new(prefix.clone(), client(&redis).await));
    let stop = Arc::new(AtomicBool::new(false));
    let restarted = Arc::new(AtomicBool::new(false));
    // Calls started after the new server is up are the only ones that can land there for sure.
    let ok_after_restart = Arc::new(AtomicU64::new(0));
    let possibly_new = Arc::new(AtomicU64::new(0));
    let load = tokio::spawn({
        let (counter, k, stop, restarted) = (
            Arc::clone(&counter),
            k.clone(),
            Arc::clone(&stop),
            Arc::clone(&restarted),
        );
        let (ok_after_restart, possibly_new) =
            (Arc::clone(&ok_after_restart), Arc::clone(&possibly_new));
        async move {
            while !stop.load(Ordering::SeqCst) {
                let started_after = restarted.load(Ordering::SeqCst);
                match bounded(counter.inc(&k, 1)).await {
                    Ok(_) => {
                        if started_after {
                            ok_after_restart.fetch_add(1, Ordering::SeqCst);
                        }
                        possibly_new.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(error) if is_outcome_unknown(&error) => {
                        possibly_new.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Everything acknowledged so far lives in the server about to die.
    let before_kill = possibly_new.swap(0, Ordering::SeqCst);
    redis.restart();
    restarted.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::SeqCst);
    bounded(load).await.unwrap();
    assert!(before_kill > 0);
    let total = u64::try_from(bounded(counter.get(&k)).await.unwrap()).unwrap();
    let (sure, possible) = (
        ok_after_restart.load(Ordering::SeqCst),
        possibly_new.load(Ordering::SeqCst),
    );
    assert!(sure > 0, "the counter never worked again after the restart");
    assert!(
        total >= sure,
        "acknowledged increments were lost after the restart: {total} < {sure}"
    );
    assert!(
        total <= possible,
        "an increment was applied twice: {total} > {possible}"
    );
    let next = bounded(counter.inc(&k, 1)).await.unwrap();
    assert_eq!(u64::try_from(next).unwrap(), total + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lax_counter_totals_are_exact_under_connection_kills() {
    let redis = TestRedis::start_standalone();
    let prefix = fresh_key();
    let lax = LaxCounter::new(CounterOptions::new(prefix.clone(), client(&redis).await));
    let keys: Vec<DistkitRedisKey> = (0..8).map(|i| key(&format!("k{i}"))).collect();
    for k in &keys {
        bounded(lax.inc(k, 0)).await.unwrap();
    }
    let applied = increments_under_connection_kills(&redis, &keys, |k| {
        let lax = &lax;
        async move { lax.inc(k, 1).await.is_ok() }
    })
    .await;
    flush_until_ok(|| lax.flush()).await;
    let reader = StrictCounter::new(CounterOptions::new(prefix, client(&redis).await));
    let refs: Vec<&DistkitRedisKey> = keys.iter().collect();
    let total: i64 = bounded(reader.get_all(&refs))
        .await
        .unwrap()
        .iter()
        .map(|&(_, v)| v)
        .sum();
    assert_eq!(
        total, applied,
        "lax increments lost or doubled across connection kills"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lax_instance_counter_totals_are_exact_under_connection_kills() {
    let redis = TestRedis::start_standalone();
    let prefix = fresh_key();
    let lax = LaxInstanceAwareCounter::new(LaxInstanceAwareCounterOptions::new(
        prefix.clone(),
        client(&redis).await,
    ));
    let keys: Vec<DistkitRedisKey> = (0..8).map(|i| key(&format!("k{i}"))).collect();
    for k in &keys {
        bounded(lax.inc(k, 0)).await.unwrap();
    }
    let applied = increments_under_connection_kills(&redis, &keys, |k| {
        let lax = &lax;
        async move { lax.inc(k, 1).await.is_ok() }
    })
    .await;
    flush_until_ok(|| lax.flush()).await;
    let reader = StrictInstanceAwareCounter::new(StrictInstanceAwareCounterOptions::new(
        prefix,
        client(&redis).await,
    ));
    let refs: Vec<&DistkitRedisKey> = keys.iter().collect();
    let values = bounded(reader.get_all(&refs)).await.unwrap();
    let total: i64 = values.iter().map(|&(_, c, _)| c).sum();
    assert_eq!(
        total, applied,
        "lax instance increments lost or doubled across connection kills"
    );
    let own: i64 = bounded(lax.get_all_on_instance(&refs))
        .await
        .unwrap()
        .iter()
        .map(|&(_, i)| i)
        .sum();
    assert_eq!(
        own, applied,
        "the lax instance's slices do not match its increments"
    );
}

#[tokio::test]
async fn a_killed_lock_holder_process_is_replaced_within_ttl_and_a_poll() {
    let redis = TestRedis::start_standalone();
    let name = fresh_key();
    let ttl = Duration::from_millis(1_500);
    let mut child = Command::new(env!("CARGO_BIN_EXE_lock_holder"))
        .args([redis.url(), name.as_str(), &ttl.as_millis().to_string()])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("acquired"),
        "the holder did not acquire: {line:?}"
    );
    let retry_interval = Duration::from_millis(50);
    let contender = Mutex::new(
        LockOptions::builder(name.clone(), client(&redis).await)
            .ttl(ttl)
            .retry_interval(retry_interval)
            .build(),
    );
    // Alive, the holder keeps renewing its lease.
    tokio::time::sleep(ttl * 2).await;
    assert!(
        matches!(
            bounded(contender.try_lock()).await,
            Err(DistkitError::LockError(_))
        ),
        "the live holder lost its lock"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_at = Instant::now();
    let guard = bounded(contender.lock()).await.unwrap();
    let waited = killed_at.elapsed();
    // The lease was last renewed at most ttl/3 before the kill, so it lapses within ttl;
    // the waiter's next poll (at most 1.5 x retry_interval later) takes it. Scheduling slack
    // on a loaded machine is allowed for on top.
    let bound = ttl + retry_interval * 3 / 2 + Duration::from_millis(500);
    assert!(
        waited <= bound,
        "acquired {waited:?} after the kill, more than ttl + a poll ({bound:?})"
    );
    assert_eq!(guard.get_state().await, LockGuardState::Acquired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_exclusion_holds_for_five_thousand_acquisitions_on_four_clients() {
    let redis = TestRedis::start_standalone();
    let name = fresh_key();
    let clients = [
        client(&redis).await,
        client(&redis).await,
        client(&redis).await,
        client(&redis).await,
    ];
    let shared = Arc::new(AtomicU64::new(0));
    let order: Arc<AsyncMutex<Vec<u64>>> = Arc::new(AsyncMutex::new(Vec::with_capacity(5_000)));
    let mut tasks = Vec::new();
    for index in 0..16 {
        let options = LockOptions::builder(name.clone(), clients[index % 4].clone())
            .ttl(Duration::from_secs(10))
            .retry_interval(Duration::from_millis(20))
            .build();
        let mutex = Mutex::new(options);
        let (shared, order) = (Arc::clone(&shared), Arc::clone(&order));
        tasks.push(tokio::spawn(async move {
            for _ in 0..5_000 / 16 + usize::from(index < 5_000 % 16) {
                let guard = bounded(mutex.lock()).await.unwrap();
                // A deliberately non-atomic read-modify-write.
                let value = shared.load(Ordering::SeqCst);
                tokio::task::yield_now().await;
                shared.store(value + 1, Ordering::SeqCst);
                order.lock().await.push(guard.fencing_token());
                assert_eq!(
                    bounded(guard.release()).await.unwrap(),
                    LockGuardState::Released
                );
            }
        }));
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(shared.load(Ordering::SeqCst), 5_000, "lost updates");
    let order = order.lock().await;
    assert_eq!(order.len(), 5_000);
    assert!(
        order.windows(2).all(|pair| pair[0] < pair[1]),
        "fencing tokens must increase in acquisition order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_exclusion_holds_while_connections_and_subscriptions_are_cut() {
    let redis = TestRedis::start_standalone();
    let name = fresh_key();
    let clients = [client(&redis).await, client(&redis).await];
    let shared = Arc::new(AtomicU64::new(0));
    let entered = Arc::new(AtomicU64::new(0));
    let order: Arc<AsyncMutex<Vec<u64>>> = Arc::new(AsyncMutex::new(Vec::new()));
    let killing = Arc::new(AtomicBool::new(true));
    let mut tasks = Vec::new();
    for index in 0..8 {
        // A short lease: a holder whose release was cut off blocks the others for 1 s.
        let options = LockOptions::builder(name.clone(), clients[index % 2].clone())
            .ttl(Duration::from_secs(1))
            .retry_interval(Duration::from_millis(20))
            .build();
        let mutex = Mutex::new(options);
        let (shared, entered, order, killing) = (
            Arc::clone(&shared),
            Arc::clone(&entered),
            Arc::clone(&order),
            Arc::clone(&killing),
        );
        tasks.push(tokio::spawn(async move {
            let mut held = 0_u32;
            // Keep contending while connections are cut, then 20 more times each.
            while killing.load(Ordering::SeqCst) || held < 20 {
                // Cut-off acquisitions and releases fail with an error; both are retried
                // (a lost release expires with its lease).
                let Ok(guard) = bounded(mutex.lock()).await else {
                    continue;
                };
                entered.fetch_add(1, Ordering::SeqCst);
                // A deliberately non-atomic read-modify-write.
                let value = shared.load(Ordering::SeqCst);
                tokio::task::yield_now().await;
                shared.store(value + 1, Ordering::SeqCst);
                order.lock().await.push(guard.fencing_token());
                let _ = bounded(guard.release()).await;
                if !killing.load(Ordering::SeqCst) {
                    held += 1;
                }
            }
        }));
    }
    let killer = ConnectionKiller::start(&redis, Duration::from_millis(100));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let kills = killer.stop();
    killing.store(false, Ordering::SeqCst);
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .unwrap()
            .unwrap();
    }
    assert!(kills >= 3, "only {kills} connections were cut");
    assert_eq!(
        shared.load(Ordering::SeqCst),
        entered.load(Ordering::SeqCst),
        "lost updates: two holders overlapped"
    );
    let order = order.lock().await;
    assert!(
        order.windows(2).all(|pair| pair[0] < pair[1]),
        "fencing tokens must increase in acquisition order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_churn_under_load_keeps_the_total_equal_to_the_live_slices() {
    let redis = TestRedis::start_standalone();
    let prefix = fresh_key();
    let keys: Vec<DistkitRedisKey> = (0..4).map(|i| key(&format!("k{i}"))).collect();
    let mut instances: Vec<Arc<StrictInstanceAwareCounter>> = Vec::new();
    for _ in 0..4 {
        let mut options =
            StrictInstanceAwareCounterOptions::new(prefix.clone(), client(&redis).await);
        options.dead_instance_threshold = Duration::from_secs(60);
        instances.push(StrictInstanceAwareCounter::new(options));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (index, instance) in instances.iter().enumerate() {
        let (instance, keys, stop) = (Arc::clone(instance), keys.clone(), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut round = 0_usize;
            while !stop.load(Ordering::SeqCst) {
                let k = &keys[(index + round) % keys.len()];
                let delta = if round.is_multiple_of(3) { -2 } else { 3 };
                match round % 11 {
                    5 => drop(bounded(instance.set_on_instance(k, 4)).await.unwrap()),
                    7 => drop(
                        bounded(instance.inc_if(k, CounterComparator::Gt(0), -1))
                            .await
                            .unwrap(),
                    ),
                    _ => drop(bounded(instance.inc(k, delta)).await.unwrap()),
                }
                round += 1;
            }
        }));
    }
    // The churn: instances are judged dead (by a watcher with a 1 s threshold) and revive.
    let mut watcher_options =
        StrictInstanceAwareCounterOptions::new(prefix.clone(), client(&redis).await);
    watcher_options.dead_instance_threshold = Duration::from_secs(1);
    let watcher = StrictInstanceAwareCounter::new(watcher_options);
    let shards = CounterOptions::DEFAULT_SHARDS;
    let alive = common::ic_keys(&prefix, "alive", shards);
    let due = common::ic_keys(&prefix, "due", shards);
    for round in 0..20 {
        let victim = &instances[round % instances.len()];
        for (alive, due) in alive.iter().zip(&due) {
            redis.cli(&["ZADD", alive, "XX", "0", victim.instance_id()]);
            // The script's header asks whoever edits `alive` by hand to delete `due`.
            redis.cli(&["DEL", due]);
        }
        bounded(watcher.get(&keys[round % keys.len()]))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        bounded(task).await.unwrap();
    }
    // Every instance makes one more call (reviving if it was reaped), then the invariant.
    let mut slices = vec![0_i64; keys.len()];
    for instance in &instances {
        let refs: Vec<&DistkitRedisKey> = keys.iter().collect();
        for (index, (_, own)) in bounded(instance.get_all_on_instance(&refs))
            .await
            .unwrap()
            .into_iter()
            .enumerate()
        {
            slices[index] += own;
        }
    }
    for (index, k) in keys.iter().enumerate() {
        let (total, watcher_slice) = bounded(watcher.get(k)).await.unwrap();
        assert_eq!(watcher_slice, 0);
        assert_eq!(
            total, slices[index],
            "C of {k} is not the sum of the live slices"
        );
    }
}

#[tokio::test]
async fn bad_input_gives_documented_results_or_clear_errors_never_a_panic() {
    let redis = TestRedis::start_standalone();
    // Keys.
    for bad in ["", "a:b", &"x".repeat(256)] {
        assert!(
            matches!(
                DistkitRedisKey::try_from(bad),
                Err(DistkitError::InvalidRedisKey(_))
            ),
            "{bad:?}"
        );
    }
    let prefix = fresh_key();
    let counters: Vec<Arc<dyn CounterTrait + Send + Sync>> = vec![
        StrictCounter::new(CounterOptions::new(prefix.clone(), client(&redis).await)),
        LaxCounter::new(CounterOptions::new(prefix.clone(), client(&redis).await)),
    ];
    let extremes = [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
    for counter in &counters {
        let k = key("extreme");
        for &start in &extremes {
            for &count in &extremes {
                bounded(counter.set(&k, start)).await.unwrap();
                let expected = start.checked_add(count);
                match (bounded(counter.inc(&k, count)).await, expected) {
                    (Ok(value), Some(expected)) => assert_eq!(value, expected, "{start} + {count}"),
                    (Err(DistkitError::CounterError(CounterError::Overflow { .. })), None) => {
                        assert_eq!(
                            bounded(counter.get(&k)).await.unwrap(),
                            start,
                            "overflow changed {start}"
                        );
                    }
                    (other, expected) => {
                        panic!("{start} + {count}: {other:?}, expected {expected:?}")
                    }
                }
                bounded(counter.set(&k, start)).await.unwrap();
                let expected = start.checked_sub(count);
                match (bounded(counter.dec(&k, count)).await, expected) {
                    (Ok(value), Some(expected)) => assert_eq!(value, expected, "{start} - {count}"),
                    (Err(DistkitError::CounterError(CounterError::Overflow { .. })), None) => {}
                    (other, expected) => {
                        panic!("{start} - {count}: {other:?}, expected {expected:?}")
                    }
                }
            }
        }
        // Empty and huge batches.
        assert!(bounded(counter.inc_all(&[])).await.unwrap().is_empty());
        let many: Vec<DistkitRedisKey> = (0..20_000).map(|i| key(&format!("m{i}"))).collect();
        let updates: Vec<(&DistkitRedisKey, i64)> = many.iter().map(|k| (k, -1)).collect();
        assert_eq!(
            bounded(counter.set_all(&updates)).await.unwrap().len(),
            20_000
        );
    }
    let icounter = StrictInstanceAwareCounter::new(StrictInstanceAwareCounterOptions::new(
        fresh_key(),
        client(&redis).await,
    ));
    let k = key("extreme");
    for &count in &extremes {
        match bounded(icounter.set_on_instance(&k, count)).await {
            Ok((total, own)) => assert_eq!((total, own), (count, count)),
            Err(error) => panic!("set_on_instance({count}): {error:?}"),
        }
        for &delta in &extremes {
            let result = bounded(icounter.inc(&k, delta)).await;
            match (result, count.checked_add(delta)) {
                (Ok(pair), Some(expected)) => {
                    assert_eq!(pair, (expected, expected));
                    bounded(icounter.set_on_instance(&k, count)).await.unwrap();
                }
                (Err(DistkitError::CounterError(CounterError::Overflow { .. })), None) => {}
                (other, expected) => panic!("{count} + {delta}: {other:?}, expected {expected:?}"),
            }
        }
    }
    // Invalid lock options fail before any I/O.
    let mutex = Mutex::new(
        LockOptions::builder(fresh_key(), client(&redis).await)
            .ttl(Duration::ZERO)
            .build(),
    );
    assert!(matches!(
        bounded(mutex.try_lock()).await,
        Err(DistkitError::LockError(_))
    ));
}
