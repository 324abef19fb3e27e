//! The native limiters (strict and lax) side by side with trypema's Redis and hybrid
//! providers, in one run:
//! calls per second and p99 latency from 16 concurrent tasks over 64 keys, each as a ratio
//! against a raw `EVALSHA` baseline (one `INCR` in a script) measured in the same run on the
//! same server. Then the native limiters again on a three-master Redis Cluster (trypema's
//! providers don't support one).
//!
//! `cargo bench -p distkit-ratelimit --bench ratelimit` (private redis-server processes, or
//! `REDIS_URL` for the standalone part). Limits are high, so almost every call is admitted:
//! the write path is what is measured.
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

const TASKS: usize = 16;
const KEYS: usize = 64;
const ROUND: Duration = Duration::from_secs(3);

/// Calls per second and p99 latency of one contender.
struct Figures {
    calls_per_second: f64,
    p99: Duration,
}

/// Runs `operation(task, call)` in a loop from `TASKS` tasks for `ROUND`.
async fn measure<F, Fut>(operation: F) -> Result<Figures, BenchError>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<(), BenchError>> + Send,
{
    let started = Instant::now();
    let mut handles = Vec::with_capacity(TASKS);
    for task in 0..TASKS {
        let operation = operation.clone();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut call = 0;
            while started.elapsed() < ROUND {
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
        "{name:<34} {:>10.0} calls/s  ({:>6.2}x baseline)   p99 {:>8.1} µs  ({:>5.3}x baseline)",
        figures.calls_per_second,
        figures.calls_per_second / baseline.calls_per_second,
        figures.p99.as_secs_f64() * 1e6,
        figures.p99.as_secs_f64() / baseline.p99.as_secs_f64().max(1e-9),
    );
}

fn key(text: &str) -> Result<DistkitRedisKey, BenchError> {
    Ok(DistkitRedisKey::try_from(text)?)
}

/// The baseline and both native limiters on `client`; returns the baseline's figures.
async fn native(client: &Client, label: &str) -> Result<(), BenchError> {
    let sha: String = client
        .script_load_cluster("return redis.call('INCR', KEYS[1])")
        .await?;
    let prefix = unique_prefix();
    let keys: Arc<Vec<DistkitRedisKey>> = Arc::new(
        (0..KEYS)
            .map(|index| key(&format!("k{index}")))
            .collect::<Result<_, _>>()?,
    );
    let baseline_keys: Arc<Vec<String>> = Arc::new(
        (0..KEYS)
            .map(|index| format!("{prefix}:baseline:{{k{index}}}"))
            .collect(),
    );

    let baseline = {
        let (client, sha, names) = (client.clone(), Arc::new(sha), Arc::clone(&baseline_keys));
        measure(move |task, call| {
            let (client, sha, names) = (client.clone(), Arc::clone(&sha), Arc::clone(&names));
            async move {
                raw_evalsha(&client, &sha, &names[(task + call) % KEYS], &[]).await?;
                Ok(())
            }
        })
        .await?
    };
    println!("-- {label}: {TASKS} tasks, {KEYS} keys, {ROUND:?} per contender");
    print_row("baseline: raw EVALSHA (INCR)", &baseline, &baseline);

    let gcra = Arc::new(GcraLimiter::new(GcraOptions::new(
        key(&format!("{prefix}-gcra"))?,
        client.clone(),
    )));
    let rate = GcraRate::per_second(1_000_000, 1_000_000)?;
    let figures = {
        let (gcra, keys) = (Arc::clone(&gcra), Arc::clone(&keys));
        measure(move |task, call| {
            let (gcra, keys) = (Arc::clone(&gcra), Arc::clone(&keys));
            async move {
                gcra.check(&keys[(task + call) % KEYS], &rate, 1).await?;
                Ok(())
            }
        })
        .await?
    };
    print_row("distkit GcraLimiter (strict)", &figures, &baseline);

    let options = LaxGcraOptions::builder(key(&format!("{prefix}-lax-gcra"))?, client.clone())
        .sync_interval(Duration::from_millis(20))
        .build();
    let lax_gcra = LaxGcraLimiter::new(options)?;
    let figures = {
        let (lax_gcra, keys) = (Arc::clone(&lax_gcra), Arc::clone(&keys));
        measure(move |task, call| {
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
    print_row("distkit LaxGcraLimiter", &figures, &baseline);

    let mut options = SlidingWindowOptions::new(key(&format!("{prefix}-sw"))?, client.clone());
    options.window = Duration::from_secs(10);
    options.bucket = Duration::from_millis(100);
    let window = Arc::new(SlidingWindowLimiter::new(options)?);
    let figures = {
        let (window, keys) = (Arc::clone(&window), Arc::clone(&keys));
        measure(move |task, call| {
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
    print_row("distkit SlidingWindowLimiter", &figures, &baseline);

    let options = LaxSlidingWindowOptions::builder(key(&format!("{prefix}-lax"))?, client.clone())
        .window(Duration::from_secs(10))
        .bucket(Duration::from_millis(100))
        .sync_interval(Duration::from_millis(20))
        .build();
    let lax = LaxSlidingWindowLimiter::new(options)?;
    let figures = {
        let (lax, keys) = (Arc::clone(&lax), Arc::clone(&keys));
        measure(move |task, call| {
            let (lax, keys) = (Arc::clone(&lax), Arc::clone(&keys));
            async move {
                lax.check(&keys[(task + call) % KEYS], 1_000_000_000, 1)
                    .await?;
                Ok(())
            }
        })
        .await?
    };
    print_row("distkit LaxSlidingWindowLimiter", &figures, &baseline);
    Ok(())
}

/// trypema's Redis and hybrid providers on `url`, against the same baseline.
async fn trypema(url: &str, client: &Client) -> Result<(), BenchError> {
    let sha: String = client
        .script_load_cluster("return redis.call('INCR', KEYS[1])")
        .await?;
    let prefix = unique_prefix();
    let baseline = {
        let (client, sha, prefix) = (client.clone(), Arc::new(sha), Arc::new(prefix.clone()));
        measure(move |task, call| {
            let (client, sha, prefix) = (client.clone(), Arc::clone(&sha), Arc::clone(&prefix));
            async move {
                let name = format!("{prefix}:baseline:{{k{}}}", (task + call) % KEYS);
                raw_evalsha(&client, &sha, &name, &[]).await?;
                Ok(())
            }
        })
        .await?
    };
    println!("-- trypema on the same standalone server (baseline measured again)");
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
        measure(move |task, call| {
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
        measure(move |task, call| {
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BenchError> {
    let standalone = TestRedis::start_standalone();
    let client = connect(standalone.url()).await?;
    native(&client, "standalone").await?;
    trypema(standalone.url(), &client).await?;
    drop(standalone);

    let cluster = TestRedis::start_cluster();
    let client = connect(cluster.url()).await?;
    native(&client, "three-master cluster").await?;
    Ok(())
}
