//! The client-side cost of one strict limiter call, for attribution with repeatable counts:
//! heap allocations per call (a counting allocator over every thread, so fred's connection
//! task is in both) and, run under `valgrind --tool=callgrind`, instructions per call,
//! against fred's raw `EVALSHA` of the equivalent script (`benches/raw/*.lua`, the baselines
//! of the report's `gcra.64` and `window.64` rows).
//!
//! `REDIS_URL=redis://127.0.0.1:<port> DISTKIT_CHECK_COST=<contender>
//! DISTKIT_CHECK_CALLS=<n> cargo bench -p distkit-ratelimit --bench check_cost`, the
//! contender one of `gcra`, `raw-gcra`, `window`, `raw-window` (default `gcra`), `n`
//! default 20 000. The calls are sent one at a time from one task on a current-thread
//! runtime, over 64 keys; the program prints the allocations (and bytes) per call of the
//! measured loop. Under callgrind, run it with two call counts: the difference of the
//! totals over the difference of the counts is the instructions per call, without the
//! start-up.
//!
//! With `DISTKIT_CHECK_TASKS=<tasks>` it instead runs `tasks` tasks in flight for 3 s on a
//! two-worker runtime, as the report's rows do, and prints calls per second and the CPU
//! time per call of this process and (with `REDIS_PID`) of the server, from `/proc`
//! (clock ticks: a coarse, but not a timing-noise-prone, attribution of the whole-path cost,
//! kernel included). Contenders then also include `raw-gcra-redis-rs` and
//! `raw-window-redis-rs`: the report's baselines, sent with redis-rs.
#![expect(
    clippy::arithmetic_side_effects,
    clippy::cast_precision_loss,
    clippy::indexing_slicing,
    clippy::print_stdout,
    reason = "a measurement program: counts and float ratios, printed"
)]

use std::alloc::System;

use distkit_ratelimit::fred::interfaces::LuaInterface;
use distkit_ratelimit::ratelimit::{
    GcraLimiter, GcraOptions, GcraRate, SlidingWindowLimiter, SlidingWindowOptions,
};
use distkit_ratelimit::{DistkitRedisKey, connect};
use distkit_test_support::bench::{BenchError, calls_per_second, raw_evalsha};
use distkit_test_support::unique_prefix;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The keys the calls cycle through.
const KEYS: usize = 64;

/// The raw GCRA equivalent: KEYS the state; ARGV the emission interval and burst span (µs).
const RAW_GCRA: &str = include_str!("raw/gcra_equivalent.lua");
/// The raw sliding-window equivalent: KEYS the list and total; ARGV window, bucket, limit.
const RAW_WINDOW: &str = include_str!("raw/sliding_window_equivalent.lua");

