//! StrictInstanceAwareCounter warm `inc` from one task against raw serial EVALSHA of a
//! one-line HINCRBY script and distkit 0.7.1's strict instance-aware counter.

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

/// Fills row `icounter.inc`.
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
        || {
            let (counter, key) = (Arc::clone(&ours), Arc::clone(&our_key));
            calls_per_second(1, round, move |_| {
                let (counter, key) = (Arc::clone(&counter), Arc::clone(&key));
                async move {
                    counter.inc(&key, 1).await?;
                    Ok(())
                }
            })
        },
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
        || {
            let (counter, key) = (Arc::clone(&theirs), Arc::clone(&their_key));
            calls_per_second(1, round, move |_| {
                let (counter, key) = (Arc::clone(&counter), Arc::clone(&key));
                async move {
                    counter.inc(&key, 1).await?;
                    Ok(())
                }
            })
        },
    )
    .await?;
    results.rows.insert("icounter.inc", medians(&samples));
    Ok(())
}
