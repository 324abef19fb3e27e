//! The counter in a few lines. Starts its own Redis unless `REDIS_URL` is set:
//! `cargo run -p distkit --example quickstart`.

use distkit::counter::{CounterOptions, CounterTrait, StrictCounter};
use distkit::{CounterComparator, DistkitRedisKey};
use distkit_test_support::{TestRedis, unique_prefix};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let redis = TestRedis::start();
    let client = distkit::connect(redis.url()).await?;

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
