#!/usr/bin/env bash
# Builds scratch projects outside the workspace that depend on one distkit sub-crate alone
# (distkit-lock, distkit-counter, distkit-ratelimit) and name everything a user needs from
# that crate's root: DistkitRedisKey, DistkitError, connect, ConnectOptions, fred and the
# crate's own primitives; and one that uses every primitive through the facade. Offline,
# with the workspace's Cargo.lock and target directory.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

project() { # name, dependency line, lib.rs
  mkdir -p "$scratch/$1/src"
  cat >"$scratch/$1/Cargo.toml" <<EOF
[package]
name = "$1"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
$2

[workspace]
EOF
  cp Cargo.lock "$scratch/$1/Cargo.lock"
  printf '%s\n' "$3" >"$scratch/$1/src/lib.rs"
}

project only-lock "distkit-lock = { path = \"$root/crates/distkit-lock\" }" '
//! Uses distkit-lock alone.
#![deny(warnings)]
use std::time::Duration;

use distkit_lock::fred::clients::Client;
use distkit_lock::lock::{LockGuardState, LockOptions, Mutex, RwLock};
use distkit_lock::{ConnectOptions, DistkitError, DistkitRedisKey, LockError, connect};

/// Takes a lock, as the docs show.
pub async fn run(url: &str) -> Result<bool, DistkitError> {
    let client: Client = connect(url).await?;
    let _other = ConnectOptions::new(url).connect_timeout(Duration::from_secs(1)).connect().await?;
    let key = DistkitRedisKey::try_from("job")?;
    let mutex = Mutex::new(LockOptions::builder(key.clone(), client.clone()).ttl(Duration::from_secs(5)).build());
    let _rwlock = RwLock::new(LockOptions::new(key, client));
    match mutex.try_lock().await {
        Ok(guard) => Ok(matches!(guard.release().await?, LockGuardState::Released)),
        Err(DistkitError::LockError(LockError::AcquireFail)) => Ok(false),
        Err(error) => Err(error),
    }
}'

project only-counter "distkit-counter = { path = \"$root/crates/distkit-counter\", features = [\"instance-aware\"] }" '
//! Uses distkit-counter alone.
#![deny(warnings)]
use distkit_counter::counter::{CounterOptions, CounterTrait, LaxCounter, StrictCounter};
use distkit_counter::fred::clients::Client;
use distkit_counter::icounter::{InstanceAwareCounterTrait, StrictInstanceAwareCounter, StrictInstanceAwareCounterOptions};
use distkit_counter::{ConnectOptions, CounterComparator, CounterError, DistkitError, DistkitRedisKey, connect};

/// Counts, as the docs show.
pub async fn run(url: &str) -> Result<i64, DistkitError> {
    let client: Client = connect(url).await?;
    let _other = ConnectOptions::new(url).connect().await?;
    let prefix = DistkitRedisKey::try_from("scratch")?;
    let key = DistkitRedisKey::try_from("k")?;
    let strict = StrictCounter::new(CounterOptions::new(prefix.clone(), client.clone()));
    let lax = LaxCounter::new(CounterOptions::new(prefix.clone(), client.clone()));
    let icounter = StrictInstanceAwareCounter::new(StrictInstanceAwareCounterOptions::new(prefix, client));
    let _ = icounter.inc(&key, 1).await?;
    lax.inc(&key, 1).await?;
    match strict.inc_if(&key, CounterComparator::Lt(10), 1).await {
        Ok((new, _old)) => Ok(new),
        Err(DistkitError::CounterError(CounterError::Overflow { .. })) => Ok(i64::MAX),
        Err(error) => Err(error),
    }
}'

project only-ratelimit "distkit-ratelimit = { path = \"$root/crates/distkit-ratelimit\" }" '
//! Uses distkit-ratelimit alone.
#![deny(warnings)]
use distkit_ratelimit::trypema::local::LocalRateLimiterProvider;
use distkit_ratelimit::trypema::{BucketSize, RateLimit, RateLimitDecision, RateLimiterBuilder, WindowSize};
use distkit_ratelimit::{ConnectOptions, DistkitError, DistkitRedisKey, connect, fred};

/// Limits locally, as the docs show.
pub fn run() -> Result<bool, DistkitError> {
    let provider = LocalRateLimiterProvider::builder()
        .window_size(WindowSize::seconds_or_panic(1))
        .bucket_size(BucketSize::milliseconds_or_panic(100))
        .build()?;
    let rate = RateLimit::per_second_or_panic(2.0);
    let _key = DistkitRedisKey::try_from("user-1")?;
    let _options: ConnectOptions = ConnectOptions::new("redis://127.0.0.1:6379");
    let _connect = connect;
    let _client: Option<fred::clients::Client> = None;
    Ok(matches!(provider.absolute().inc("user-1", &rate, 1), RateLimitDecision::Allowed))
}'

project facade "distkit = { path = \"$root/distkit\", features = [\"full\"] }" '
//! Uses every primitive through the facade, with the paths the docs show.
#![deny(warnings)]
use std::time::Duration;

use distkit::counter::{CounterOptions, CounterTrait, LaxCounter, StrictCounter};
use distkit::icounter::{LaxInstanceAwareCounter, LaxInstanceAwareCounterOptions};
use distkit::lock::{LockOptions, Mutex, RwLock};
use distkit::trypema::local::LocalRateLimiterProvider;
use distkit::trypema::{BucketSize, RateLimiterBuilder, WindowSize};
use distkit::{ConnectOptions, CounterComparator, DistkitError, DistkitRedisKey, ReconnectPolicy};

/// Touches each primitive once.
pub async fn run(url: &str) -> Result<(), DistkitError> {
    let client = ConnectOptions::new(url)
        .connect_timeout(Duration::from_secs(2))
        .reconnect_policy(ReconnectPolicy::exponential(Duration::from_millis(50), Duration::from_secs(1)))
        .connect()
        .await?;
    let prefix = DistkitRedisKey::try_from("scratch")?;
    let key = DistkitRedisKey::try_from("k")?;
    let strict = StrictCounter::new(CounterOptions::new(prefix.clone(), client.clone()));
    strict.inc_if(&key, CounterComparator::Nil, 1).await?;
    LaxCounter::new(CounterOptions::new(prefix.clone(), client.clone())).inc(&key, 1).await?;
    LaxInstanceAwareCounter::new(LaxInstanceAwareCounterOptions::new(prefix, client.clone())).inc(&key, 1).await?;
    Mutex::new(LockOptions::new(key.clone(), client.clone())).lock().await?.release().await?;
    RwLock::new(LockOptions::new(key, client)).read().await?.release().await?;
    let _provider = LocalRateLimiterProvider::builder()
        .window_size(WindowSize::seconds_or_panic(1))
        .bucket_size(BucketSize::milliseconds_or_panic(100))
        .build()?;
    let _connect = distkit::connect;
    Ok(())
}'

for name in only-lock only-counter only-ratelimit facade; do
  echo "-- $name"
  CARGO_TARGET_DIR="$target" cargo check -q --offline --manifest-path "$scratch/$name/Cargo.toml"
done
