//! Failover and data loss: load on every primitive while Redis fails over again and again.
//!
//! Two topologies, started by `distkit-test-support`: a primary with two replicas watched by
//! three Sentinels (clients connect with `redis-sentinel://`; failovers alternate
//! `SENTINEL FAILOVER` and SIGKILL of the primary, which comes back empty as a replica), and a
//! Redis Cluster of three masters with one replica each (failovers by `CLUSTER FAILOVER` on
//! the replica of the master that serves the keys).
//!
//! # What is checked, against a model
//!
//! - **Strict counters**, one writer per key, one model per key: every acknowledged
//!   increment returns the new value, so the model knows the lowest and highest value the key
//!   may hold (`confirmed + 1 ..= confirmed + 1 + uncertain`, where `uncertain` counts calls
//!   since the last acknowledged one whose outcome is unknown or not durable). A value below
//!   that range means an acknowledged increment was lost; above it, one was applied twice.
//!   With replica acknowledgement on, losses must be 0; without, they are counted and
//!   printed. Doubles must be 0 either way.
//! - **Lax counters**: after the last flush the stored value must not exceed the
//!   acknowledged increments (no double); what is missing is printed (lost with a failover
//!   that dropped flushed writes the replicas had not copied).
//! - **Locks**: every holder records the interval in which it observed `Acquired` and its
//!   fencing token; overlapping intervals are counted and printed (a failover without replica
//!   acknowledgement can lose a grant) and must be 0 for the lock with replica
//!   acknowledgement and loss quarantine; fencing tokens must increase in the order the
//!   intervals start (0 violations).
//! - **Recovery**: per failover, the longest time without a successful strict call (a probe
//!   calls every 10 ms), printed, and bounded by [`RECOVERY_BOUND`].
//!
//! `DISTKIT_FAILOVERS` sets the number of failovers per topology (default
//! [`DEFAULT_FAILOVERS`]).

#![expect(
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "a test binary whose helpers check a model: a failed expect, index or overflow \
              is a failed test"
)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use common::bounded;
use distkit::counter::{CounterOptions, CounterTrait, LaxCounter, StrictCounter};
use distkit::fred::clients::Client;
use distkit::lock::{LockGuardState, LockOptions, Mutex};
use distkit::{ConnectOptions, DistkitError, DistkitRedisKey, ReplicaAcks};
use distkit_test_support::{Direction, Proxy, ReplicatedRedis, TestRedis, unique_prefix};

/// Failovers per topology in a default run.
const DEFAULT_FAILOVERS: usize = 10;
/// The longest a primitive may stay unavailable after a failover (the docs state it).
const RECOVERY_BOUND: Duration = Duration::from_secs(15);
/// How long the load runs after the last failover, so that everything recovers under load.
const SETTLE: Duration = Duration::from_secs(2);
/// Strict writers per mode (with and without replica acknowledgement).
const STRICT_WRITERS: usize = 3;
/// Lock holders (each on its own client) per lock.
const LOCK_HOLDERS: usize = 3;

