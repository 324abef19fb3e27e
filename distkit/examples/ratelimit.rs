//! Rate limiting with trypema: one process (local) and shared through Redis.
//! `cargo run -p distkit --features trypema --example ratelimit`.
//! Connects to the Redis named by `REDIS_URL` (default `redis://127.0.0.1:6379`).

use distkit::trypema::local::LocalRateLimiterProvider;
use distkit::trypema::redis::{RedisKey, RedisRateLimiterProvider};
use distkit::trypema::{BucketSize, RateLimit, RateLimitDecision, RateLimiterBuilder, WindowSize};

fn describe(decision: &RateLimitDecision) -> String {
    match decision {
        RateLimitDecision::Allowed => "allowed".to_owned(),
        RateLimitDecision::Rejected { retry_after, .. } => {
            format!("rejected, retry after {retry_after:?}")
        }
        RateLimitDecision::Suppressed { is_allowed, .. } => {
            format!("suppressed (allowed: {is_allowed})")
        }
    }
}

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
    let rate = RateLimit::per_second_or_panic(2.0);

    let local = LocalRateLimiterProvider::builder()
        .window_size(WindowSize::seconds_or_panic(1))
        .bucket_size(BucketSize::milliseconds_or_panic(100))
        .build()?;
    for call in 1..=3 {
        println!(
            "local call {call}: {}",
            describe(&local.absolute().inc("user-1", &rate, 1))
        );
    }

    let url = redis_url();
    let prefix = RedisKey::try_from(format!("ratelimit-{}", unique_prefix()))?;
    let mut providers = Vec::new();
    for _ in 0..2 {
        // Two providers on two connections: two processes sharing one limit.
        let connection = distkit::redis::Client::open(url.as_str())?
            .get_connection_manager()
            .await?;
        providers.push(
            RedisRateLimiterProvider::builder(connection)
                .prefix(prefix.clone())
                .window_size(WindowSize::seconds_or_panic(1))
                .bucket_size(BucketSize::milliseconds_or_panic(100))
                .build()?,
        );
    }
    let tenant = RedisKey::try_from("tenant-1")?;
    for (call, provider) in providers.iter().cycle().take(4).enumerate() {
        let decision = provider.absolute().inc(&tenant, &rate, 1).await?;
        println!(
            "shared call {} (provider {}): {}",
            call.saturating_add(1),
            call % 2,
            describe(&decision)
        );
    }
    Ok(())
}
