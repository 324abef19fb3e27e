//! StrictCounter `inc` against raw EVALSHA of a one-line HINCRBY script and distkit 0.7.1's
//! strict counter, from 1, 4, 16 and 64 tasks over 16 keys.

use std::sync::Arc;
use std::time::Duration;

use distkit::DistkitRedisKey;
use distkit::counter::{CounterOptions, CounterTrait as _, StrictCounter};
use distkit_07::counter::CounterTrait as _;
use distkit_test_support::bench::calls_per_second;
use distkit_test_support::unique_prefix;

use super::{RunResults, ScalePoint, medians};
use crate::BenchResult;
use crate::measure::{Targets, evalsha, interleave, script_load};

/// The task counts of the throughput series.
pub const TASKS: [usize; 4] = [1, 4, 16, 64];
/// How many keys the tasks spread over (task `t` increments key `t % 16`).
pub const KEYS: usize = 16;
/// The baseline's script.
pub const RAW_SCRIPT: &str = "return redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])";

/// The key names of the counters.
fn key_names() -> Vec<String> {
    (0..KEYS).map(|index| format!("k{index}")).collect()
}

/// Measures the series and fills rows `strict.1` and `strict.64`.
///
/// # Errors
///
/// A failed call.
pub async fn run(targets: &Targets, round: Duration, results: &mut RunResults) -> BenchResult<()> {
    let names = Arc::new(key_names());
    let mut raw_connection = targets.raw.clone();
    let sha = Arc::new(script_load(&mut raw_connection, RAW_SCRIPT).await?);
    let hash = Arc::new(format!("bench:{{{}}}:raw", unique_prefix()));
    let ours = StrictCounter::new(CounterOptions::new(
        DistkitRedisKey::new(unique_prefix())?,
        targets.distkit.clone(),
    ));
    let theirs = distkit_07::counter::StrictCounter::new(distkit_07::counter::CounterOptions::new(
        distkit_07::DistkitRedisKey::new(unique_prefix())?,
        targets.anchor.clone(),
    ));
    let our_keys = Arc::new(
        names
            .iter()
            .map(|name| DistkitRedisKey::new(name.clone()))
            .collect::<Result<Vec<_>, _>>()?,
    );
    let their_keys = Arc::new(
        names
            .iter()
            .map(|name| distkit_07::DistkitRedisKey::new(name.clone()))
            .collect::<Result<Vec<_>, _>>()?,
    );
    for tasks in TASKS {
        let samples = interleave(
            round,
            || {
                let (counter, keys) = (Arc::clone(&ours), Arc::clone(&our_keys));
                calls_per_second(tasks, round, move |task| {
                    let (counter, keys) = (Arc::clone(&counter), Arc::clone(&keys));
                    async move {
                        let key = keys.get(task % KEYS).ok_or("no key")?;
                        counter.inc(key, 1).await?;
                        Ok(())
                    }
                })
            },
            || {
                let (connection, sha, hash, names) = (
                    raw_connection.clone(),
                    Arc::clone(&sha),
                    Arc::clone(&hash),
                    Arc::clone(&names),
                );
                calls_per_second(tasks, round, move |task| {
                    let (mut connection, sha, hash, names) = (
                        connection.clone(),
                        Arc::clone(&sha),
                        Arc::clone(&hash),
                        Arc::clone(&names),
                    );
                    async move {
                        let field = names.get(task % KEYS).ok_or("no key")?;
                        evalsha(&mut connection, &sha, &hash, &[field, "1"]).await?;
                        Ok(())
                    }
                })
            },
            || {
                let (counter, keys) = (Arc::clone(&theirs), Arc::clone(&their_keys));
                calls_per_second(tasks, round, move |task| {
                    let (counter, keys) = (Arc::clone(&counter), Arc::clone(&keys));
                    async move {
                        let key = keys.get(task % KEYS).ok_or("no key")?;
                        counter.inc(key, 1).await?;
                        Ok(())
                    }
                })
            },
        )
        .await?;
        let figures = medians(&samples);
        results.strict_scaling.push(ScalePoint { tasks, figures });
        match tasks {
            1 => drop(results.rows.insert("strict.1", figures)),
            64 => drop(results.rows.insert("strict.64", figures)),
            _ => {}
        }
    }
    Ok(())
}
