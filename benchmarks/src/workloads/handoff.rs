//! Mutex handoff: 4 contenders, each on a connection of its own, loop over lock → 1 ms hold
//! → release. distkit and distkit 0.7.1 against an in-process FIFO handoff (a fair tokio
//! mutex) around the same Redis work (the raw lock's two round trips). Measures handoffs per
//! second, each contender's wait in `lock()`, and each handover: the time from one holder's
//! release returning to the next holder holding the lock.

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

/// One holder's turn: its wait in `lock()`, and the handover that ended it (from the
/// previous holder's release returning to this holder holding; none for the first turn).
#[derive(Clone, Copy, Debug)]
struct Turn {
    waited: Duration,
    handover: Option<Duration>,
}

/// When the last holder's release returned: shared by the contenders of one round.
#[derive(Clone, Debug, Default)]
struct LastRelease(Arc<StdMutex<Option<Instant>>>);

impl LastRelease {
    /// The holder's release has returned.
    fn mark(&self) {
        if let Ok(mut last) = self.0.lock() {
            *last = Some(Instant::now());
        }
    }

    /// The handover to a holder holding since `held`.
    fn handover(&self, held: Instant) -> Option<Duration> {
        let last = (*self.0.lock().ok()?)?;
        held.checked_duration_since(last)
    }
}

/// What one round measured: cycles per second, every wait in `lock()`, every handover.
type RoundFigures = (f64, Vec<Duration>, Vec<Duration>);

/// Runs `contenders` tasks, each looping `cycle(task)` (which returns its [`Turn`]) until
/// `round` has passed; returns the cycles per second, every wait and every handover.
async fn contend<C, F>(round: Duration, cycles: Vec<C>) -> BenchResult<RoundFigures>
where
    C: FnMut() -> F + Send + 'static,
    F: Future<Output = BenchResult<Turn>> + Send + 'static,
{
    let started = Instant::now();
    let turns: Arc<StdMutex<Vec<Turn>>> = Arc::new(StdMutex::new(Vec::new()));
    let handles: Vec<_> = cycles
        .into_iter()
        .map(|mut cycle| {
            let turns = Arc::clone(&turns);
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while started.elapsed() < round {
                    mine.push(cycle().await?);
                }
                turns.lock().map_err(|_| "poisoned")?.extend(mine);
                Ok::<(), BenchError>(())
            })
        })
        .collect();
    for handle in handles {
        handle.await??;
    }
    let elapsed = started.elapsed();
    let turns = std::mem::take(&mut *turns.lock().map_err(|_| "poisoned")?);
    let count = u64::try_from(turns.len()).unwrap_or(u64::MAX);
    let waits = turns.iter().map(|turn| turn.waited).collect();
    let handovers = turns.iter().filter_map(|turn| turn.handover).collect();
    Ok((per_second(count, elapsed), waits, handovers))
}

/// One round of distkit's Mutex.
async fn distkit_round(url: &str, round: Duration) -> BenchResult<RoundFigures> {
    let name = DistkitRedisKey::new(unique_prefix())?;
    let last_release = LastRelease::default();
    let mut cycles = Vec::new();
    for _ in 0..CONTENDERS {
        let client = distkit::connect(url).await?;
        let mutex = Mutex::new(LockOptions::new(name.clone(), client));
        let last_release = last_release.clone();
        cycles.push(move || {
            let mutex = Arc::clone(&mutex);
            let last_release = last_release.clone();
            async move {
                let asked = Instant::now();
                let guard = mutex.lock().await?;
                let held = Instant::now();
                let handover = last_release.handover(held);
                tokio::time::sleep(HOLD).await;
                guard.release().await?;
                last_release.mark();
                Ok(Turn {
                    waited: held.saturating_duration_since(asked),
                    handover,
                })
            }
        });
    }
    contend(round, cycles).await
}

