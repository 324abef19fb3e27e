//! Shared setup of the workspace tests.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test file uses a different part of this module"
)]

use std::future::Future;
use std::time::Duration;

use distkit::fred::clients::Client;
use distkit::{DistkitRedisKey, connect};
use distkit_test_support::{TestRedis, unique_prefix};

/// The bound on any single await that could hang.
pub const LIMIT: Duration = Duration::from_secs(20);

/// Awaits `future`, failing the test if it takes longer than [`LIMIT`].
#[expect(clippy::panic, reason = "a test helper fails its test")]
pub async fn bounded<F: Future>(future: F) -> F::Output {
    match tokio::time::timeout(LIMIT, future).await {
        Ok(output) => output,
        Err(_) => panic!("an operation took longer than {LIMIT:?}"),
    }
}

/// A fresh client connected to `redis`.
#[expect(clippy::expect_used, reason = "a test helper fails its test")]
pub async fn client(redis: &TestRedis) -> Client {
    bounded(connect(redis.url()))
        .await
        .expect("connect to the test redis")
}

/// A key no other test uses.
#[expect(clippy::expect_used, reason = "a test helper fails its test")]
pub fn fresh_key() -> DistkitRedisKey {
    DistkitRedisKey::new(unique_prefix()).expect("unique prefixes are valid keys")
}

/// A key from a literal.
pub fn key(text: &str) -> DistkitRedisKey {
    DistkitRedisKey::new_or_panic(text.to_owned())
}

/// Polls `condition` every 10 ms until it holds, failing the test after 5 s.
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while !bounded(condition()).await {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what} did not happen within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
