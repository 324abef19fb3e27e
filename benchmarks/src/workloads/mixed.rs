//! The mixed workload of `distkit/benches/mixed.rs`: 64 tasks cycle through seven operations
//! (strict, lax, instance-aware and lax instance-aware `inc`, Mutex `lock` + `release` over
//! 8 mutexes, RwLock `read` + `release`, strict `get`) on 16 keys; the baseline is raw
//! EVALSHA of a one-line HINCRBY script from the same 64 tasks (row `mixed.all`), and the same
//! seven operations done raw, cycled the same way by the same 64 tasks (row
//! `mixed.same_ops`). distkit 0.7.1 runs the same mix.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use distkit::DistkitRedisKey;
use distkit::counter::{CounterOptions, CounterTrait as _, LaxCounter, StrictCounter};
use distkit::icounter::{
    InstanceAwareCounterTrait as _, LaxInstanceAwareCounter, LaxInstanceAwareCounterOptions,
    StrictInstanceAwareCounter, StrictInstanceAwareCounterOptions,
};
use distkit::lock::{LockOptions, Mutex, RwLock};
use distkit_07::counter::CounterTrait as _;
use distkit_07::icounter::InstanceAwareCounterTrait as _;
use distkit_test_support::unique_prefix;
use redis::aio::MultiplexedConnection;

use super::icounter::SAME_WORK_SCRIPT;
use super::locks::{RAW_RELEASE, raw_lock_release};
use super::strict::RAW_SCRIPT;
use super::{MixedOp, RunResults, medians};
use crate::measure::{ROUNDS, Samples, Targets, bounded, evalsha, per_second, script_load};
use crate::stats::{millis, percentile};
use crate::{BenchError, BenchResult};

/// How many tasks run the mix.
pub const TASKS: usize = 64;
/// How many keys the counters spread over.
const KEYS: usize = 16;
/// How many mutexes the lock operation spreads over.
const MUTEXES: usize = 8;

/// How many operations the mix has.
const OPERATION_COUNT: usize = 7;
/// The operations of the mix, in the order tasks cycle through them.
pub const OPERATIONS: [&str; OPERATION_COUNT] = [
    "strict inc",
    "lax inc",
    "icounter inc",
    "lax icounter inc",
    "mutex lock+release",
    "rwlock read+release",
    "strict get",
];

/// distkit's primitives of the mix.
struct Ours {
    strict: Arc<StrictCounter>,
    lax: Arc<LaxCounter>,
    instances: Arc<StrictInstanceAwareCounter>,
    lax_instances: Arc<LaxInstanceAwareCounter>,
    mutexes: Vec<Arc<Mutex>>,
    rwlock: Arc<RwLock>,
    keys: Vec<DistkitRedisKey>,
}

impl Ours {
    fn new(targets: &Targets) -> BenchResult<Self> {
        let prefix = DistkitRedisKey::new(unique_prefix())?;
        let lock_name = unique_prefix();
        let client = &targets.distkit;
        Ok(Self {
            strict: StrictCounter::new(CounterOptions::new(prefix.clone(), client.clone())),
            lax: LaxCounter::new(CounterOptions::new(prefix.clone(), client.clone())),
            instances: StrictInstanceAwareCounter::new(StrictInstanceAwareCounterOptions::new(
                prefix.clone(),
                client.clone(),
            )),
            lax_instances: LaxInstanceAwareCounter::new(LaxInstanceAwareCounterOptions::new(
                prefix,
                client.clone(),
            )),
            mutexes: (0..MUTEXES)
                .map(|index| {
                    DistkitRedisKey::new(format!("{lock_name}-{index}"))
                        .map(|key| Mutex::new(LockOptions::new(key, client.clone())))
                })
                .collect::<Result<_, _>>()?,
            rwlock: RwLock::new(LockOptions::new(
                DistkitRedisKey::new(lock_name)?,
                client.clone(),
            )),
            keys: (0..KEYS)
                .map(|index| DistkitRedisKey::new(format!("k{index}")))
                .collect::<Result<_, _>>()?,
        })
    }

    async fn run(&self, operation: usize, task: usize) -> BenchResult<()> {
        let key = self.keys.get(task % KEYS).ok_or("no key")?;
        match operation {
            0 => drop(self.strict.inc(key, 1).await?),
            1 => drop(self.lax.inc(key, 1).await?),
            2 => drop(self.instances.inc(key, 1).await?),
            3 => drop(self.lax_instances.inc(key, 1).await?),
            4 => {
                let mutex = self.mutexes.get(task % MUTEXES).ok_or("no mutex")?;
                mutex.lock().await?.release().await?;
            }
            5 => {
                self.rwlock.read().await?.release().await?;
            }
            _ => drop(self.strict.get(key).await?),
        }
        Ok(())
    }
}

