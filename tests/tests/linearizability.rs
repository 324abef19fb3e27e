//! Recorded histories checked for linearizability by an external checker, stateright's
//! [`LinearizabilityTester`], against sequential specifications written here.
//!
//! A history: tasks over three clients (two direct, one through a fault proxy) run random
//! operations on one object while, per the history's seed, Redis is stopped (SIGSTOP) for a
//! while, the proxy delays one direction, or the proxy cuts its connections. Each operation is
//! recorded with its invocation and its return on one shared logical clock; an operation that
//! timed out or failed in transport is recorded as invoked and never returned — the checker
//! may linearize it anywhere after its invocation or not at all (stateright's in-flight
//! operations), which is what an unknown outcome means. A task whose operation has an unknown
//! outcome goes on as a new checker thread (stateright allows one operation in flight per
//! thread, as its last). A history ends with a read by a fresh thread after every task
//! finished.
//!
//! The objects and their specifications:
//! - `StrictCounter` on two keys: `inc`, `get`, `set`, `inc_if`, `set_if`, `inc_all` and
//!   `get_all` of both keys, `clear`;
//! - `StrictInstanceAwareCounter`, one instance per client: `(C, I)` of `inc`, `get`, global
//!   `set`, `set_on_instance`, `inc_if` (C is the sum of the live instances' slices);
//! - the strict GCRA and sliding-window limiters: admitted or refused and `remaining`, at one
//!   unit per hour and with a one-hour window, so that nothing comes back within a history
//!   and the answer depends on the units charged only, not on the server clock
//!   (`retry_after` depends on the clock and is left out); `reset`;
//! - `Mutex` grants as a register of (holder, fencing token): at most one holder at a time
//!   (no two believed-held intervals overlap) and tokens rising in the order of the grants.
//!   A guard that stopped believing it held the lease before its release ends its interval
//!   at an unknown time after the grant; an acquisition cut off by the timeout may have taken
//!   and (cancellation-safe) given back the lease, so it is followed by an unknown release;
//! - `Semaphore` grants of 1 or 2 of 3 permits by one-shot attempts, and
//!   `available_permits`: the permits of the holders never add up to more than 3, a refusal
//!   only when too few are free, tokens rising in the order of the grants (unknown
//!   outcomes as for the mutex);
//! - in one variant, `StrictCounter` writes on a primary with two replicas and three
//!   Sentinels, with replica acknowledgement on, while `SENTINEL FAILOVER` promotes a replica
//!   (a write that is not acknowledged has an unknown outcome; plain reads are left out: they
//!   are not acknowledged, and the old primary may serve one before it is demoted).
//!
//! The checker (a depth-first search without memoisation) gets 20 s per history; a history
//! it does not decide in time is printed and counted as inconclusive, and at most half of an
//! object's histories may be.
//!
//! Each check has a mutation test: a deliberately broken wrapper of the object whose
//! histories the checker must all reject (mutation histories run without faults and with
//! operations whose effects add up, so that the broken answer cannot be explained by an
//! unknown outcome or a later absolute write).
//!
//! `DISTKIT_LINEARIZABILITY_HISTORIES` (default 12) sets the histories per object (a third
//! as many mutation histories), `DISTKIT_LINEARIZABILITY_FAILOVERS` (default 1) the
//! failover histories, and `DISTKIT_LINEARIZABILITY_SEED` the first seed (default:
//! from the clock); a rejected history is printed with its seed, its operations and the
//! command that replays its seed (the seed fixes the operations and faults, not the timing).

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic,
    reason = "a test binary checking recorded histories: a failed unwrap, index or overflow \
              is a failed test, and panicking is how it reports one"
)]

mod common;

use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use common::{bounded, fresh_key, key};
use distkit::counter::{CounterError, CounterOptions, CounterTrait, StrictCounter};
use distkit::fred::clients::Client;
use distkit::icounter::{
    InstanceAwareCounterTrait, StrictInstanceAwareCounter, StrictInstanceAwareCounterOptions,
};
use distkit::lock::{LockError, LockGuardState, LockOptions, Mutex};
use distkit::ratelimit::{
    Decision, GcraLimiter, GcraOptions, GcraRate, SlidingWindowLimiter, SlidingWindowOptions,
};
use distkit::semaphore::{Semaphore, SemaphoreOptions};
use distkit::{
    ConnectOptions, CounterComparator, DistkitError, DistkitRedisKey, ReplicaAcks, connect,
};
use distkit_test_support::{Direction, Proxy, ReplicatedRedis, TestRedis};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};

/// Concurrent tasks per history.
const TASKS: usize = 4;
/// Operations per task: with the final read, histories of about 30 operations.
const OPS_PER_TASK: usize = 7;
/// An operation that has not returned after this long has an unknown outcome.
const OP_TIMEOUT: Duration = Duration::from_millis(250);
/// Histories per object unless `DISTKIT_LINEARIZABILITY_HISTORIES` says otherwise.
const DEFAULT_HISTORIES: usize = 12;
/// Clients per history: 0 and 1 direct, 2 through the proxy.
const CLIENTS: usize = 3;

// ---------------------------------------------------------------------------------------
// Seeds, randomness, statistics
// ---------------------------------------------------------------------------------------

/// SplitMix64: a small, seedable generator, so that a seed replays the same schedule.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn index(&mut self, bound: usize) -> usize {
        usize::try_from(self.below(u64::try_from(bound).unwrap())).unwrap()
    }

    /// A value in `low..=high`.
    fn between(&mut self, low: i64, high: i64) -> i64 {
        low + i64::try_from(self.below(u64::try_from(high - low + 1).unwrap())).unwrap()
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The seeds of this run: the first one and how many histories per object.
fn seeds() -> (u64, usize) {
    let first = std::env::var("DISTKIT_LINEARIZABILITY_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |elapsed| {
                    u64::try_from(elapsed.as_micros() % 1_000_000_007).unwrap_or(1)
                })
        });
    let histories = std::env::var("DISTKIT_LINEARIZABILITY_HISTORIES")
        .ok()
        .and_then(|histories| histories.parse().ok())
        .unwrap_or(DEFAULT_HISTORIES);
    (first, histories)
}

/// What one object's histories exercised.
#[derive(Debug, Default)]
struct Stats {
    histories: usize,
    inconclusive: usize,
    operations: usize,
    unknown: usize,
    pauses: usize,
    cuts: usize,
    delays: usize,
}

impl Stats {
    fn add(&mut self, report: &HistoryReport) {
        self.histories += 1;
        self.inconclusive += usize::from(report.inconclusive);
        self.operations += report.operations;
        self.unknown += report.unknown;
        self.pauses += report.faults.pauses;
        self.cuts += report.faults.cuts;
        self.delays += report.faults.delays;
    }

    fn print(&self, object: &str, started: Instant) {
        println!(
            "linearizability: {object}: {} histories ({} inconclusive), {} operations ({} \
             unknown outcomes); faults: {} pauses, {} cuts, {} delays; {:.1?}",
            self.histories,
            self.inconclusive,
            self.operations,
            self.unknown,
            self.pauses,
            self.cuts,
            self.delays,
            started.elapsed()
        );
    }
}

// ---------------------------------------------------------------------------------------
// The recorder
// ---------------------------------------------------------------------------------------

/// One recorded operation. Times are ticks of the history's logical clock: an operation
/// precedes another when it returned before the other was invoked.
#[derive(Clone, Debug)]
struct Record<Op, Ret> {
    task: usize,
    op: Op,
    invoked: u64,
    /// `None`: the outcome is unknown (timed out, or a transport failure).
    returned: Option<(u64, Ret)>,
}

/// The shared clock and log of one history.
#[derive(Debug)]
struct Recorder<Op, Ret> {
    clock: AtomicU64,
    records: StdMutex<Vec<Record<Op, Ret>>>,
}