fn failovers() -> usize {
    std::env::var("DISTKIT_FAILOVERS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(DEFAULT_FAILOVERS)
}

/// What the load saw.
#[derive(Debug, Default)]
struct Report {
    acked_strict_lost: i64,
    plain_strict_lost: i64,
    acked_strict_above: i64,
    plain_strict_above: i64,
    strict_calls: u64,
    strict_not_durable: u64,
    lax_acknowledged: i64,
    lax_stored: i64,
    lock_holds: usize,
    acked_lock_overlaps: usize,
    plain_lock_overlaps: usize,
    fencing_violations: usize,
    recoveries: Vec<Duration>,
}

/// A client that gives up on a command after 2 s, so the load never hangs on a dead primary.
#[expect(clippy::expect_used, reason = "a test helper fails its test")]
async fn impatient_client(url: &str) -> Client {
    bounded(
        ConnectOptions::new(url)
            .connect_timeout(Duration::from_secs(5))
            .command_timeout(Duration::from_secs(2))
            .connect(),
    )
    .await
    .expect("connect to the test topology")
}

/// The model of one strict key with one writer.
#[derive(Debug, Default)]
struct StrictModel {
    confirmed: i64,
    uncertain: i64,
    lost: i64,
    /// Values above the model's range: a write applied twice, or a switch to a primary whose
    /// data diverged from the one before (a split brain).
    above: i64,
}

impl StrictModel {
    /// An acknowledged increment returned `new`.
    fn acknowledged(&mut self, new: i64) {
        let lowest = self.confirmed + 1;
        let highest = lowest + self.uncertain;
        if new < lowest {
            self.lost += lowest - new;
        }
        if new > highest {
            self.above += new - highest;
        }
        self.confirmed = new;
        self.uncertain = 0;
    }

    /// The stored value after the run.
    fn finish(&mut self, stored: i64) {
        if stored < self.confirmed {
            self.lost += self.confirmed - stored;
        }
        if stored > self.confirmed + self.uncertain {
            self.above += stored - self.confirmed - self.uncertain;
        }
    }
}

/// Whether a failed strict write may have been applied.
fn may_have_applied(error: &DistkitError) -> bool {
    use distkit::counter::CounterError;
    matches!(
        error,
        DistkitError::CounterError(
            CounterError::OutcomeUnknown { .. } | CounterError::NotReplicated { .. }
        )
    )
}

/// One strict writer: increments its own key until `stop`, checking every answer against its
/// model; returns the model after the final read and the number of calls.
async fn strict_writer(
    url: String,
    prefix: DistkitRedisKey,
    key: DistkitRedisKey,
    acks: Option<ReplicaAcks>,
    stop: Arc<AtomicBool>,
    not_durable: Arc<StdMutex<u64>>,
) -> (StrictModel, u64) {
    let client = impatient_client(&url).await;
    let mut options = CounterOptions::new(prefix, client);
    options.replica_acks = acks;
    let counter = StrictCounter::new(options);
    let mut model = StrictModel::default();
    let mut calls = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        calls += 1;
        match bounded(counter.inc(&key, 1)).await {
            Ok(new) => model.acknowledged(new),
            Err(error) if may_have_applied(&error) => {
                if matches!(
                    error,
                    DistkitError::CounterError(
                        distkit::counter::CounterError::NotReplicated { .. }
                    )
                ) && let Ok(mut count) = not_durable.lock()
                {
                    *count += 1;
                }
                model.uncertain += 1;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let stored = read_until_it_answers(&*counter, &key).await;
    model.finish(stored);
    (model, calls)
}

/// Reads `key`, retrying while the topology recovers.
#[expect(clippy::panic, reason = "a test helper fails its test")]
async fn read_until_it_answers(
    counter: &(dyn CounterTrait + Send + Sync),
    key: &DistkitRedisKey,
) -> i64 {
    let started = Instant::now();
    loop {
        match bounded(counter.get(key)).await {
            Ok(value) => return value,
            Err(error) if started.elapsed() < RECOVERY_BOUND => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("no read succeeded within {RECOVERY_BOUND:?}: {error}"),
        }
    }
}

/// The lax writer: increments until `stop`, then flushes; returns (acknowledged, stored).
async fn lax_writer(
    url: String,
    prefix: DistkitRedisKey,
    key: DistkitRedisKey,
    stop: Arc<AtomicBool>,
) -> (i64, i64) {
    let client = impatient_client(&url).await;
    let counter = LaxCounter::new(CounterOptions::new(prefix, client));
    let mut acknowledged = 0_i64;
    while !stop.load(Ordering::Relaxed) {
        if bounded(counter.inc(&key, 1)).await.is_ok() {
            acknowledged += 1;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let started = Instant::now();
    // A flush that fails keeps its deltas; one that expired dropped them (counted as lost).
    while let Err(error) = bounded(counter.flush()).await {
        if matches!(
            error,
            DistkitError::CounterError(distkit::counter::CounterError::FlushExpired { .. })
        ) || started.elapsed() > RECOVERY_BOUND
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stored = read_until_it_answers(&*counter, &key).await;
    (acknowledged, stored)
}

/// One believed-held interval of a lock.
#[derive(Clone, Copy, Debug)]
struct Hold {
    from: Instant,
    to: Instant,
    token: u64,
}

/// One lock holder: acquires, observes its guard for a while, releases; until `stop`.
async fn lock_holder(
    url: String,
    lock_key: DistkitRedisKey,
    namespace: DistkitRedisKey,
    acks: Option<ReplicaAcks>,
    stop: Arc<AtomicBool>,
    holds: Arc<StdMutex<Vec<Hold>>>,
) {
    let client = impatient_client(&url).await;
    let mut builder = LockOptions::builder(lock_key, client)
        .namespace(namespace)
        .ttl(Duration::from_secs(2));
    if let Some(acks) = acks {
        builder = builder.replica_acks(acks).loss_quarantine(true);
    }
    let mutex = Mutex::new(builder.build());
    while !stop.load(Ordering::Relaxed) {
        let Ok(Ok(guard)) = tokio::time::timeout(
            Duration::from_secs(5),
            mutex.try_lock_for(Duration::from_secs(1)),
        )
        .await
        else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let token = guard.fencing_token();
        let mut first = None;
        let mut last = None;
        for _ in 0..8 {
            let seen = Instant::now();
            if guard.get_state().await != LockGuardState::Acquired {
                break;
            }
            first.get_or_insert(seen);
            last = Some(seen);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if let (Some(from), Some(to)) = (first, last)
            && let Ok(mut holds) = holds.lock()
        {
            holds.push(Hold { from, to, token });
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), guard.release()).await;
    }
}

/// Overlapping pairs of intervals, and fencing tokens out of order (by start).
fn check_holds(mut holds: Vec<Hold>) -> (usize, usize) {
    holds.sort_by_key(|hold| hold.from);
    let mut overlaps = 0;
    let mut violations = 0;
    for (index, hold) in holds.iter().enumerate() {
        for later in holds.iter().skip(index + 1) {
            if later.from > hold.to {
                break;
            }
            overlaps += 1;
        }
        if let Some(next) = holds.get(index + 1)
            && next.token <= hold.token
        {
            violations += 1;
        }
    }
    (overlaps, violations)
}

/// Runs the whole load against `url` while `fault` is called `failovers()` times on a
/// blocking thread (each call returns once the topology has recovered); returns the report.
///
/// Every key is in the cluster slot of `{prefix}`: the counters' prefix is `prefix`, the
/// locks' key is `prefix` too, in two namespaces.
async fn run_load<F>(url: String, prefix: String, replicas: usize, fault: F) -> Report
where
    F: FnMut(usize) + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let prefix = DistkitRedisKey::new_or_panic(prefix);
    let acks = Some(ReplicaAcks::new(replicas, Duration::from_secs(1)));
    let not_durable = Arc::new(StdMutex::new(0_u64));

    let mut strict = Vec::new();
    for writer in 0..STRICT_WRITERS * 2 {
        let acknowledged = writer < STRICT_WRITERS;
        strict.push((
            acknowledged,
            tokio::spawn(strict_writer(
                url.clone(),
                prefix.clone(),
                DistkitRedisKey::new_or_panic(format!("strict-{writer}")),
                if acknowledged { acks } else { None },
                stop.clone(),
                not_durable.clone(),
            )),
        ));
    }
    let lax = tokio::spawn(lax_writer(
        url.clone(),
        prefix.clone(),
        DistkitRedisKey::new_or_panic("lax".to_owned()),
        stop.clone(),
    ));
    let acked_holds = Arc::new(StdMutex::new(Vec::new()));
    let plain_holds = Arc::new(StdMutex::new(Vec::new()));
    let mut holders = Vec::new();
    for holder in 0..LOCK_HOLDERS * 2 {
        let acknowledged = holder < LOCK_HOLDERS;
        let namespace =
            DistkitRedisKey::new_or_panic(if acknowledged { "acked" } else { "plain" }.to_owned());
        holders.push(tokio::spawn(lock_holder(
            url.clone(),
            prefix.clone(),
            namespace,
            if acknowledged { acks } else { None },
            stop.clone(),
            if acknowledged {
                acked_holds.clone()
            } else {
                plain_holds.clone()
            },
        )));
    }

    // The probe: a strict read-write every 10 ms, timestamped when it succeeds.
    let successes = Arc::new(StdMutex::new(Vec::<Instant>::new()));
    let probe = {
        let url = url.clone();
        let prefix = prefix.clone();
        let stop = stop.clone();
        let successes = successes.clone();
        tokio::spawn(async move {
            let counter =
                StrictCounter::new(CounterOptions::new(prefix, impatient_client(&url).await));
            let key = DistkitRedisKey::new_or_panic("probe".to_owned());
            while !stop.load(Ordering::Relaxed) {
                if bounded(counter.inc(&key, 1)).await.is_ok()
                    && let Ok(mut successes) = successes.lock()
                {
                    successes.push(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    // Let the load start, then fail over again and again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let count = failovers();
    let faults = tokio::task::spawn_blocking(move || {
        let mut fault = fault;
        let mut windows = Vec::new();
        for round in 0..count {
            let started = Instant::now();
            fault(round);
            windows.push((started, Instant::now()));
            // Let every primitive work on the new primary before the next failover.
            std::thread::sleep(Duration::from_millis(500));
        }
        windows
    });
    let fault_windows = tokio::time::timeout(Duration::from_secs(600), faults)
        .await
        .expect("the failovers finish")
        .expect("the failover thread does not panic");
    tokio::time::sleep(SETTLE).await;
    stop.store(true, Ordering::Relaxed);

    let mut report = Report::default();
    for (acknowledged, writer) in strict {
        let (model, calls) = bounded(writer).await.expect("the strict writer finishes");
        if acknowledged {
            report.acked_strict_lost += model.lost;
            report.acked_strict_above += model.above;
        } else {
            report.plain_strict_lost += model.lost;
            report.plain_strict_above += model.above;
        }
        report.strict_calls += calls;
    }
    report.strict_not_durable = not_durable.lock().map_or(0, |count| *count);
    let (lax_acknowledged, lax_stored) = bounded(lax).await.expect("the lax writer finishes");
    report.lax_acknowledged = lax_acknowledged;
    report.lax_stored = lax_stored;
    for holder in holders {
        bounded(holder).await.expect("the lock holder finishes");
    }
    bounded(probe).await.expect("the probe finishes");
    let acked_holds = acked_holds
        .lock()
        .map(|holds| holds.clone())
        .unwrap_or_default();
    let plain_holds = plain_holds
        .lock()
        .map(|holds| holds.clone())
        .unwrap_or_default();
    report.lock_holds = acked_holds.len() + plain_holds.len();
    let (acked_overlaps, acked_violations) = check_holds(acked_holds);
    let (plain_overlaps, plain_violations) = check_holds(plain_holds);
    report.acked_lock_overlaps = acked_overlaps;
    report.plain_lock_overlaps = plain_overlaps;
    report.fencing_violations = acked_violations + plain_violations;
    let successes = successes.lock().map(|s| s.clone()).unwrap_or_default();
    // A failover's unavailability: the longest gap between two successful probe calls that
    // overlaps the failover (from the fault until the topology reported it had recovered).
    report.recoveries = fault_windows
        .iter()
        .map(|&(from, to)| {
            successes
                .windows(2)
                .filter(|pair| pair[1] >= from && pair[0] <= to)
                .map(|pair| pair[1] - pair[0])
                .max()
                .unwrap_or(Duration::MAX)
        })
        .collect();
    report
}

fn print_and_check(topology: &str, report: &Report) {
    println!(
        "{topology}: {} failovers; strict: {} calls, {} not durable, acknowledged lost with \
         replica acks {} / without {}, above the model (doubled or diverged) with replica acks {} / \
         without {}; lax: {} acknowledged, {} stored; locks: {} \
         holds, overlaps with replica acks {} / without {}, fencing violations {}; recovery \
         per failover (ms): {:?}",
        report.recoveries.len(),
        report.strict_calls,
        report.strict_not_durable,
        report.acked_strict_lost,
        report.plain_strict_lost,
        report.acked_strict_above,
        report.plain_strict_above,
        report.lax_acknowledged,
        report.lax_stored,
        report.lock_holds,
        report.acked_lock_overlaps,
        report.plain_lock_overlaps,
        report.fencing_violations,
        report
            .recoveries
            .iter()
            .map(Duration::as_millis)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        report.acked_strict_lost, 0,
        "{topology}: an increment the replicas acknowledged was lost"
    );
    assert_eq!(
        report.acked_strict_above, 0,
        "{topology}: an acknowledged strict key was applied twice or read from a diverged primary"
    );
    assert!(
        report.lax_stored <= report.lax_acknowledged,
        "{topology}: lax increments were applied twice ({} stored, {} acknowledged)",
        report.lax_stored,
        report.lax_acknowledged
    );
    assert_eq!(
        report.acked_lock_overlaps, 0,
        "{topology}: two holders of a lock with replica acknowledgement overlapped"
    );
    assert_eq!(
        report.fencing_violations, 0,
        "{topology}: fencing tokens went backwards"
    );
    for (round, recovery) in report.recoveries.iter().enumerate() {
        assert!(
            *recovery <= RECOVERY_BOUND,
            "{topology}: failover {round} took {recovery:?} to recover"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sentinel_failovers_lose_no_acknowledged_write_and_apply_none_twice() {
    let topology = tokio::task::spawn_blocking(|| ReplicatedRedis::start_with_sentinels(2, 3))
        .await
        .expect("the topology starts");
    let url = topology.sentinel_url();
    let topology = Arc::new(StdMutex::new(topology));
    let faulted = topology.clone();
    // Every replica must acknowledge: a forced failover promotes one replica while the old
    // primary, not yet demoted, goes on accepting writes that its other replica acknowledges.
    let report = run_load(url, unique_prefix(), 2, move |round| {
        let Ok(mut topology) = faulted.lock() else {
            return;
        };
        if round % 2 == 0 {
            topology.sentinel_failover();
        } else {
            topology.kill_primary();
        }
    })
    .await;
    print_and_check("sentinel", &report);
    drop(topology);
}

/// Runs the load on a cluster with one replica per master while `fault(cluster, tag, round)`
/// strikes the master of the load's keys (all in the slot of `tag`).
async fn run_load_on_a_cluster<F>(fault: F) -> Report
where
    F: Fn(&TestRedis, &str, usize) + Send + Sync + 'static,
{
    let cluster = tokio::task::spawn_blocking(TestRedis::start_cluster_with_replicas)
        .await
        .expect("the cluster starts");
    let url = cluster.url().to_owned();
    let prefix = unique_prefix();
    let tag = format!("{{{prefix}}}");
    let cluster = Arc::new(cluster);
    let faulted = cluster.clone();
    let report = run_load(url, prefix, 1, move |round| fault(&faulted, &tag, round)).await;
    drop(cluster);
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_failovers_lose_no_acknowledged_write_and_apply_none_twice() {
    let report = run_load_on_a_cluster(|cluster, tag, round| {
        cluster.cluster_failover_with(tag, round % 2 == 1);
    })
    .await;
    print_and_check("cluster", &report);
}

/// Resharding: the slot of every key moves between masters again and again, one key at a
/// time, while the load runs (no failover: the masters keep their data, so nothing may be
/// lost even without replica acknowledgement, and no lock may have two holders).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_resharding_loses_no_write_and_never_grants_a_lock_twice() {
    let report = run_load_on_a_cluster(|cluster, tag, _round| {
        cluster.migrate_slot(tag, Duration::from_millis(30));
    })
    .await;
    print_and_check("cluster resharding", &report);
    assert_eq!(
        report.plain_strict_lost, 0,
        "resharding lost acknowledged strict increments"
    );
    assert_eq!(
        report.plain_strict_above, 0,
        "resharding applied a strict increment twice"
    );
    assert_eq!(
        report.lax_stored, report.lax_acknowledged,
        "resharding lost lax increments"
    );
    assert_eq!(
        report.plain_lock_overlaps, 0,
        "resharding let two holders of a lock overlap"
    );
}

/// `CLIENT KILL TYPE normal` on the server of `url` (its replicas stay connected).
fn kill_normal_clients(url: &str) -> bool {
    distkit_test_support::cli_command()
        .args(["-u", url, "CLIENT", "KILL", "TYPE", "normal"])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Many tasks share one strict counter with replica acknowledgement, so their writes share
/// `WAIT`s. The replica replicates through a proxy that delays the stream (so writes are in
/// transit while earlier `WAIT`s are answered) and holds it at random moments; at the end it
/// holds it for good while the writers go on, cuts it (what was in transit is lost), kills
/// the primary and promotes the replica. Every acknowledged write must be on the promoted
/// replica: a `WAIT` shared by a write it did not follow would let one through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_that_share_a_wait_are_acknowledged_only_once_the_replica_has_them() {
    const TASKS: usize = 32;
    let seed = std::env::var("DISTKIT_FAILOVER_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |elapsed| {
                    u64::try_from(elapsed.as_nanos() % u128::from(u64::MAX)).unwrap_or(1)
                })
        });
    println!(
        "seed {seed} (replay: DISTKIT_FAILOVER_SEED={seed} cargo test -p distkit-tests \
         --test failover writes_that_share)"
    );
    let topology = tokio::task::spawn_blocking(|| ReplicatedRedis::start(1))
        .await
        .expect("the topology starts");
    let primary = topology.primary_port();
    let replica = topology.replica_ports()[0];
    // The replica follows the primary through the proxy from now on.
    let proxy = Proxy::start(primary);
    topology.cli(
        replica,
        &["REPLICAOF", "127.0.0.1", &proxy.port().to_string()],
    );
    let linked = Instant::now();
    while topology
        .cli(replica, &["INFO", "replication"])
        .contains("master_link_status:down")
        || !topology
            .cli(replica, &["INFO", "replication"])
            .contains(&format!("master_port:{}", proxy.port()))
    {
        assert!(
            linked.elapsed() < Duration::from_secs(20),
            "the replica never linked"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.delay(Direction::Downstream, Duration::from_millis(20));

    let client = impatient_client(&topology.primary_url()).await;
    let prefix = DistkitRedisKey::new_or_panic(unique_prefix());
    let mut options = CounterOptions::new(prefix.clone(), client);
    options.replica_acks = Some(ReplicaAcks::new(1, Duration::from_millis(200)));
    let counter = StrictCounter::new(options);
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for task in 0..TASKS {
        let (counter, stop) = (Arc::clone(&counter), stop.clone());
        writers.push(tokio::spawn(async move {
            let key = DistkitRedisKey::new_or_panic(format!("k{task}"));
            let (mut acknowledged, mut not_durable) = (0_i64, 0_u64);
            while !stop.load(Ordering::Relaxed) {
                match bounded(counter.inc(&key, 1)).await {
                    Ok(new) => acknowledged = new,
                    Err(_) => not_durable += 1,
                }
            }
            (key, acknowledged, not_durable)
        }));
    }
    // The writers' connection is killed now and then: a WAIT sent after fred reconnected
    // runs on a connection that never carried the writes it is meant to confirm.
    let killer = {
        let (stop, primary_url) = (stop.clone(), topology.primary_url());
        tokio::task::spawn_blocking(move || {
            let mut state = seed.rotate_left(17) | 1;
            let mut kills = 0_u32;
            while !stop.load(Ordering::Relaxed) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                std::thread::sleep(Duration::from_millis(100 + state % 400));
                kills += u32::from(kill_normal_clients(&primary_url));
            }
            kills
        })
    };
    // Random holds of the replication stream while the writers run, then the final one.
    let final_kill_url = topology.primary_url();
    let proxy = tokio::task::spawn_blocking(move || {
        let mut state = seed | 1;
        let mut next = |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(4) {
            std::thread::sleep(Duration::from_millis(next(300)));
            proxy.hold(Direction::Downstream, true);
            std::thread::sleep(Duration::from_millis(next(300)));
            proxy.hold(Direction::Downstream, false);
        }
        // The final hold, with the writers' connection killed in its middle: a WAIT that
        // follows on the new connection must not confirm the writes of the old one.
        proxy.hold(Direction::Downstream, true);
        std::thread::sleep(Duration::from_millis(150));
        kill_normal_clients(&final_kill_url);
        std::thread::sleep(Duration::from_millis(300));
        proxy
    })
    .await
    .expect("the fault thread ends");
    stop.store(true, Ordering::Relaxed);
    let mut results = Vec::new();
    for writer in writers {
        results.push(bounded(writer).await.expect("the writer ends"));
    }
    let kills = bounded(killer).await.expect("the killer ends");
    // What the replica has not received by now is lost with the primary.
    proxy.cut();
    let topology = tokio::task::spawn_blocking(move || {
        let mut topology = topology;
        topology.kill_node(primary);
        topology
    })
    .await
    .expect("the primary is killed");
    topology.cli(replica, &["REPLICAOF", "NO", "ONE"]);
    let promoted = impatient_client(&format!("redis://127.0.0.1:{replica}")).await;
    let survivor = StrictCounter::new(CounterOptions::new(prefix, promoted));
    let (mut lost, mut acknowledged_writes, mut refused) = (0_i64, 0_i64, 0_u64);
    for (key, acknowledged, not_durable) in results {
        let stored = bounded(survivor.get(&key))
            .await
            .expect("the promoted replica answers");
        lost += (acknowledged - stored).max(0);
        acknowledged_writes += acknowledged;
        refused += not_durable;
    }
    println!(
        "{TASKS} tasks sharing WAITs, writers' connections killed {kills} times: highest \
         acknowledged values sum {acknowledged_writes}, {refused} writes reported not durable, \
         {lost} acknowledged increments missing on the promoted replica"
    );
    assert!(
        refused > 0,
        "the held replication stream never refused an acknowledgement"
    );
    assert_eq!(
        lost, 0,
        "acknowledged writes were missing on the promoted replica"
    );
    drop((topology, proxy));
}
