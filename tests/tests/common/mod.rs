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

/// The shard count the counter suites run with: `DISTKIT_TEST_SHARDS` when set (e.g. `16`
/// for the sharded layout on one server), else what the options' default (automatic) picks
/// for the deployment under test: 16 on a cluster, 1 on one server.
#[expect(clippy::expect_used, reason = "a test helper fails its test")]
pub fn test_shards() -> u16 {
    std::env::var("DISTKIT_TEST_SHARDS").map_or_else(
        |_| {
            let cluster = std::env::var(distkit_test_support::DEPLOYMENT_VARIABLE)
                .is_ok_and(|deployment| deployment == "cluster");
            if cluster { 16 } else { 1 }
        },
        |text| text.parse().expect("DISTKIT_TEST_SHARDS is a shard count"),
    )
}

/// `CounterOptions::new` with the suites' shard count ([`test_shards`]).
pub fn counter_options(
    prefix: DistkitRedisKey,
    client: Client,
) -> distkit::counter::CounterOptions {
    let mut options = distkit::counter::CounterOptions::new(prefix, client);
    options.shards = test_shards();
    options
}

/// `StrictInstanceAwareCounterOptions::new` with the suites' shard count.
pub fn strict_ic_options(
    prefix: DistkitRedisKey,
    client: Client,
) -> distkit::icounter::StrictInstanceAwareCounterOptions {
    let mut options = distkit::icounter::StrictInstanceAwareCounterOptions::new(prefix, client);
    options.shards = test_shards();
    options
}

/// `LaxInstanceAwareCounterOptions::new` with the suites' shard count.
pub fn lax_ic_options(
    prefix: DistkitRedisKey,
    client: Client,
) -> distkit::icounter::LaxInstanceAwareCounterOptions {
    let mut options = distkit::icounter::LaxInstanceAwareCounterOptions::new(prefix, client);
    options.shards = test_shards();
    options
}

/// The Redis hash holding the counter value of `key` under `prefix` with the suites' shard
/// count.
pub fn counter_hash(prefix: &DistkitRedisKey, key: &str) -> String {
    use distkit_core::key_schema;
    key_schema::counter_values_in(prefix, key_schema::Shard::of(key, test_shards()))
}

/// The Redis names of the instance-aware key `kind` of `prefix`, one per shard of `shards`.
pub fn ic_keys(prefix: &DistkitRedisKey, kind: &str, shards: u16) -> Vec<String> {
    use distkit_core::key_schema;
    (0..shards.max(1))
        .map(|index| {
            let shard = key_schema::Shard {
                index,
                count: shards.max(1),
            };
            key_schema::instance_counter_in(prefix, shard, kind)
        })
        .collect()
}

/// The Redis name of the instance-aware key `kind` of `prefix` in the shard of `key`.
pub fn ic_key_of(prefix: &DistkitRedisKey, key: &str, kind: &str, shards: u16) -> String {
    use distkit_core::key_schema;
    key_schema::instance_counter_in(prefix, key_schema::Shard::of(key, shards), kind)
}

/// The first `count` names `<stem><n>` that share one shard (that of `<stem>0`).
pub fn keys_in_one_shard(stem: &str, count: usize, shards: u16) -> Vec<String> {
    use distkit_core::key_schema::shard_of;
    let first = shard_of(&format!("{stem}0"), shards);
    (0..)
        .map(|n| format!("{stem}{n}"))
        .filter(|name| shard_of(name, shards) == first)
        .take(count)
        .collect()
}

/// The Redis hash holding the counter value of `key` under `prefix` with `shards` shards.
pub fn counter_hash_with(prefix: &DistkitRedisKey, key: &str, shards: u16) -> String {
    use distkit_core::key_schema;
    key_schema::counter_values_in(prefix, key_schema::Shard::of(key, shards))
}
