//! LaxCounter heap bytes per tracked key, counted by the `stats_alloc` counting allocator
//! (which must be the program's global allocator), for distkit and distkit 0.7.1.

use std::alloc::System;
use std::time::Duration;

use distkit::DistkitRedisKey;
use distkit::counter::{CounterOptions, CounterTrait as _, LaxCounter};
use distkit_07::counter::CounterTrait as _;
use distkit_test_support::unique_prefix;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

use super::RunResults;
use crate::BenchResult;
use crate::measure::Targets;

/// How many keys one `inc_all` call adds.
const CHUNK: usize = 5_000;
/// How long distkit 0.7.1's lax counter is given to flush (it has no `flush`).
const ANCHOR_SETTLE: Duration = Duration::from_millis(300);

/// The counting allocator the program must install as its global allocator
/// (`&stats_alloc::INSTRUMENTED_SYSTEM`).
pub static COUNTING: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not freed since `region` began.
fn live_bytes(region: &Region<'_, System>) -> i64 {
    let change = region.change();
    i64::try_from(change.bytes_allocated)
        .unwrap_or(i64::MAX)
        .saturating_sub(i64::try_from(change.bytes_deallocated).unwrap_or(i64::MAX))
}

/// Fails unless [`COUNTING`] is the global allocator (it counts nothing otherwise).
///
/// # Errors
///
/// When it is not.
pub fn check_counting_allocator() -> BenchResult<()> {
    let region = Region::new(COUNTING);
    // black_box: an allocation that is never used may be optimised away.
    let probe: Vec<u8> = std::hint::black_box(Vec::with_capacity(4_096));
    let counted = region.change().bytes_allocated;
    drop(std::hint::black_box(probe));
    if counted == 0 {
        return Err(
            "the memory row needs stats_alloc's counting allocator as the #[global_allocator]"
                .into(),
        );
    }
    Ok(())
}

/// Key names of the same length as the counters bench's: `tenant-00000000` (15 bytes).
fn key_name(index: usize) -> String {
    format!("tenant-{index:08}")
}

/// Heap bytes per key of `keys` keys.
#[expect(
    clippy::cast_precision_loss,
    reason = "byte and key counts far below 2^52"
)]
fn per_key(live: i64, keys: usize) -> f64 {
    live as f64 / keys.max(1) as f64
}

/// Fills row `memory.lax`: `keys` keys tracked by each lax counter once flushed; the key
/// values themselves are made before counting starts.
///
/// # Errors
///
/// A failed call, or no counting allocator.
pub async fn run(targets: &Targets, keys: usize, results: &mut RunResults) -> BenchResult<()> {
    check_counting_allocator()?;
    let names: Vec<String> = (0..keys).map(key_name).collect();

    let our_keys = names
        .iter()
        .map(|name| DistkitRedisKey::new(name.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let ours = LaxCounter::new(CounterOptions::new(
        DistkitRedisKey::new(unique_prefix())?,
        targets.distkit.clone(),
    ));
    let region = Region::new(COUNTING);
    for chunk in our_keys.chunks(CHUNK) {
        let updates: Vec<(&DistkitRedisKey, i64)> = chunk.iter().map(|key| (key, 1)).collect();
        ours.inc_all(&updates).await?;
    }
    // Steady state: once flushed, only the map entries remain.
    ours.flush().await?;
    let distkit = per_key(live_bytes(&region), keys);
    ours.clear().await?;
    drop(our_keys);

    let their_keys = names
        .iter()
        .map(|name| distkit_07::DistkitRedisKey::new(name.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let theirs = distkit_07::counter::LaxCounter::new(distkit_07::counter::CounterOptions::new(
        distkit_07::DistkitRedisKey::new(unique_prefix())?,
        targets.anchor.clone(),
    ));
    let region = Region::new(COUNTING);
    for chunk in their_keys.chunks(CHUNK) {
        let updates: Vec<(&distkit_07::DistkitRedisKey, i64)> =
            chunk.iter().map(|key| (key, 1)).collect();
        theirs.inc_all(&updates).await?;
    }
    tokio::time::sleep(ANCHOR_SETTLE).await;
    let anchor = per_key(live_bytes(&region), keys);
    theirs.clear().await?;

    results.rows.insert(
        "memory.lax",
        crate::rows::RowRun {
            distkit,
            raw: None,
            anchor: Some(anchor),
        },
    );
    Ok(())
}