/// One round of distkit 0.7.1's Mutex (its documented defaults: it polls every 50 ms).
async fn anchor_round(url: &str, round: Duration) -> BenchResult<RoundFigures> {
    let name = distkit_07::DistkitRedisKey::new(unique_prefix())?;
    let last_release = LastRelease::default();
    let mut cycles = Vec::new();
    for _ in 0..CONTENDERS {
        let connection = anchor_connection(url).await?;
        let mutex = distkit_07::lock::Mutex::new(distkit_07::lock::LockOptions::new(
            name.clone(),
            connection,
        ));
        let last_release = last_release.clone();
        cycles.push(move || {
            let mutex = Arc::clone(&mutex);
            let last_release = last_release.clone();
            async move {
                let asked = Instant::now();
                let guard = mutex.lock().await?;
                let held = Instant::now();
                let handover = last_release.handover(held);
                tokio::time::sleep(HOLD).await;
                guard.release().await?;
                last_release.mark();
                Ok(Turn {
                    waited: held.saturating_duration_since(asked),
                    handover,
                })
            }
        });
    }
    contend(round, cycles).await
}

/// One round of the in-process FIFO handoff: a fair tokio mutex decides the order, and the
/// holder does the raw lock's two round trips around its hold, so each handoff costs the
/// same Redis work as a distributed lock's, with an ideal (in-process) wakeup.
async fn fifo_round(url: &str, round: Duration) -> BenchResult<RoundFigures> {
    let fifo = Arc::new(tokio::sync::Mutex::new(()));
    let last_release = LastRelease::default();
    let key = Arc::new(format!("bench:{{{}}}:fifo", unique_prefix()));
    let mut cycles = Vec::new();
    for _ in 0..CONTENDERS {
        let mut connection = raw_connection(url).await?;
        let sha = Arc::new(script_load(&mut connection, RAW_RELEASE).await?);
        let (fifo, key) = (Arc::clone(&fifo), Arc::clone(&key));
        let last_release = last_release.clone();
        cycles.push(move || {
            let (fifo, key, sha, mut connection, last_release) = (
                Arc::clone(&fifo),
                Arc::clone(&key),
                Arc::clone(&sha),
                connection.clone(),
                last_release.clone(),
            );
            async move {
                let asked = Instant::now();
                let turn = fifo.lock().await;
                let waited = asked.elapsed();
                // SET NX PX (acquire), the hold, then compare-and-delete (release).
                let set: Option<String> = redis::cmd("SET")
                    .arg(key.as_str())
                    .arg("token")
                    .arg("NX")
                    .arg("PX")
                    .arg(30_000)
                    .query_async(&mut connection)
                    .await?;
                set.ok_or("the FIFO's key was taken")?;
                let handover = last_release.handover(Instant::now());
                tokio::time::sleep(HOLD).await;
                crate::measure::evalsha(&mut connection, &sha, &key, &["token"]).await?;
                last_release.mark();
                drop(turn);
                Ok(Turn { waited, handover })
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
    let mut handovers = HandoffWaits::default();
    for _ in 0..ROUNDS {
        let (rate, mut seen, mut handed) = bounded(round, distkit_round(url, round)).await?;
        rates.distkit.push(rate);
        waits.distkit.append(&mut seen);
        handovers.distkit.append(&mut handed);
        let (rate, mut seen, mut handed) = bounded(round, fifo_round(url, round)).await?;
        rates.raw.push(rate);
        waits.fifo.append(&mut seen);
        handovers.fifo.append(&mut handed);
        let (rate, mut seen, mut handed) = bounded(round, anchor_round(url, round)).await?;
        rates.anchor.push(rate);
        waits.anchor.append(&mut seen);
        handovers.anchor.append(&mut handed);
    }
    for sorted in [&mut waits, &mut handovers] {
        sorted.distkit.sort();
        sorted.fifo.sort();
        sorted.anchor.sort();
    }
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
    results.handovers = Some(handovers);
    Ok(())
}
