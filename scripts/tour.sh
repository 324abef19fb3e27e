#!/usr/bin/env bash
# The main job: a tour of every primitive against a Redis the tour starts by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-redis.sh
cargo run --release -p distkit --features full --example tour
