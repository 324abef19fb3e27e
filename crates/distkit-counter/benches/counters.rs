//! Counter benchmarks, printed as ratios against baselines measured in the same run.
//!
//! `cargo bench -p distkit-counter` (starts a private redis-server, or uses `REDIS_URL`);
//! `DISTKIT_BENCH=lax,memory` runs only those sections (see `runs`).
//! Each figure is the best of three rounds; the machine is shared and noisy, so read the
//! ratios, not the absolute numbers.

#![expect(
    clippy::arithmetic_side_effects,
    clippy::cast_precision_loss,
    clippy::indexing_slicing,
    reason = "a measurement program: call counts, float ratios and fixed two-element vectors"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use distkit_core::fred::clients::Client;
use distkit_core::fred::interfaces::{ClientLike, LuaInterface};
use distkit_core::fred::types::Value;
use distkit_core::{DistkitRedisKey, ReplicaAcks, connect};
use distkit_counter::counter::{CounterOptions, CounterTrait, LaxCounter, StrictCounter};
use distkit_test_support::bench::{calls_per_second, raw_evalsha};
use distkit_test_support::{ReplicatedRedis, TestRedis, unique_prefix};

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const ROUND: Duration = Duration::from_secs(2);
const ROUNDS: usize = 3;
const RAW_SCRIPT: &str = "return redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])";

fn key(text: &str) -> DistkitRedisKey {
    DistkitRedisKey::new_or_panic(text.to_owned())
}

async fn strict_versus_raw(client: &Client) -> BenchResult<()> {
    let sha: String = client.script_load_cluster(RAW_SCRIPT).await?;
    let hash = format!("bench:{{{}}}:raw", unique_prefix());
    let strict = StrictCounter::new(CounterOptions::new(key(&unique_prefix()), client.clone()));
    let counted = key("k");
    println!(
        "StrictCounter::inc vs raw EVALSHA of a one-line HINCRBY script \
         (calls/s, best of {ROUNDS} interleaved rounds of {ROUND:?})"
    );
    for tasks in [1, 64] {
        let (mut raw, mut raw_fred, mut ours) = (0.0_f64, 0.0_f64, 0.0_f64);
        // Rounds interleave, so a noisy neighbour hits every contender alike.
        for _ in 0..ROUNDS {
            let (c, s, h) = (client.clone(), sha.clone(), hash.clone());
            raw = raw.max(
                calls_per_second(tasks, ROUND, move |_| {
                    let (c, s, h) = (c.clone(), s.clone(), h.clone());
                    async move { raw_evalsha(&c, &s, &h, &["k", "1"]).await.map(drop) }
                })
                .await?,
            );
            let (c, s, h) = (client.clone(), sha.clone(), hash.clone());
            raw_fred = raw_fred.max(
                calls_per_second(tasks, ROUND, move |_| {
                    let (c, s, h) = (c.clone(), s.clone(), h.clone());
                    async move {
                        let _: Value = c.evalsha(s, h, vec!["k", "1"]).await?;
                        Ok(())
                    }
                })
                .await?,
            );
            let (counter, k) = (Arc::clone(&strict), counted.clone());
            ours = ours.max(
                calls_per_second(tasks, ROUND, move |_| {
                    let (counter, k) = (Arc::clone(&counter), k.clone());
                    async move {
                        counter.inc(&k, 1).await?;
                        Ok(())
                    }
                })
                .await?,
            );
        }
        println!(
            "  {tasks:>2} task(s): strict {ours:>9.0}/s | raw EVALSHA (pipelined) {raw:>9.0}/s -> ratio {:.2} | \
             fred LuaInterface::evalsha {raw_fred:>9.0}/s -> ratio {:.2}",
            ours / raw,
            ours / raw_fred
        );
    }
    Ok(())
}

