//! The native limiters (strict and lax) side by side with trypema's Redis and hybrid
//! providers, in one run: calls per second and p99 latency from concurrent tasks over 64
//! keys, measured in the same run on the same server against two baselines sent raw with
//! fred's `EVALSHA` (no distkit code on the way):
//!
//! - the **equivalent** script of each strict limiter, the least a script doing the same job
//!   needs: for GCRA `TIME`, `GET`, compare, `SET … PX`; for the sliding window its bucket
//!   list and total (evict, compare, join or push a bucket, set the total). The ratio to it
//!   is distkit's overhead (argument encoding, reply parsing, exact arithmetic, its header);
//! - the **floor**, one `INCR` in a script: the ratio to it includes the Lua work itself.
//!
//! Then the lax limiters' local decision alone (one task, one warm key, nanoseconds per
//! check) against an in-process floor (a mutex-guarded map lookup and add: the least a
//! shared in-memory counter costs), and the native limiters again on a three-master Redis
//! Cluster (trypema's providers don't support one).
//!
//! `cargo bench -p distkit-ratelimit --bench ratelimit` (private redis-server processes, or
//! `REDIS_URL` for the standalone part). `DISTKIT_BENCH_TASKS` lists the concurrencies to
//! measure (default `1,16,64`: one call at a time, then 16 and 64 tasks in flight);
//! `DISTKIT_BENCH_ROUND_MS` sets how long each contender runs (default 2000). Limits are
//! high, so almost every call is admitted: the write path is what is measured.
#![expect(
    clippy::arithmetic_side_effects,
    clippy::cast_precision_loss,
    clippy::indexing_slicing,
    reason = "a measurement program: counts, percentiles and float ratios"
)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use distkit_ratelimit::fred::clients::Client;
use distkit_ratelimit::fred::interfaces::LuaInterface;
use distkit_ratelimit::ratelimit::{
    GcraLimiter, GcraOptions, GcraRate, LaxGcraLimiter, LaxGcraOptions, LaxSlidingWindowLimiter,
    LaxSlidingWindowOptions, SlidingWindowLimiter, SlidingWindowOptions,
};
use distkit_ratelimit::trypema::hybrid::HybridRateLimiterProvider;
use distkit_ratelimit::trypema::redis::{RedisKey, RedisRateLimiterProvider};
use distkit_ratelimit::trypema::{BucketSize, RateLimit, RateLimiterBuilder, WindowSize};
use distkit_ratelimit::{DistkitRedisKey, connect};
use distkit_test_support::bench::{BenchError, raw_evalsha};
use distkit_test_support::{TestRedis, unique_prefix};

const KEYS: usize = 64;

/// The concurrencies to measure: `DISTKIT_BENCH_TASKS` (comma-separated), default 1, 16, 64.
fn task_counts() -> Vec<usize> {
    std::env::var("DISTKIT_BENCH_TASKS")
        .ok()
        .map(|list| {
            list.split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect::<Vec<_>>()
        })
        .filter(|list| !list.is_empty())
        .unwrap_or_else(|| vec![1, 16, 64])
}

