#!/usr/bin/env bash
# The main job: a tour of every primitive, against a private redis-server this script starts
# on a free loopback port (or against REDIS_URL when it is set).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-redis.sh
if [ -z "${REDIS_URL:-}" ]; then
  source scripts/private-redis.sh
  start_private_redis
fi
cargo run --release -p distkit --features full --example tour
