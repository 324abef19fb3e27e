//! Uncontended Mutex and RwLock acquire + release against the raw two round trips of a lock
//! (`SET key token NX PX ttl`, then a compare-and-delete script) and distkit 0.7.1's locks.

use std::sync::Arc;
use std::time::Duration;

use distkit::DistkitRedisKey;
use distkit::lock::{LockOptions, Mutex, RwLock};
use distkit_test_support::bench::calls_per_second;
use distkit_test_support::unique_prefix;
use redis::aio::MultiplexedConnection;

use super::{RunResults, medians};
use crate::BenchResult;
use crate::measure::{Targets, evalsha, interleave, script_load};

/// The raw release: delete the key if it still holds our token.
pub const RAW_RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";
/// How many concurrent readers the `rwlock.readers` row runs.
pub const READERS: usize = 8;

/// The raw lock: `SET key token NX PX 30000`, then the compare-and-delete script; two round
/// trips. Fails when the key was taken (it never is: every task has a key of its own).
///
/// # Errors
///
/// The server's error, or a key held by somebody else.
pub async fn raw_lock_release(
    connection: &mut MultiplexedConnection,
    release_sha: &str,
    key: &str,
) -> BenchResult<()> {
    let set: Option<String> = redis::cmd("SET")
        .arg(key)
        .arg("token")
        .arg("NX")
        .arg("PX")
        .arg(30_000)
        .query_async(connection)
        .await?;
    if set.is_none() {
        return Err(format!("raw lock {key} was taken").into());
    }
    evalsha(connection, release_sha, key, &["token"]).await?;
    Ok(())
}

/// A contender's round: `tasks` tasks looping over the raw lock, each on a key of its own.
async fn raw_round(
    tasks: usize,
    round: Duration,
    connection: &MultiplexedConnection,
    sha: &Arc<String>,
) -> BenchResult<f64> {
    let (connection, sha, prefix) = (
        connection.clone(),
        Arc::clone(sha),
        Arc::new(unique_prefix()),
    );
    calls_per_second(tasks, round, move |task| {
        let (mut connection, sha) = (connection.clone(), Arc::clone(&sha));
        let key = format!("bench:{{{prefix}}}:{task}");
        async move { raw_lock_release(&mut connection, &sha, &key).await }
    })
    .await
}

/// Which acquire call a lock row measures.
#[derive(Clone, Copy, Debug)]
enum Acquire {
    /// `Mutex::lock`.
    Lock,
    /// `Mutex::try_lock`.
    TryLock,
    /// `RwLock::read`.
    Read,
}

/// Measures one row: distkit, raw, 0.7.1 from `tasks` tasks.
async fn row(
    targets: &Targets,
    round: Duration,
    acquire: Acquire,
    tasks: usize,
) -> BenchResult<crate::rows::RowRun> {
    let mut raw_connection = targets.raw.clone();
    let sha = Arc::new(script_load(&mut raw_connection, RAW_RELEASE).await?);
    let name = unique_prefix();
    let ours_mutex = Mutex::new(LockOptions::new(
        DistkitRedisKey::new(name.clone())?,
        targets.distkit.clone(),
    ));
    let ours_rwlock = RwLock::new(LockOptions::new(
        DistkitRedisKey::new(name.clone())?,
        targets.distkit.clone(),
    ));
    let their_key = distkit_07::DistkitRedisKey::new(name)?;
    let theirs_mutex = distkit_07::lock::Mutex::new(distkit_07::lock::LockOptions::new(
        their_key.clone(),
        targets.anchor.clone(),
    ));
    let theirs_rwlock = distkit_07::lock::RwLock::new(distkit_07::lock::LockOptions::new(
        their_key,
        targets.anchor.clone(),
    ));
    let samples = interleave(
        round,
        || {
            let (mutex, rwlock) = (Arc::clone(&ours_mutex), Arc::clone(&ours_rwlock));
            calls_per_second(tasks, round, move |_| {
                let (mutex, rwlock) = (Arc::clone(&mutex), Arc::clone(&rwlock));
                async move {
                    match acquire {
                        Acquire::Lock => {
                            mutex.lock().await?.release().await?;
                        }
                        Acquire::TryLock => {
                            mutex.try_lock().await?.release().await?;
                        }
                        Acquire::Read => {
                            rwlock.read().await?.release().await?;
                        }
                    }
                    Ok(())
                }
            })
        },
        || raw_round(tasks, round, &raw_connection, &sha),
        || {
            let (mutex, rwlock) = (Arc::clone(&theirs_mutex), Arc::clone(&theirs_rwlock));
            calls_per_second(tasks, round, move |_| {
                let (mutex, rwlock) = (Arc::clone(&mutex), Arc::clone(&rwlock));
                async move {
                    match acquire {
                        Acquire::Lock => {
                            mutex.lock().await?.release().await?;
                        }
                        Acquire::TryLock => {
                            mutex.try_lock().await?.release().await?;
                        }
                        Acquire::Read => {
                            rwlock.read().await?.release().await?;
                        }
                    }
                    Ok(())
                }
            })
        },
    )
    .await?;
    Ok(medians(&samples))
}

/// Fills rows `mutex.lock` and `mutex.try_lock`.
///
/// # Errors
///
/// A failed call.
pub async fn run_mutex(
    targets: &Targets,
    round: Duration,
    results: &mut RunResults,
) -> BenchResult<()> {
    let lock = row(targets, round, Acquire::Lock, 1).await?;
    results.rows.insert("mutex.lock", lock);
    let try_lock = row(targets, round, Acquire::TryLock, 1).await?;
    results.rows.insert("mutex.try_lock", try_lock);
    Ok(())
}

/// Fills rows `rwlock.read` (one reader) and `rwlock.readers` ([`READERS`] readers; the
/// baseline's tasks each lock a key of their own).
///
/// # Errors
///
/// A failed call.
pub async fn run_rwlock(
    targets: &Targets,
    round: Duration,
    results: &mut RunResults,
) -> BenchResult<()> {
    let read = row(targets, round, Acquire::Read, 1).await?;
    results.rows.insert("rwlock.read", read);
    let readers = row(targets, round, Acquire::Read, READERS).await?;
    results.rows.insert("rwlock.readers", readers);
    Ok(())
}
