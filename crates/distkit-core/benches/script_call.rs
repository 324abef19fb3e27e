//! The cost of one script call through distkit's runner ([`LuaScript::run`]) against fred's
//! own `EVALSHA` of the same script, measured side by side in one run: heap allocations per
//! call (counted by a counting allocator over every thread, so fred's connection task is in
//! both) and calls per second, one task and 64 tasks in flight, in interleaved rounds.
//!
//! `cargo bench -p distkit-core --bench script_call` (starts its own redis-server, or uses
//! `REDIS_URL`).

use std::alloc::System;
use std::sync::Arc;
use std::time::{Duration, Instant};

use distkit_core::fred::interfaces::LuaInterface;
use distkit_core::fred::types::Value;
use distkit_core::script::{CallPolicy, LuaScript};
use distkit_test_support::{TestRedis, unique_prefix};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const SOURCE: &str = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
static SCRIPT: LuaScript = LuaScript::new("bench_incrby", SOURCE);
const ROUND: Duration = Duration::from_millis(400);
const ROUNDS: usize = 5;
const CALLS_COUNTED: u32 = 2_000;

#[derive(Clone, Copy, Debug)]
enum Contender {
    Raw,
    Distkit,
    Custom,
    CustomWithOptions,
}

async fn call(
    contender: Contender,
    client: &distkit_core::fred::clients::Client,
    sha: &str,
    key: &str,
) -> BenchResult<()> {
    match contender {
        Contender::Raw => {
            let _: i64 = client.evalsha(sha, vec![key], vec![1_i64]).await?;
        }
        Contender::Distkit => {
            let _ = SCRIPT
                .run(client, &[key], vec![Value::from(1_i64)], CallPolicy::ONCE)
                .await?;
        }
        Contender::Custom => {
            use distkit_core::fred::interfaces::ClientLike;
            use distkit_core::fred::types::{ClusterHash, CustomCommand};
            let command = CustomCommand::new_static("EVALSHA", ClusterHash::FirstKey, false);
            let _: Value = client
                .custom(
                    command,
                    vec![
                        Value::from(sha),
                        Value::from(1_i64),
                        Value::from(key),
                        Value::from(1_i64),
                    ],
                )
                .await?;
        }
        Contender::CustomWithOptions => {
            use distkit_core::fred::interfaces::ClientLike;
            use distkit_core::fred::types::config::Options;
            use distkit_core::fred::types::{ClusterHash, CustomCommand};
            let options = Options {
                max_attempts: Some(1),
                ..Options::default()
            };
            let command = CustomCommand::new_static("EVALSHA", ClusterHash::FirstKey, false);
            let _: Value = client
                .with_options(&options)
                .custom(
                    command,
                    vec![
                        Value::from(sha),
                        Value::from(1_i64),
                        Value::from(key),
                        Value::from(1_i64),
                    ],
                )
                .await?;
        }
    }
    Ok(())
}

/// Allocations and bytes per call, over `CALLS_COUNTED` sequential calls.
async fn allocations(
    contender: Contender,
    client: &distkit_core::fred::clients::Client,
    sha: &str,
    key: &str,
) -> BenchResult<(f64, f64)> {
    let region = Region::new(ALLOCATOR);
    for _ in 0..CALLS_COUNTED {
        call(contender, client, sha, key).await?;
    }
    let change = region.change();
    let calls = f64::from(CALLS_COUNTED);
    #[expect(clippy::cast_precision_loss, reason = "a ratio for a report")]
    Ok((
        change.allocations as f64 / calls,
        change.bytes_allocated as f64 / calls,
    ))
}

/// Calls per second with `tasks` tasks in flight for one round.
async fn throughput(
    contender: Contender,
    client: &distkit_core::fred::clients::Client,
    sha: &Arc<str>,
    tasks: usize,
) -> BenchResult<f64> {
    let started = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for task in 0..tasks {
        let (client, sha) = (client.clone(), Arc::clone(sha));
        let key = format!("bench:{{{}}}:{task}", unique_prefix());
        handles.push(tokio::spawn(async move {
            let mut calls = 0_u64;
            while started.elapsed() < ROUND {
                call(contender, &client, &sha, &key).await?;
                calls = calls.saturating_add(1);
            }
            Ok::<u64, Box<dyn std::error::Error + Send + Sync>>(calls)
        }));
    }
    let mut calls = 0_u64;
    for handle in handles {
        calls = calls.saturating_add(handle.await??);
    }
    #[expect(clippy::cast_precision_loss, reason = "a rate for a report")]
    Ok(calls as f64 / started.elapsed().as_secs_f64())
}

fn main() -> BenchResult<()> {
    let redis = TestRedis::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = distkit_core::connect(redis.url()).await?;
        let sha: String = client.script_load(SOURCE).await?;
        let sha: Arc<str> = Arc::from(sha);
        let key = format!("bench:{{{}}}", unique_prefix());
        // Warm both paths (the runner computes its SHA once).
        for contender in [Contender::Raw, Contender::Distkit] {
            call(contender, &client, &sha, &key).await?;
        }
        let (raw_allocations, raw_bytes) = allocations(Contender::Raw, &client, &sha, &key).await?;
        let (ours_allocations, ours_bytes) =
            allocations(Contender::Distkit, &client, &sha, &key).await?;
        println!("One script call (EVALSHA of a one-line INCRBY), distkit's runner vs fred's evalsha");
        println!(
            "  allocations per call: distkit {ours_allocations:.1} ({ours_bytes:.0} B) | raw {raw_allocations:.1} ({raw_bytes:.0} B)"
        );
        for tasks in [1_usize, 64] {
            let (mut raw, mut ours, mut custom, mut with_options) = (0.0_f64, 0.0_f64, 0.0_f64, 0.0_f64);
            for _ in 0..ROUNDS {
                raw = raw.max(throughput(Contender::Raw, &client, &sha, tasks).await?);
                ours = ours.max(throughput(Contender::Distkit, &client, &sha, tasks).await?);
                custom = custom.max(throughput(Contender::Custom, &client, &sha, tasks).await?);
                with_options = with_options.max(throughput(Contender::CustomWithOptions, &client, &sha, tasks).await?);
            }
            println!("  {tasks:>2} task(s): custom {custom:>8.0}/s | custom with options {with_options:>8.0}/s");
            println!(
                "  {tasks:>2} task(s): distkit {ours:>8.0}/s | raw {raw:>8.0}/s -> ratio {:.2}",
                ours / raw
            );
        }
        Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    })
}