/// distkit 0.7.1's primitives of the mix.
struct Theirs {
    strict: Arc<distkit_07::counter::StrictCounter>,
    lax: Arc<distkit_07::counter::LaxCounter>,
    instances: Arc<distkit_07::icounter::StrictInstanceAwareCounter>,
    lax_instances: Arc<distkit_07::icounter::LaxInstanceAwareCounter>,
    mutexes: Vec<Arc<distkit_07::lock::Mutex>>,
    rwlock: Arc<distkit_07::lock::RwLock>,
    keys: Vec<distkit_07::DistkitRedisKey>,
}

impl Theirs {
    fn new(targets: &Targets) -> BenchResult<Self> {
        use distkit_07::counter::CounterOptions;
        use distkit_07::icounter::{
            LaxInstanceAwareCounterOptions, StrictInstanceAwareCounterOptions,
        };
        use distkit_07::lock::LockOptions;
        let prefix = distkit_07::DistkitRedisKey::new(unique_prefix())?;
        let lock_name = unique_prefix();
        let connection = &targets.anchor;
        Ok(Self {
            strict: distkit_07::counter::StrictCounter::new(CounterOptions::new(
                prefix.clone(),
                connection.clone(),
            )),
            lax: distkit_07::counter::LaxCounter::new(CounterOptions::new(
                prefix.clone(),
                connection.clone(),
            )),
            instances: distkit_07::icounter::StrictInstanceAwareCounter::new(
                StrictInstanceAwareCounterOptions::new(prefix.clone(), connection.clone()),
            ),
            lax_instances: distkit_07::icounter::LaxInstanceAwareCounter::new(
                LaxInstanceAwareCounterOptions::new(prefix, connection.clone()),
            ),
            mutexes: (0..MUTEXES)
                .map(|index| {
                    distkit_07::DistkitRedisKey::new(format!("{lock_name}-{index}")).map(|key| {
                        distkit_07::lock::Mutex::new(LockOptions::new(key, connection.clone()))
                    })
                })
                .collect::<Result<_, _>>()?,
            rwlock: distkit_07::lock::RwLock::new(LockOptions::new(
                distkit_07::DistkitRedisKey::new(lock_name)?,
                connection.clone(),
            )),
            keys: (0..KEYS)
                .map(|index| distkit_07::DistkitRedisKey::new(format!("k{index}")))
                .collect::<Result<_, _>>()?,
        })
    }

    async fn run(&self, operation: usize, task: usize) -> BenchResult<()> {
        let key = self.keys.get(task % KEYS).ok_or("no key")?;
        match operation {
            0 => drop(self.strict.inc(key, 1).await?),
            1 => drop(self.lax.inc(key, 1).await?),
            2 => drop(self.instances.inc(key, 1).await?),
            3 => drop(self.lax_instances.inc(key, 1).await?),
            4 => {
                let mutex = self.mutexes.get(task % MUTEXES).ok_or("no mutex")?;
                mutex.lock().await?.release().await?;
            }
            5 => {
                self.rwlock.read().await?.release().await?;
            }
            _ => drop(self.strict.get(key).await?),
        }
        Ok(())
    }
}

/// The same seven operations done raw, the least work each needs: the strict `inc` as
/// `EVALSHA` of the one-line HINCRBY script; both lax `inc`s as an in-process
/// `Mutex<HashMap>` increment (the floor of the `lax` rows); the instance-aware `inc` as
/// `EVALSHA` of the `icounter.same_work` script (TIME, ZADD of the lease, two HINCRBYs); the
/// mutex as a fair in-process `tokio::sync::Mutex` per mutex (the same 8, so the same
/// contention, ordered FIFO with no Redis round trip to hand over) around the raw lock's two
/// round trips (`SET NX PX`, compare-and-delete); the read lock as the raw lock's two round
/// trips on a key of the task's own (readers never wait for each other); the strict `get`
/// as one `HGET`.
struct Raw {
    connection: MultiplexedConnection,
    inc_sha: String,
    same_work_sha: String,
    release_sha: String,
    /// The hash of the strict `inc` and `get`.
    hash: String,
    /// The lease, slices and totals of the instance-aware `inc`.
    instance_keys: [String; 3],
    lax: std::sync::Mutex<HashMap<String, i64>>,
    lax_instances: std::sync::Mutex<HashMap<String, i64>>,
    mutexes: Vec<tokio::sync::Mutex<()>>,
    mutex_keys: Vec<String>,
    reader_keys: Vec<String>,
    names: Vec<String>,
}

