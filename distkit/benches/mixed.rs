//! A mixed load: every primitive from 64 tasks for a few seconds, with throughput and p99
//! latency per operation next to a raw Redis baseline measured in the same run.
//!
//! `cargo bench -p distkit --features full --bench mixed` (a private redis-server, or
//! `REDIS_URL`; `DISTKIT_TEST_DEPLOYMENT=cluster` for a three-master cluster).
#![expect(
    clippy::arithmetic_side_effects,
    clippy::cast_precision_loss,
    clippy::indexing_slicing,
    reason = "a measurement program: counts, percentiles and float ratios"
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use distkit::counter::{CounterOptions, CounterTrait, LaxCounter, StrictCounter};
use distkit::fred::clients::Client;
use distkit::fred::interfaces::{ClientLike, LuaInterface};
use distkit::fred::types::{ClusterHash, CustomCommand, Value};
use distkit::icounter::{
    InstanceAwareCounterTrait, LaxInstanceAwareCounter, LaxInstanceAwareCounterOptions,
    StrictInstanceAwareCounter, StrictInstanceAwareCounterOptions,
};
use distkit::lock::{LockOptions, Mutex, RwLock};
use distkit::{DistkitRedisKey, connect};
use distkit_test_support::{TestRedis, unique_prefix};

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const TASKS: usize = 64;
const DURATION: Duration = Duration::from_secs(4);

fn key(text: &str) -> DistkitRedisKey {
    DistkitRedisKey::new_or_panic(text.to_owned())
}

/// The operations of the mix, in the order tasks cycle through them.
const OPERATIONS: [&str; 7] = [
    "strict inc",
    "lax inc",
    "icounter inc",
    "lax icounter inc",
    "mutex lock+release",
    "rwlock read+release",
    "strict get",
];

struct Primitives {
    strict: Arc<StrictCounter>,
    lax: Arc<LaxCounter>,
    instances: Arc<StrictInstanceAwareCounter>,
    lax_instances: Arc<LaxInstanceAwareCounter>,
    mutexes: Vec<Arc<Mutex>>,
    rwlock: Arc<RwLock>,
}

async fn run_operation(primitives: &Primitives, operation: usize, task: usize) -> BenchResult<()> {
    let k = key(&format!("k{}", task % 16));
    match operation {
        0 => drop(primitives.strict.inc(&k, 1).await?),
        1 => drop(primitives.lax.inc(&k, 1).await?),
        2 => drop(primitives.instances.inc(&k, 1).await?),
        3 => drop(primitives.lax_instances.inc(&k, 1).await?),
        4 => primitives.mutexes[task % primitives.mutexes.len()]
            .lock()
            .await?
            .release()
            .await
            .map(drop)?,
        5 => primitives.rwlock.read().await?.release().await.map(drop)?,
        _ => drop(primitives.strict.get(&k).await?),
    }
    Ok(())
}

fn percentile(sorted: &[Duration], permille: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() - 1) * permille / 1000]
}

/// Runs `operation(task, round)` from every task for `DURATION`; latencies per label.
async fn load<F, Fut>(operation: F) -> BenchResult<(BTreeMap<usize, Vec<Duration>>, Duration)>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = BenchResult<usize>> + Send,
{
    let started = Instant::now();
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let operation = operation.clone();
        handles.push(tokio::spawn(async move {
            let mut samples: Vec<(usize, Duration)> = Vec::new();
            let mut round = 0;
            while started.elapsed() < DURATION {
                let begun = Instant::now();
                let label = operation(task, round).await?;
                samples.push((label, begun.elapsed()));
                round += 1;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(samples)
        }));
    }
    let mut latencies: BTreeMap<usize, Vec<Duration>> = BTreeMap::new();
    for handle in handles {
        for (label, latency) in handle.await?? {
            latencies.entry(label).or_default().push(latency);
        }
    }
    Ok((latencies, started.elapsed()))
}

async fn baseline(client: &Client) -> BenchResult<(f64, Duration)> {
    let sha: String = client
        .script_load_cluster("return redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])")
        .await?;
    let hash = format!("bench:{{{}}}:raw", unique_prefix());
    let slot = distkit::fred::util::redis_keyslot(hash.as_bytes());
    let client = client.clone();
    let (latencies, elapsed) = load(move |_, _| {
        let (client, sha, hash) = (client.clone(), sha.clone(), hash.clone());
        async move {
            let command = CustomCommand::new_static("EVALSHA", ClusterHash::Custom(slot), false);
            let args: Vec<Value> = vec![sha.into(), 1.into(), hash.into(), "k".into(), 1.into()];
            let _: Value = client.custom(command, args).await?;
            Ok(0)
        }
    })
    .await?;
    let mut all: Vec<Duration> = latencies.into_values().flatten().collect();
    all.sort();
    Ok((
        all.len() as f64 / elapsed.as_secs_f64(),
        percentile(&all, 990),
    ))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> BenchResult<()> {
    let redis = TestRedis::start();
    let client = connect(redis.url()).await?;
    let prefix = key(&unique_prefix());
    let lock_name = key(&unique_prefix());
    let primitives = Arc::new(Primitives {
        strict: StrictCounter::new(CounterOptions::new(prefix.clone(), client.clone())),
        lax: LaxCounter::new(CounterOptions::new(prefix.clone(), client.clone())),
        instances: StrictInstanceAwareCounter::new(StrictInstanceAwareCounterOptions::new(
            prefix.clone(),
            client.clone(),
        )),
        lax_instances: LaxInstanceAwareCounter::new(LaxInstanceAwareCounterOptions::new(
            prefix.clone(),
            client.clone(),
        )),
        mutexes: (0..8)
            .map(|index| {
                Mutex::new(LockOptions::new(
                    key(&format!("{lock_name}-{index}")),
                    client.clone(),
                ))
            })
            .collect(),
        rwlock: RwLock::new(LockOptions::new(lock_name.clone(), client.clone())),
    });

    let (raw_rate, raw_p99) = baseline(&client).await?;
    let mix = Arc::clone(&primitives);
    let (latencies, elapsed) = load(move |task, round| {
        let mix = Arc::clone(&mix);
        async move {
            let operation = (task + round) % OPERATIONS.len();
            run_operation(&mix, operation, task).await?;
            Ok(operation)
        }
    })
    .await?;

    println!(
        "mixed load: {TASKS} tasks for {DURATION:?} on {}",
        if redis.is_cluster() {
            "a three-master cluster"
        } else {
            "a standalone server"
        }
    );
    println!(
        "  raw baseline (EVALSHA of a one-line HINCRBY, same {TASKS} tasks): {raw_rate:>9.0} calls/s, p99 {raw_p99:>9.1?}"
    );
    let mut total = 0;
    for (operation, mut samples) in latencies {
        samples.sort();
        total += samples.len();
        println!(
            "  {:<20} {:>9.0} calls/s, p50 {:>9.1?}, p99 {:>9.1?} ({:.1}x the raw p99)",
            OPERATIONS[operation],
            samples.len() as f64 / elapsed.as_secs_f64(),
            percentile(&samples, 500),
            percentile(&samples, 990),
            percentile(&samples, 990).as_secs_f64() / raw_p99.as_secs_f64()
        );
    }
    println!(
        "  all operations       {:>9.0} calls/s = {:.2}x the raw baseline's call rate",
        total as f64 / elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64() / raw_rate
    );
    primitives.lax.flush().await?;
    primitives.lax_instances.flush().await?;
    Ok(())
}