impl<Op: Clone + Debug, Ret: Clone + Debug> Recorder<Op, Ret> {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            clock: AtomicU64::new(0),
            records: StdMutex::new(Vec::new()),
        })
    }

    /// A fresh even tick (odd ticks are for invocations placed right after a return).
    fn tick(&self) -> u64 {
        self.clock.fetch_add(2, Ordering::SeqCst) + 2
    }

    fn push(&self, record: Record<Op, Ret>) {
        self.records.lock().unwrap().push(record);
    }

    /// Runs `call` as `task`'s operation `op` and records it: its return, or an unknown
    /// outcome when it fails in transport or does not return within [`OP_TIMEOUT`]. Any other
    /// error fails the test: the workloads only make calls whose other errors are bugs.
    async fn call<F>(&self, task: usize, op: Op, call: F) -> Option<Ret>
    where
        F: Future<Output = Result<Ret, DistkitError>>,
    {
        self.call_with(task, op, async { call.await.map(|ret| (ret, ())) })
            .await
            .ok()
            .map(|(_, ret, ())| ret)
    }

    /// [`call`](Self::call) with its own bound instead of [`OP_TIMEOUT`].
    async fn call_within<F>(&self, bound: Duration, task: usize, op: Op, call: F) -> Option<Ret>
    where
        F: Future<Output = Result<Ret, DistkitError>>,
    {
        self.call_with_bound(bound, task, op, async { call.await.map(|ret| (ret, ())) })
            .await
            .ok()
            .map(|(_, ret, ())| ret)
    }

    /// [`call`](Self::call) for a call that also yields something to keep (a guard):
    /// returns the tick of the return, the return and what it yielded; or, for an unknown
    /// outcome, the tick of the invocation.
    async fn call_with<F, X>(&self, task: usize, op: Op, call: F) -> Result<(u64, Ret, X), u64>
    where
        F: Future<Output = Result<(Ret, X), DistkitError>>,
    {
        self.call_with_bound(OP_TIMEOUT, task, op, call).await
    }

    async fn call_with_bound<F, X>(
        &self,
        bound: Duration,
        task: usize,
        op: Op,
        call: F,
    ) -> Result<(u64, Ret, X), u64>
    where
        F: Future<Output = Result<(Ret, X), DistkitError>>,
    {
        let invoked = self.tick();
        let (returned, kept) = match tokio::time::timeout(bound, call).await {
            Ok(Ok((ret, kept))) => (Some((self.tick(), ret)), Some(kept)),
            // Any Redis error is taken as an unknown outcome, also those distkit does not
            // classify as transport failures. Weaker than "no effect", so sound.
            Ok(Err(error))
                if error.is_outcome_unknown()
                    || error.is_transport()
                    || error.is_timeout()
                    || matches!(
                        error,
                        DistkitError::RedisError(_)
                            | DistkitError::CounterError(CounterError::NotReplicated { .. })
                    ) =>
            {
                (None, None)
            }
            Ok(Err(error)) => {
                panic!("{op:?} failed with an error that is not a transport failure: {error:?}")
            }
            Err(_elapsed) => (None, None),
        };
        let result = returned
            .as_ref()
            .zip(kept)
            .map(|((at, ret), kept)| (*at, ret.clone(), kept))
            .ok_or(invoked);
        self.push(Record {
            task,
            op,
            invoked,
            returned,
        });
        result
    }

    /// Records `op` of `task` as invoked right after tick `after` with an unknown outcome:
    /// for what ended at an unknown time after a known one.
    fn unknown_after(&self, task: usize, op: Op, after: u64) {
        self.push(Record {
            task,
            op,
            invoked: after + 1,
            returned: None,
        });
    }

    fn take(&self) -> Vec<Record<Op, Ret>> {
        let mut records = std::mem::take(&mut *self.records.lock().unwrap());
        records.sort_by_key(|record| record.invoked);
        records
    }
}

/// The checker thread of each record: a task's operations run on one thread until one has
/// an unknown outcome, then on the next (stateright allows one operation in flight per
/// thread, and only as the thread's last).
fn threads<Op, Ret>(records: &[Record<Op, Ret>]) -> Vec<usize> {
    let mut generation = std::collections::HashMap::<usize, usize>::new();
    records
        .iter()
        .map(|record| {
            let entry = generation.entry(record.task).or_insert(0);
            let thread = record.task * 1_000 + *entry;
            if record.returned.is_none() {
                *entry += 1;
            }
            thread
        })
        .collect()
}

/// Feeds `records` to stateright's linearizability tester for the specification `init` and
/// returns whether it found a linearization.
fn linearizable<S>(init: S, records: &[Record<S::Op, S::Ret>]) -> Result<bool, String>
where
    S: SequentialSpec + Clone,
    S::Op: Clone + Debug,
    S::Ret: Clone + Debug + PartialEq,
{
    enum Event<'r, Op, Ret> {
        Invoke(&'r Op),
        Return(&'r Ret),
    }
    let threads = threads(records);
    let mut events = Vec::new();
    for (record, thread) in records.iter().zip(&threads) {
        events.push((record.invoked, *thread, Event::Invoke(&record.op)));
        if let Some((at, ret)) = &record.returned {
            events.push((*at, *thread, Event::Return(ret)));
        }
    }
    events.sort_by_key(|(at, _, _)| *at);
    let mut tester = LinearizabilityTester::new(init);
    for (_, thread, event) in events {
        match event {
            Event::Invoke(op) => tester.on_invoke(thread, op.clone())?,
            Event::Return(ret) => tester.on_return(thread, ret.clone())?,
        };
    }
    Ok(tester.is_consistent())
}

/// The longest the checker may search one history. stateright's search is a depth-first
/// search without memoisation: exponential in the worst case, mostly in the operations
/// with unknown outcomes. A history it cannot decide in time is counted as inconclusive.
const CHECK_BUDGET: Duration = Duration::from_secs(20);

/// [`linearizable`] on its own thread, `None` when it does not answer within
/// [`CHECK_BUDGET`] (the thread is left to finish, or to end with the test binary).
fn linearizable_within_budget<S>(
    init: S,
    records: &[Record<S::Op, S::Ret>],
) -> Option<Result<bool, String>>
where
    S: SequentialSpec + Clone + Send + 'static,
    S::Op: Clone + Debug + Send + 'static,
    S::Ret: Clone + Debug + PartialEq + Send + 'static,
{
    let records = records.to_vec();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _receiver_gone = sender.send(linearizable(init, &records));
    });
    receiver.recv_timeout(CHECK_BUDGET).ok()
}

/// A history's record, printed when the checker rejects it.
fn describe<Op: Debug, Ret: Debug>(records: &[Record<Op, Ret>]) -> String {
    let threads = threads(records);
    records
        .iter()
        .zip(threads)
        .map(|(record, thread)| match &record.returned {
            Some((at, ret)) => format!(
                "  task {} (thread {thread}) [{}..{at}] {:?} -> {ret:?}\n",
                record.task, record.invoked, record.op
            ),
            None => format!(
                "  task {} (thread {thread}) [{}..] {:?} -> unknown\n",
                record.task, record.invoked, record.op
            ),
        })
        .collect()
}

/// What one history did.
#[derive(Debug)]
struct HistoryReport {
    operations: usize,
    unknown: usize,
    faults: Faults,
    /// The checker did not decide within [`CHECK_BUDGET`].
    inconclusive: bool,
}

/// Checks one history: `Ok` with its report when linearizable, `Err` with a printable
/// account (seed, history, replay command) when not.
fn verdict<S>(
    test: &str,
    seed: u64,
    init: S,
    records: &[Record<S::Op, S::Ret>],
    faults: Faults,
) -> Result<HistoryReport, String>
where
    S: SequentialSpec + Clone + Send + 'static,
    S::Op: Clone + Debug + Send + 'static,
    S::Ret: Clone + Debug + PartialEq + Send + 'static,
{
    let mut report = HistoryReport {
        operations: records.len(),
        unknown: records
            .iter()
            .filter(|record| record.returned.is_none())
            .count(),
        faults,
        inconclusive: false,
    };
    match linearizable_within_budget(init, records) {
        None => {
            println!(
                "linearizability: seed {seed}: inconclusive, the checker did not decide within \
                 {CHECK_BUDGET:?} ({} operations, {} unknown)",
                report.operations, report.unknown
            );
            report.inconclusive = true;
            Ok(report)
        }
        Some(Ok(true)) => Ok(report),
        Some(Ok(false)) => Err(format!(
            "seed {seed}: the checker found no linearization of this history ({} operations, \
             {} unknown; faults {:?}):\n{}replay: DISTKIT_LINEARIZABILITY_SEED={seed} \
             DISTKIT_LINEARIZABILITY_HISTORIES=1 cargo test -p distkit-tests --all-features \
             --test linearizability -- {test} --exact --nocapture",
            report.operations,
            report.unknown,
            report.faults,
            describe(records)
        )),
        Some(Err(invalid)) => {
            panic!("seed {seed}: the recorder built an invalid history: {invalid}")
        }
    }
}

// ---------------------------------------------------------------------------------------
// The deployment and its faults
// ---------------------------------------------------------------------------------------

