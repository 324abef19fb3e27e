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
use distkit_test_support::bench::{BenchError, raw_evalsha};
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
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
