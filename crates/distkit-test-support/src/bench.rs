//! Helpers shared by the benchmarks.

use std::future::Future;
use std::time::{Duration, Instant};

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