/// A private Redis, a proxy to it and the clients of the histories.
struct Env {
    redis: TestRedis,
    proxy: Proxy,
    clients: Vec<Client>,
}

impl Env {
    async fn start() -> Self {
        let redis = TestRedis::start_standalone();
        let proxy = Proxy::start(redis.port());
        let mut clients = Vec::new();
        for url in [redis.url().to_owned(), redis.url().to_owned(), proxy.url()] {
            clients.push(bounded(connect(&url)).await.expect("connect"));
        }
        Self {
            redis,
            proxy,
            clients,
        }
    }

    /// `make` applied to each client, one object per client.
    fn per_client<T>(&self, make: impl Fn(Client) -> T) -> Vec<T> {
        self.clients.iter().cloned().map(make).collect()
    }
}

/// The faults injected into one history.
#[derive(Clone, Copy, Debug, Default)]
struct Faults {
    pauses: usize,
    cuts: usize,
    delays: usize,
}

/// Injects the faults the seed picks while the tasks run, one to three of: a SIGSTOP of
/// Redis for 150–500 ms, a proxy delay of 40–200 ms per chunk in one direction for 300 ms, or
/// proxy cuts while the replies are delayed (commands applied, replies lost); with a quiet
/// gap before each.
async fn inject_faults(env: &Env, rng: &mut Rng) -> Faults {
    let mut faults = Faults::default();
    for _ in 0..1 + rng.below(3) {
        tokio::time::sleep(Duration::from_millis(rng.below(60))).await;
        match rng.below(4) {
            0 => {}
            1 => {
                let paused = Duration::from_millis(150 + rng.below(350));
                env.redis.pause();
                tokio::time::sleep(paused).await;
                env.redis.resume();
                faults.pauses += 1;
            }
            2 => {
                let direction = if rng.chance(50) {
                    Direction::Upstream
                } else {
                    Direction::Downstream
                };
                env.proxy
                    .delay(direction, Duration::from_millis(40 + rng.below(160)));
                faults.delays += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
                env.proxy.heal();
            }
            _ => {
                env.proxy.delay(
                    Direction::Downstream,
                    Duration::from_millis(20 + rng.below(30)),
                );
                for _ in 0..1 + rng.below(3) {
                    tokio::time::sleep(Duration::from_millis(rng.below(50))).await;
                    env.proxy.cut();
                    faults.cuts += 1;
                }
                env.proxy.heal();
            }
        }
    }
    faults
}

/// Runs `TASKS` copies of `task` (given its index and seed) and, alongside, the faults the
/// seed picks (none when `faulty` is false); returns once all ended and Redis is healthy.
async fn run_tasks<F, Fut>(env: &Env, seed: u64, faulty: bool, task: F) -> Faults
where
    F: Fn(usize, u64) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut rng = Rng(seed);
    let handles: Vec<_> = (0..TASKS)
        .map(|index| tokio::spawn(task(index, rng.next())))
        .collect();
    let faults = if faulty {
        inject_faults(env, &mut rng).await
    } else {
        Faults::default()
    };
    for handle in handles {
        if let Err(error) = bounded(handle).await {
            env.redis.resume();
            panic!("seed {seed}: a history task panicked: {error:?}");
        }
    }
    env.redis.resume();
    env.proxy.heal();
    faults
}

/// A short random gap between a task's operations, so that the interleavings vary.
async fn gap(rng: &mut Rng) {
    match rng.below(4) {
        0 => {}
        1 => tokio::task::yield_now().await,
        _ => tokio::time::sleep(Duration::from_millis(rng.below(40))).await,
    }
}

/// Runs `histories` histories from `first`; `history` runs one and returns the checker's
/// verdict. Fails with the account of every rejected history.
async fn check_histories<F, Fut>(object: &str, history: F)
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<HistoryReport, String>>,
{
    let started = Instant::now();
    let (first, histories) = seeds();
    let mut stats = Stats::default();
    let mut rejected = Vec::new();
    for seed in first..first + u64::try_from(histories).unwrap() {
        match history(seed).await {
            Ok(report) => stats.add(&report),
            Err(account) => rejected.push(account),
        }
    }
    stats.print(object, started);
    assert!(
        stats.inconclusive * 2 <= stats.histories,
        "{object}: the checker decided only {} of {} histories",
        stats.histories - stats.inconclusive,
        stats.histories
    );
    assert!(
        rejected.is_empty(),
        "{object}: {} of {histories} histories are not linearizable:\n{}",
        rejected.len(),
        rejected.join("\n")
    );
    assert!(stats.operations > 0, "{object}: no operation was recorded");
}

/// Runs `histories` mutated histories (without faults) and requires that the checker
/// rejects every one.
async fn check_mutants<F, Fut>(object: &str, history: F)
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<HistoryReport, String>>,
{
    let started = Instant::now();
    let (first, histories) = seeds();
    let histories = histories.div_ceil(3);
    let mut accepted = Vec::new();
    for seed in first..first + u64::try_from(histories).unwrap() {
        if let Ok(report) = history(seed).await {
            let verdict = if report.inconclusive {
                "undecided"
            } else {
                "accepted"
            };
            accepted.push(format!(
                "seed {seed} ({} operations, {verdict})",
                report.operations
            ));
        }
    }
    println!(
        "linearizability: {object}: the checker rejected {} of {histories} mutated histories \
         in {:.1?}",
        histories - accepted.len(),
        started.elapsed()
    );
    assert!(
        accepted.is_empty(),
        "{object}: the checker did not reject these histories of a broken object: {}",
        accepted.join(", ")
    );
}

// ---------------------------------------------------------------------------------------
// StrictCounter
// ---------------------------------------------------------------------------------------

/// An operation on a counter of two keys (0 and 1).
#[derive(Clone, Copy, Debug, PartialEq)]
enum CounterOp {
    Inc(usize, i64),
    Get(usize),
    Set(usize, i64),
    IncIf(usize, CounterComparator, i64),
    SetIf(usize, CounterComparator, i64),
    /// `inc_all` of both keys in one batch.
    IncAll(i64, i64),
    /// `get_all` of both keys.
    GetAll,
    /// `clear`: every key of the prefix.
    Clear,
}

/// What a counter operation returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CounterRet {
    Value(i64),
    /// `(new, old)` of a conditional operation.
    Conditional(i64, i64),
    /// The values of both keys (a batch).
    Both(i64, i64),
    Cleared,
}

/// The sequential specification of a counter of two keys (API §4).
#[derive(Clone, Debug, Default)]
struct CounterSpec {
    values: [i64; 2],
}

impl SequentialSpec for CounterSpec {
    type Op = CounterOp;
    type Ret = CounterRet;

    fn invoke(&mut self, op: &CounterOp) -> CounterRet {
        match *op {
            CounterOp::Inc(k, count) => {
                self.values[k] += count;
                CounterRet::Value(self.values[k])
            }
            CounterOp::Get(k) => CounterRet::Value(self.values[k]),
            CounterOp::Set(k, count) => {
                self.values[k] = count;
                CounterRet::Value(count)
            }
            CounterOp::IncIf(k, cmp, count) => {
                let old = self.values[k];
                if cmp.matches(old) {
                    self.values[k] = old + count;
                }
                CounterRet::Conditional(self.values[k], old)
            }
            CounterOp::SetIf(k, cmp, count) => {
                let old = self.values[k];
                if cmp.matches(old) {
                    self.values[k] = count;
                }
                CounterRet::Conditional(self.values[k], old)
            }
            CounterOp::IncAll(a, b) => {
                self.values[0] += a;
                self.values[1] += b;
                CounterRet::Both(self.values[0], self.values[1])
            }
            CounterOp::GetAll => CounterRet::Both(self.values[0], self.values[1]),
            CounterOp::Clear => {
                self.values = [0; 2];
                CounterRet::Cleared
            }
        }
    }
}

fn comparator(rng: &mut Rng) -> CounterComparator {
    let operand = rng.between(0, 12);
    match rng.below(5) {
        0 => CounterComparator::Eq(operand),
        1 => CounterComparator::Lt(operand),
        2 => CounterComparator::Gt(operand),
        3 => CounterComparator::Ne(operand),
        _ => CounterComparator::Nil,
    }
}

