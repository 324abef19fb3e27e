#!/usr/bin/env bash
# The whole test suite: formatting, lints for every feature set, docs, and all tests
# (unit, integration, doctests) against private redis-server processes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-redis.sh

echo "== fetch (every locked dependency, once: the later steps run offline)"
cargo fetch --locked

echo "== msrv (declared rust-version >= every resolved dependency's)"
bash scripts/check-msrv.sh

echo "== fmt"
cargo fmt --all -- --check

echo "== clippy (workspace, all features)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

for features in "" counter instance-aware-counter lock semaphore trypema tls full; do
  echo "== clippy (facade, features: '${features:-none}')"
  cargo clippy -p distkit --all-targets --no-default-features --features "$features" -- -D warnings
done

echo "== doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps

echo "== sub-crates alone (scratch projects depending only on distkit-lock, -counter, -ratelimit)"
bash scripts/check-subcrates.sh

echo "== package (every published crate in dependency order, verified against the packaged dependencies; no upload)"
# Packages of an earlier run have the same version: cargo would verify against their stale
# builds, and against their sources unpacked into cargo's registry cache (the temporary
# registry that holds the packaged dependencies unpacks them there, under the same path on
# every run). Only our own crates' directories are removed.
rm -rf target/package
for unpacked in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/distkit-*; do
  case "$(basename "$unpacked")" in
    distkit-core-* | distkit-counter-* | distkit-lock-* | distkit-ratelimit-*) rm -rf "$unpacked" ;;
  esac
done
cargo package --offline --allow-dirty -p distkit-core -p distkit-counter -p distkit-lock \
  -p distkit-ratelimit -p distkit

echo "== test"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace --all-features 2>&1 | tee "$log"

echo "== test (core without optional features: rediss:// without TLS is refused)"
cargo test -p distkit-core --test script_runner 2>&1 | tee -a "$log"

echo "== test (the counter, instance-aware, lock and native rate limit suites again, on a three-master Redis Cluster)"
DISTKIT_TEST_DEPLOYMENT=cluster cargo test -p distkit-tests --all-features \
  --test counter --test icounter --test lock --test lock_adversity --test semaphore --test ratelimit_native 2>&1 | tee -a "$log"

echo "== examples (against REDIS_URL, else a private redis-server this step starts and stops)"
(
  if [ -z "${REDIS_URL:-}" ]; then
    source scripts/private-redis.sh
    start_private_redis
  fi
  for example in quickstart tour instance_aware lock semaphore ratelimit; do
    cargo run -q -p distkit --features full --example "$example" >/dev/null
  done
)

# One closing line for the whole run, summed over every test binary and the doctests.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