impl Raw {
    async fn new(targets: &Targets) -> BenchResult<Self> {
        let mut connection = targets.raw.clone();
        let tag = unique_prefix();
        let names: Vec<String> = (0..KEYS).map(|index| format!("k{index}")).collect();
        let floor = || {
            std::sync::Mutex::new(
                names
                    .iter()
                    .map(|name| (name.clone(), 0_i64))
                    .collect::<HashMap<_, _>>(),
            )
        };
        Ok(Self {
            inc_sha: script_load(&mut connection, RAW_SCRIPT).await?,
            same_work_sha: script_load(&mut connection, SAME_WORK_SCRIPT).await?,
            release_sha: script_load(&mut connection, RAW_RELEASE).await?,
            hash: format!("bench:{{{tag}}}:mixed"),
            instance_keys: ["alive", "slices", "totals"]
                .map(|part| format!("bench:{{{tag}}}:mixed:{part}")),
            lax: floor(),
            lax_instances: floor(),
            mutexes: (0..MUTEXES).map(|_| tokio::sync::Mutex::new(())).collect(),
            mutex_keys: (0..MUTEXES)
                .map(|index| format!("bench:{{{tag}}}:mutex:{index}"))
                .collect(),
            reader_keys: (0..TASKS)
                .map(|index| format!("bench:{{{tag}}}:reader:{index}"))
                .collect(),
            names,
            connection,
        })
    }

    fn floor_inc(map: &std::sync::Mutex<HashMap<String, i64>>, name: &str) -> BenchResult<()> {
        let mut map = map.lock().map_err(|_| "poisoned")?;
        if let Some(value) = map.get_mut(name) {
            *value = value.wrapping_add(1);
        }
        Ok(())
    }

    async fn run(&self, operation: usize, task: usize) -> BenchResult<()> {
        let name = self.names.get(task % KEYS).ok_or("no key")?;
        let mut connection = self.connection.clone();
        match operation {
            0 => drop(evalsha(&mut connection, &self.inc_sha, &self.hash, &[name, "1"]).await?),
            1 => Self::floor_inc(&self.lax, name)?,
            2 => {
                let _: redis::Value = redis::cmd("EVALSHA")
                    .arg(self.same_work_sha.as_str())
                    .arg(self.instance_keys.len())
                    .arg(self.instance_keys.as_slice())
                    .arg(&["01BENCHINSTANCE", name.as_str(), "1"])
                    .query_async(&mut connection)
                    .await?;
            }
            3 => Self::floor_inc(&self.lax_instances, name)?,
            4 => {
                let index = task % MUTEXES;
                let (mutex, key) = self
                    .mutexes
                    .get(index)
                    .zip(self.mutex_keys.get(index))
                    .ok_or("no mutex")?;
                let _turn = mutex.lock().await;
                raw_lock_release(&mut connection, &self.release_sha, key).await?;
            }
            5 => {
                let key = self.reader_keys.get(task).ok_or("no reader key")?;
                raw_lock_release(&mut connection, &self.release_sha, key).await?;
            }
            _ => {
                let _: Option<i64> = redis::cmd("HGET")
                    .arg(self.hash.as_str())
                    .arg(name.as_str())
                    .query_async(&mut connection)
                    .await?;
            }
        }
        Ok(())
    }
}

/// Latencies per operation, the calls per second of all, and the elapsed time of a round.
type Round = (BTreeMap<usize, Vec<Duration>>, f64, Duration);

/// Runs `operation(task, call)` (which returns the operation it ran) from [`TASKS`] tasks
/// for `round`.
async fn load<F, Fut>(round: Duration, operation: F) -> BenchResult<Round>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = BenchResult<usize>> + Send,
{
    let started = Instant::now();
    let handles: Vec<_> = (0..TASKS)
        .map(|task| {
            let operation = operation.clone();
            tokio::spawn(async move {
                let mut samples: Vec<(usize, Duration)> = Vec::new();
                let mut call = 0_usize;
                while started.elapsed() < round {
                    let begun = Instant::now();
                    let label = operation(task, call).await?;
                    samples.push((label, begun.elapsed()));
                    call = call.wrapping_add(1);
                }
                Ok::<_, BenchError>(samples)
            })
        })
        .collect();
    let mut latencies: BTreeMap<usize, Vec<Duration>> = BTreeMap::new();
    let mut total = 0_u64;
    for handle in handles {
        for (label, latency) in handle.await?? {
            latencies.entry(label).or_default().push(latency);
            total = total.saturating_add(1);
        }
    }
    let elapsed = started.elapsed();
    Ok((latencies, per_second(total, elapsed), elapsed))
}

