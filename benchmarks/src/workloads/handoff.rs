//! Mutex handoff: 4 contenders, each on a connection of its own, loop over lock → 1 ms hold
//! → release. distkit and distkit 0.7.1 against an in-process FIFO handoff (a fair tokio
//! mutex) around the same Redis work (the raw lock's two round trips). Measures handoffs per
//! second and each contender's wait in `lock()`.

use std::future::Future;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use distkit::DistkitRedisKey;
use distkit::lock::{LockOptions, Mutex};
use distkit_test_support::unique_prefix;

use super::locks::RAW_RELEASE;
use super::{HandoffWaits, RunResults, medians};
use crate::measure::{
    ROUNDS, Samples, anchor_connection, bounded, per_second, raw_connection, script_load,
};
use crate::stats::millis;
use crate::{BenchError, BenchResult};

/// How many tasks contend for the lock.
pub const CONTENDERS: usize = 4;
/// How long a holder keeps the lock.
pub const HOLD: Duration = Duration::from_millis(1);

/// Runs `contenders` tasks, each looping `cycle(task)` (which returns its wait in `lock()`)
/// until `round` has passed; returns the cycles per second and every wait.
async fn contend<C, F>(round: Duration, cycles: Vec<C>) -> BenchResult<(f64, Vec<Duration>)>
where
    C: FnMut() -> F + Send + 'static,
    F: Future<Output = BenchResult<Duration>> + Send + 'static,
{
    let started = Instant::now();
    let waits: Arc<StdMutex<Vec<Duration>>> = Arc::new(StdMutex::new(Vec::new()));
    let handles: Vec<_> = cycles
        .into_iter()
        .map(|mut cycle| {
            let waits = Arc::clone(&waits);
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while started.elapsed() < round {
                    mine.push(cycle().await?);
                }
                waits.lock().map_err(|_| "poisoned")?.extend(mine);
                Ok::<(), BenchError>(())
            })
        })
        .collect();
    for handle in handles {
        handle.await??;
    }
    let elapsed = started.elapsed();
    let waits = std::mem::take(&mut *waits.lock().map_err(|_| "poisoned")?);
    let count = u64::try_from(waits.len()).unwrap_or(u64::MAX);
    Ok((per_second(count, elapsed), waits))
}

/// One round of distkit's Mutex.
async fn distkit_round(url: &str, round: Duration) -> BenchResult<(f64, Vec<Duration>)> {
    let name = DistkitRedisKey::new(unique_prefix())?;
    let mut cycles = Vec::new();
    for _ in 0..CONTENDERS {
        let client = distkit::connect(url).await?;
        let mutex = Mutex::new(LockOptions::new(name.clone(), client));
        cycles.push(move || {
            let mutex = Arc::clone(&mutex);
            async move {
                let asked = Instant::now();
                let guard = mutex.lock().await?;
                let waited = asked.elapsed();
                tokio::time::sleep(HOLD).await;
                guard.release().await?;
                Ok(waited)
            }
        });
    }
    contend(round, cycles).await
}

/// One round of distkit 0.7.1's Mutex (its documented defaults: it polls every 50 ms).
async fn anchor_round(url: &str, round: Duration) -> BenchResult<(f64, Vec<Duration>)> {
    let name = distkit_07::DistkitRedisKey::new(unique_prefix())?;
    let mut cycles = Vec::new();
    for _ in 0..CONTENDERS {
        let connection = anchor_connection(url).await?;
        let mutex = distkit_07::lock::Mutex::new(distkit_07::lock::LockOptions::new(
            name.clone(),
            connection,
        ));
        cycles.push(move || {
            let mutex = Arc::clone(&mutex);
            async move {
                let asked = Instant::now();
                let guard = mutex.lock().await?;
                let waited = asked.elapsed();
                tokio::time::sleep(HOLD).await;
                guard.release().await?;
                Ok(waited)
            }
        });
    }
    contend(round, cycles).await
}

/// One round of the in-process FIFO handoff: a fair tokio mutex decides the order, and the
/// holder does the raw lock's two round trips around its hold, so each handoff costs the
/// same Redis work as a distributed lock's, with an ideal (in-process) wakeup.
async fn fifo_round(url: &str, round: Duration) -> BenchResult<(f64, Vec<Duration>)> {
    let fifo = Arc::new(tokio::sync::Mutex::new(()));
    let key = Arc::new(format!("bench:{{{}}}:fifo", unique_prefix()));
    let mut cycles = Vec::new();
    for _ in 0..CONTENDERS {
        let mut connection = raw_connection(url).await?;
        let sha = Arc::new(script_load(&mut connection, RAW_RELEASE).await?);
        let (fifo, key) = (Arc::clone(&fifo), Arc::clone(&key));
        cycles.push(move || {
            let (fifo, key, sha, mut connection) = (
                Arc::clone(&fifo),
                Arc::clone(&key),
                Arc::clone(&sha),
                connection.clone(),
            );
            async move {
                let asked = Instant::now();
                let turn = fifo.lock().await;
                let waited = asked.elapsed();
                // SET NX PX (acquire), the hold, then compare-and-delete (release).
                let redis_work = async {
                    let set: Option<String> = redis::cmd("SET")
                        .arg(key.as_str())
                        .arg("token")
                        .arg("NX")
                        .arg("PX")
                        .arg(30_000)
                        .query_async(&mut connection)
                        .await?;
                    set.ok_or("the FIFO's key was taken")?;
                    tokio::time::sleep(HOLD).await;
                    crate::measure::evalsha(&mut connection, &sha, &key, &["token"]).await?;
                    Ok::<(), BenchError>(())
                };
                redis_work.await?;
                drop(turn);
                Ok(waited)
            }
        });
    }
    contend(round, cycles).await
}

/// Fills rows `handoff.throughput` and `handoff.max_wait` and the run's wait latencies.
///
/// # Errors
///
/// A failed call.
pub async fn run(url: &str, round: Duration, results: &mut RunResults) -> BenchResult<()> {
    let mut rates = Samples::default();
    let mut waits = HandoffWaits::default();
    for _ in 0..ROUNDS {
        let (rate, mut seen) = bounded(round, distkit_round(url, round)).await?;
        rates.distkit.push(rate);
        waits.distkit.append(&mut seen);
        let (rate, mut seen) = bounded(round, fifo_round(url, round)).await?;
        rates.raw.push(rate);
        waits.fifo.append(&mut seen);
        let (rate, mut seen) = bounded(round, anchor_round(url, round)).await?;
        rates.anchor.push(rate);
        waits.anchor.append(&mut seen);
    }
    waits.distkit.sort();
    waits.fifo.sort();
    waits.anchor.sort();
    let max = |sorted: &[Duration]| sorted.last().copied().map(millis);
    results.rows.insert("handoff.throughput", medians(&rates));
    results.rows.insert(
        "handoff.max_wait",
        crate::rows::RowRun {
            distkit: max(&waits.distkit).unwrap_or(f64::NAN),
            raw: max(&waits.fifo),
            anchor: max(&waits.anchor),
        },
    );
    results.handoff = Some(waits);
    Ok(())
}
