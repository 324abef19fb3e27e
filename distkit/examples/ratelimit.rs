//! Rate limiting with trypema: one process (local) and shared through Redis.
//! `cargo run -p distkit --features trypema --example ratelimit`.

use distkit::trypema::local::LocalRateLimiterProvider;
use distkit::trypema::redis::{RedisKey, RedisRateLimiterProvider};
use distkit::trypema::{BucketSize, RateLimit, RateLimitDecision, RateLimiterBuilder, WindowSize};
use distkit_test_support::{TestRedis, unique_prefix};

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

    let redis = TestRedis::start();
    let prefix = RedisKey::try_from(format!("ratelimit-{}", unique_prefix()))?;
    let mut providers = Vec::new();
    for _ in 0..2 {
        // Two providers on two connections: two processes sharing one limit.
        let connection = distkit::redis::Client::open(redis.url())?
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
