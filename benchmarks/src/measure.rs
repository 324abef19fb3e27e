//! Connections to the measured server and the timing loops every workload shares.

use std::future::Future;
use std::time::{Duration, Instant};

use distkit::fred::clients::Client;
use redis::aio::{ConnectionManager, MultiplexedConnection};

use crate::{BenchError, BenchResult};

/// How many interleaved rounds each contender runs; the figure is their median.
pub const ROUNDS: usize = 3;

/// How long one measurement may overrun its round before it counts as hung.
const GRACE: Duration = Duration::from_secs(30);

/// The connections every workload starts from.
#[derive(Clone, Debug)]
pub struct Targets {
    /// The server's URL.
    pub url: String,
    /// distkit's client (fred, through `distkit::connect`).
    pub distkit: Client,
    /// The baseline's connection: the `redis` crate's multiplexed async connection.
    pub raw: MultiplexedConnection,
    /// distkit 0.7.1's connection manager.
    pub anchor: ConnectionManager,
}

impl Targets {
    /// Connects all three clients to `url`.
    ///
    /// # Errors
    ///
    /// A failed connection.
    pub async fn connect(url: &str) -> BenchResult<Self> {
        Ok(Self {
            url: url.to_owned(),
            distkit: within(GRACE, distkit::connect(url)).await??,
            raw: raw_connection(url).await?,
            anchor: anchor_connection(url).await?,
        })
    }
}

/// A new multiplexed connection of the `redis` crate.
///
/// # Errors
///
/// A failed connection.
pub async fn raw_connection(url: &str) -> BenchResult<MultiplexedConnection> {
    let client = redis::Client::open(url)?;
    Ok(within(GRACE, client.get_multiplexed_async_connection()).await??)
}

/// A new connection manager for distkit 0.7.1.
///
/// # Errors
///
/// A failed connection.
pub async fn anchor_connection(url: &str) -> BenchResult<ConnectionManager> {
    let client = redis::Client::open(url)?;
    Ok(within(GRACE, client.get_connection_manager()).await??)
}

/// Loads a Lua script; returns its SHA1.
///
/// # Errors
///
/// The server's error.
pub async fn script_load(
    connection: &mut MultiplexedConnection,
    source: &str,
) -> BenchResult<String> {
    Ok(redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(source)
        .query_async(connection)
        .await?)
}

/// `EVALSHA sha 1 key args…` on the baseline's connection.
///
/// # Errors
///
/// The server's error.
pub async fn evalsha(
    connection: &mut MultiplexedConnection,
    sha: &str,
    key: &str,
    args: &[&str],
) -> BenchResult<redis::Value> {
    Ok(redis::cmd("EVALSHA")
        .arg(sha)
        .arg(1)
        .arg(key)
        .arg(args)
        .query_async(connection)
        .await?)
}

/// Awaits `future` for at most `limit`.
///
/// # Errors
///
/// When `limit` passes first.
pub async fn within<T>(limit: Duration, future: impl Future<Output = T>) -> BenchResult<T> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| format!("a benchmark step did not finish within {limit:?}").into())
}

/// Awaits one measurement of a round of length `round`, allowing it a grace period.
///
/// # Errors
///
/// The measurement's error, or a timeout.
pub async fn bounded<T>(
    round: Duration,
    future: impl Future<Output = BenchResult<T>>,
) -> BenchResult<T> {
    within(round.saturating_add(GRACE), future).await?
}

/// The three contenders' figures of every round.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    /// distkit's figure per round.
    pub distkit: Vec<f64>,
    /// The baseline's figure per round.
    pub raw: Vec<f64>,
    /// distkit 0.7.1's figure per round.
    pub anchor: Vec<f64>,
}

/// Runs [`ROUNDS`] rounds of distkit, baseline, anchor, interleaved (A, B, C, A, B, C, …),
/// each bounded by `round` plus a grace period.
///
/// # Errors
///
/// The first error of a measurement.
pub async fn interleave<D, R, A, DF, RF, AF>(
    round: Duration,
    mut distkit: D,
    mut raw: R,
    mut anchor: A,
) -> BenchResult<Samples>
where
    D: FnMut() -> DF,
    R: FnMut() -> RF,
    A: FnMut() -> AF,
    DF: Future<Output = BenchResult<f64>>,
    RF: Future<Output = BenchResult<f64>>,
    AF: Future<Output = BenchResult<f64>>,
{
    let mut samples = Samples::default();
    for _ in 0..ROUNDS {
        samples.distkit.push(bounded(round, distkit()).await?);
        samples.raw.push(bounded(round, raw()).await?);
        samples.anchor.push(bounded(round, anchor()).await?);
    }
    Ok(samples)
}

/// Runs [`ROUNDS`] rounds of distkit and the baseline, interleaved (A, B, A, B, …), for rows
/// without a distkit 0.7.1 equivalent (its samples stay empty).
///
/// # Errors
///
/// The first error of a measurement.
pub async fn interleave_pair<D, R, DF, RF>(
    round: Duration,
    mut distkit: D,
    mut raw: R,
) -> BenchResult<Samples>
where
    D: FnMut() -> DF,
    R: FnMut() -> RF,
    DF: Future<Output = BenchResult<f64>>,
    RF: Future<Output = BenchResult<f64>>,
{
    let mut samples = Samples::default();
    for _ in 0..ROUNDS {
        samples.distkit.push(bounded(round, distkit()).await?);
        samples.raw.push(bounded(round, raw()).await?);
    }
    Ok(samples)
}

/// How many calls a spinning task makes between looks at the clock (and yields).
const BATCH: u64 = 1024;

/// Calls `call` in batches until `deadline`, yielding between batches; returns the calls
/// made. For in-memory operations whose cost is near a clock read: the clock is read once
/// per batch, not per call.
///
/// # Errors
///
/// The first error of a call.
pub async fn spin_until<C, F, T, E>(deadline: Instant, mut call: C) -> BenchResult<u64>
where
    C: FnMut() -> F,
    F: Future<Output = Result<T, E>>,
    E: Into<BenchError>,
{
    let mut calls = 0_u64;
    while Instant::now() < deadline {
        for _ in 0..BATCH {
            call().await.map_err(Into::into)?;
        }
        calls = calls.saturating_add(BATCH);
        tokio::task::yield_now().await;
    }
    Ok(calls)
}

/// Spawns `tasks` tasks running `body(task, deadline)` (which returns how many calls it
/// made, typically through [`spin_until`]); returns the calls per second of all of them.
///
/// # Errors
///
/// The first error of a task, or a task's panic.
pub async fn spin_rate<B, F>(tasks: usize, round: Duration, body: B) -> BenchResult<f64>
where
    B: Fn(usize, Instant) -> F,
    F: Future<Output = BenchResult<u64>> + Send + 'static,
{
    let started = Instant::now();
    let deadline = started.checked_add(round).ok_or("round too long")?;
    let handles: Vec<_> = (0..tasks)
        .map(|task| tokio::spawn(body(task, deadline)))
        .collect();
    let mut calls = 0_u64;
    for handle in handles {
        calls = calls.saturating_add(handle.await??);
    }
    Ok(per_second(calls, started.elapsed()))
}

/// `count` events over `elapsed`, per second.
#[expect(clippy::cast_precision_loss, reason = "event counts far below 2^52")]
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
}
