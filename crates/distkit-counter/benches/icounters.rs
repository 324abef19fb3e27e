//! Instance-aware counter benchmarks, printed as ratios against baselines measured in the
//! same run.
//!
//! `cargo bench -p distkit-counter --features instance-aware --bench icounters`
#![expect(
    clippy::cast_precision_loss,
    reason = "a measurement program: call counts and float ratios"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use distkit_core::fred::clients::Client;
use distkit_core::fred::interfaces::{ClientLike, LuaInterface};
use distkit_core::{DistkitRedisKey, connect};
use distkit_counter::icounter::{
    InstanceAwareCounterTrait, LaxInstanceAwareCounter, LaxInstanceAwareCounterOptions,
    StrictInstanceAwareCounter, StrictInstanceAwareCounterOptions,
};
use distkit_test_support::bench::{calls_per_second, raw_evalsha};
use distkit_test_support::{TestRedis, unique_prefix};

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const ROUND: Duration = Duration::from_millis(700);
const ROUNDS: usize = 4;

fn key(text: &str) -> DistkitRedisKey {
    DistkitRedisKey::new_or_panic(text.to_owned())
}

async fn strict_versus_raw(client: &Client) -> BenchResult<()> {
    let sha: String = client
        .script_load_cluster("return redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])")
        .await?;
    let hash = format!("bench:{{{}}}:raw", unique_prefix());
    let counter = StrictInstanceAwareCounter::new(StrictInstanceAwareCounterOptions::new(
        key(&unique_prefix()),
        client.clone(),
    ));
    let counted = key("k");
    println!(
        "StrictInstanceAwareCounter::inc vs raw EVALSHA of a one-line HINCRBY script (calls/s, best of {ROUNDS})"
    );
    for tasks in [1, 64] {
        let (mut raw, mut ours) = (0.0_f64, 0.0_f64);
        for _ in 0..ROUNDS {
            let (c, s, h) = (client.clone(), sha.clone(), hash.clone());
            raw = raw.max(
                calls_per_second(tasks, ROUND, move |_| {
                    let (c, s, h) = (c.clone(), s.clone(), h.clone());
                    async move { raw_evalsha(&c, &s, &h, &["k", "1"]).await.map(drop) }
                })
                .await?,
            );
            let (counter, k) = (Arc::clone(&counter), counted.clone());
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
            "  {tasks:>2} task(s): instance-aware strict {ours:>9.0}/s | raw {raw:>9.0}/s -> ratio {:.2}",
            ours / raw
        );
    }
    Ok(())
}

fn lax_warm(runtime: &tokio::runtime::Runtime, client: &Client) -> BenchResult<()> {
    const CALLS: u32 = 1_000_000;
    let counter = LaxInstanceAwareCounter::new(LaxInstanceAwareCounterOptions::new(
        key(&unique_prefix()),
        client.clone(),
    ));
    let k = key("warm");
    runtime.block_on(counter.inc(&k, 1))?;
    println!(
        "LaxInstanceAwareCounter warm calls (one task; no network round trip on the warm path)"
    );
    for (name, reads) in [("inc", false), ("get", true)] {
        let mut best = f64::MAX;
        for _ in 0..ROUNDS {
            let started = Instant::now();
            runtime.block_on(async {
                for _ in 0..CALLS {
                    if reads {
                        counter.get(&k).await?;
                    } else {
                        counter.inc(&k, 1).await?;
                    }
                }
                Ok::<(), distkit_core::DistkitError>(())
            })?;
            best = best.min(started.elapsed().as_nanos() as f64 / f64::from(CALLS));
        }
        println!("  {name}: {best:>6.1} ns/call (inherent method)");
    }
    runtime.block_on(counter.flush())?;
    Ok(())
}

fn main() -> BenchResult<()> {
    let redis = TestRedis::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client = runtime.block_on(connect(redis.url()))?;
    runtime.block_on(strict_versus_raw(&client))?;
    lax_warm(&runtime, &client)?;
    runtime.block_on(client.quit())?;
    Ok(())
}
