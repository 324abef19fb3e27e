//! StrictInstanceAwareCounter warm `inc` from one task against raw serial EVALSHA of a
//! one-line HINCRBY script and distkit 0.7.1's strict instance-aware counter; then against
//! raw EVALSHA of the least Redis work the instance-aware model needs per increment (the
//! server clock, the lease renewal and the two increments of slice and total).

use std::sync::Arc;
use std::time::Duration;

use distkit::DistkitRedisKey;
use distkit::icounter::{
    InstanceAwareCounterTrait as _, StrictInstanceAwareCounter, StrictInstanceAwareCounterOptions,
};
use distkit_test_support::bench::calls_per_second;
use distkit_test_support::unique_prefix;

use super::strict::RAW_SCRIPT;
use super::{RunResults, medians};
use crate::BenchResult;
use crate::measure::{Targets, evalsha, interleave, script_load};

/// The least Redis work of one instance-aware increment, as one script: the server clock,
/// the lease renewal, the slice and the total.
/// KEYS: the lease sorted set, the slices hash, the totals hash; ARGV: instance, key, delta.
pub const SAME_WORK_SCRIPT: &str = "local t = redis.call('TIME') \
     redis.call('ZADD', KEYS[1], tonumber(t[1]) * 1000 + 30000, ARGV[1]) \
     local slice = redis.call('HINCRBY', KEYS[2], ARGV[1] .. ':' .. ARGV[2], ARGV[3]) \
     return { redis.call('HINCRBY', KEYS[3], ARGV[2], ARGV[3]), slice }";

/// Fills rows `icounter.inc` and `icounter.same_work`.
///
/// # Errors
///
/// A failed call.
pub async fn run(targets: &Targets, round: Duration, results: &mut RunResults) -> BenchResult<()> {
    let mut raw_connection = targets.raw.clone();
    let sha = Arc::new(script_load(&mut raw_connection, RAW_SCRIPT).await?);
    let hash = Arc::new(format!("bench:{{{}}}:raw", unique_prefix()));
    let ours = StrictInstanceAwareCounter::new(StrictInstanceAwareCounterOptions::new(
        DistkitRedisKey::new(unique_prefix())?,
        targets.distkit.clone(),
    ));
    let theirs = distkit_07::icounter::StrictInstanceAwareCounter::new(
        distkit_07::icounter::StrictInstanceAwareCounterOptions::new(
            distkit_07::DistkitRedisKey::new(unique_prefix())?,
            targets.anchor.clone(),
        ),
    );
    let our_key = Arc::new(DistkitRedisKey::new("k".to_owned())?);
    let their_key = Arc::new(distkit_07::DistkitRedisKey::new("k".to_owned())?);
    // Warm: the instance is registered and the key exists.
    ours.inc(&our_key, 1).await?;
    theirs.inc(&their_key, 1).await?;
    let samples = interleave(
        round,
        || our_rate(&ours, &our_key, round),
        || {
            let (connection, sha, hash) =
                (raw_connection.clone(), Arc::clone(&sha), Arc::clone(&hash));
            calls_per_second(1, round, move |_| {
                let (mut connection, sha, hash) =
                    (connection.clone(), Arc::clone(&sha), Arc::clone(&hash));
                async move {
                    evalsha(&mut connection, &sha, &hash, &["k", "1"]).await?;
                    Ok(())
                }
            })
        },
        || anchor_rate(&theirs, &their_key, round),
    )
    .await?;
    results.rows.insert("icounter.inc", medians(&samples));

    let same_sha = Arc::new(script_load(&mut raw_connection, SAME_WORK_SCRIPT).await?);
    let tag = unique_prefix();
    let same_keys =
        Arc::new(["alive", "slices", "totals"].map(|part| format!("bench:{{{tag}}}:{part}")));
    let samples = interleave(
        round,
        || our_rate(&ours, &our_key, round),
        || {
            let (connection, sha, keys) = (
                raw_connection.clone(),
                Arc::clone(&same_sha),
                Arc::clone(&same_keys),
            );
            calls_per_second(1, round, move |_| {
                let (mut connection, sha, keys) =
                    (connection.clone(), Arc::clone(&sha), Arc::clone(&keys));
                async move {
                    let _: redis::Value = redis::cmd("EVALSHA")
                        .arg(sha.as_str())
                        .arg(keys.len())
                        .arg(keys.as_slice())
                        .arg(&["01BENCHINSTANCE", "k", "1"])
                        .query_async(&mut connection)
                        .await?;
                    Ok(())
                }
            })
        },
        || anchor_rate(&theirs, &their_key, round),
    )
    .await?;
    results.rows.insert("icounter.same_work", medians(&samples));
    Ok(())
}

/// One task's calls per second of distkit's warm `inc` of `key`.
async fn our_rate(
    counter: &Arc<StrictInstanceAwareCounter>,
    key: &Arc<DistkitRedisKey>,
    round: Duration,
) -> BenchResult<f64> {
    let (counter, key) = (Arc::clone(counter), Arc::clone(key));
    calls_per_second(1, round, move |_| {
        let (counter, key) = (Arc::clone(&counter), Arc::clone(&key));
        async move {
            counter.inc(&key, 1).await?;
            Ok(())
        }
    })
    .await
}

/// One task's calls per second of distkit 0.7.1's warm `inc` of `key`.
async fn anchor_rate(
    counter: &Arc<distkit_07::icounter::StrictInstanceAwareCounter>,
    key: &Arc<distkit_07::DistkitRedisKey>,
    round: Duration,
) -> BenchResult<f64> {
    let (counter, key) = (Arc::clone(counter), Arc::clone(key));
    calls_per_second(1, round, move |_| {
        let (counter, key) = (Arc::clone(&counter), Arc::clone(&key));
        async move {
            counter.inc(&key, 1).await?;
            Ok(())
        }
    })
    .await
}
