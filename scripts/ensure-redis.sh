#!/usr/bin/env bash
# Makes sure redis-server and redis-cli are on PATH (the tests and the tour start private
# servers on loopback ports). Installs Debian's package when they are missing.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
  exit 0
fi
if [ -n "${REDIS_URL:-}" ]; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
  echo "redis-server is missing: installing it with apt-get" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
  # Debian starts a system service on port 6379; the tests never use it.
else
  echo "redis-server is missing; install it (e.g. 'brew install redis') or set REDIS_URL" >&2
  exit 1
fi
