//! Workers sharing a Mutex, with fencing tokens and guard state.
//! `cargo run -p distkit --features lock --example lock`.
//! Connects to the Redis named by `REDIS_URL` (default `redis://127.0.0.1:6379`).

use std::sync::Arc;
use std::time::Duration;

use distkit::DistkitRedisKey;
use distkit::lock::{LockGuardState, LockOptions, Mutex};
use tokio::sync::Mutex as LocalMutex;

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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = redis_url();
    let name = DistkitRedisKey::try_from(format!("report-{}", unique_prefix()))?;
    // Stands in for a resource that refuses writes from holders older than the last one seen.
    let last_token_seen = Arc::new(LocalMutex::new(0_u64));

    let mut workers = Vec::new();
    for worker in 0..4 {
        let client = distkit::connect(&url).await?;
        let mutex = Mutex::new(
            LockOptions::builder(name.clone(), client)
                .ttl(Duration::from_secs(5))
                .build(),
        );
        let last_token_seen = Arc::clone(&last_token_seen);
        workers.push(tokio::spawn(async move {
            for _ in 0..3 {
                let guard = mutex.lock().await?;
                if guard.get_state().await != LockGuardState::Acquired {
                    continue;
                }
                let token = guard.fencing_token();
                let mut seen = last_token_seen.lock().await;
                let accepted = token > *seen;
                *seen = token.max(*seen);
                drop(seen);
                println!(
                    "worker {worker}: fencing token {token} (attempt {}) -> {}",
                    guard.get_on_attempt(),
                    if accepted {
                        "write accepted"
                    } else {
                        "stale, refused"
                    }
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
                let state = guard.release().await?;
                assert_eq!(state, LockGuardState::Released);
            }
            Ok::<(), distkit::DistkitError>(())
        }));
    }
    for worker in workers {
        worker.await??;
    }
    println!("last fencing token: {}", last_token_seen.lock().await);
    Ok(())
}
