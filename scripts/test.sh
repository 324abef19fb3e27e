#!/usr/bin/env bash
# The whole test suite: formatting, lints for every feature set, docs, and all tests
# (unit, integration, doctests) against private redis-server processes.
#
# Another server: DISTKIT_REDIS_SERVER names the binary every private server, replica, cluster
# node and Sentinel runs (Sentinels as `<binary> <config> --sentinel`), DISTKIT_REDIS_CLI the
# command-line client (defaults: redis-server and redis-cli on PATH), e.g.
#   DISTKIT_REDIS_SERVER=/opt/valkey/bin/valkey-server DISTKIT_REDIS_CLI=/opt/valkey/bin/valkey-cli \
#     bash scripts/test.sh
# Every server start is bounded (20 s; a server that exits fails the test with its binary,
# arguments and log tail), and every server runs with `repl-diskless-sync yes` (the default
# since Redis 7.0; Redis 6.2 needs it, see the README's "Servers tested"). Tests of features newer than the server (sharded pub/sub: Redis
# 7.0+) read its version and say what they checked instead.
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

for features in "" counter instance-aware-counter lock semaphore ratelimit trypema tower tls metrics full; do
  echo "== clippy (facade, features: '${features:-none}')"
  cargo clippy -p distkit --all-targets --no-default-features --features "$features" -- -D warnings
done

echo "== feature combinations (cargo hack: the sub-crates' features alone and in pairs, the facade's each alone)"
if ! cargo hack --version >/dev/null 2>&1; then
  echo "cargo-hack is missing: installing it with cargo install" >&2
  cargo install --locked --quiet cargo-hack
fi
cargo hack clippy --feature-powerset --depth 2 --no-dev-deps \
  -p distkit-core -p distkit-counter -p distkit-lock -p distkit-ratelimit -- -D warnings
cargo hack clippy --each-feature --no-dev-deps -p distkit -- -D warnings

echo "== doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps

echo "== outside programs (scratch projects depending on the crates by path and version: the READMEs' first programs, one sub-crate alone, the facade; built and run)"
bash scripts/check-subcrates.sh

echo "== package (every published crate in dependency order, verified against the packaged dependencies; no upload)"
# cargo unpacks the packaged crates of its temporary registry into $CARGO_HOME/registry/src,
# under the same path on every run: a stale copy of an earlier run (same version) would be
# verified instead. So packaging runs with a private CARGO_HOME inside target/ (the downloaded
# index and crates copied in, read-only for us), and this script never writes to the user's
# cargo home.
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
package_home="$PWD/target/package-cargo-home"
rm -rf target/package "$package_home"
mkdir -p "$package_home/registry"
cp -R "$cargo_home/registry/index" "$cargo_home/registry/cache" "$package_home/registry/"
for config in config.toml config; do
  if [ -f "$cargo_home/$config" ]; then cp "$cargo_home/$config" "$package_home/"; fi
done
CARGO_HOME="$package_home" cargo package --offline --allow-dirty -p distkit-core \
  -p distkit-counter -p distkit-lock -p distkit-ratelimit -p distkit
rm -rf "$package_home"

echo "== test"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace --all-features 2>&1 | tee "$log"

echo "== test (core without optional features: rediss:// without TLS is refused)"
cargo test -p distkit-core --test script_runner 2>&1 | tee -a "$log"

echo "== test (the counter, instance-aware, lock, semaphore, native rate limit and security suites again, on a three-master Redis Cluster)"
DISTKIT_TEST_DEPLOYMENT=cluster cargo test -p distkit-tests --all-features \
  --test counter --test icounter --test lock --test lock_adversity --test semaphore \
  --test ratelimit_native --test ratelimit_api --test security 2>&1 | tee -a "$log"

echo "== test (the counter and instance-aware suites and the seeded models again, with 16 shards on one server: the sharded layout outside a cluster)"
DISTKIT_TEST_SHARDS=16 cargo test -p distkit-tests --all-features \
  --test counter --test icounter --test counter_group_commit --test counter_model 2>&1 | tee -a "$log"

echo "== examples (against REDIS_URL, else a private redis-server this step starts and stops)"
(
  if [ -z "${REDIS_URL:-}" ]; then
    source scripts/private-redis.sh
    start_private_redis
  fi
  for example in quickstart tour instance_aware lock semaphore ratelimit tower; do
    cargo run -q -p distkit --features full --example "$example" >/dev/null
  done
)

# One closing line for the whole run, summed over every test binary and the doctests.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
