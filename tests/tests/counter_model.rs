//! Model-based randomized test of every counter flavour under concurrency and faults.
//!
//! Each case builds counter objects of every flavour (strict, lax, lax with a zero lag; plain
//! and instance-aware) on separate clients over one prefix, then runs rounds. In a round,
//! tasks run random operations concurrently while Redis is stopped (SIGSTOP), paused
//! (`CLIENT PAUSE`) or has its connections killed (`CLIENT KILL`). Every result is checked
//! against a model of acknowledged effects:
//!
//! - a call that succeeded applied exactly the effect it reports (an increment, or `new - old`
//!   of a conditional one; a comparison that cannot hold never writes);
//! - a call that failed with `OutcomeUnknown` applied its effect once or not at all;
//! - a call that failed otherwise applied nothing;
//! - after the final flush, Redis holds the model's value, and for instance-aware counters the
//!   total `C` is the sum of the slices of the (live) instances.
//!
//! Between rounds, with Redis healthy, absolute operations (`set`, `del`, `clear`, conditional
//! writes whose outcome the model knows) are checked exactly, and lax objects are dropped and
//! replaced (their pending deltas are delivered by the drop).
//!
//! `DISTKIT_MODEL_CASES` (default 4) sets the number of cases and `DISTKIT_MODEL_SEED` the
//! first seed (default: from the clock); a failure prints the command that replays its seed.

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic,
    reason = "a test binary whose helpers check a model: a failed unwrap, index or \
              overflow is a failed test, and panicking is how it reports one"
)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bounded, fresh_key};
use distkit::counter::{CounterError, CounterTrait, LaxCounter, StrictCounter};
use distkit::fred::prelude::*;
use distkit::icounter::{
    InstanceAwareCounterTrait, LaxInstanceAwareCounter, StrictInstanceAwareCounter,
};
use distkit::{CounterComparator, DistkitError, DistkitRedisKey};
use distkit_test_support::TestRedis;

/// Keys per case: few, so that operations collide.
const KEYS: usize = 3;
/// Concurrent tasks per round.
const TASKS: usize = 4;
/// How long the tasks of a round run; the fault of the round falls inside it.
const ROUND_SPAN: Duration = Duration::from_millis(1_500);
/// Rounds per case.
const ROUNDS: usize = 4;
/// A value no key reaches in these tests: a comparison against it never holds.
const UNREACHABLE: i64 = i64::MIN + 12_345;

