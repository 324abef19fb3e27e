#!/usr/bin/env bash
# Builds and runs scratch programs outside the workspace, written as a user of the published
# crates would: each depends on the crates by path *and* `version = "0.8"` (the version the
# READMEs tell users to ask for; cargo refuses a path crate of another version).
#   readme-getting-started  distkit/README.md's "Getting started": its [dependencies] block
#                           and its program, copied from the README
#   readme-first            README.md's first example (hidden `# ` lines shown) called from a
#                           main
#   only-lock, only-counter, only-ratelimit
#                           one sub-crate alone, naming everything a user needs from that
#                           crate's root (DistkitRedisKey, DistkitError, connect,
#                           ConnectOptions, fred and the crate's own primitives); the
#                           limiter-only one limits through Redis with a native GcraLimiter
#   facade                  every primitive through the facade
# Every program runs against REDIS_URL, else a private server this script starts and stops
# (scripts/private-redis.sh; DISTKIT_REDIS_SERVER / DISTKIT_REDIS_CLI name other binaries).
# Offline, with the workspace's Cargo.lock and target directory.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
version="$(sed -n 's/^version = "\([0-9]*\.[0-9]*\)\..*/\1/p' Cargo.toml | head -n 1)"

# The first fenced block of `lang` (rust, toml) in a Markdown file.
first_block() { # file, lang
  awk -v fence="\`\`\`$2" '
    inside && /^```/ { exit }
    inside { print }
    !inside && index($0, fence) == 1 { inside = 1 }' "$1"
}

# A rustdoc example as plain Rust: hidden lines shown.
unhide() { sed -e 's/^# //' -e 's/^#$//'; }

project() { # name, dependency lines, main.rs
  mkdir -p "$scratch/$1/src"
  {
    printf '[package]\nname = "%s"\nversion = "0.0.0"\nedition = "2024"\npublish = false\n\n' "$1"
    printf '[dependencies]\n%s\n\n[workspace]\n' "$2"
  } >"$scratch/$1/Cargo.toml"
  cp Cargo.lock "$scratch/$1/Cargo.lock"
  printf '%s\n' "$3" >"$scratch/$1/src/main.rs"
}

tokio_line='tokio = { version = "1", features = ["macros", "rt-multi-thread"] }'
main_of='
#[tokio::main]
async fn main() {
    let url = std::env::var("REDIS_URL").expect("REDIS_URL");
    println!("{:?}", run(&url).await.expect("run"));
}'

# distkit/README.md's program and its [dependencies], where `distkit = { version = …` is also
# given this checkout's path.
readme="distkit/README.md"
dependencies="$(first_block "$readme" toml | grep -v '^\[dependencies\]' |
  sed "s#^distkit = { version = \"$version\"#distkit = { path = \"$root/distkit\", version = \"$version\"#")"
if ! printf '%s\n' "$dependencies" | grep -qF "distkit = { path = \"$root/distkit\", version = \"$version\""; then
  echo "$readme: its first toml block does not ask for distkit = { version = \"$version\", ... }" \
    "(the workspace's version is $version)" >&2
  exit 1
fi
project readme-getting-started "$dependencies" "$(first_block "$readme" rust | unhide)"

# README.md's first example, an `async fn example()`, called from a main, on REDIS_URL.
project readme-first "distkit = { path = \"$root/distkit\", version = \"$version\", features = [\"full\"] }
$tokio_line" "$(first_block README.md rust | unhide |
  sed 's#"redis://127.0.0.1:6379"#\&std::env::var("REDIS_URL").expect("REDIS_URL")#')

#[tokio::main]
async fn main() {
    example().await.expect(\"README.md's first example\");
    println!(\"README.md's first example ran\");
}"

project only-lock "distkit-lock = { path = \"$root/crates/distkit-lock\", version = \"$version\" }
$tokio_line" '
//! Uses distkit-lock alone.
#![deny(warnings)]
use std::time::Duration;

use distkit_lock::fred::clients::Client;
use distkit_lock::lock::{LockGuardState, LockOptions, Mutex, RwLock};
use distkit_lock::{ConnectOptions, DistkitError, DistkitRedisKey, LockError, connect};

/// Takes a lock, as the docs show; true when it was taken and released.
async fn run(url: &str) -> Result<bool, DistkitError> {
    let client: Client = connect(url).await?;
    let _other = ConnectOptions::new(url).connect_timeout(Duration::from_secs(1)).connect().await?;
    let key = DistkitRedisKey::try_from("job")?;
    let mutex = Mutex::new(LockOptions::builder(key.clone(), client.clone()).ttl(Duration::from_secs(5)).build());
    let rwlock = RwLock::new(LockOptions::new(key, client));
    let taken = match mutex.try_lock().await {
        Ok(guard) => matches!(guard.release().await?, LockGuardState::Released),
        Err(DistkitError::LockError(LockError::AcquireFail)) => false,
        Err(error) => return Err(error),
    };
    rwlock.read().await?.release().await?;
    assert!(taken, "an uncontended lock was not taken");
    Ok(taken)
}'"$main_of"

project only-counter "distkit-counter = { path = \"$root/crates/distkit-counter\", version = \"$version\", features = [\"instance-aware\"] }
$tokio_line" '
//! Uses distkit-counter alone.
#![deny(warnings)]
use distkit_counter::counter::{CounterOptions, CounterTrait, LaxCounter, StrictCounter};
use distkit_counter::fred::clients::Client;
use distkit_counter::icounter::{InstanceAwareCounterTrait, StrictInstanceAwareCounter, StrictInstanceAwareCounterOptions};
use distkit_counter::{ConnectOptions, CounterComparator, CounterError, DistkitError, DistkitRedisKey, connect};

/// Counts, as the docs show.
async fn run(url: &str) -> Result<i64, DistkitError> {
    let client: Client = connect(url).await?;
    let _other = ConnectOptions::new(url).connect().await?;
    let prefix = DistkitRedisKey::try_from("scratch")?;
    let key = DistkitRedisKey::try_from("k")?;
    let strict = StrictCounter::new(CounterOptions::new(prefix.clone(), client.clone()));
    let lax = LaxCounter::new(CounterOptions::new(prefix.clone(), client.clone()));
    let icounter = StrictInstanceAwareCounter::new(StrictInstanceAwareCounterOptions::new(prefix, client));
    let _ = icounter.inc(&key, 1).await?;
    lax.inc(&key, 1).await?;
    lax.flush().await?;
    match strict.inc_if(&key, CounterComparator::Lt(10), 1).await {
        Ok((new, _old)) => Ok(new),
        Err(DistkitError::CounterError(CounterError::Overflow { .. })) => Ok(i64::MAX),
        Err(error) => Err(error),
    }
}'"$main_of"

project only-ratelimit "distkit-ratelimit = { path = \"$root/crates/distkit-ratelimit\", version = \"$version\" }
$tokio_line" '
//! Uses distkit-ratelimit alone: a native limiter through Redis, and trypema locally.
#![deny(warnings)]
use std::time::Duration;

use distkit_ratelimit::ratelimit::{Decision, GcraLimiter, GcraOptions, GcraRate};
use distkit_ratelimit::trypema::local::LocalRateLimiterProvider;
use distkit_ratelimit::trypema::{BucketSize, RateLimit, RateLimitDecision, RateLimiterBuilder, WindowSize};
use distkit_ratelimit::{ConnectOptions, DistkitError, DistkitRedisKey, connect, fred};

/// Limits through Redis and locally, as the docs show; the calls of 5 the limiter admitted.
async fn run(url: &str) -> Result<usize, DistkitError> {
    let client: fred::clients::Client = connect(url).await?;
    let _other = ConnectOptions::new(url).command_timeout(Duration::from_secs(2)).connect().await?;
    let limiter = GcraLimiter::new(GcraOptions::new(DistkitRedisKey::try_from("api")?, client));
    let rate = GcraRate::new(1, Duration::from_secs(60), 3)?;
    let tenant = DistkitRedisKey::try_from("tenant-42")?;
    let mut admitted = 0;
    for _ in 0..5 {
        if matches!(limiter.check(&tenant, &rate, 1).await?, Decision::Allowed { .. }) {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 3, "a burst of 3 admits 3 of 5 calls");
    let provider = LocalRateLimiterProvider::builder()
        .window_size(WindowSize::seconds_or_panic(1))
        .bucket_size(BucketSize::milliseconds_or_panic(100))
        .build()?;
    let local = RateLimit::per_second_or_panic(2.0);
    assert!(matches!(provider.absolute().inc("user-1", &local, 1), RateLimitDecision::Allowed));
    Ok(admitted)
}'"$main_of"

project facade "distkit = { path = \"$root/distkit\", version = \"$version\", features = [\"full\"] }
$tokio_line" '
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
async fn run(url: &str) -> Result<(), DistkitError> {
    let client = ConnectOptions::new(url)
        .connect_timeout(Duration::from_secs(2))
        .reconnect_policy(ReconnectPolicy::exponential(Duration::from_millis(50), Duration::from_secs(1)))
        .connect()
        .await?;
    let prefix = DistkitRedisKey::try_from("scratch-facade")?;
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
}'"$main_of"

# readme-first first: it asserts the values of fresh keys that the getting-started program
# charges too.
names=(readme-first readme-getting-started only-lock only-counter only-ratelimit facade)
for name in "${names[@]}"; do
  echo "-- build $name"
  CARGO_TARGET_DIR="$target" cargo build -q --offline --manifest-path "$scratch/$name/Cargo.toml"
done

(
  skip=""
  if [ -z "${REDIS_URL:-}" ]; then
    source scripts/private-redis.sh
    start_private_redis
  else
    # README.md's first example asserts the values of fresh keys: a private server only.
    skip="readme-first"
  fi
  for name in "${names[@]}"; do
    if [ "$name" = "$skip" ]; then
      echo "-- skip $name (REDIS_URL is set; it needs a fresh server)"
      continue
    fi
    echo "-- run $name"
    "$target/debug/$name"
  done
)