/// A random counter operation; only increments by positive amounts and reads when
/// `monotone` (the mutation histories: the final read then sums every increment).
fn counter_op(rng: &mut Rng, monotone: bool) -> CounterOp {
    let k = rng.index(2);
    if monotone {
        return match rng.below(4) {
            0 | 1 => CounterOp::Inc(k, rng.between(1, 5)),
            2 => CounterOp::IncAll(rng.between(1, 3), rng.between(1, 3)),
            _ => CounterOp::Get(k),
        };
    }
    match rng.below(11) {
        10 => CounterOp::Clear,
        0..=2 => CounterOp::Inc(k, rng.between(-3, 5)),
        3 => CounterOp::Get(k),
        4 => CounterOp::Set(k, rng.between(0, 12)),
        5 | 6 => CounterOp::IncIf(k, comparator(rng), rng.between(-3, 5)),
        7 => CounterOp::SetIf(k, comparator(rng), rng.between(0, 12)),
        8 => CounterOp::IncAll(rng.between(-2, 3), rng.between(-2, 3)),
        _ => CounterOp::GetAll,
    }
}

/// How a counter history's object behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CounterFlavor {
    /// The `StrictCounter` itself.
    Correct,
    /// Broken: every other increment is sent twice (as a blind retry of an increment whose
    /// reply was lost would), and the second reply is reported.
    DoubleIncrement,
}

async fn apply_counter(
    counter: &StrictCounter,
    keys: &[DistkitRedisKey; 2],
    op: CounterOp,
    twice: bool,
) -> Result<CounterRet, DistkitError> {
    Ok(match op {
        CounterOp::Inc(k, count) => {
            if twice {
                counter.inc(&keys[k], count).await?;
            }
            CounterRet::Value(counter.inc(&keys[k], count).await?)
        }
        CounterOp::Get(k) => CounterRet::Value(counter.get(&keys[k]).await?),
        CounterOp::Set(k, count) => CounterRet::Value(counter.set(&keys[k], count).await?),
        CounterOp::IncIf(k, cmp, count) => {
            let (new, old) = counter.inc_if(&keys[k], cmp, count).await?;
            CounterRet::Conditional(new, old)
        }
        CounterOp::SetIf(k, cmp, count) => {
            let (new, old) = counter.set_if(&keys[k], cmp, count).await?;
            CounterRet::Conditional(new, old)
        }
        CounterOp::IncAll(a, b) => {
            let values = counter.inc_all(&[(&keys[0], a), (&keys[1], b)]).await?;
            CounterRet::Both(values[0].1, values[1].1)
        }
        CounterOp::GetAll => {
            let values = counter.get_all(&[&keys[0], &keys[1]]).await?;
            CounterRet::Both(values[0].1, values[1].1)
        }
        CounterOp::Clear => {
            counter.clear().await?;
            CounterRet::Cleared
        }
    })
}