/// `StrictCounter::inc` with the default shard count against one shard, in the same run:
/// uniform keys under one prefix (each call takes the next of 1 024 keys), 1 and 64 tasks.
/// On a standalone server this is the cost of the default; on a cluster
/// (`DISTKIT_TEST_DEPLOYMENT=cluster`) it is what spreading the prefix over the masters gains.
///
/// Paired rounds (`DISTKIT_BENCH_PAIRS`, default 9, of 1 s each, alternating which contender
/// goes first): the figure is the median of the per-pair ratios, which a busy neighbour
/// slowing one whole pair does not move.
async fn sharded_versus_one_shard(client: &Client) -> BenchResult<()> {
    const KEYS: usize = 1_024;
    const PAIR_ROUND: Duration = Duration::from_secs(1);
    let pairs: usize = std::env::var("DISTKIT_BENCH_PAIRS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(9);
    let keys: Arc<Vec<DistkitRedisKey>> =
        Arc::new((0..KEYS).map(|n| key(&format!("tenant-{n}"))).collect());
    // `DISTKIT_BENCH_SHARDS` compares another count than the default (1: an A/A run that
    // shows the noise of the machine).
    let shards: u16 = std::env::var("DISTKIT_BENCH_SHARDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(CounterOptions::DEFAULT_SHARDS);
    let mut options = CounterOptions::new(key(&unique_prefix()), client.clone());
    options.shards = shards;
    let default = StrictCounter::new(options);
    let mut options = CounterOptions::new(key(&unique_prefix()), client.clone());
    options.shards = 1;
    let single = StrictCounter::new(options);
    println!(
        "StrictCounter::inc over {KEYS} keys of one prefix: {shards} shards vs 1 shard \
         (calls/s; median of {pairs} paired rounds of {PAIR_ROUND:?})"
    );
    let rate = |counter: &Arc<StrictCounter>, tasks: usize| {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (counter, keys) = (Arc::clone(counter), Arc::clone(&keys));
        calls_per_second(tasks, PAIR_ROUND, move |_| {
            let (counter, keys, next) =
                (Arc::clone(&counter), Arc::clone(&keys), Arc::clone(&next));
            async move {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                counter.inc(&keys[index % KEYS], 1).await?;
                Ok(())
            }
        })
    };
    // Standalone only: the server's script time per increment (`INFO commandstats`), which
    // a busy machine disturbs far less than the throughput.
    let server_usec = || async {
        if client.is_clustered() {
            return Ok::<f64, distkit_core::fred::error::Error>(0.0);
        }
        let stats: String = client
            .info(Some(distkit_core::fred::types::InfoKind::CommandStats))
            .await?;
        Ok(stats
            .lines()
            .filter(|line| {
                line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:")
            })
            .filter_map(|line| {
                line.split("usec=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<f64>()
                    .ok()
            })
            .sum())
    };
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    for tasks in [1, 64] {
        let (mut sharded, mut one, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        let (mut sharded_usec, mut one_usec) = (Vec::new(), Vec::new());
        for pair in 0..pairs {
            for first in [pair % 2 == 0, pair % 2 != 0] {
                let counter = if first { &default } else { &single };
                let before = server_usec().await?;
                let calls = rate(counter, tasks).await?;
                let usec = (server_usec().await? - before) / (calls * PAIR_ROUND.as_secs_f64());
                if first {
                    sharded.push(calls);
                    sharded_usec.push(usec);
                } else {
                    one.push(calls);
                    one_usec.push(usec);
                }
            }
            if let (Some(s), Some(o)) = (sharded.last(), one.last()) {
                ratios.push(s / o);
            }
        }
        let (low, high) = (
            ratios.iter().copied().fold(f64::MAX, f64::min),
            ratios.iter().copied().fold(0.0, f64::max),
        );
        println!(
            "  {tasks:>2} task(s): {shards} shards {:>9.0}/s | 1 shard {:>9.0}/s (medians) -> \
             median ratio {:.2} (pairs {low:.2}-{high:.2})",
            median(sharded),
            median(one),
            median(ratios)
        );
        if !client.is_clustered() {
            let (s, o) = (median(sharded_usec), median(one_usec));
            println!(
                "            server script time per increment: {shards} shards {s:.2} µs | \
                 1 shard {o:.2} µs -> cost ratio {:.2}",
                s / o
            );
        }
    }
    Ok(())
}

fn lax_warm_increments(runtime: &tokio::runtime::Runtime, client: &Client) -> BenchResult<()> {
    const CALLS: u64 = 2_000_000;
    let mut options = CounterOptions::new(key(&unique_prefix()), client.clone());
    options.allowed_lag = Duration::from_millis(20);
    let lax = LaxCounter::new(options);
    let counters: Vec<DistkitRedisKey> = (0..2).map(|i| key(&format!("warm{i}"))).collect();
    runtime.block_on(async {
        for k in &counters {
            lax.inc(k, 1).await?;
        }
        Ok::<(), distkit_core::DistkitError>(())
    })?;
    println!("LaxCounter warm inc (ns per call, best of {ROUNDS})");
    // Baseline: an uncontended std mutex around a HashMap increment, the floor of any
    // shared in-memory counter.
    let map = std::sync::Mutex::new(std::collections::HashMap::from([(
        counters[0].clone(),
        0_i64,
    )]));
    let mut baseline = f64::MAX;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..CALLS {
            let mut guard = map.lock().map_err(|_| "poisoned")?;
            if let Some(value) = guard.get_mut(&counters[0]) {
                *value += 1;
            }
        }
        baseline = baseline.min(started.elapsed().as_nanos() as f64 / CALLS as f64);
    }
    let mut single = f64::MAX;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        runtime.block_on(async {
            for _ in 0..CALLS {
                lax.inc(&counters[0], 1).await?;
            }
            Ok::<(), distkit_core::DistkitError>(())
        })?;
        single = single.min(started.elapsed().as_nanos() as f64 / CALLS as f64);
    }
    println!(
        "  1 task:  {single:>6.1} ns/call | Mutex<HashMap> increment {baseline:>5.1} ns -> ratio {:.2}",
        baseline / single
    );
    let mut scaled = 0.0_f64;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let handles: Vec<_> = counters
            .iter()
            .map(|k| {
                let (lax, k) = (Arc::clone(&lax), k.clone());
                runtime.spawn(async move {
                    for _ in 0..CALLS {
                        lax.inc(&k, 1).await?;
                    }
                    Ok::<(), distkit_core::DistkitError>(())
                })
            })
            .collect();
        for handle in handles {
            runtime.block_on(handle)??;
        }
        scaled = scaled.max(2.0 * CALLS as f64 / started.elapsed().as_secs_f64());
    }
    let one_task_rate = 1e9 / single;
    println!(
        "  2 tasks on 2 cores (two keys): {scaled:>11.0} calls/s = {:.2}x one task",
        scaled / one_task_rate
    );
    runtime.block_on(lax.flush())?;
    Ok(())
}

/// Counts the bytes the program asks of the allocator (all threads), for the memory figure:
/// unlike the resident set, it does not depend on what the allocator keeps or returns.
#[global_allocator]
static ALLOCATOR: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

/// Bytes allocated and not freed since `region` began.
fn live_bytes(region: &stats_alloc::Region<'_, std::alloc::System>) -> i64 {
    let change = region.change();
    i64::try_from(change.bytes_allocated).unwrap_or(i64::MAX)
        - i64::try_from(change.bytes_deallocated).unwrap_or(i64::MAX)
}

async fn lax_memory_per_key(client: &Client) -> BenchResult<()> {
    const KEYS: usize = 200_000;
    let lax = LaxCounter::new(CounterOptions::new(key(&unique_prefix()), client.clone()));
    let keys: Vec<DistkitRedisKey> = (0..KEYS).map(|i| key(&format!("tenant-{i:08}"))).collect();
    let region = stats_alloc::Region::new(ALLOCATOR);
    for chunk in keys.chunks(5_000) {
        let updates: Vec<(&DistkitRedisKey, i64)> = chunk.iter().map(|k| (k, 1)).collect();
        lax.inc_all(&updates).await?;
    }
    // Steady state: once flushed, only the map entries remain (no dirty or read lists).
    lax.flush().await?;
    let live = live_bytes(&region);
    println!(
        "LaxCounter memory: {} keys tracked, {:.0} bytes per key live on the heap \
         (counting allocator, bytes requested; keys are 15 bytes long)",
        lax.tracked_keys(),
        live as f64 / KEYS as f64
    );
    lax.clear().await?;
    Ok(())
}

/// The cost of replica acknowledgement, against the same strict counter without it, in the
/// same run: `inc` on a primary with one replica, from 1 and 64 tasks.
async fn replica_acks_cost() -> BenchResult<()> {
    let topology = ReplicatedRedis::start(1);
    let client = connect(&topology.primary_url()).await?;
    let plain = StrictCounter::new(CounterOptions::new(key(&unique_prefix()), client.clone()));
    let mut options = CounterOptions::new(key(&unique_prefix()), client.clone());
    options.replica_acks = Some(ReplicaAcks::new(1, Duration::from_secs(1)));
    let acked = StrictCounter::new(options);
    let counted = key("k");
    println!(
        "StrictCounter::inc with replica_acks(1 replica) vs without, on a primary with one \
         replica (calls/s, best of {ROUNDS} interleaved rounds of {ROUND:?})"
    );
    for tasks in [1, 64] {
        let (mut base, mut with_acks) = (0.0_f64, 0.0_f64);
        for _ in 0..ROUNDS {
            for (counter, best) in [(&plain, &mut base), (&acked, &mut with_acks)] {
                let (counter, k) = (Arc::clone(counter), counted.clone());
                *best = best.max(
                    calls_per_second(tasks, ROUND, move |_| {
                        let (counter, k) = (Arc::clone(&counter), k.clone());
                        async move {
                            counter.inc(&k, 1).await?;
                            Ok(())
                        }
                    })
                    .await?,
                );
            }
        }
        println!(
            "  {tasks:>2} task(s): plain {base:>9.0}/s | replica_acks {with_acks:>9.0}/s -> ratio {:.2}",
            with_acks / base
        );
    }
    client.quit().await?;
    Ok(())
}

/// Whether the section `name` runs: `DISTKIT_BENCH` (comma-separated section names:
/// `strict`, `shards`, `lax`, `memory`, `replica_acks`) picks sections; unset runs them all.
fn runs(name: &str) -> bool {
    std::env::var("DISTKIT_BENCH").map_or(true, |sections| {
        sections.split(',').any(|section| section.trim() == name)
    })
}

fn main() -> BenchResult<()> {
    let redis = TestRedis::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client = runtime.block_on(connect(redis.url()))?;
    if runs("strict") {
        runtime.block_on(strict_versus_raw(&client))?;
    }
    if runs("shards") {
        runtime.block_on(sharded_versus_one_shard(&client))?;
    }
    if runs("lax") {
        lax_warm_increments(&runtime, &client)?;
    }
    if runs("memory") {
        runtime.block_on(lax_memory_per_key(&client))?;
    }
    runtime.block_on(client.quit())?;
    if runs("replica_acks") {
        runtime.block_on(replica_acks_cost())?;
    }
    Ok(())
}
