//! The client library's own share of every row whose baseline is a raw call: the same
//! `EVALSHA` of the strict rows' one-line `HINCRBY` script, sent by fred (the client distkit
//! runs on, with no distkit code around it) and by the `redis` crate (every raw baseline's
//! client), from 1 and 64 tasks over 16 keys.
//!
//! fred 10 flushes its socket after every `EVALSHA` (its `CommandKind::should_flush`), so
//! concurrent script calls reach Redis one write each, where the `redis` crate's multiplexed
//! connection writes whatever is queued at once. This row shows what that costs on the
//! measured machine: it bounds every 64-task row whose baseline is a raw `EVALSHA`.

use std::sync::Arc;
use std::time::Duration;

use distkit::fred::interfaces::LuaInterface as _;
use distkit_test_support::bench::calls_per_second;
use distkit_test_support::unique_prefix;

use super::strict::{KEYS, RAW_SCRIPT};
use super::{RunResults, medians};
use crate::BenchResult;
use crate::measure::{Targets, evalsha, interleave_pair, script_load};

/// The task counts measured: the rows `client.evalsha.1` and `client.evalsha.64`.
const TASKS: [(usize, &str); 2] = [(1, "client.evalsha.1"), (64, "client.evalsha.64")];

/// Measures fred's raw `EVALSHA` against the `redis` crate's and fills the `client.*` rows.
///
/// # Errors
///
/// A failed call.
pub async fn run(targets: &Targets, round: Duration, results: &mut RunResults) -> BenchResult<()> {
    let mut raw_connection = targets.raw.clone();
    let sha = Arc::new(script_load(&mut raw_connection, RAW_SCRIPT).await?);
    let hash = Arc::new(format!("bench:{{{}}}:client", unique_prefix()));
    let fields: Arc<Vec<String>> = Arc::new((0..KEYS).map(|index| format!("k{index}")).collect());
    for (tasks, row) in TASKS {
        let samples = interleave_pair(
            round,
            || {
                let (client, sha, hash, fields) = (
                    targets.distkit.clone(),
                    Arc::clone(&sha),
                    Arc::clone(&hash),
                    Arc::clone(&fields),
                );
                calls_per_second(tasks, round, move |task| {
                    let (client, sha, hash, fields) = (
                        client.clone(),
                        Arc::clone(&sha),
                        Arc::clone(&hash),
                        Arc::clone(&fields),
                    );
                    async move {
                        let field = fields.get(task % KEYS).ok_or("no key")?;
                        let _: i64 = client
                            .evalsha(sha.as_str(), vec![hash.as_str()], vec![field.as_str(), "1"])
                            .await?;
                        Ok(())
                    }
                })
            },
            || {
                let (connection, sha, hash, fields) = (
                    raw_connection.clone(),
                    Arc::clone(&sha),
                    Arc::clone(&hash),
                    Arc::clone(&fields),
                );
                calls_per_second(tasks, round, move |task| {
                    let (mut connection, sha, hash, fields) = (
                        connection.clone(),
                        Arc::clone(&sha),
                        Arc::clone(&hash),
                        Arc::clone(&fields),
                    );
                    async move {
                        let field = fields.get(task % KEYS).ok_or("no key")?;
                        evalsha(&mut connection, &sha, &hash, &[field, "1"]).await?;
                        Ok(())
                    }
                })
            },
        )
        .await?;
        results.rows.insert(row, medians(&samples));
    }
    Ok(())
}