/// SplitMix64: a small, seedable generator, so that a seed replays the same schedule.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(bound).unwrap()).unwrap()
    }

    fn delta(&mut self) -> i64 {
        i64::try_from(self.next() % 21).unwrap() - 10
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// What the model knows of one value: the sum of acknowledged effects, and the range the
/// effects of calls with an unknown outcome may add to it.
#[derive(Clone, Copy, Debug, Default)]
struct Ledger {
    acked: i128,
    unknown_low: i128,
    unknown_high: i128,
}

impl Ledger {
    fn acknowledge(&mut self, effect: i64) {
        self.acked += i128::from(effect);
    }

    fn maybe(&mut self, effect: i64) {
        if effect < 0 {
            self.unknown_low += i128::from(effect);
        } else {
            self.unknown_high += i128::from(effect);
        }
    }

    fn admits(&self, stored: i64) -> bool {
        let extra = i128::from(stored) - self.acked;
        self.unknown_low <= extra && extra <= self.unknown_high
    }

    /// A value the model lost track of (an absolute call whose outcome is unknown).
    fn anything() -> Self {
        Self {
            acked: 0,
            unknown_low: -(1 << 100),
            unknown_high: 1 << 100,
        }
    }

    fn exactly(value: i64) -> Self {
        Self {
            acked: i128::from(value),
            ..Self::default()
        }
    }
}

/// The potential effects of a call (key index, effect if applied) and the effects it reports
/// (one per potential effect), or its error.
type Effects = (Vec<(usize, i64)>, Result<Vec<i64>, DistkitError>);

/// The failure of one check, with what replays it.
/// What the runs did, printed at the end of each case (`--nocapture` shows it).
struct Stats {
    calls: std::sync::atomic::AtomicUsize,
    outcome_unknown: std::sync::atomic::AtomicUsize,
    failed: std::sync::atomic::AtomicUsize,
    faults: std::sync::Mutex<Vec<String>>,
}

impl Stats {
    const fn new() -> Self {
        Self {
            calls: std::sync::atomic::AtomicUsize::new(0),
            outcome_unknown: std::sync::atomic::AtomicUsize::new(0),
            failed: std::sync::atomic::AtomicUsize::new(0),
            faults: std::sync::Mutex::new(Vec::new()),
        }
    }
}

static PLAIN_STATS: Stats = Stats::new();
static INSTANCE_STATS: Stats = Stats::new();

fn count(stats: &Stats, outcome: &Result<Vec<i64>, DistkitError>) {
    use std::sync::atomic::Ordering::Relaxed;
    stats.calls.fetch_add(1, Relaxed);
    match outcome {
        Ok(_) => {}
        Err(error) if is_outcome_unknown(error) => {
            stats.outcome_unknown.fetch_add(1, Relaxed);
        }
        Err(_) => {
            stats.failed.fetch_add(1, Relaxed);
        }
    }
}

fn report(stats: &Stats, what: &str, seed: u64) {
    use std::sync::atomic::Ordering::Relaxed;
    let faults = stats.faults.lock().unwrap();
    eprintln!(
        "{what} seed {seed}: {} calls so far ({} outcome unknown, {} failed without effect); faults: {}",
        stats.calls.load(Relaxed),
        stats.outcome_unknown.load(Relaxed),
        stats.failed.load(Relaxed),
        faults.join(", ")
    );
}

/// The calls of the current round of the instance-aware test, printed on failure.
static TRACE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// The trace, usable even after a panic elsewhere poisoned its lock.
fn trace() -> std::sync::MutexGuard<'static, Vec<String>> {
    TRACE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The calls and events of the plain test's current case, printed on failure.
static PLAIN_TRACE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// The plain test's trace, usable even after a panic poisoned its lock.
fn plain_trace() -> std::sync::MutexGuard<'static, Vec<String>> {
    PLAIN_TRACE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn fail(seed: u64, message: &str) -> ! {
    // Copied out and released before panicking: a poisoned trace would fail the other test.
    for (what, trace) in [
        ("the plain test's current case", plain_trace().clone()),
        ("the instance-aware test's current round", trace().clone()),
    ] {
        eprintln!("last calls of {what}:");
        for line in trace.iter().skip(trace.len().saturating_sub(300)) {
            eprintln!("{line}");
        }
    }
    panic!(
        "{message}\nreplay: DISTKIT_MODEL_SEED={seed} DISTKIT_MODEL_CASES=1 cargo test -p distkit-tests --all-features --test counter_model"
    );
}

fn is_outcome_unknown(error: &DistkitError) -> bool {
    matches!(
        error,
        DistkitError::CounterError(CounterError::OutcomeUnknown { .. })
    )
}

/// Errors a call may return under the injected faults without breaking a promise.
fn is_expected_under_faults(error: &DistkitError) -> bool {
    matches!(
        error,
        DistkitError::RedisError(_)
            | DistkitError::CounterError(CounterError::OutcomeUnknown { .. })
    )
}

/// A client whose commands time out after 1 s, reconnecting every 20 ms.
async fn impatient_client(redis: &Server) -> Client {
    let config = Config::from_url(&redis.url).unwrap();
    let client = Builder::from_config(config)
        .with_performance_config(|performance| {
            performance.default_command_timeout = Duration::from_secs(1);
        })
        .with_connection_config(|connection| {
            connection.connection_timeout = Duration::from_secs(2);
        })
        .set_policy(ReconnectPolicy::new_constant(0, 20))
        .build()
        .unwrap();
    bounded(client.init()).await.unwrap();
    client
}

/// The Redis of one case: a private server that persists every acknowledged write (so a
/// restart loses nothing that was acknowledged), behind a lock so a fault thread may restart
/// it.
struct Server {
    redis: std::sync::Mutex<TestRedis>,
    url: String,
}

impl Server {
    fn start() -> Self {
        let redis = TestRedis::start_persistent();
        let url = redis.url().to_owned();
        Self {
            redis: std::sync::Mutex::new(redis),
            url,
        }
    }

    fn pause(&self) {
        self.redis.lock().unwrap().pause();
    }

    fn resume(&self) {
        self.redis.lock().unwrap().resume();
    }

    fn cli(&self, args: &[&str]) -> String {
        self.redis.lock().unwrap().cli(args)
    }

    fn kill_clients(&self) -> usize {
        self.redis.lock().unwrap().kill_clients()
    }

    fn restart(&self) {
        self.redis.lock().unwrap().restart();
    }
}

/// A client with the default timeouts, for the checks between rounds.
async fn patient_client(redis: &Server) -> Client {
    bounded(distkit::connect(&redis.url)).await.unwrap()
}

/// A fault injected during a round.
#[derive(Clone, Copy, Debug)]
enum Fault {
    None,
    /// The server process is stopped (SIGSTOP) for this long, then continued.
    Stop(Duration),
    /// `CLIENT PAUSE <ms> WRITE`.
    PauseWrites(Duration),
    /// Every client connection is killed, this many times during the round.
    KillClients(usize),
    /// The server is killed (SIGKILL) and restarted from its append-only file.
    Restart,
}

impl Fault {
    fn pick(rng: &mut Rng) -> Self {
        match rng.below(5) {
            0 => Self::None,
            1 if rng.chance(50) => Self::Restart,
            // Around the command timeout (1 s): some calls time out, others wait it out.
            1 => Self::Stop(Duration::from_millis(300 + 100 * rng.below(10) as u64)),
            2 => Self::PauseWrites(Duration::from_millis(300 + 100 * rng.below(10) as u64)),
            _ => Self::KillClients(1 + rng.below(3)),
        }
    }

    /// Injects the fault over about `span`, from a thread (the server tools block).
    fn inject(self, redis: &Server, span: Duration) {
        match self {
            Self::None => {}
            Self::Restart => {
                std::thread::sleep(span / 3);
                redis.restart();
            }
            Self::Stop(length) => {
                std::thread::sleep(span / 4);
                redis.pause();
                std::thread::sleep(length);
                redis.resume();
            }
            Self::PauseWrites(length) => {
                std::thread::sleep(span / 4);
                let ms = length.as_millis().to_string();
                redis.cli(&["CLIENT", "PAUSE", &ms, "WRITE"]);
                std::thread::sleep(length);
            }
            Self::KillClients(times) => {
                for _ in 0..times {
                    std::thread::sleep(span / u32::try_from(times + 1).unwrap());
                    redis.kill_clients();
                }
            }
        }
    }
}

/// Drops a lax counter object and waits until its final, detached flush has ended.
///
/// Checking the model any earlier is wrong, not just early: while the flush is on its way, a
/// key can hold a value that an unknown outcome in the model also explains (the value
/// without the flush's delta, read as "the unknown call was applied"); the check would then
/// fix the model on that value, and the flush landing afterwards would look like a lost or
/// an extra increment in the next round. So the object is dropped on a runtime of its own,
/// where the final flush is the only task, and the wait ends when that runtime has no task.
async fn drop_and_wait_for_final_flush(seed: u64, mut lax: Arc<LaxCounter>) {
    // The object's flush task holds it only while it flushes: wait for the last reference.
    let started = Instant::now();
    let counter = loop {
        match Arc::try_unwrap(lax) {
            Ok(counter) => break counter,
            Err(shared) if started.elapsed() < Duration::from_secs(10) => {
                lax = shared;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(_) => fail(seed, "a dropped lax counter object is still referenced"),
        }
    };
    let waited = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            drop(counter);
            // Its final flush retries for up to 10 s.
            let deadline = Instant::now() + Duration::from_secs(15);
            let metrics = tokio::runtime::Handle::current().metrics();
            while metrics.num_alive_tasks() > 0 {
                if Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            true
        })
    });
    if !bounded(waited).await.unwrap() {
        fail(seed, "the final flush of a dropped lax counter did not end");
    }
    plain_trace().push("the dropped object's final flush ended".to_owned());
}