fn main() -> Result<(), BenchError> {
    if let Ok(tasks) = std::env::var("DISTKIT_CHECK_TASKS") {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        return runtime.block_on(in_flight(tasks.parse()?));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

/// User + system CPU time of a process so far, in clock ticks (`/proc/<pid>/stat`).
fn cpu_ticks(pid: &str) -> Result<u64, BenchError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat.rsplit(')').next().ok_or("bad stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

/// `tasks` tasks in flight for 3 s: calls per second, CPU per call of the client and server.
async fn in_flight(tasks: usize) -> Result<(), BenchError> {
    use std::sync::Arc;
    use std::time::Duration;
    let url = std::env::var("REDIS_URL").map_err(|_| "set REDIS_URL")?;
    let server = std::env::var("REDIS_PID").ok();
    let contender = std::env::var("DISTKIT_CHECK_COST").unwrap_or_else(|_| "gcra".to_owned());
    let round = Duration::from_secs(3);
    let client = connect(&url).await?;
    let prefix = DistkitRedisKey::new(unique_prefix())?;
    let keys: Arc<Vec<DistkitRedisKey>> = Arc::new(
        (0..KEYS)
            .map(|index| DistkitRedisKey::new(format!("k{index}")))
            .collect::<Result<_, _>>()?,
    );
    let tag = unique_prefix();
    let redis_rs = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let client_before = cpu_ticks("self")?;
    let server_before = server.as_deref().map(cpu_ticks).transpose()?;
    let per_second = match contender.as_str() {
        "gcra" => {
            let limiter = Arc::new(GcraLimiter::new(GcraOptions::new(prefix, client.clone())));
            let gcra = GcraRate::per_second(1_000_000, 1_000_000)?;
            calls_per_second(tasks, round, move |task| {
                let (limiter, keys) = (Arc::clone(&limiter), Arc::clone(&keys));
                async move {
                    limiter.check(&keys[task % KEYS], &gcra, 1).await?;
                    Ok(())
                }
            })
            .await?
        }
        "window" => {
            let limiter = Arc::new(SlidingWindowLimiter::new(SlidingWindowOptions::new(
                prefix,
                client.clone(),
            ))?);
            calls_per_second(tasks, round, move |task| {
                let (limiter, keys) = (Arc::clone(&limiter), Arc::clone(&keys));
                async move {
                    limiter.check(&keys[task % KEYS], 1_000_000_000, 1).await?;
                    Ok(())
                }
            })
            .await?
        }
        "raw-gcra" | "raw-gcra-redis-rs" | "raw-window" | "raw-window-redis-rs" => {
            let window = contender.contains("window");
            let source = if window { RAW_WINDOW } else { RAW_GCRA };
            let sha: Arc<String> = Arc::new(client.script_load(source).await?);
            let raw_keys: Arc<Vec<Vec<String>>> = Arc::new(
                (0..KEYS)
                    .map(|index| {
                        if window {
                            vec![
                                format!("bench:{tag}:sw:{{k{index}}}"),
                                format!("bench:{tag}:sw:{{k{index}}}:total"),
                            ]
                        } else {
                            vec![format!("bench:{tag}:gcra:{{k{index}}}")]
                        }
                    })
                    .collect(),
            );
            let args: &'static [&'static str] = if window {
                &["10000", "100", "1000000000"]
            } else {
                &["1", "1000000"]
            };
            let with_redis_rs = contender.ends_with("redis-rs");
            let fred = client.clone();
            calls_per_second(tasks, round, move |task| {
                let (sha, raw_keys, fred) = (Arc::clone(&sha), Arc::clone(&raw_keys), fred.clone());
                let mut connection = redis_rs.clone();
                async move {
                    let keys = &raw_keys[task % KEYS];
                    if with_redis_rs {
                        let _: redis::Value = redis::cmd("EVALSHA")
                            .arg(sha.as_str())
                            .arg(keys.len())
                            .arg(keys)
                            .arg(args)
                            .query_async(&mut connection)
                            .await?;
                    } else {
                        use distkit_ratelimit::fred::interfaces::ClientLike;
                        use distkit_ratelimit::fred::types::{ClusterHash, CustomCommand, Value};
                        let command =
                            CustomCommand::new_static("EVALSHA", ClusterHash::FirstKey, false);
                        let mut all: Vec<Value> = vec![sha.as_str().into(), keys.len().try_into()?];
                        all.extend(keys.iter().map(|key| Value::from(key.as_str())));
                        all.extend(args.iter().map(|arg| Value::from(*arg)));
                        let _: Value = fred.custom(command, all).await?;
                    }
                    Ok(())
                }
            })
            .await?
        }
        other => return Err(format!("unknown contender {other}").into()),
    };
    let calls = per_second * round.as_secs_f64();
    // Clock ticks are 10 ms (USER_HZ 100).
    let per_call_us = |ticks: u64| ticks as f64 * 10_000.0 / calls;
    let client_us = per_call_us(cpu_ticks("self")? - client_before);
    let server_us = match (server.as_deref(), server_before) {
        (Some(pid), Some(before)) => per_call_us(cpu_ticks(pid)? - before),
        _ => f64::NAN,
    };
    println!(
        "{contender}, {tasks} tasks: {per_second:.0} calls/s, CPU per call: client {client_us:.2} µs, server {server_us:.2} µs"
    );
    Ok(())
}

async fn run() -> Result<(), BenchError> {
    let url = std::env::var("REDIS_URL").map_err(|_| "set REDIS_URL")?;
    let contender = std::env::var("DISTKIT_CHECK_COST").unwrap_or_else(|_| "gcra".to_owned());
    let calls: usize = std::env::var("DISTKIT_CHECK_CALLS")
        .ok()
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(20_000);
    let client = connect(&url).await?;
    let prefix = DistkitRedisKey::new(unique_prefix())?;
    let keys: Vec<DistkitRedisKey> = (0..KEYS)
        .map(|index| DistkitRedisKey::new(format!("k{index}")))
        .collect::<Result<_, _>>()?;
    let tag = unique_prefix();
    let region = Region::new(ALLOCATOR);
    match contender.as_str() {
        "gcra" => {
            let limiter = GcraLimiter::new(GcraOptions::new(prefix, client.clone()));
            let rate = GcraRate::per_second(1_000_000, 1_000_000)?;
            for call in 0..calls {
                limiter.check(&keys[call % KEYS], &rate, 1).await?;
            }
        }
        "raw-gcra" => {
            let sha: String = client.script_load(RAW_GCRA).await?;
            let raw_keys: Vec<String> = (0..KEYS)
                .map(|index| format!("bench:{tag}:gcra:{{k{index}}}"))
                .collect();
            for call in 0..calls {
                raw_evalsha(&client, &sha, &raw_keys[call % KEYS], &["1", "1000000"]).await?;
            }
        }
        "window" => {
            let limiter = SlidingWindowLimiter::new(SlidingWindowOptions::new(prefix, client))?;
            for call in 0..calls {
                limiter.check(&keys[call % KEYS], 1_000_000_000, 1).await?;
            }
        }
        "raw-window" => {
            use distkit_ratelimit::fred::interfaces::ClientLike;
            use distkit_ratelimit::fred::types::{ClusterHash, CustomCommand, Value};
            let sha: String = client.script_load(RAW_WINDOW).await?;
            let raw_keys: Vec<[String; 2]> = (0..KEYS)
                .map(|index| {
                    [
                        format!("bench:{tag}:sw:{{k{index}}}"),
                        format!("bench:{tag}:sw:{{k{index}}}:total"),
                    ]
                })
                .collect();
            for call in 0..calls {
                let [list, total] = &raw_keys[call % KEYS];
                let command = CustomCommand::new_static("EVALSHA", ClusterHash::FirstKey, false);
                let args: Vec<Value> = vec![
                    sha.as_str().into(),
                    2.into(),
                    list.as_str().into(),
                    total.as_str().into(),
                    "10000".into(),
                    "100".into(),
                    "1000000000".into(),
                ];
                let _: Value = client.custom(command, args).await?;
            }
        }
        other => return Err(format!("unknown contender {other}").into()),
    }
    let change = region.change();
    println!(
        "{contender}: {calls} calls, {:.1} allocations ({:.0} B) per call",
        change.allocations as f64 / calls as f64,
        change.bytes_allocated as f64 / calls as f64
    );
    Ok(())
}