/// How long each contender runs: `DISTKIT_BENCH_ROUND_MS`, default 2 s.
fn round() -> Duration {
    Duration::from_millis(
        std::env::var("DISTKIT_BENCH_ROUND_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(2_000),
    )
}

/// The GCRA equivalent sent raw: TIME, GET, compare, SET PX (the TAT in whole µs).
/// ARGV: the emission interval and the burst span, in µs.
const RAW_GCRA: &str = include_str!("raw/gcra_equivalent.lua");

/// The sliding-window equivalent sent raw: the bucket list and its total. KEYS: the list
/// and the total; ARGV: window ms, bucket ms, limit.
const RAW_WINDOW: &str = include_str!("raw/sliding_window_equivalent.lua");

/// `EVALSHA sha 2 first second args…`, raw, routed to the slot of `first` (both keys share
/// a hash tag).
async fn raw_evalsha_two(
    client: &Client,
    sha: &str,
    keys: [&str; 2],
    args: &[&str],
) -> Result<(), BenchError> {
    use distkit_ratelimit::fred::interfaces::ClientLike;
    use distkit_ratelimit::fred::types::{ClusterHash, CustomCommand, Value};
    let slot = distkit_ratelimit::fred::util::redis_keyslot(keys[0].as_bytes());
    let command = CustomCommand::new_static("EVALSHA", ClusterHash::Custom(slot), false);
    let mut all: Vec<Value> = vec![sha.into(), 2.into(), keys[0].into(), keys[1].into()];
    all.extend(args.iter().map(|arg| Value::from(*arg)));
    let _: Value = client.custom(command, all).await?;
    Ok(())
}

/// Calls per second and p99 latency of one contender.
struct Figures {
    calls_per_second: f64,
    p99: Duration,
}

/// Runs `operation(task, call)` in a loop from `tasks` tasks for [`round`].
async fn measure<F, Fut>(tasks: usize, operation: F) -> Result<Figures, BenchError>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<(), BenchError>> + Send,
{
    let round = round();
    let started = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for task in 0..tasks {
        let operation = operation.clone();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut call = 0;
            while started.elapsed() < round {
                let before = Instant::now();
                operation(task, call).await?;
                latencies.push(before.elapsed());
                call += 1;
                // Untimed: a call decided in memory never waits, and would otherwise hold its
                // worker thread for the whole round (the lax limiter's sync task included).
                tokio::task::yield_now().await;
            }
            Ok::<_, BenchError>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(handle.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let p99 = latencies
        .get(latencies.len() * 99 / 100)
        .copied()
        .unwrap_or_default();
    Ok(Figures {
        calls_per_second: latencies.len() as f64 / elapsed,
        p99,
    })
}

fn print_row(name: &str, figures: &Figures, baseline: &Figures) {
    println!(
        "{name:<36} {:>10.0} calls/s  ({:>6.2}x baseline)   p99 {:>8.1} µs  ({:>5.3}x baseline)",
        figures.calls_per_second,
        figures.calls_per_second / baseline.calls_per_second,
        figures.p99.as_secs_f64() * 1e6,
        figures.p99.as_secs_f64() / baseline.p99.as_secs_f64().max(1e-9),
    );
}

/// A row with two ratios of calls per second: to the equivalent raw script and to the
/// `INCR` floor (and the p99 ratio to the equivalent).
fn print_row2(name: &str, figures: &Figures, equivalent: &Figures, floor: &Figures) {
    println!(
        "{name:<36} {:>10.0} calls/s  ({:>5.2}x equivalent, {:>5.2}x INCR floor)   p99 {:>8.1} µs  ({:>5.2}x equivalent)",
        figures.calls_per_second,
        figures.calls_per_second / equivalent.calls_per_second,
        figures.calls_per_second / floor.calls_per_second,
        figures.p99.as_secs_f64() * 1e6,
        figures.p99.as_secs_f64() / equivalent.p99.as_secs_f64().max(1e-9),
    );
}

fn key(text: &str) -> Result<DistkitRedisKey, BenchError> {
    Ok(DistkitRedisKey::try_from(text)?)
}

/// The floor, the equivalent raw scripts and the native limiters on `client`, at `tasks`
/// calls in flight.
async fn native(client: &Client, label: &str, tasks: usize) -> Result<(), BenchError> {
    let incr: String = client
        .script_load_cluster("return redis.call('INCR', KEYS[1])")
        .await?;
    let raw_gcra: Arc<String> = Arc::new(client.script_load_cluster(RAW_GCRA).await?);
    let raw_window: Arc<String> = Arc::new(client.script_load_cluster(RAW_WINDOW).await?);
    let prefix = unique_prefix();
    let keys: Arc<Vec<DistkitRedisKey>> = Arc::new(
        (0..KEYS)
            .map(|index| key(&format!("k{index}")))
            .collect::<Result<_, _>>()?,
    );
    let raw_keys = |part: &str| -> Arc<Vec<String>> {
        Arc::new(
            (0..KEYS)
                .map(|index| format!("{prefix}:{part}:{{k{index}}}"))
                .collect(),
        )
    };

    let floor = {
        let (client, sha, names) = (client.clone(), Arc::new(incr), raw_keys("baseline"));
        measure(tasks, move |task, call| {
            let (client, sha, names) = (client.clone(), Arc::clone(&sha), Arc::clone(&names));
            async move {
                raw_evalsha(&client, &sha, &names[(task + call) % KEYS], &[]).await?;
                Ok(())
            }
        })
        .await?
    };
    println!(
        "-- {label}: {tasks} tasks, {KEYS} keys, {:?} per contender",
        round()
    );
    print_row("floor: raw EVALSHA (INCR)", &floor, &floor);

    // GCRA at 1 000 000 per second, bursts of 1 000 000: T = 1 µs, burst span 1 s.
    let raw_gcra_figures = {
        let (client, sha, names) = (client.clone(), raw_gcra, raw_keys("raw-gcra"));
        measure(tasks, move |task, call| {
            let (client, sha, names) = (client.clone(), Arc::clone(&sha), Arc::clone(&names));
            async move {
                raw_evalsha(
                    &client,
                    &sha,
                    &names[(task + call) % KEYS],
                    &["1", "1000000"],
                )
                .await?;
                Ok(())
            }
        })
        .await?
    };
    print_row2(
        "equivalent GCRA script, raw",
        &raw_gcra_figures,
        &raw_gcra_figures,
        &floor,
    );

    let gcra = Arc::new(GcraLimiter::new(GcraOptions::new(
        key(&format!("{prefix}-gcra"))?,
        client.clone(),
    )));
    let rate = GcraRate::per_second(1_000_000, 1_000_000)?;
    let figures = {
        let (gcra, keys) = (Arc::clone(&gcra), Arc::clone(&keys));
        measure(tasks, move |task, call| {
            let (gcra, keys) = (Arc::clone(&gcra), Arc::clone(&keys));
            async move {
                gcra.check(&keys[(task + call) % KEYS], &rate, 1).await?;
                Ok(())
            }
        })
        .await?
    };
    print_row2(
        "distkit GcraLimiter (strict)",
        &figures,
        &raw_gcra_figures,
        &floor,
    );

    let options = LaxGcraOptions::builder(key(&format!("{prefix}-lax-gcra"))?, client.clone())
        .sync_interval(Duration::from_millis(20))
        .build();
    let lax_gcra = LaxGcraLimiter::new(options)?;
    let figures = {
        let (lax_gcra, keys) = (Arc::clone(&lax_gcra), Arc::clone(&keys));
        measure(tasks, move |task, call| {
            let (lax_gcra, keys) = (Arc::clone(&lax_gcra), Arc::clone(&keys));
            async move {
                lax_gcra
                    .check(&keys[(task + call) % KEYS], &rate, 1)
                    .await?;
                Ok(())
            }
        })
        .await?
    };
    print_row2(
        "distkit LaxGcraLimiter",
        &figures,
        &raw_gcra_figures,
        &floor,
    );

    // The sliding window: 10 s of 100 ms buckets, a limit far above the calls.
    let raw_window_figures = {
        let (client, sha) = (client.clone(), raw_window);
        let (lists, totals) = (raw_keys("raw-sw"), raw_keys("raw-sw-total"));
        measure(tasks, move |task, call| {
            let (client, sha) = (client.clone(), Arc::clone(&sha));
            let (lists, totals) = (Arc::clone(&lists), Arc::clone(&totals));
            async move {
                let index = (task + call) % KEYS;
                let keys = [lists[index].as_str(), totals[index].as_str()];
                raw_evalsha_two(&client, &sha, keys, &["10000", "100", "1000000000"]).await
            }
        })
        .await?
    };
    print_row2(
        "equivalent sliding window, raw",
        &raw_window_figures,
        &raw_window_figures,
        &floor,
    );

    let mut options = SlidingWindowOptions::new(key(&format!("{prefix}-sw"))?, client.clone());
    options.window = Duration::from_secs(10);
    options.bucket = Duration::from_millis(100);
    let window = Arc::new(SlidingWindowLimiter::new(options)?);
    let figures = {
        let (window, keys) = (Arc::clone(&window), Arc::clone(&keys));
        measure(tasks, move |task, call| {
            let (window, keys) = (Arc::clone(&window), Arc::clone(&keys));
            async move {
                window
                    .check(&keys[(task + call) % KEYS], 1_000_000_000, 1)
                    .await?;
                Ok(())
            }
        })
        .await?
    };
    print_row2(
        "distkit SlidingWindowLimiter",
        &figures,
        &raw_window_figures,
        &floor,
    );

    let options = LaxSlidingWindowOptions::builder(key(&format!("{prefix}-lax"))?, client.clone())
        .window(Duration::from_secs(10))
        .bucket(Duration::from_millis(100))
        .sync_interval(Duration::from_millis(20))
        .build();
    let lax = LaxSlidingWindowLimiter::new(options)?;
    let figures = {
        let (lax, keys) = (Arc::clone(&lax), Arc::clone(&keys));
        measure(tasks, move |task, call| {
            let (lax, keys) = (Arc::clone(&lax), Arc::clone(&keys));
            async move {
                lax.check(&keys[(task + call) % KEYS], 1_000_000_000, 1)
                    .await?;
                Ok(())
            }
        })
        .await?
    };
    print_row2(
        "distkit LaxSlidingWindowLimiter",
        &figures,
        &raw_window_figures,
        &floor,
    );
    Ok(())
}

/// trypema's Redis and hybrid providers on `url`, against the same baseline.
async fn trypema(url: &str, client: &Client, tasks: usize) -> Result<(), BenchError> {
    let sha: String = client
        .script_load_cluster("return redis.call('INCR', KEYS[1])")
        .await?;
    let prefix = unique_prefix();
    let baseline = {
        let (client, sha, prefix) = (client.clone(), Arc::new(sha), Arc::new(prefix.clone()));
        measure(tasks, move |task, call| {
            let (client, sha, prefix) = (client.clone(), Arc::clone(&sha), Arc::clone(&prefix));
            async move {
                let name = format!("{prefix}:baseline:{{k{}}}", (task + call) % KEYS);
                raw_evalsha(&client, &sha, &name, &[]).await?;
                Ok(())
            }
        })
        .await?
    };
    println!("-- trypema on the same standalone server, {tasks} tasks (baseline measured again)");
    print_row("baseline: raw EVALSHA (INCR)", &baseline, &baseline);

    let keys: Arc<Vec<RedisKey>> = Arc::new(
        (0..KEYS)
            .map(|index| RedisKey::try_from(format!("k{index}")))
            .collect::<Result<_, _>>()?,
    );
    let rate = RateLimit::per_second(1e8)?;
    let connection = redis::Client::open(url)?.get_connection_manager().await?;
    let provider = RedisRateLimiterProvider::builder(connection.clone())
        .prefix(RedisKey::try_from(format!("{prefix}-redis"))?)
        .window_size(WindowSize::seconds(10)?)
        .bucket_size(BucketSize::milliseconds(100)?)
        .build()?;
    let figures = {
        let (provider, keys) = (Arc::clone(&provider), Arc::clone(&keys));
        measure(tasks, move |task, call| {
            let (provider, keys) = (Arc::clone(&provider), Arc::clone(&keys));
            async move {
                provider
                    .absolute()
                    .inc(&keys[(task + call) % KEYS], &rate, 1)
                    .await?;
                Ok(())
            }
        })
        .await?
    };
    print_row("trypema Redis provider (absolute)", &figures, &baseline);

    let hybrid = HybridRateLimiterProvider::builder(connection)
        .prefix(RedisKey::try_from(format!("{prefix}-hybrid"))?)
        .window_size(WindowSize::seconds(10)?)
        .bucket_size(BucketSize::milliseconds(100)?)
        .build()?;
    let figures = {
        let (hybrid, keys) = (Arc::clone(&hybrid), Arc::clone(&keys));
        measure(tasks, move |task, call| {
            let (hybrid, keys) = (Arc::clone(&hybrid), Arc::clone(&keys));
            async move {
                hybrid
                    .absolute()
                    .inc(&keys[(task + call) % KEYS], &rate, 1)
                    .await?;
                Ok(())
            }
        })
        .await?
    };
    print_row("trypema hybrid provider (absolute)", &figures, &baseline);
    Ok(())
}

/// Nanoseconds per call of `operation`, called `CALLS` times in a row from one task.
async fn ns_per_call<F, Fut>(mut operation: F) -> Result<f64, BenchError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), BenchError>>,
{
    const CALLS: u32 = 200_000;
    let started = Instant::now();
    for _ in 0..CALLS {
        operation().await?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e9 / f64::from(CALLS))
}

/// The lax limiters' decision in memory on a warm key, against an in-process floor.
async fn local_decisions(client: &Client) -> Result<(), BenchError> {
    use std::collections::HashMap;
    let prefix = unique_prefix();
    let k = key("warm")?;
    let floor_map = std::sync::Mutex::new(HashMap::from([(k.clone(), 0_u64)]));
    let floor = ns_per_call(|| {
        let mut map = floor_map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = map.get_mut(&k) {
            *count = count.wrapping_add(1);
        }
        drop(map);
        std::future::ready(Ok(()))
    })
    .await?;
    println!("-- lax limiters' local decision: 1 task, 1 warm key, ns per check");
    println!(
        "{:<36} {floor:>8.0} ns/check",
        "floor: Mutex<HashMap> lookup and add"
    );
    let rate = GcraRate::per_second(1_000_000, 1_000_000)?;
    let options = LaxGcraOptions::builder(key(&format!("{prefix}-local-gcra"))?, client.clone())
        .sync_interval(Duration::from_millis(20))
        .build();
    let lax_gcra = LaxGcraLimiter::new(options)?;
    lax_gcra.check(&k, &rate, 1).await?;
    let ns = ns_per_call(|| async {
        lax_gcra.check(&k, &rate, 1).await?;
        Ok(())
    })
    .await?;
    println!(
        "{:<36} {ns:>8.0} ns/check  ({:>5.2}x floor)",
        "distkit LaxGcraLimiter",
        ns / floor
    );
    let options =
        LaxSlidingWindowOptions::builder(key(&format!("{prefix}-local-sw"))?, client.clone())
            .sync_interval(Duration::from_millis(20))
            .build();
    let lax = LaxSlidingWindowLimiter::new(options)?;
    lax.check(&k, u64::MAX >> 12, 1).await?;
    let ns = ns_per_call(|| async {
        lax.check(&k, u64::MAX >> 12, 1).await?;
        Ok(())
    })
    .await?;
    println!(
        "{:<36} {ns:>8.0} ns/check  ({:>5.2}x floor)",
        "distkit LaxSlidingWindowLimiter",
        ns / floor
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BenchError> {
    let standalone = TestRedis::start_standalone();
    let client = connect(standalone.url()).await?;
    for tasks in task_counts() {
        native(&client, "standalone", tasks).await?;
    }
    local_decisions(&client).await?;
    for tasks in task_counts() {
        trypema(standalone.url(), &client, tasks).await?;
    }
    drop(standalone);

    let cluster = TestRedis::start_cluster();
    let client = connect(cluster.url()).await?;
    for tasks in task_counts() {
        native(&client, "three-master cluster", tasks).await?;
    }
    Ok(())
}