/// Retries `flush` until it succeeds (Redis is healthy again by then).
async fn flush_until_done<F, Fut>(seed: u64, what: &str, mut flush: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), DistkitError>>,
{
    let started = Instant::now();
    loop {
        match bounded(flush()).await {
            Ok(()) => return,
            Err(DistkitError::CounterError(CounterError::FlushExpired { deltas })) => fail(
                seed,
                &format!("{what}: a flush was dropped ({deltas} deltas) though Redis lost nothing"),
            ),
            Err(error) if started.elapsed() > Duration::from_secs(10) => {
                fail(seed, &format!("{what}: flush still failing: {error}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn keys() -> Vec<DistkitRedisKey> {
    (0..KEYS)
        .map(|index| DistkitRedisKey::new(format!("key{index}")).unwrap())
        .collect()
}

fn seeds() -> (u64, usize) {
    let first = std::env::var("DISTKIT_MODEL_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |elapsed| {
                    u64::try_from(elapsed.as_micros() % 1_000_000_007).unwrap_or(1)
                })
        });
    let cases = std::env::var("DISTKIT_MODEL_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(4);
    (first, cases)
}

// ---------------------------------------------------------------------------------------
// Plain counters
// ---------------------------------------------------------------------------------------

type DynCounter = Arc<dyn CounterTrait + Send + Sync>;

#[derive(Clone)]
enum PlainObject {
    Strict(Arc<StrictCounter>),
    Lax(Arc<LaxCounter>),
}

impl PlainObject {
    fn counter(&self) -> DynCounter {
        match self {
            Self::Strict(counter) => Arc::clone(counter) as DynCounter,
            Self::Lax(counter) => Arc::clone(counter) as DynCounter,
        }
    }
}

async fn plain_object(redis: &Server, prefix: &DistkitRedisKey, flavour: usize) -> PlainObject {
    let mut options = common::counter_options(prefix.clone(), impatient_client(redis).await);
    match flavour {
        0 => PlainObject::Strict(StrictCounter::new(options)),
        1 => PlainObject::Lax(LaxCounter::new(options)),
        _ => {
            options.allowed_lag = Duration::ZERO;
            PlainObject::Lax(LaxCounter::new(options))
        }
    }
}

/// One random relative operation on a plain counter; records its effect in `ledgers`.
async fn plain_operation(
    seed: u64,
    rng: &mut Rng,
    slot: usize,
    object: &PlainObject,
    keys: &[DistkitRedisKey],
    ledgers: &std::sync::Mutex<Vec<Ledger>>,
) {
    let counter = object.counter();
    let index = rng.below(keys.len());
    let k = &keys[index];
    let delta = rng.delta();
    // (key index, effect if applied) of the call, and its result as effects per key.
    let (potential, outcome): Effects = match rng.below(9) {
        0 => (
            vec![(index, delta)],
            bounded(counter.inc(k, delta)).await.map(|_| vec![delta]),
        ),
        1 => (
            vec![(index, -delta)],
            bounded(counter.dec(k, delta)).await.map(|_| vec![-delta]),
        ),
        2 => {
            let other = rng.below(keys.len());
            let second = rng.delta();
            (
                vec![(index, delta), (other, second)],
                bounded(counter.inc_all(&[(k, delta), (&keys[other], second)]))
                    .await
                    .map(|_| vec![delta, second]),
            )
        }
        3 => (
            vec![(index, delta)],
            bounded(counter.inc_if(k, CounterComparator::Nil, delta))
                .await
                .map(|(new, old)| vec![new - old]),
        ),
        4 => (
            vec![(index, delta)],
            bounded(counter.inc_if(k, CounterComparator::Gt(UNREACHABLE), delta))
                .await
                .map(|(new, old)| vec![new - old]),
        ),
        5 => {
            let result = bounded(counter.set_if(k, CounterComparator::Eq(UNREACHABLE), 7)).await;
            if let Ok((new, old)) = result
                && new != old
            {
                fail(
                    seed,
                    &format!("set_if against an unreachable value wrote: ({new}, {old})"),
                );
            }
            (vec![], result.map(|_| vec![]))
        }
        6 => {
            let other = rng.below(keys.len());
            (
                vec![(index, delta), (other, 1)],
                bounded(counter.inc_all_if(&[
                    (k, CounterComparator::Nil, delta),
                    (&keys[other], CounterComparator::Ne(UNREACHABLE), 1),
                ]))
                .await
                .map(|results| results.iter().map(|&(_, new, old)| new - old).collect()),
            )
        }
        7 => (
            vec![],
            bounded(counter.get_all(&keys.iter().collect::<Vec<_>>()))
                .await
                .map(|_| vec![]),
        ),
        _ => match object {
            PlainObject::Lax(lax) => match bounded(lax.flush()).await {
                Err(DistkitError::CounterError(CounterError::FlushExpired { deltas })) => fail(
                    seed,
                    &format!("a flush dropped {deltas} deltas though Redis lost nothing"),
                ),
                other => (vec![], other.map(|()| vec![])),
            },
            PlainObject::Strict(_) => (vec![], bounded(counter.get(k)).await.map(|_| vec![])),
        },
    };
    count(&PLAIN_STATS, &outcome);
    plain_trace().push(format!(
        "object {slot} potential {potential:?} -> {:?}",
        outcome.as_ref().map_err(|e| e.to_string())
    ));
    let mut ledgers = ledgers.lock().unwrap();
    match outcome {
        Ok(effects) => {
            for (&(key, _), effect) in potential.iter().zip(effects) {
                ledgers[key].acknowledge(effect);
            }
        }
        // A batch over several shards: the shards that answered applied their operations
        // (every batch of this model applies them unconditionally in effect); the failing
        // shard's operations follow its own error.
        Err(DistkitError::CounterError(CounterError::ShardedBatchPartiallyApplied {
            applied,
            source,
        })) => {
            let unknown = is_outcome_unknown(&source);
            if !unknown && !is_expected_under_faults(&source) {
                fail(seed, &format!("unexpected error: {source:?}"));
            }
            for (position, &(key, effect)) in potential.iter().enumerate() {
                if applied.contains(&position) {
                    ledgers[key].acknowledge(effect);
                } else if unknown {
                    ledgers[key].maybe(effect);
                }
            }
        }
        Err(error) if is_outcome_unknown(&error) => {
            for &(key, effect) in &potential {
                ledgers[key].maybe(effect);
            }
        }
        Err(error) if is_expected_under_faults(&error) => {}
        Err(error) => fail(seed, &format!("unexpected error: {error:?}")),
    }
}

async fn plain_case(seed: u64) {
    let mut rng = Rng(seed);
    let redis = Server::start();
    let prefix = fresh_key();
    let keys = Arc::new(keys());
    let mut objects = Vec::new();
    for flavour in [0, 1, 2, 1] {
        objects.push(plain_object(&redis, &prefix, flavour).await);
    }
    let reader = StrictCounter::new(common::counter_options(
        prefix.clone(),
        patient_client(&redis).await,
    ));
    let ledgers = Arc::new(std::sync::Mutex::new(vec![Ledger::default(); KEYS]));
    let mut unknown_calls = 0_usize;
    plain_trace().clear();
    for round in 0..ROUNDS {
        let fault = Fault::pick(&mut rng);
        plain_trace().push(format!("round {round}: {fault:?}"));
        PLAIN_STATS
            .faults
            .lock()
            .unwrap()
            .push(format!("{fault:?}"));
        let mut tasks = Vec::new();
        for _ in 0..TASKS {
            let mut task_rng = Rng(rng.next());
            let objects = objects.clone();
            let keys = Arc::clone(&keys);
            let ledgers = Arc::clone(&ledgers);
            tasks.push(tokio::spawn(async move {
                let end = Instant::now() + ROUND_SPAN;
                while Instant::now() < end {
                    let slot = task_rng.below(objects.len());
                    let object = &objects[slot];
                    plain_operation(seed, &mut task_rng, slot, object, &keys, &ledgers).await;
                    if task_rng.chance(30) {
                        tokio::time::sleep(Duration::from_millis(task_rng.below(6) as u64)).await;
                    }
                }
            }));
        }
        std::thread::scope(|scope| {
            let redis = &redis;
            let handle = scope.spawn(move || fault.inject(redis, ROUND_SPAN));
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    for task in tasks {
                        bounded(task).await.unwrap();
                    }
                });
            });
            handle.join().unwrap();
        });
        redis.resume();

        // Drop one lax object before flushing: its pending deltas go with the drop.
        let replaced = rng.below(objects.len());
        if matches!(objects[replaced], PlainObject::Lax(_)) {
            let flavour = if rng.chance(50) { 1 } else { 2 };
            plain_trace().push(format!(
                "object {replaced} dropped, replaced (flavour {flavour})"
            ));
            let fresh = plain_object(&redis, &prefix, flavour).await;
            if let PlainObject::Lax(dropped) = std::mem::replace(&mut objects[replaced], fresh) {
                drop_and_wait_for_final_flush(seed, dropped).await;
            }
        }
        for object in &objects {
            if let PlainObject::Lax(lax) = object {
                flush_until_done(seed, "lax counter", || lax.flush()).await;
            }
        }
        // Check every key (a failed call may still be on its way to Redis: allow it a moment).
        let started = Instant::now();
        for (index, k) in keys.iter().enumerate() {
            loop {
                let stored = bounded(reader.get(k)).await.unwrap();
                let ledger = ledgers.lock().unwrap()[index];
                if ledger.admits(stored) {
                    if ledger.unknown_low != 0 || ledger.unknown_high != 0 {
                        unknown_calls += 1;
                    }
                    plain_trace().push(format!(
                        "check {k}: {stored} (model {} + [{}, {}])",
                        ledger.acked, ledger.unknown_low, ledger.unknown_high
                    ));
                    ledgers.lock().unwrap()[index] = Ledger::exactly(stored);
                    break;
                }
                if started.elapsed() > Duration::from_secs(5) {
                    fail(
                        seed,
                        &format!(
                            "round {round} ({fault:?}): {k} holds {stored}, the model admits {} + [{}, {}]",
                            ledger.acked, ledger.unknown_low, ledger.unknown_high
                        ),
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        plain_absolute_round(seed, &mut rng, &objects, &keys, &ledgers).await;
    }
    report(&PLAIN_STATS, "plain counters", seed);
    eprintln!("  {unknown_calls} key checks resolved unknown outcomes");
}

/// Absolute and conditional operations while Redis is healthy and nothing runs concurrently:
/// every result is known exactly.
async fn plain_absolute_round(
    seed: u64,
    rng: &mut Rng,
    objects: &[PlainObject],
    keys: &[DistkitRedisKey],
    ledgers: &std::sync::Mutex<Vec<Ledger>>,
) {
    for _ in 0..4 {
        let slot = rng.below(objects.len());
        let counter = objects[slot].counter();
        let index = rng.below(keys.len());
        let k = &keys[index];
        let model = i64::try_from(ledgers.lock().unwrap()[index].acked).unwrap();
        let value = rng.delta() * 100;
        plain_trace().push(format!(
            "absolute round: object {slot}, {k}, model {model}, value {value}"
        ));
        // A call that fails here (a command timeout on a loaded machine) leaves the key
        // unknown to the model until the next round's check reads it.
        let lost_track = |seed: u64, error: DistkitError| {
            if !is_expected_under_faults(&error) {
                fail(seed, &format!("unexpected error: {error:?}"));
            }
            ledgers.lock().unwrap()[index] = Ledger::anything();
        };
        match rng.below(5) {
            0 => match bounded(counter.set(k, value)).await {
                Ok(new) => {
                    assert_eq!(new, value, "seed {seed}: set");
                    ledgers.lock().unwrap()[index] = Ledger::exactly(value);
                }
                Err(error) => return lost_track(seed, error),
            },
            1 => match bounded(counter.del(k)).await {
                Ok(old) => {
                    if old != model {
                        fail(
                            seed,
                            &format!("del returned {old}, the model holds {model}"),
                        );
                    }
                    ledgers.lock().unwrap()[index] = Ledger::exactly(0);
                }
                Err(error) => return lost_track(seed, error),
            },
            2 => match bounded(counter.set_if(k, CounterComparator::Eq(model), value)).await {
                Ok((new, old)) => {
                    if (new, old) != (value, model) {
                        fail(
                            seed,
                            &format!("set_if(Eq({model}), {value}) returned ({new}, {old})"),
                        );
                    }
                    ledgers.lock().unwrap()[index] = Ledger::exactly(value);
                }
                Err(error) => return lost_track(seed, error),
            },
            3 => match bounded(counter.inc_if(k, CounterComparator::Lt(model), value)).await {
                Ok((new, old)) => {
                    if (new, old) != (model, model) {
                        fail(seed, &format!("inc_if(Lt({model})) wrote: ({new}, {old})"));
                    }
                }
                Err(error) => return lost_track(seed, error),
            },
            _ => {
                if rng.chance(30) {
                    match bounded(counter.clear()).await {
                        Ok(()) => *ledgers.lock().unwrap() = vec![Ledger::default(); KEYS],
                        Err(error) => {
                            lost_track(seed, error);
                            *ledgers.lock().unwrap() = vec![Ledger::anything(); KEYS];
                            return;
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Instance-aware counters
// ---------------------------------------------------------------------------------------

type DynInstanceCounter = Arc<dyn InstanceAwareCounterTrait + Send + Sync>;

#[derive(Clone)]
enum InstanceObject {
    Strict(Arc<StrictInstanceAwareCounter>),
    Lax(Arc<LaxInstanceAwareCounter>),
}

impl InstanceObject {
    fn counter(&self) -> DynInstanceCounter {
        match self {
            Self::Strict(counter) => Arc::clone(counter) as DynInstanceCounter,
            Self::Lax(counter) => Arc::clone(counter) as DynInstanceCounter,
        }
    }
}

async fn instance_object(
    redis: &Server,
    prefix: &DistkitRedisKey,
    flavour: usize,
) -> InstanceObject {
    let client = impatient_client(redis).await;
    match flavour {
        0 => InstanceObject::Strict(StrictInstanceAwareCounter::new(common::strict_ic_options(
            prefix.clone(),
            client,
        ))),
        1 => InstanceObject::Lax(LaxInstanceAwareCounter::new(common::lax_ic_options(
            prefix.clone(),
            client,
        ))),
        _ => {
            let mut options = common::lax_ic_options(prefix.clone(), client);
            options.allowed_lag = Duration::ZERO;
            InstanceObject::Lax(LaxInstanceAwareCounter::new(options))
        }
    }
}

/// The model of the instance-aware counters: a ledger per (object, key) slice; `C` of a key
/// is the sum of its slices (every object stays alive).
type Slices = std::sync::Mutex<HashMap<(usize, usize), Ledger>>;

async fn instance_operation(
    seed: u64,
    rng: &mut Rng,
    (slot, object): (usize, &InstanceObject),
    keys: &[DistkitRedisKey],
    slices: &Slices,
) {
    let counter = object.counter();
    let index = rng.below(keys.len());
    let k = &keys[index];
    let delta = rng.delta();
    let (potential, outcome): Effects = match rng.below(8) {
        0 => (
            vec![(index, delta)],
            bounded(counter.inc(k, delta)).await.map(|_| vec![delta]),
        ),
        1 => (
            vec![(index, -delta)],
            bounded(counter.dec(k, delta)).await.map(|_| vec![-delta]),
        ),
        2 => {
            let other = rng.below(keys.len());
            let second = rng.delta();
            (
                vec![(index, delta), (other, second)],
                bounded(counter.inc_all(&[(k, delta), (&keys[other], second)]))
                    .await
                    .map(|_| vec![delta, second]),
            )
        }
        3 => (
            vec![(index, delta)],
            bounded(counter.inc_if(k, CounterComparator::Ne(UNREACHABLE), delta))
                .await
                .map(|((new, _), (old, _))| vec![new - old]),
        ),
        4 => {
            let result =
                bounded(counter.set_on_instance_if(k, CounterComparator::Eq(UNREACHABLE), 3)).await;
            if let Ok((new, old)) = result
                && new != old
            {
                fail(
                    seed,
                    &format!(
                        "set_on_instance_if against an unreachable value wrote: {new:?} {old:?}"
                    ),
                );
            }
            (vec![], result.map(|_| vec![]))
        }
        5 => {
            let result = bounded(counter.set_if(k, CounterComparator::Eq(UNREACHABLE), 3)).await;
            if let Ok((new, old)) = result
                && new != old
            {
                fail(
                    seed,
                    &format!("set_if against an unreachable value wrote: {new:?} {old:?}"),
                );
            }
            (vec![], result.map(|_| vec![]))
        }
        6 => (
            vec![],
            bounded(counter.get_all(&keys.iter().collect::<Vec<_>>()))
                .await
                .map(|_| vec![]),
        ),
        _ => match object {
            InstanceObject::Lax(lax) => match bounded(lax.flush()).await {
                Err(DistkitError::CounterError(CounterError::FlushExpired { deltas })) => fail(
                    seed,
                    &format!("a flush dropped {deltas} deltas though Redis lost nothing"),
                ),
                other => (vec![], other.map(|()| vec![])),
            },
            InstanceObject::Strict(_) => (vec![], bounded(counter.get(k)).await.map(|_| vec![])),
        },
    };
    count(&INSTANCE_STATS, &outcome);
    trace().push(format!(
        "slot {slot} potential {potential:?} -> {:?}",
        outcome.as_ref().map_err(|e| e.to_string())
    ));
    let mut slices = slices.lock().unwrap();
    match outcome {
        Ok(effects) => {
            for (&(key, _), effect) in potential.iter().zip(effects) {
                slices.entry((slot, key)).or_default().acknowledge(effect);
            }
        }
        // A batch over several shards: as for the plain counters.
        Err(DistkitError::CounterError(CounterError::ShardedBatchPartiallyApplied {
            applied,
            source,
        })) => {
            let unknown = is_outcome_unknown(&source);
            if !unknown && !is_expected_under_faults(&source) {
                fail(seed, &format!("unexpected error: {source:?}"));
            }
            for (position, &(key, effect)) in potential.iter().enumerate() {
                if applied.contains(&position) {
                    slices.entry((slot, key)).or_default().acknowledge(effect);
                } else if unknown {
                    slices.entry((slot, key)).or_default().maybe(effect);
                }
            }
        }
        Err(error) if is_outcome_unknown(&error) => {
            for &(key, effect) in &potential {
                slices.entry((slot, key)).or_default().maybe(effect);
            }
        }
        Err(error) if is_expected_under_faults(&error) => {}
        Err(error) => fail(seed, &format!("unexpected error: {error:?}")),
    }
}

async fn instance_case(seed: u64) {
    let mut rng = Rng(seed);
    let redis = Server::start();
    let prefix = fresh_key();
    let keys = Arc::new(keys());
    let mut objects = Vec::new();
    for flavour in [0, 1, 2, 0] {
        objects.push(instance_object(&redis, &prefix, flavour).await);
    }
    let slices: Arc<Slices> = Arc::default();
    for round in 0..ROUNDS {
        let fault = Fault::pick(&mut rng);
        INSTANCE_STATS
            .faults
            .lock()
            .unwrap()
            .push(format!("{fault:?}"));
        let mut tasks = Vec::new();
        for _ in 0..TASKS {
            let mut task_rng = Rng(rng.next());
            let objects = objects.clone();
            let keys = Arc::clone(&keys);
            let slices = Arc::clone(&slices);
            tasks.push(tokio::spawn(async move {
                let end = Instant::now() + ROUND_SPAN;
                while Instant::now() < end {
                    let slot = task_rng.below(objects.len());
                    instance_operation(seed, &mut task_rng, (slot, &objects[slot]), &keys, &slices)
                        .await;
                    if task_rng.chance(30) {
                        tokio::time::sleep(Duration::from_millis(task_rng.below(6) as u64)).await;
                    }
                }
            }));
        }
        std::thread::scope(|scope| {
            let redis = &redis;
            let handle = scope.spawn(move || fault.inject(redis, ROUND_SPAN));
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    for task in tasks {
                        bounded(task).await.unwrap();
                    }
                });
            });
            handle.join().unwrap();
        });
        redis.resume();
        for object in &objects {
            if let InstanceObject::Lax(lax) = object {
                flush_until_done(seed, "lax instance counter", || lax.flush()).await;
            }
        }
        // C as an instance reads it, and every instance's counted slice as Redis holds it:
        // C must be their sum (every instance is alive), and each must fit its model.
        for (index, k) in keys.iter().enumerate() {
            let slices_key =
                common::ic_key_of(&prefix, k.as_str(), "slices", common::test_shards());
            let (c, _) = bounded(objects[0].counter().get(k)).await.unwrap();
            let mut sum = 0_i128;
            let mut total = Ledger::default();
            let mut model = slices.lock().unwrap();
            for (slot, object) in objects.iter().enumerate() {
                let field = format!("{}:{k}", object.counter().instance_id());
                let stored = redis.cli(&["HGET", &slices_key, &field]);
                let i: i64 = if stored.is_empty() {
                    0
                } else {
                    stored.parse().unwrap()
                };
                let ledger = model.get(&(slot, index)).copied().unwrap_or_default();
                if !ledger.admits(i) {
                    fail(
                        seed,
                        &format!(
                            "round {round} ({fault:?}): slice of instance {slot} for {k} is {i}, the model admits {} + [{}, {}]",
                            ledger.acked, ledger.unknown_low, ledger.unknown_high
                        ),
                    );
                }
                total.acked += ledger.acked;
                total.unknown_low += ledger.unknown_low;
                total.unknown_high += ledger.unknown_high;
                model.insert((slot, index), Ledger::exactly(i));
                sum += i128::from(i);
            }
            if i128::from(c) != sum {
                fail(
                    seed,
                    &format!("round {round} ({fault:?}): C of {k} is {c}, its slices sum to {sum}"),
                );
            }
            if !total.admits(c) {
                fail(
                    seed,
                    &format!(
                        "round {round} ({fault:?}): C of {k} is {c}, the model admits {} + [{}, {}]",
                        total.acked, total.unknown_low, total.unknown_high
                    ),
                );
            }
        }
        trace().clear();
        instance_absolute_round(seed, &mut rng, &objects, &keys, &slices).await;
    }
    report(&INSTANCE_STATS, "instance-aware counters", seed);
}

/// Global and per-instance absolute operations while Redis is healthy: exact results.
async fn instance_absolute_round(
    seed: u64,
    rng: &mut Rng,
    objects: &[InstanceObject],
    keys: &[DistkitRedisKey],
    slices: &Slices,
) {
    for _ in 0..3 {
        let slot = rng.below(objects.len());
        let counter = objects[slot].counter();
        let index = rng.below(keys.len());
        let k = &keys[index];
        let value = rng.delta() * 100;
        let model_c: i128 = {
            let model = slices.lock().unwrap();
            (0..objects.len())
                .map(|other| model.get(&(other, index)).map_or(0, |l| l.acked))
                .sum()
        };
        // A call that fails here leaves what it may have touched unknown to the model until
        // the next round's check reads it.
        let lost_track = |seed: u64, error: DistkitError, touched: &[(usize, usize)]| {
            if !is_expected_under_faults(&error) {
                fail(seed, &format!("unexpected error: {error:?}"));
            }
            let mut model = slices.lock().unwrap();
            for &slice in touched {
                model.insert(slice, Ledger::anything());
            }
        };
        let every_slot: Vec<(usize, usize)> =
            (0..objects.len()).map(|other| (other, index)).collect();
        match rng.below(4) {
            0 => match bounded(counter.set(k, value)).await {
                Ok((c, i)) => {
                    assert_eq!((c, i), (value, value), "seed {seed}: set");
                    let mut model = slices.lock().unwrap();
                    for &slice in &every_slot {
                        model.insert(slice, Ledger::default());
                    }
                    model.insert((slot, index), Ledger::exactly(value));
                }
                Err(error) => return lost_track(seed, error, &every_slot),
            },
            1 => match bounded(counter.del(k)).await {
                Ok((old_c, _)) => {
                    if i128::from(old_c) != model_c {
                        fail(
                            seed,
                            &format!("del returned C {old_c}, the model holds {model_c}"),
                        );
                    }
                    let mut model = slices.lock().unwrap();
                    for &slice in &every_slot {
                        model.insert(slice, Ledger::default());
                    }
                }
                Err(error) => return lost_track(seed, error, &every_slot),
            },
            2 => {
                match bounded(counter.set_on_instance_if(k, CounterComparator::Nil, value)).await {
                    Ok(((c, i), (old_c, old_i))) => {
                        if i128::from(old_c) != model_c {
                            fail(
                                seed,
                                &format!(
                                    "set_on_instance_if saw C {old_c}, the model holds {model_c}"
                                ),
                            );
                        }
                        assert_eq!(i, value, "seed {seed}");
                        assert_eq!(
                            i128::from(c),
                            model_c - i128::from(old_i) + i128::from(value)
                        );
                        slices
                            .lock()
                            .unwrap()
                            .insert((slot, index), Ledger::exactly(value));
                    }
                    Err(error) => return lost_track(seed, error, &[(slot, index)]),
                }
            }
            _ => {
                let mine: Vec<(usize, usize)> = (0..keys.len()).map(|key| (slot, key)).collect();
                match bounded(counter.clear_on_instance()).await {
                    Ok(()) => {
                        let mut model = slices.lock().unwrap();
                        for &slice in &mine {
                            model.insert(slice, Ledger::default());
                        }
                    }
                    Err(error) => return lost_track(seed, error, &mine),
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plain_counters_match_the_model_under_random_concurrent_schedules_and_faults() {
    let (first, cases) = seeds();
    for case in 0..cases {
        let seed = first.wrapping_add(case as u64);
        eprintln!("plain counters: seed {seed}");
        plain_case(seed).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instance_aware_counters_match_the_model_under_random_concurrent_schedules_and_faults() {
    let (first, cases) = seeds();
    for case in 0..cases {
        let seed = first.wrapping_add(case as u64);
        eprintln!("instance-aware counters: seed {seed}");
        instance_case(seed).await;
    }
}
