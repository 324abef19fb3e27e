//! Workers sharing a semaphore of three permits: small and large jobs, served in arrival
//! order, never more than three permits in use at once.
//! `cargo run -p distkit --features semaphore --example semaphore`.
//! Connects to the Redis named by `REDIS_URL` (default `redis://127.0.0.1:6379`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use distkit::DistkitRedisKey;
use distkit::semaphore::{LockGuardState, Semaphore, SemaphoreOptions};

/// The Redis to use: `REDIS_URL`, else a server on this machine's default port.
fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A prefix no other run uses, so the example never touches anybody's data.
fn unique_prefix() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    format!("{}-{millis}", std::process::id())
}

const PERMITS: u32 = 3;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = redis_url();
    let name = DistkitRedisKey::try_from(format!("exports-{}", unique_prefix()))?;
    // What this process believes is in use, to show the bound holds.
    let in_use = Arc::new(AtomicU32::new(0));
    let most_in_use = Arc::new(AtomicU32::new(0));

    let mut workers = Vec::new();
    for worker in 0..5_u32 {
        // Each worker as if it were its own process: its own client and handle.
        let client = distkit::connect(&url).await?;
        let semaphore = Semaphore::new(
            SemaphoreOptions::builder(name.clone(), client, PERMITS)
                .ttl(Duration::from_secs(5))
                .build(),
        );
        let (in_use, most_in_use) = (Arc::clone(&in_use), Arc::clone(&most_in_use));
        workers.push(tokio::spawn(async move {
            for job in 0..3_u32 {
                // Every other job of worker 0 is a large export needing two permits.
                let n = if worker == 0 && job % 2 == 0 { 2 } else { 1 };
                let permit = semaphore.acquire_many(n).await?;
                if permit.get_state().await == LockGuardState::Acquired {
                    let now = in_use.fetch_add(n, Ordering::SeqCst).saturating_add(n);
                    most_in_use.fetch_max(now, Ordering::SeqCst);
                    println!(
                        "worker {worker} job {job}: {n} permit(s), token {}, {now} in use",
                        permit.fencing_token()
                    );
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    in_use.fetch_sub(n, Ordering::SeqCst);
                }
                permit.release().await?;
            }
            Ok::<(), distkit::DistkitError>(())
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let most = most_in_use.load(Ordering::SeqCst);
    println!("at most {most} of {PERMITS} permits were in use at once");
    assert!(most <= PERMITS);
    Ok(())
}