async fn counter_history(
    env: &Env,
    test: &str,
    seed: u64,
    flavor: CounterFlavor,
) -> Result<HistoryReport, String> {
    let prefix = fresh_key();
    let keys = Arc::new([key("a"), key("b")]);
    let counters: Vec<Arc<StrictCounter>> = env
        .clients
        .iter()
        .map(|client| StrictCounter::new(CounterOptions::new(prefix.clone(), client.clone())))
        .collect();
    let recorder = Recorder::<CounterOp, CounterRet>::new();
    let mutant = flavor != CounterFlavor::Correct;
    let faults = run_tasks(env, seed, !mutant, |task, task_seed| {
        let counter = Arc::clone(&counters[task % CLIENTS]);
        let (recorder, keys) = (Arc::clone(&recorder), Arc::clone(&keys));
        async move {
            let mut rng = Rng(task_seed);
            for step in 0..OPS_PER_TASK {
                // A mutant's every other operation is an increment, so the mutation fires.
                let op = if mutant && step % 2 == 1 {
                    CounterOp::Inc(rng.index(2), rng.between(1, 5))
                } else {
                    counter_op(&mut rng, mutant)
                };
                let twice = flavor == CounterFlavor::DoubleIncrement && step % 2 == 1;
                recorder
                    .call(task, op, apply_counter(&counter, &keys, op, twice))
                    .await;
                gap(&mut rng).await;
            }
        }
    })
    .await;
    let last = &counters[0];
    recorder
        .call(
            TASKS,
            CounterOp::GetAll,
            apply_counter(last, &keys, CounterOp::GetAll, false),
        )
        .await;
    verdict(test, seed, CounterSpec::default(), &recorder.take(), faults)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_counter_histories_are_linearizable() {
    let env = Env::start().await;
    check_histories("strict counter", |seed| {
        counter_history(
            &env,
            "strict_counter_histories_are_linearizable",
            seed,
            CounterFlavor::Correct,
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_that_applies_an_increment_twice_is_rejected() {
    let env = Env::start().await;
    check_mutants("double-increment counter", |seed| {
        counter_history(
            &env,
            "a_counter_that_applies_an_increment_twice_is_rejected",
            seed,
            CounterFlavor::DoubleIncrement,
        )
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// StrictInstanceAwareCounter: the total C over instances, and each instance's slice I
// ---------------------------------------------------------------------------------------

/// An operation of instance `.0` (one instance per client) on one key.
#[derive(Clone, Copy, Debug, PartialEq)]
enum ICounterOp {
    Inc(usize, i64),
    Get(usize),
    /// Global: C and this instance's slice become the count, every other slice 0.
    Set(usize, i64),
    SetOnInstance(usize, i64),
    /// Compares C.
    IncIf(usize, CounterComparator, i64),
}

/// What an instance-aware operation returned: `(C, I)`, or `((new C, new I), (old C, old I))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ICounterRet {
    Pair(i64, i64),
    Conditional((i64, i64), (i64, i64)),
}

/// The sequential specification of the strict instance-aware counter (API §5) over live
/// instances: C is the sum of the slices.
#[derive(Clone, Debug, Default)]
struct ICounterSpec {
    slices: [i64; CLIENTS],
}

impl ICounterSpec {
    fn pair(&self, instance: usize) -> (i64, i64) {
        (self.slices.iter().sum(), self.slices[instance])
    }
}

impl SequentialSpec for ICounterSpec {
    type Op = ICounterOp;
    type Ret = ICounterRet;

    fn invoke(&mut self, op: &ICounterOp) -> ICounterRet {
        match *op {
            ICounterOp::Inc(i, count) => {
                self.slices[i] += count;
                let (c, mine) = self.pair(i);
                ICounterRet::Pair(c, mine)
            }
            ICounterOp::Get(i) => {
                let (c, mine) = self.pair(i);
                ICounterRet::Pair(c, mine)
            }
            ICounterOp::Set(i, count) => {
                self.slices = [0; CLIENTS];
                self.slices[i] = count;
                ICounterRet::Pair(count, count)
            }
            ICounterOp::SetOnInstance(i, count) => {
                self.slices[i] = count;
                let (c, mine) = self.pair(i);
                ICounterRet::Pair(c, mine)
            }
            ICounterOp::IncIf(i, cmp, count) => {
                let old = self.pair(i);
                if cmp.matches(old.0) {
                    self.slices[i] += count;
                }
                ICounterRet::Conditional(self.pair(i), old)
            }
        }
    }
}

fn icounter_op(rng: &mut Rng, instance: usize, monotone: bool) -> ICounterOp {
    if monotone {
        return match rng.below(3) {
            0 | 1 => ICounterOp::Inc(instance, rng.between(1, 5)),
            _ => ICounterOp::Get(instance),
        };
    }
    match rng.below(8) {
        0..=2 => ICounterOp::Inc(instance, rng.between(-3, 5)),
        3 => ICounterOp::Get(instance),
        4 => ICounterOp::Set(instance, rng.between(0, 12)),
        5 => ICounterOp::SetOnInstance(instance, rng.between(-2, 8)),
        _ => ICounterOp::IncIf(instance, comparator(rng), rng.between(-3, 5)),
    }
}

async fn apply_icounter(
    counter: &StrictInstanceAwareCounter,
    k: &DistkitRedisKey,
    op: ICounterOp,
    twice: bool,
) -> Result<ICounterRet, DistkitError> {
    Ok(match op {
        ICounterOp::Inc(_, count) => {
            if twice {
                counter.inc(k, count).await?;
            }
            let (c, mine) = counter.inc(k, count).await?;
            ICounterRet::Pair(c, mine)
        }
        ICounterOp::Get(_) => {
            let (c, mine) = counter.get(k).await?;
            ICounterRet::Pair(c, mine)
        }
        ICounterOp::Set(_, count) => {
            let (c, mine) = counter.set(k, count).await?;
            ICounterRet::Pair(c, mine)
        }
        ICounterOp::SetOnInstance(_, count) => {
            let (c, mine) = counter.set_on_instance(k, count).await?;
            ICounterRet::Pair(c, mine)
        }
        ICounterOp::IncIf(_, cmp, count) => {
            let (new, old) = counter.inc_if(k, cmp, count).await?;
            ICounterRet::Conditional(new, old)
        }
    })
}

async fn icounter_history(
    env: &Env,
    test: &str,
    seed: u64,
    flavor: CounterFlavor,
) -> Result<HistoryReport, String> {
    let prefix = fresh_key();
    let k = Arc::new(key("k"));
    let counters = env.per_client(|client| {
        StrictInstanceAwareCounter::new(StrictInstanceAwareCounterOptions::new(
            prefix.clone(),
            client,
        ))
    });
    let recorder = Recorder::<ICounterOp, ICounterRet>::new();
    let mutant = flavor != CounterFlavor::Correct;
    let faults = run_tasks(env, seed, !mutant, |task, task_seed| {
        let instance = task % CLIENTS;
        let counter = Arc::clone(&counters[instance]);
        let (recorder, k) = (Arc::clone(&recorder), Arc::clone(&k));
        async move {
            let mut rng = Rng(task_seed);
            for step in 0..OPS_PER_TASK {
                let op = if mutant && step % 2 == 1 {
                    ICounterOp::Inc(instance, rng.between(1, 5))
                } else {
                    icounter_op(&mut rng, instance, mutant)
                };
                let twice = flavor == CounterFlavor::DoubleIncrement && step % 2 == 1;
                recorder
                    .call(task, op, apply_icounter(&counter, &k, op, twice))
                    .await;
                gap(&mut rng).await;
            }
        }
    })
    .await;
    recorder
        .call(
            TASKS,
            ICounterOp::Get(0),
            apply_icounter(&counters[0], &k, ICounterOp::Get(0), false),
        )
        .await;
    verdict(
        test,
        seed,
        ICounterSpec::default(),
        &recorder.take(),
        faults,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_instance_aware_counter_histories_are_linearizable() {
    let env = Env::start().await;
    check_histories("strict instance-aware counter", |seed| {
        icounter_history(
            &env,
            "strict_instance_aware_counter_histories_are_linearizable",
            seed,
            CounterFlavor::Correct,
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_aware_counter_that_applies_an_increment_twice_is_rejected() {
    let env = Env::start().await;
    check_mutants("double-increment instance-aware counter", |seed| {
        icounter_history(
            &env,
            "an_instance_aware_counter_that_applies_an_increment_twice_is_rejected",
            seed,
            CounterFlavor::DoubleIncrement,
        )
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Strict limiters: GCRA and sliding window
// ---------------------------------------------------------------------------------------

/// A limiter's quota: with one unit per hour (GCRA) or a one-hour window (sliding window),
/// nothing comes back within a history of seconds, so both the decision and `remaining`
/// are determined by the units charged since the last reset — the server clock drops out.
const QUOTA: u64 = 10;

/// An operation on a limiter key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LimiterOp {
    Check(u64),
    Reset,
}

/// What a limiter operation returned (`retry_after` is left out: it depends on the clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LimiterRet {
    Allowed(u64),
    Rejected(u64),
    Done,
}

/// The sequential specification of a strict limiter within one quota period: a call is
/// admitted and charged when its cost fits in what is left; `remaining` is what is left after
/// the decision.
#[derive(Clone, Debug)]
struct LimiterSpec {
    charged: u64,
}

impl SequentialSpec for LimiterSpec {
    type Op = LimiterOp;
    type Ret = LimiterRet;

    fn invoke(&mut self, op: &LimiterOp) -> LimiterRet {
        match *op {
            LimiterOp::Check(cost) if self.charged + cost <= QUOTA => {
                self.charged += cost;
                LimiterRet::Allowed(QUOTA - self.charged)
            }
            LimiterOp::Check(_) => LimiterRet::Rejected(QUOTA - self.charged),
            LimiterOp::Reset => {
                self.charged = 0;
                LimiterRet::Done
            }
        }
    }
}

/// The strict limiters under test.
#[derive(Clone, Debug)]
enum Limiter {
    Gcra(GcraLimiter, GcraRate),
    SlidingWindow(SlidingWindowLimiter),
}

impl Limiter {
    async fn apply(&self, k: &DistkitRedisKey, op: LimiterOp) -> Result<LimiterRet, DistkitError> {
        let decision = match (self, op) {
            // Boxed: the decision futures are large.
            (Self::Gcra(limiter, rate), LimiterOp::Check(cost)) => {
                Box::pin(limiter.check(k, rate, cost)).await?
            }
            (Self::SlidingWindow(limiter), LimiterOp::Check(cost)) => {
                Box::pin(limiter.check(k, QUOTA, cost)).await?
            }
            (Self::Gcra(limiter, _), LimiterOp::Reset) => {
                Box::pin(limiter.reset(k)).await?;
                return Ok(LimiterRet::Done);
            }
            (Self::SlidingWindow(limiter), LimiterOp::Reset) => {
                Box::pin(limiter.reset(k)).await?;
                return Ok(LimiterRet::Done);
            }
        };
        Ok(match decision {
            Decision::Allowed { remaining, .. } => LimiterRet::Allowed(remaining),
            Decision::Rejected { remaining, .. } => LimiterRet::Rejected(remaining),
        })
    }
}

/// How a limiter history's object behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LimiterFlavor {
    Correct,
    /// Broken: a refused call is reported admitted, its charge dropped (as a retry that
    /// admits without charging would).
    FailOpen,
}

fn limiter_of(kind: &str, client: Client, prefix: &DistkitRedisKey) -> Limiter {
    if kind == "gcra" {
        Limiter::Gcra(
            GcraLimiter::new(GcraOptions::new(prefix.clone(), client)),
            GcraRate::new(1, Duration::from_secs(3_600), QUOTA).unwrap(),
        )
    } else {
        Limiter::SlidingWindow(
            SlidingWindowLimiter::new(
                SlidingWindowOptions::builder(prefix.clone(), client)
                    .window(Duration::from_secs(3_600))
                    .build(),
            )
            .unwrap(),
        )
    }
}

async fn limiter_history(
    env: &Env,
    kind: &'static str,
    test: &str,
    seed: u64,
    flavor: LimiterFlavor,
) -> Result<HistoryReport, String> {
    let prefix = fresh_key();
    let k = Arc::new(key("k"));
    let limiters = env.per_client(|client| limiter_of(kind, client, &prefix));
    let recorder = Recorder::<LimiterOp, LimiterRet>::new();
    let mutant = flavor != LimiterFlavor::Correct;
    let faults = run_tasks(env, seed, !mutant, |task, task_seed| {
        let limiter = limiters[task % CLIENTS].clone();
        let (recorder, k) = (Arc::clone(&recorder), Arc::clone(&k));
        async move {
            let mut rng = Rng(task_seed);
            for _ in 0..OPS_PER_TASK {
                let op = if !mutant && rng.chance(8) {
                    LimiterOp::Reset
                } else {
                    LimiterOp::Check(1 + rng.below(3))
                };
                let call = async {
                    match (flavor, limiter.apply(&k, op).await?) {
                        (LimiterFlavor::FailOpen, LimiterRet::Rejected(remaining)) => {
                            Ok(LimiterRet::Allowed(remaining))
                        }
                        (_, ret) => Ok(ret),
                    }
                };
                recorder.call(task, op, call).await;
                gap(&mut rng).await;
            }
        }
    })
    .await;
    recorder
        .call(
            TASKS,
            LimiterOp::Check(1),
            limiters[0].apply(&k, LimiterOp::Check(1)),
        )
        .await;
    verdict(
        test,
        seed,
        LimiterSpec { charged: 0 },
        &recorder.take(),
        faults,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_gcra_histories_are_linearizable() {
    let env = Env::start().await;
    check_histories("strict gcra limiter", |seed| {
        limiter_history(
            &env,
            "gcra",
            "strict_gcra_histories_are_linearizable",
            seed,
            LimiterFlavor::Correct,
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gcra_limiter_that_admits_a_refused_call_is_rejected() {
    let env = Env::start().await;
    check_mutants("fail-open gcra limiter", |seed| {
        limiter_history(
            &env,
            "gcra",
            "a_gcra_limiter_that_admits_a_refused_call_is_rejected",
            seed,
            LimiterFlavor::FailOpen,
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_sliding_window_histories_are_linearizable() {
    let env = Env::start().await;
    check_histories("strict sliding-window limiter", |seed| {
        limiter_history(
            &env,
            "sliding window",
            "strict_sliding_window_histories_are_linearizable",
            seed,
            LimiterFlavor::Correct,
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sliding_window_limiter_that_admits_a_refused_call_is_rejected() {
    let env = Env::start().await;
    check_mutants("fail-open sliding-window limiter", |seed| {
        limiter_history(
            &env,
            "sliding window",
            "a_sliding_window_limiter_that_admits_a_refused_call_is_rejected",
            seed,
            LimiterFlavor::FailOpen,
        )
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Mutex grants: a register of (holder, fencing token)
// ---------------------------------------------------------------------------------------

/// A lock operation; the holder is the attempt (`task × 100 + step`), so that every grant is
/// its own holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LockOp {
    /// `try_lock`: one attempt.
    Acquire(usize),
    /// `release` of that attempt's guard. Recorded with an unknown outcome from the grant on
    /// when the guard stopped believing it held the lease before the release (its believed
    /// interval ended at an unknown time).
    Release(usize),
}

/// What a lock operation returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LockRet {
    /// Acquired, with this fencing token.
    Granted(u64),
    /// `AcquireFail`: the lock was held.
    Busy,
    Released,
    /// The lease was already gone.
    Lost,
}

/// The sequential specification of a mutex's grants: at most one holder at a time (so no two
/// believed-held intervals overlap), and each grant's fencing token above every earlier
/// grant's (so tokens rise in real-time order). Tokens need not be consecutive.
#[derive(Clone, Debug, Default)]
struct LockSpec {
    holder: Option<usize>,
    last_token: u64,
}

impl SequentialSpec for LockSpec {
    type Op = LockOp;
    type Ret = LockRet;

    /// For an operation with an unknown outcome: a grant takes the smallest token it could
    /// have had (every later grant must be above it).
    fn invoke(&mut self, op: &LockOp) -> LockRet {
        match *op {
            LockOp::Acquire(holder) if self.holder.is_none() => {
                self.holder = Some(holder);
                self.last_token += 1;
                LockRet::Granted(self.last_token)
            }
            LockOp::Acquire(_) => LockRet::Busy,
            LockOp::Release(holder) if self.holder == Some(holder) => {
                self.holder = None;
                LockRet::Released
            }
            LockOp::Release(_) => LockRet::Lost,
        }
    }

    fn is_valid_step(&mut self, op: &LockOp, ret: &LockRet) -> bool {
        match (*op, *ret) {
            (LockOp::Acquire(holder), LockRet::Granted(token)) => {
                let free = self.holder.is_none() && token > self.last_token;
                if free {
                    self.holder = Some(holder);
                    self.last_token = token;
                }
                free
            }
            (LockOp::Acquire(_), LockRet::Busy) => self.holder.is_some(),
            (LockOp::Release(_), LockRet::Released | LockRet::Lost) => self.invoke(op) == *ret,
            _ => false,
        }
    }
}

/// How a lock history's object behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LockFlavor {
    Correct,
    /// Broken: every grant reports the fencing token of the grant before it.
    StaleToken,
    /// Broken: an attempt that found the lock held reports a grant anyway (with a token
    /// above every token seen), holds it a while and reports its release.
    GrantWhileHeld,
}

/// What an acquisition left the task holding.
#[derive(Debug)]
enum Held {
    Guard(distkit::lock::MutexGuard),
    /// A grant the broken wrapper made up.
    Fake,
    Nothing,
}

async fn lock_history(
    env: &Env,
    test: &str,
    seed: u64,
    flavor: LockFlavor,
) -> Result<HistoryReport, String> {
    let lock_key = fresh_key();
    let mutexes = env.per_client(|client| {
        Mutex::new(
            LockOptions::builder(lock_key.clone(), client)
                .ttl(Duration::from_secs(3))
                .build(),
        )
    });
    let recorder = Recorder::<LockOp, LockRet>::new();
    let previous_token = Arc::new(AtomicU64::new(0));
    let mutant = flavor != LockFlavor::Correct;
    let faults = run_tasks(env, seed, !mutant, |task, task_seed| {
        let mutex = Arc::clone(&mutexes[task % CLIENTS]);
        let (recorder, previous_token) = (Arc::clone(&recorder), Arc::clone(&previous_token));
        async move {
            let mut rng = Rng(task_seed);
            for step in 0..OPS_PER_TASK {
                let holder = task * 100 + step;
                let acquire = async {
                    match mutex.try_lock().await {
                        Ok(guard) => {
                            let real = guard.fencing_token();
                            let previous = previous_token.swap(real, Ordering::SeqCst);
                            let token = match flavor {
                                LockFlavor::StaleToken if previous != 0 => previous,
                                _ => real,
                            };
                            Ok((LockRet::Granted(token), Held::Guard(guard)))
                        }
                        Err(DistkitError::LockError(LockError::AcquireFail))
                            if flavor == LockFlavor::GrantWhileHeld =>
                        {
                            let token = previous_token.fetch_add(1, Ordering::SeqCst) + 1;
                            Ok((LockRet::Granted(token), Held::Fake))
                        }
                        Err(DistkitError::LockError(LockError::AcquireFail)) => {
                            Ok((LockRet::Busy, Held::Nothing))
                        }
                        Err(error) => Err(error),
                    }
                };
                let granted = recorder
                    .call_with(task, LockOp::Acquire(holder), acquire)
                    .await;
                if let Err(invoked) = granted {
                    // An acquisition cancelled by the timeout may have taken the lease; the
                    // library then releases it (API §6: cancellation-safe). Nobody believes
                    // it holds that lease: an unknown release of it follows.
                    recorder.unknown_after(task, LockOp::Release(holder), invoked);
                } else if let Ok((_, _, Held::Fake)) = granted {
                    tokio::time::sleep(Duration::from_millis(rng.below(30))).await;
                    let release = async { Ok(LockRet::Released) };
                    recorder.call(task, LockOp::Release(holder), release).await;
                } else if let Ok((granted_at, _, Held::Guard(guard))) = granted {
                    // Hold it a while.
                    tokio::time::sleep(Duration::from_millis(rng.below(30))).await;
                    if bounded(guard.get_state()).await == LockGuardState::Acquired {
                        let release = async {
                            match guard.release().await? {
                                LockGuardState::Released => Ok(LockRet::Released),
                                LockGuardState::Lost => Ok(LockRet::Lost),
                                LockGuardState::Acquired => {
                                    panic!("a released guard says it is still acquired")
                                }
                            }
                        };
                        recorder.call(task, LockOp::Release(holder), release).await;
                    } else {
                        recorder.unknown_after(task, LockOp::Release(holder), granted_at);
                        let _released = tokio::time::timeout(OP_TIMEOUT, guard.release()).await;
                    }
                }
                gap(&mut rng).await;
            }
        }
    })
    .await;
    verdict(test, seed, LockSpec::default(), &recorder.take(), faults)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutex_grants_are_linearizable() {
    let env = Env::start().await;
    check_histories("mutex", |seed| {
        lock_history(
            &env,
            "mutex_grants_are_linearizable",
            seed,
            LockFlavor::Correct,
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutex_that_reports_a_stale_fencing_token_is_rejected() {
    let env = Env::start().await;
    check_mutants("stale-token mutex", |seed| {
        lock_history(
            &env,
            "a_mutex_that_reports_a_stale_fencing_token_is_rejected",
            seed,
            LockFlavor::StaleToken,
        )
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Semaphore grants: permits held by each holder, and the fencing tokens
// ---------------------------------------------------------------------------------------

/// The permit count of the semaphore histories: below what the tasks ask for together, so
/// that grants and refusals mix.
const SEMAPHORE_PERMITS: u32 = 3;

/// A semaphore operation; the holder is the attempt (`task × 100 + step`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SemaphoreOp {
    /// `try_acquire_many(n)`: one attempt.
    Acquire(usize, u32),
    /// `release` of that attempt's permit (an unknown outcome when its lease ended at an
    /// unknown time, as for the mutex).
    Release(usize),
    /// `available_permits`.
    Available,
}

/// What a semaphore operation returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SemaphoreRet {
    /// Granted, with this fencing token.
    Granted(u64),
    /// `AcquireFail`: not enough permits were free.
    Busy,
    Released,
    /// The lease was already gone.
    Lost,
    /// The free permits.
    Available(u32),
}

/// The sequential specification of a semaphore used with one-shot attempts only (so nobody
/// waits in line): a grant of `n` is valid only when the permits held plus `n` fit in
/// [`SEMAPHORE_PERMITS`] and its token is above every earlier grant's; a refusal only when
/// they do not fit; `available_permits` is the count no holder has.
#[derive(Clone, Debug, Default)]
struct SemaphoreSpec {
    /// (holder, permits) of every acquisition that holds its permits.
    held: Vec<(usize, u32)>,
    last_token: u64,
}

impl SemaphoreSpec {
    fn used(&self) -> u32 {
        self.held.iter().map(|(_, n)| n).sum()
    }
}

impl SequentialSpec for SemaphoreSpec {
    type Op = SemaphoreOp;
    type Ret = SemaphoreRet;

    /// For an operation with an unknown outcome: a grant takes the smallest token it could
    /// have had (every later grant must be above it).
    fn invoke(&mut self, op: &SemaphoreOp) -> SemaphoreRet {
        match *op {
            SemaphoreOp::Acquire(holder, n) if self.used() + n <= SEMAPHORE_PERMITS => {
                self.held.push((holder, n));
                self.last_token += 1;
                SemaphoreRet::Granted(self.last_token)
            }
            SemaphoreOp::Acquire(..) => SemaphoreRet::Busy,
            SemaphoreOp::Release(holder) => {
                match self.held.iter().position(|(h, _)| *h == holder) {
                    Some(index) => {
                        self.held.swap_remove(index);
                        SemaphoreRet::Released
                    }
                    None => SemaphoreRet::Lost,
                }
            }
            SemaphoreOp::Available => SemaphoreRet::Available(SEMAPHORE_PERMITS - self.used()),
        }
    }

    fn is_valid_step(&mut self, op: &SemaphoreOp, ret: &SemaphoreRet) -> bool {
        match (*op, *ret) {
            (SemaphoreOp::Acquire(holder, n), SemaphoreRet::Granted(token)) => {
                let fits = self.used() + n <= SEMAPHORE_PERMITS && token > self.last_token;
                if fits {
                    self.held.push((holder, n));
                    self.last_token = token;
                }
                fits
            }
            (SemaphoreOp::Acquire(_, n), SemaphoreRet::Busy) => self.used() + n > SEMAPHORE_PERMITS,
            (SemaphoreOp::Release(_), SemaphoreRet::Released | SemaphoreRet::Lost)
            | (SemaphoreOp::Available, SemaphoreRet::Available(_)) => self.invoke(op) == *ret,
            _ => false,
        }
    }
}

/// How a semaphore history's object behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SemaphoreFlavor {
    Correct,
    /// Broken: an attempt that found too few permits free reports a grant anyway (with a
    /// token above every token seen), holds it a while and reports its release.
    GrantWhenFull,
}

/// What a semaphore attempt left the task holding.
#[derive(Debug)]
enum HeldPermits {
    Permit(distkit::semaphore::SemaphorePermit),
    /// A grant the broken wrapper made up.
    Fake,
    Nothing,
}

async fn semaphore_history(
    env: &Env,
    test: &str,
    seed: u64,
    flavor: SemaphoreFlavor,
) -> Result<HistoryReport, String> {
    let semaphore_key = fresh_key();
    let semaphores = env.per_client(|client| {
        Semaphore::new(
            SemaphoreOptions::builder(semaphore_key.clone(), client, SEMAPHORE_PERMITS)
                .ttl(Duration::from_secs(3))
                .build(),
        )
    });
    let recorder = Recorder::<SemaphoreOp, SemaphoreRet>::new();
    let highest_token = Arc::new(AtomicU64::new(0));
    let mutant = flavor != SemaphoreFlavor::Correct;
    let faults = run_tasks(env, seed, !mutant, |task, task_seed| {
        let semaphore = Arc::clone(&semaphores[task % CLIENTS]);
        let (recorder, highest_token) = (Arc::clone(&recorder), Arc::clone(&highest_token));
        async move {
            let mut rng = Rng(task_seed);
            for step in 0..OPS_PER_TASK {
                if rng.chance(20) {
                    let available = async {
                        Ok(SemaphoreRet::Available(
                            semaphore.available_permits().await?,
                        ))
                    };
                    recorder.call(task, SemaphoreOp::Available, available).await;
                    gap(&mut rng).await;
                    continue;
                }
                let holder = task * 100 + step;
                let n = 1 + u32::try_from(rng.below(2)).unwrap();
                let acquire = async {
                    match semaphore.try_acquire_many(n).await {
                        Ok(permit) => {
                            highest_token.fetch_max(permit.fencing_token(), Ordering::SeqCst);
                            Ok((
                                SemaphoreRet::Granted(permit.fencing_token()),
                                HeldPermits::Permit(permit),
                            ))
                        }
                        Err(DistkitError::LockError(LockError::AcquireFail))
                            if flavor == SemaphoreFlavor::GrantWhenFull =>
                        {
                            let token = highest_token.fetch_add(1, Ordering::SeqCst) + 1;
                            Ok((SemaphoreRet::Granted(token), HeldPermits::Fake))
                        }
                        Err(DistkitError::LockError(LockError::AcquireFail)) => {
                            Ok((SemaphoreRet::Busy, HeldPermits::Nothing))
                        }
                        Err(error) => Err(error),
                    }
                };
                let granted = recorder
                    .call_with(task, SemaphoreOp::Acquire(holder, n), acquire)
                    .await;
                match granted {
                    // A cancelled attempt may have taken permits, which the library gives
                    // back in the background: an unknown release follows.
                    Err(invoked) => {
                        recorder.unknown_after(task, SemaphoreOp::Release(holder), invoked);
                    }
                    Ok((_, _, HeldPermits::Fake)) => {
                        tokio::time::sleep(Duration::from_millis(rng.below(30))).await;
                        let release = async { Ok(SemaphoreRet::Released) };
                        recorder
                            .call(task, SemaphoreOp::Release(holder), release)
                            .await;
                    }
                    Ok((granted_at, _, HeldPermits::Permit(permit))) => {
                        tokio::time::sleep(Duration::from_millis(rng.below(30))).await;
                        if bounded(permit.get_state()).await == LockGuardState::Acquired {
                            let release = async {
                                match permit.release().await? {
                                    LockGuardState::Released => Ok(SemaphoreRet::Released),
                                    LockGuardState::Lost => Ok(SemaphoreRet::Lost),
                                    LockGuardState::Acquired => {
                                        panic!("a released permit says it is still acquired")
                                    }
                                }
                            };
                            recorder
                                .call(task, SemaphoreOp::Release(holder), release)
                                .await;
                        } else {
                            recorder.unknown_after(task, SemaphoreOp::Release(holder), granted_at);
                            let _released =
                                tokio::time::timeout(OP_TIMEOUT, permit.release()).await;
                        }
                    }
                    Ok((_, _, HeldPermits::Nothing)) => {}
                }
                gap(&mut rng).await;
            }
        }
    })
    .await;
    verdict(
        test,
        seed,
        SemaphoreSpec::default(),
        &recorder.take(),
        faults,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semaphore_grants_are_linearizable() {
    let env = Env::start().await;
    check_histories("semaphore", |seed| {
        semaphore_history(
            &env,
            "semaphore_grants_are_linearizable",
            seed,
            SemaphoreFlavor::Correct,
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_semaphore_that_grants_more_than_its_permits_is_rejected() {
    let env = Env::start().await;
    check_mutants("over-granting semaphore", |seed| {
        semaphore_history(
            &env,
            "a_semaphore_that_grants_more_than_its_permits_is_rejected",
            seed,
            SemaphoreFlavor::GrantWhenFull,
        )
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Regressions the checker found
// ---------------------------------------------------------------------------------------

/// Returns once a call through `limiter` succeeds (its client reconnected).
async fn connected(limiter: &Limiter) {
    let started = Instant::now();
    while bounded(limiter.apply(&key("warm-up"), LimiterOp::Reset))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the client never reconnected"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How many keys of the private Redis contain `name`.
fn keys_named(env: &Env, name: &str) -> usize {
    env.redis
        .cli(&["KEYS", &format!("*{name}*")])
        .lines()
        .filter(|line| !line.trim().is_empty())
        .count()
}

/// Found by `strict_gcra_histories_are_linearizable` (seed 133478131, a proxy cut): a
/// limiter's `reset` whose reply was lost was sent again by the client after it reconnected,
/// so one reset took effect twice — the second time after other calls had been charged,
/// whose charges it erased (more admitted than the quota). A reset must be written once, like
/// every other non-idempotent-in-time command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limiter_reset_whose_reply_was_lost_is_not_applied_again_after_a_reconnect() {
    let env = Env::start().await;
    for kind in ["gcra", "sliding window"] {
        let name = distkit_test_support::unique_prefix();
        let prefix = DistkitRedisKey::new(name.clone()).unwrap();
        let k = key("k");
        let direct = limiter_of(kind, env.clients[0].clone(), &prefix);
        let proxied = limiter_of(kind, env.clients[2].clone(), &prefix);
        assert_eq!(
            bounded(direct.apply(&k, LimiterOp::Check(1)))
                .await
                .unwrap(),
            LimiterRet::Allowed(QUOTA - 1)
        );
        // The proxied client is connected (the previous round cut its connection), then the
        // reset reaches Redis and its reply is held in the proxy.
        connected(&proxied).await;
        env.proxy.hold(Direction::Downstream, true);
        let reset = tokio::spawn({
            let k = k.clone();
            async move { proxied.apply(&k, LimiterOp::Reset).await }
        });
        let started = Instant::now();
        while keys_named(&env, &name) > 0 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{kind}: the reset never reached redis"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            bounded(direct.apply(&k, LimiterOp::Check(3)))
                .await
                .unwrap(),
            LimiterRet::Allowed(QUOTA - 3),
            "{kind}: the reset was applied"
        );
        // The reply is lost with the connection; the client reconnects.
        env.proxy.cut();
        env.proxy.heal();
        // Whatever it returns, a replay would have been answered before it returned.
        let _outcome = bounded(reset).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            bounded(direct.apply(&k, LimiterOp::Check(1)))
                .await
                .unwrap(),
            LimiterRet::Allowed(QUOTA - 4),
            "{kind}: the reset was applied a second time, erasing a later charge"
        );
    }
}

/// The same for a strict counter's `clear` (an `UNLINK`): replayed after the reconnect, it
/// erased increments acknowledged in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_clear_whose_reply_was_lost_is_not_applied_again_after_a_reconnect() {
    let env = Env::start().await;
    let prefix = fresh_key();
    let k = key("k");
    let direct = StrictCounter::new(CounterOptions::new(prefix.clone(), env.clients[0].clone()));
    let proxied = StrictCounter::new(CounterOptions::new(prefix, env.clients[2].clone()));
    assert_eq!(bounded(direct.inc(&k, 5)).await.unwrap(), 5);
    assert_eq!(bounded(proxied.get(&k)).await.unwrap(), 5);
    // The clear reaches Redis; its reply is held in the proxy.
    env.proxy.hold(Direction::Downstream, true);
    let clear = tokio::spawn(async move { proxied.clear().await });
    let started = Instant::now();
    while bounded(direct.get(&k)).await.unwrap() != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the clear never reached redis"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        bounded(direct.inc(&k, 3)).await.unwrap(),
        3,
        "the clear was applied"
    );
    // The reply is lost with the connection; the client reconnects.
    env.proxy.cut();
    env.proxy.heal();
    // Whatever it returns, a replay would have been answered before it returned.
    let _outcome = bounded(clear).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        bounded(direct.get(&k)).await.unwrap(),
        3,
        "the clear was applied a second time, erasing a later increment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutex_that_grants_a_held_lock_is_rejected() {
    let env = Env::start().await;
    check_mutants("double-grant mutex", |seed| {
        lock_history(
            &env,
            "a_mutex_that_grants_a_held_lock_is_rejected",
            seed,
            LockFlavor::GrantWhileHeld,
        )
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// StrictCounter through a Sentinel failover, with replica acknowledgement
// ---------------------------------------------------------------------------------------

/// A random counter write (its reply is acknowledged by the replicas); no plain reads: a
/// read is not acknowledged, and one served by the old primary before it is demoted may see
/// a write that the failover then discards.
fn counter_write(rng: &mut Rng) -> CounterOp {
    let k = rng.index(2);
    match rng.below(5) {
        0 | 1 => CounterOp::Inc(k, rng.between(-3, 5)),
        2 => CounterOp::Set(k, rng.between(0, 12)),
        3 => CounterOp::IncIf(k, comparator(rng), rng.between(-3, 5)),
        _ => CounterOp::IncAll(rng.between(-2, 3), rng.between(-2, 3)),
    }
}

/// Failover histories unless `DISTKIT_LINEARIZABILITY_FAILOVERS` says otherwise.
fn failover_histories() -> usize {
    std::env::var("DISTKIT_LINEARIZABILITY_FAILOVERS")
        .ok()
        .and_then(|histories| histories.parse().ok())
        .unwrap_or(1)
}

/// Strict counters on a primary with two replicas watched by three Sentinels, every write
/// acknowledged by both replicas (`ReplicaAcks`), while `SENTINEL FAILOVER` promotes a
/// replica mid-history. A write that is not acknowledged (`NotReplicated`) or fails in
/// transport has an unknown outcome; the final read runs once the nodes are in sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_counter_writes_through_a_sentinel_failover_are_linearizable() {
    const TEST: &str = "strict_counter_writes_through_a_sentinel_failover_are_linearizable";
    let started = Instant::now();
    let topology = tokio::task::spawn_blocking(|| ReplicatedRedis::start_with_sentinels(2, 3))
        .await
        .unwrap();
    let url = topology.sentinel_url();
    let topology = Arc::new(StdMutex::new(topology));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let connect = ConnectOptions::new(url.as_str())
            .connect_timeout(Duration::from_secs(5))
            .command_timeout(Duration::from_secs(2))
            .connect();
        clients.push(bounded(connect).await.unwrap());
    }
    let (first, _) = seeds();
    let mut stats = Stats::default();
    let mut rejected = Vec::new();
    for seed in first..first + u64::try_from(failover_histories()).unwrap() {
        let prefix = fresh_key();
        let keys = Arc::new([key("a"), key("b")]);
        let counters: Vec<Arc<StrictCounter>> = clients
            .iter()
            .map(|client| {
                let mut options = CounterOptions::new(prefix.clone(), client.clone());
                options.replica_acks = Some(ReplicaAcks::new(2, Duration::from_secs(1)));
                StrictCounter::new(options)
            })
            .collect();
        let recorder = Recorder::<CounterOp, CounterRet>::new();
        let failing_over = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let mut rng = Rng(seed);
        let handles: Vec<_> = (0..TASKS)
            .map(|task| {
                let counter = Arc::clone(&counters[task % CLIENTS]);
                let (recorder, keys) = (Arc::clone(&recorder), Arc::clone(&keys));
                let failing_over = Arc::clone(&failing_over);
                let mut rng = Rng(rng.next());
                tokio::spawn(async move {
                    for _ in 0..OPS_PER_TASK + 3 {
                        let op = counter_write(&mut rng);
                        let answered = recorder
                            .call_within(
                                Duration::from_secs(5),
                                task,
                                op,
                                apply_counter(&counter, &keys, op, false),
                            )
                            .await;
                        // After an unknown outcome, wait for the failover to end: a few
                        // unknown outcomes per history keep the checker's search small.
                        while answered.is_none() && failing_over.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        tokio::time::sleep(Duration::from_millis(20 + rng.below(100))).await;
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100 + rng.below(200))).await;
        let faulted = Arc::clone(&topology);
        tokio::task::spawn_blocking(move || faulted.lock().unwrap().sentinel_failover())
            .await
            .unwrap();
        failing_over.store(false, Ordering::SeqCst);
        for handle in handles {
            bounded(handle).await.unwrap();
        }
        let synced = Arc::clone(&topology);
        tokio::task::spawn_blocking(move || synced.lock().unwrap().wait_until_in_sync())
            .await
            .unwrap();
        // The final read, retried until a client answers (a failed read has no effect).
        let reader = &counters[0];
        let read = Instant::now();
        loop {
            let values = bounded(reader.get_all(&[&keys[0], &keys[1]])).await;
            if let Ok(values) = values {
                let at = recorder.tick();
                recorder.push(Record {
                    task: TASKS,
                    op: CounterOp::GetAll,
                    invoked: at,
                    returned: Some((at + 1, CounterRet::Both(values[0].1, values[1].1))),
                });
                break;
            }
            assert!(
                read.elapsed() < Duration::from_secs(20),
                "seed {seed}: no client answers after the failover"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let faults = Faults::default();
        match verdict(TEST, seed, CounterSpec::default(), &recorder.take(), faults) {
            Ok(report) => stats.add(&report),
            Err(account) => rejected.push(account),
        }
    }
    println!("linearizability: (one Sentinel failover per history)");
    stats.print("strict counter, sentinel failover, replica acks", started);
    assert!(
        rejected.is_empty(),
        "{} failover histories are not linearizable:\n{}",
        rejected.len(),
        rejected.join("\n")
    );
}
