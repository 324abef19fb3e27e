//! The strict rate limiters (`GcraLimiter`, `SlidingWindowLimiter`) from 64 tasks, each on a
//! key of its own, against raw `EVALSHA` of an equivalent script from the same 64 tasks (the
//! least a script doing the same job needs; the same scripts as the baselines of
//! `cargo bench -p distkit-ratelimit --bench ratelimit`). distkit 0.7.1 has no rate limiter:
//! these rows have no anchor.

use std::sync::Arc;
use std::time::Duration;

use distkit::DistkitRedisKey;
use distkit::ratelimit::{
    GcraLimiter, GcraOptions, GcraRate, SlidingWindowLimiter, SlidingWindowOptions,
};
use distkit_test_support::bench::calls_per_second;
use distkit_test_support::unique_prefix;
use redis::aio::MultiplexedConnection;

use super::{RunResults, medians};
use crate::BenchResult;
use crate::measure::{Targets, interleave_pair, script_load};

/// How many tasks call the limiter (and how many keys: one per task).
pub const TASKS: usize = 64;

/// The GCRA equivalent sent raw: TIME, GET, compare, SET PX (the TAT in whole µs).
/// KEYS: the state; ARGV: the emission interval and the burst span, in µs.
pub const RAW_GCRA: &str =
    include_str!("../../../crates/distkit-ratelimit/benches/raw/gcra_equivalent.lua");

/// The sliding-window equivalent sent raw: the bucket list and its total. KEYS: the list
/// and the total; ARGV: window ms, bucket ms, limit.
pub const RAW_WINDOW: &str =
    include_str!("../../../crates/distkit-ratelimit/benches/raw/sliding_window_equivalent.lua");

/// The GCRA rate of the row: 1 000 000 per second, bursts of 1 000 000 (T = 1 µs, a burst
/// span of 1 s), so every call is admitted and charged: the write path is measured.
const GCRA_ARGS: [&str; 2] = ["1", "1000000"];
/// The sliding window of the row: 10 s of 100 ms buckets, a limit far above the calls.
const WINDOW: Duration = Duration::from_secs(10);
/// The bucket width of the row's sliding window.
const BUCKET: Duration = Duration::from_millis(100);
/// The sliding window's limit.
const WINDOW_LIMIT: u64 = 1_000_000_000;
/// The raw sliding window's arguments: window ms, bucket ms, limit.
const WINDOW_ARGS: [&str; 3] = ["10000", "100", "1000000000"];

/// The limiter keys, one per task.
fn limiter_keys() -> BenchResult<Arc<Vec<DistkitRedisKey>>> {
    Ok(Arc::new(
        (0..TASKS)
            .map(|index| DistkitRedisKey::new(format!("k{index}")))
            .collect::<Result<_, _>>()?,
    ))
}

/// `EVALSHA sha <keys> args…` on the baseline's connection.
async fn evalsha_keys(
    connection: &mut MultiplexedConnection,
    sha: &str,
    keys: &[String],
    args: &[&str],
) -> BenchResult<()> {
    let _: redis::Value = redis::cmd("EVALSHA")
        .arg(sha)
        .arg(keys.len())
        .arg(keys)
        .arg(args)
        .query_async(connection)
        .await?;
    Ok(())
}

/// Fills row `gcra.64`: `GcraLimiter::check` from 64 tasks against raw `EVALSHA` of
/// [`RAW_GCRA`] from 64 tasks.
///
/// # Errors
///
/// A failed call.
pub async fn run_gcra(
    targets: &Targets,
    round: Duration,
    results: &mut RunResults,
) -> BenchResult<()> {
    let mut raw_connection = targets.raw.clone();
    let sha = Arc::new(script_load(&mut raw_connection, RAW_GCRA).await?);
    let tag = unique_prefix();
    let raw_keys: Arc<Vec<Vec<String>>> = Arc::new(
        (0..TASKS)
            .map(|index| vec![format!("bench:{tag}:gcra:{{k{index}}}")])
            .collect(),
    );
    let limiter = Arc::new(GcraLimiter::new(GcraOptions::new(
        DistkitRedisKey::new(unique_prefix())?,
        targets.distkit.clone(),
    )));
    let rate = GcraRate::per_second(1_000_000, 1_000_000)?;
    let keys = limiter_keys()?;
    let samples = interleave_pair(
        round,
        || {
            let (limiter, keys) = (Arc::clone(&limiter), Arc::clone(&keys));
            calls_per_second(TASKS, round, move |task| {
                let (limiter, keys) = (Arc::clone(&limiter), Arc::clone(&keys));
                async move {
                    let key = keys.get(task).ok_or("no key")?;
                    limiter.check(key, &rate, 1).await?;
                    Ok(())
                }
            })
        },
        || {
            let (connection, sha, keys) = (
                raw_connection.clone(),
                Arc::clone(&sha),
                Arc::clone(&raw_keys),
            );
            calls_per_second(TASKS, round, move |task| {
                let (mut connection, sha, keys) =
                    (connection.clone(), Arc::clone(&sha), Arc::clone(&keys));
                async move {
                    let key = keys.get(task).ok_or("no key")?;
                    evalsha_keys(&mut connection, &sha, key, &GCRA_ARGS).await
                }
            })
        },
    )
    .await?;
    results.rows.insert("gcra.64", medians(&samples));
    Ok(())
}

/// Fills row `window.64`: `SlidingWindowLimiter::check` from 64 tasks against raw `EVALSHA`
/// of [`RAW_WINDOW`] from 64 tasks.
///
/// # Errors
///
/// A failed call.
pub async fn run_window(
    targets: &Targets,
    round: Duration,
    results: &mut RunResults,
) -> BenchResult<()> {
    let mut raw_connection = targets.raw.clone();
    let sha = Arc::new(script_load(&mut raw_connection, RAW_WINDOW).await?);
    let tag = unique_prefix();
    let raw_keys: Arc<Vec<Vec<String>>> = Arc::new(
        (0..TASKS)
            .map(|index| {
                vec![
                    format!("bench:{tag}:sw:{{k{index}}}"),
                    format!("bench:{tag}:sw:{{k{index}}}:total"),
                ]
            })
            .collect(),
    );
    let mut options = SlidingWindowOptions::new(
        DistkitRedisKey::new(unique_prefix())?,
        targets.distkit.clone(),
    );
    options.window = WINDOW;
    options.bucket = BUCKET;
    let limiter = Arc::new(SlidingWindowLimiter::new(options)?);
    let keys = limiter_keys()?;
    let samples = interleave_pair(
        round,
        || {
            let (limiter, keys) = (Arc::clone(&limiter), Arc::clone(&keys));
            calls_per_second(TASKS, round, move |task| {
                let (limiter, keys) = (Arc::clone(&limiter), Arc::clone(&keys));
                async move {
                    let key = keys.get(task).ok_or("no key")?;
                    limiter.check(key, WINDOW_LIMIT, 1).await?;
                    Ok(())
                }
            })
        },
        || {
            let (connection, sha, keys) = (
                raw_connection.clone(),
                Arc::clone(&sha),
                Arc::clone(&raw_keys),
            );
            calls_per_second(TASKS, round, move |task| {
                let (mut connection, sha, keys) =
                    (connection.clone(), Arc::clone(&sha), Arc::clone(&keys));
                async move {
                    let key = keys.get(task).ok_or("no key")?;
                    evalsha_keys(&mut connection, &sha, key, &WINDOW_ARGS).await
                }
            })
        },
    )
    .await?;
    results.rows.insert("window.64", medians(&samples));
    Ok(())
}
