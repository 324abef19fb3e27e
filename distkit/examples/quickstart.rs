//! The counter in a few lines, against the Redis named by `REDIS_URL`
//! (default `redis://127.0.0.1:6379`):
//! `cargo run -p distkit --example quickstart`.

use distkit::counter::{CounterOptions, CounterTrait, StrictCounter};
use distkit::{CounterComparator, DistkitRedisKey};

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
    let client = distkit::connect(&url).await?;

    let prefix = DistkitRedisKey::try_from(format!("quickstart-{}", unique_prefix()))?;
    let counter = StrictCounter::new(CounterOptions::new(prefix, client));
    let requests = DistkitRedisKey::try_from("requests")?;

    counter.inc(&requests, 1).await?;
    counter.inc(&requests, 41).await?;
    let (new, old) = counter
        .inc_if(&requests, CounterComparator::Lt(100), 8)
        .await?;
    println!("requests: {old} -> {new}");
    println!("requests now: {}", counter.get(&requests).await?);
    counter.clear().await?;
    Ok(())
}
