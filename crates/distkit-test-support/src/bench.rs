//! Helpers shared by the benchmarks.

use std::future::Future;
use std::time::{Duration, Instant};

use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::{ClusterHash, CustomCommand, Value};

/// The error type of benchmark programs.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// Runs `operation(task)` in a loop from `tasks` spawned tasks for `round`; returns the calls
/// per second they completed together.
///
/// # Errors
///
/// The first error of an operation, or a task's panic.
pub async fn calls_per_second<F, Fut>(
    tasks: usize,
    round: Duration,
    operation: F,
) -> Result<f64, BenchError>
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<(), BenchError>> + Send,
{
    let started = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for task in 0..tasks {
        let operation = operation.clone();
        handles.push(tokio::spawn(async move {
            let mut calls = 0_u64;
            while started.elapsed() < round {
                operation(task).await?;
                calls = calls.saturating_add(1);
            }
            Ok::<u64, BenchError>(calls)
        }));
    }
    let mut calls = 0_u64;
    for handle in handles {
        calls = calls.saturating_add(handle.await??);
    }
    #[expect(clippy::cast_precision_loss, reason = "a call count far below 2^52")]
    Ok(calls as f64 / started.elapsed().as_secs_f64())
}

/// The baseline call of the benchmarks: `EVALSHA sha 1 key args…`, routed to the slot of
/// `key` (as `Custom`: fred ignores other hash policies of custom commands), in one round
/// trip that other concurrent calls of the client may share (fred pipelines them).
///
/// # Errors
///
/// The error of the call.
pub async fn raw_evalsha(
    client: &Client,
    sha: &str,
    key: &str,
    args: &[&str],
) -> Result<Value, BenchError> {
    let slot = fred::util::redis_keyslot(key.as_bytes());
    let command = CustomCommand::new_static("EVALSHA", ClusterHash::Custom(slot), false);
    let mut all: Vec<Value> = vec![sha.into(), 1.into(), key.into()];
    all.extend(args.iter().map(|arg| Value::from(*arg)));
    Ok(client.custom(command, all).await?)
}
