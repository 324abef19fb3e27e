//! LaxCounter warm `inc` (no network round trip) against an in-process `Mutex<HashMap>`
//! increment and distkit 0.7.1's lax counter, from 1, 2, 4, 16 and 64 tasks, each task on a
//! key of its own.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use distkit::DistkitRedisKey;
use distkit::counter::{CounterOptions, LaxCounter};
use distkit_07::counter::CounterTrait as _;
use distkit_test_support::unique_prefix;

use super::{Floor, RunResults, ScalePoint, medians};
use crate::measure::{ROUNDS, Targets, interleave, per_second, spin_rate, spin_until};
use crate::stats;
use crate::{BenchError, BenchResult};

/// The task counts of the throughput series (2 is the 2-core scaling row).
pub const TASKS: [usize; 5] = [1, 2, 4, 16, 64];
/// How far the lax counters may lag behind Redis.
const ALLOWED_LAG: Duration = Duration::from_millis(20);

/// How long each primitive of the floors is timed in one round.
const FLOOR_ROUND: Duration = Duration::from_millis(100);
/// How many calls of a primitive run between two reads of the clock.
const FLOOR_BATCH: u64 = 1024;

/// The key of task `task`.
fn key_name(task: usize) -> String {
    format!("warm{task}")
}

/// Measures the series and fills rows `lax.warm` (ns per call of one task) and
/// `lax.scaling` (2 tasks' throughput over 1 task's).
///
/// # Errors
///
/// A failed call.
pub async fn run(targets: &Targets, round: Duration, results: &mut RunResults) -> BenchResult<()> {
    let most = TASKS.iter().copied().max().unwrap_or(1);
    let mut options = CounterOptions::new(
        DistkitRedisKey::new(unique_prefix())?,
        targets.distkit.clone(),
    );
    options.allowed_lag = ALLOWED_LAG;
    let ours = LaxCounter::new(options);
    let mut options = distkit_07::counter::CounterOptions::new(
        distkit_07::DistkitRedisKey::new(unique_prefix())?,
        targets.anchor.clone(),
    );
    options.allowed_lag = ALLOWED_LAG;
    let theirs = distkit_07::counter::LaxCounter::new(options);
    let floor: Arc<Mutex<HashMap<String, i64>>> = Arc::new(Mutex::new(HashMap::new()));
    // Warm every key: the measured calls take the fast path.
    for task in 0..most {
        ours.inc(&DistkitRedisKey::new(key_name(task))?, 1).await?;
        theirs
            .inc(&distkit_07::DistkitRedisKey::new(key_name(task))?, 1)
            .await?;
        floor
            .lock()
            .map_err(|_| "poisoned")?
            .insert(key_name(task), 0);
    }
    let mut rates = Vec::new();
    for tasks in TASKS {
        let samples = interleave(
            round,
            || {
                spin_rate(tasks, round, |task, deadline| {
                    let counter = Arc::clone(&ours);
                    async move {
                        let key = DistkitRedisKey::new(key_name(task))?;
                        spin_until(deadline, || counter.inc(&key, 1)).await
                    }
                })
            },
            || {
                spin_rate(tasks, round, |task, deadline| {
                    let map = Arc::clone(&floor);
                    async move {
                        let key = key_name(task);
                        spin_until(deadline, || {
                            let outcome = map
                                .lock()
                                .map(|mut guard| {
                                    if let Some(value) = guard.get_mut(&key) {
                                        *value = value.wrapping_add(1);
                                    }
                                })
                                .map_err(|_| "poisoned");
                            std::future::ready(outcome)
                        })
                        .await
                    }
                })
            },
            || {
                spin_rate(tasks, round, |task, deadline| {
                    let counter = Arc::clone(&theirs);
                    async move {
                        let key = distkit_07::DistkitRedisKey::new(key_name(task))?;
                        spin_until(deadline, || counter.inc(&key, 1)).await
                    }
                })
            },
        )
        .await?;
        let figures = medians(&samples);
        results.lax_scaling.push(ScalePoint { tasks, figures });
        rates.push((tasks, figures));
    }
    ours.flush().await?;
    results.lax_floors = floors();
    let mut empty = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        empty.push(
            spin_rate(1, round, |_, deadline| async move {
                spin_until(deadline, || std::future::ready(Ok::<(), BenchError>(()))).await
            })
            .await?,
        );
    }
    results.lax_floors.push(Floor {
        what: "the row's measuring loop around a call that does nothing (one task)",
        nanos: stats::median(&empty).map_or(f64::NAN, |rate| 1e9 / rate),
    });
    let at = |tasks: usize| {
        rates
            .iter()
            .find(|(count, _)| *count == tasks)
            .map(|(_, figures)| *figures)
    };
    if let Some(one) = at(1) {
        let nanos = |rate: f64| 1e9 / rate;
        results.rows.insert(
            "lax.warm",
            crate::rows::RowRun {
                distkit: nanos(one.distkit),
                raw: one.raw.map(nanos),
                anchor: one.anchor.map(nanos),
            },
        );
        if let Some(two) = at(2) {
            results.rows.insert(
                "lax.scaling",
                crate::rows::RowRun {
                    distkit: two.distkit / one.distkit,
                    raw: two.raw.zip(one.raw).map(|(two, one)| two / one),
                    anchor: two.anchor.zip(one.anchor).map(|(two, one)| two / one),
                },
            );
        }
    }
    Ok(())
}

/// Times `step` (given the call's index) for [`FLOOR_ROUND`] in each of [`ROUNDS`] rounds, on
/// the calling thread; returns the median ns per call.
fn time_floor(mut step: impl FnMut(u64)) -> f64 {
    let mut rates = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let mut calls: u64 = 0;
        while started.elapsed() < FLOOR_ROUND {
            for _ in 0..FLOOR_BATCH {
                step(calls);
                calls = calls.wrapping_add(1);
            }
        }
        rates.push(per_second(calls, started.elapsed()));
    }
    stats::median(&rates).map_or(f64::NAN, |rate| 1e9 / rate)
}

/// What the parts of a warm `inc` cost on this machine, one thread, nothing contended: one
/// atomic read-modify-write, an uncontended lock and unlock, and a hash-map lookup with no
/// lock. Any buffer shared with a flush task needs at least the first on its warm path.
fn floors() -> Vec<Floor> {
    let atomic = AtomicI64::new(0);
    let fetch_add = time_floor(|call| {
        atomic.fetch_add(black_box(i64::from(call & 1 == 0)), Ordering::Relaxed);
    });
    let lock = Mutex::new(0_i64);
    let lock_unlock = time_floor(|call| {
        if let Ok(mut value) = lock.lock() {
            *value = value.wrapping_add(black_box(i64::from(call & 1 == 0)));
        }
    });
    let mut map: HashMap<String, i64> = (0..8).map(|task| (key_name(task), 0)).collect();
    let key = key_name(0);
    let lookup = time_floor(|call| {
        if let Some(value) = map.get_mut(black_box(key.as_str())) {
            *value = value.wrapping_add(black_box(i64::from(call & 1 == 0)));
        }
    });
    vec![
        Floor {
            what: "one uncontended `AtomicI64::fetch_add` (an atomic read-modify-write)",
            nanos: fetch_add,
        },
        Floor {
            what: "an uncontended `std::sync::Mutex` lock + add + unlock (two of them)",
            nanos: lock_unlock,
        },
        Floor {
            what: "a `HashMap<String, i64>` lookup of the key + add, no lock (SipHash, the floor's map)",
            nanos: lookup,
        },
    ]
}
