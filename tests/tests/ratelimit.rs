//! Rate limiting through the facade: trypema's local, Redis and hybrid providers.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{bounded, fresh_key};
use distkit::DistkitError;
use distkit::trypema::hybrid::{HybridRateLimiterProvider, SyncInterval};
use distkit::trypema::local::LocalRateLimiterProvider;
use distkit::trypema::redis::{ConnectionManager, RedisKey, RedisRateLimiterProvider};
use distkit::trypema::{
    BucketSize, RateLimit, RateLimitDecision, RateLimiterBuilder, TrypemaError, WindowSize,
};
use distkit_test_support::TestRedis;

#[expect(clippy::unwrap_used, reason = "a test helper fails its test")]
async fn connection(redis: &TestRedis) -> ConnectionManager {
    let client = distkit::redis::Client::open(redis.url()).unwrap();
    bounded(client.get_connection_manager()).await.unwrap()
}

fn admitted(decision: &RateLimitDecision) -> bool {
    match decision {
        RateLimitDecision::Allowed => true,
        RateLimitDecision::Rejected { .. } => false,
        RateLimitDecision::Suppressed { is_allowed, .. } => *is_allowed,
    }
}

#[test]
fn local_absolute_limit_rejects_past_the_rate_with_a_retry_hint() {
    let provider = LocalRateLimiterProvider::builder()
        .window_size(WindowSize::seconds_or_panic(10))
        .bucket_size(BucketSize::milliseconds_or_panic(100))
        .build()
        .unwrap();
    let rate = RateLimit::per_second_or_panic(1.0);
    let allowed = (0..25)
        .filter(|_| admitted(&provider.absolute().inc("user", &rate, 1)))
        .count();
    assert_eq!(allowed, 10, "1/s over a 10 s window admits 10");
    match provider.absolute().inc("user", &rate, 1) {
        RateLimitDecision::Rejected { retry_after, .. } => {
            assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(10));
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(provider.absolute().get("user"), 10);
    assert!(
        admitted(&provider.absolute().inc("other-user", &rate, 1)),
        "keys are independent"
    );
}

#[test]
fn local_suppressed_limit_admits_below_the_rate_and_reports_suppression_above() {
    let provider = LocalRateLimiterProvider::builder()
        .window_size(WindowSize::seconds_or_panic(10))
        .bucket_size(BucketSize::milliseconds_or_panic(100))
        .build()
        .unwrap();
    let rate = RateLimit::per_second_or_panic(10.0);
    for _ in 0..50 {
        assert!(
            admitted(&provider.suppressed().inc("user", &rate, 1)),
            "well below the limit"
        );
    }
    let decisions: Vec<_> = (0..400)
        .map(|_| provider.suppressed().inc("user", &rate, 1))
        .collect();
    let admitted_count = decisions
        .iter()
        .filter(|decision| admitted(decision))
        .count();
    assert!(
        admitted_count < 400,
        "far past the limit, some calls are suppressed"
    );
    assert!(
        decisions
            .iter()
            .any(|decision| matches!(decision, RateLimitDecision::Suppressed { .. })),
        "the suppressed strategy reports suppression"
    );
}

#[test]
fn trypema_errors_convert_into_distkit_errors() {
    let error: TrypemaError = RateLimit::per_second(0.0).unwrap_err();
    let converted: DistkitError = error.into();
    assert!(matches!(converted, DistkitError::TrypemaError(_)));
}

#[tokio::test]
async fn redis_providers_on_separate_connections_share_one_limit() {
    let redis = TestRedis::start_standalone();
    let prefix = RedisKey::try_from(fresh_key().as_str()).unwrap();
    let mut providers = Vec::new();
    for _ in 0..2 {
        providers.push(
            RedisRateLimiterProvider::builder(connection(&redis).await)
                .prefix(prefix.clone())
                .window_size(WindowSize::seconds_or_panic(30))
                .bucket_size(BucketSize::milliseconds_or_panic(100))
                .build()
                .unwrap(),
        );
    }
    let rate = RateLimit::per_second_or_panic(1.0);
    let key = RedisKey::try_from("tenant").unwrap();
    let mut tasks = Vec::new();
    for provider in &providers {
        for _ in 0..4 {
            let provider = Arc::clone(provider);
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                let mut allowed = 0;
                for _ in 0..20 {
                    if admitted(&provider.absolute().inc(&key, &rate, 1).await.unwrap()) {
                        allowed += 1;
                    }
                }
                allowed
            }));
        }
    }
    let mut allowed = 0;
    for task in tasks {
        allowed += bounded(task).await.unwrap();
    }
    assert!(
        allowed <= 30,
        "admitted {allowed} within a 30-per-window limit"
    );
    assert!(
        allowed >= 30,
        "admitted only {allowed} of the 30 the window allows"
    );
    let stored = bounded(providers[1].absolute().get(&key)).await.unwrap();
    assert_eq!(stored, 30);
}

#[tokio::test]
async fn hybrid_providers_converge_on_the_shared_limit() {
    let redis = TestRedis::start_standalone();
    let prefix = RedisKey::try_from(fresh_key().as_str()).unwrap();
    let mut providers = Vec::new();
    for _ in 0..2 {
        providers.push(
            HybridRateLimiterProvider::builder(connection(&redis).await)
                .prefix(prefix.clone())
                .window_size(WindowSize::seconds_or_panic(30))
                .bucket_size(BucketSize::milliseconds_or_panic(100))
                .sync_interval(SyncInterval::milliseconds_or_panic(10))
                .build()
                .unwrap(),
        );
    }
    let rate = RateLimit::per_second_or_panic(1.0);
    let key = RedisKey::try_from("tenant").unwrap();
    let mut allowed = 0;
    for round in 0..200 {
        let provider = &providers[round % 2];
        if admitted(
            &bounded(provider.absolute().inc(&key, &rate, 1))
                .await
                .unwrap(),
        ) {
            allowed += 1;
        }
        if round % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }
    assert!(allowed >= 30, "admitted only {allowed}");
    // The hybrid provider trades exactness for latency: it may overshoot by what two
    // instances admit locally between syncs, but not without bound.
    assert!(allowed <= 60, "admitted {allowed} against a limit of 30");
}