/// Adds a round's latencies to `pooled` and its elapsed time to `elapsed`.
fn pool(pooled: &mut BTreeMap<usize, Vec<Duration>>, elapsed: &mut Duration, round: Round) -> f64 {
    let (latencies, rate, took) = round;
    for (label, mut samples) in latencies {
        pooled.entry(label).or_default().append(&mut samples);
    }
    *elapsed = elapsed.saturating_add(took);
    rate
}

/// Fills row `mixed.all` and the run's per-operation figures.
///
/// # Errors
///
/// A failed call.
pub async fn run(targets: &Targets, round: Duration, results: &mut RunResults) -> BenchResult<()> {
    let mut raw_connection = targets.raw.clone();
    let sha = Arc::new(script_load(&mut raw_connection, RAW_SCRIPT).await?);
    let hash = Arc::new(format!("bench:{{{}}}:raw", unique_prefix()));
    let ours = Arc::new(Ours::new(targets)?);
    let theirs = Arc::new(Theirs::new(targets)?);
    let raw_mix = Arc::new(Raw::new(targets).await?);
    let mut rates = Samples::default();
    let mut same_ops_rates = Vec::new();
    let (mut our_ops, mut their_ops) = (BTreeMap::new(), BTreeMap::new());
    let (mut our_time, mut their_time) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..ROUNDS {
        let mix = Arc::clone(&ours);
        let measured = bounded(
            round,
            load(round, move |task, call| {
                let mix = Arc::clone(&mix);
                async move {
                    let operation = task.wrapping_add(call) % OPERATION_COUNT;
                    mix.run(operation, task).await?;
                    Ok(operation)
                }
            }),
        )
        .await?;
        rates
            .distkit
            .push(pool(&mut our_ops, &mut our_time, measured));

        let (connection, sha, hash) = (raw_connection.clone(), Arc::clone(&sha), Arc::clone(&hash));
        let (_, rate, _) = bounded(
            round,
            load(round, move |_, _| {
                let (mut connection, sha, hash) =
                    (connection.clone(), Arc::clone(&sha), Arc::clone(&hash));
                async move {
                    evalsha(&mut connection, &sha, &hash, &["k", "1"]).await?;
                    Ok(0)
                }
            }),
        )
        .await?;
        rates.raw.push(rate);

        let mix = Arc::clone(&theirs);
        let measured = bounded(
            round,
            load(round, move |task, call| {
                let mix = Arc::clone(&mix);
                async move {
                    let operation = task.wrapping_add(call) % OPERATION_COUNT;
                    mix.run(operation, task).await?;
                    Ok(operation)
                }
            }),
        )
        .await?;
        rates
            .anchor
            .push(pool(&mut their_ops, &mut their_time, measured));

        let mix = Arc::clone(&raw_mix);
        let (_, rate, _) = bounded(
            round,
            load(round, move |task, call| {
                let mix = Arc::clone(&mix);
                async move {
                    let operation = task.wrapping_add(call) % OPERATION_COUNT;
                    mix.run(operation, task).await?;
                    Ok(operation)
                }
            }),
        )
        .await?;
        same_ops_rates.push(rate);
    }
    ours.lax.flush().await?;
    ours.lax_instances.flush().await?;
    results.rows.insert("mixed.all", medians(&rates));
    let same_ops = Samples {
        raw: same_ops_rates,
        ..rates
    };
    results.rows.insert("mixed.same_ops", medians(&same_ops));
    let figures =
        |ops: &mut BTreeMap<usize, Vec<Duration>>, operation: usize, elapsed: Duration| {
            let samples = ops.get_mut(&operation).map(|samples| {
                samples.sort();
                samples.as_slice()
            });
            let samples = samples.unwrap_or_default();
            let count = u64::try_from(samples.len()).unwrap_or(u64::MAX);
            (
                per_second(count, elapsed),
                (
                    millis(percentile(samples, 500)),
                    millis(percentile(samples, 990)),
                ),
            )
        };
    for (operation, name) in OPERATIONS.iter().enumerate() {
        let (distkit_rate, distkit) = figures(&mut our_ops, operation, our_time);
        let (anchor_rate, anchor) = figures(&mut their_ops, operation, their_time);
        results.mixed_ops.push(MixedOp {
            name,
            distkit_rate,
            distkit,
            anchor_rate,
            anchor,
        });
    }
    Ok(())
}
