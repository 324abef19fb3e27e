#!/usr/bin/env bash
# Makes sure redis-server and redis-cli are on PATH (the tests and the tour start private
# servers on loopback ports), and python3 (the MSRV check reads `cargo metadata` with it).
# Installs Debian's packages when they are missing. With DISTKIT_REDIS_SERVER /
# DISTKIT_REDIS_CLI naming other binaries (e.g. valkey-server, valkey-cli), checks those instead
# and installs nothing for them.
set -euo pipefail
missing=()
server="${DISTKIT_REDIS_SERVER:-redis-server}"
cli="${DISTKIT_REDIS_CLI:-redis-cli}"
if [ -n "${DISTKIT_REDIS_SERVER:-}${DISTKIT_REDIS_CLI:-}" ]; then
  for binary in "$server" "$cli"; do
    if ! command -v "$binary" >/dev/null 2>&1; then
      echo "$binary (named by DISTKIT_REDIS_SERVER / DISTKIT_REDIS_CLI) cannot be run" >&2
      exit 1
    fi
  done
  echo "server under test: $("$server" --version)" >&2
elif [ -z "${REDIS_URL:-}" ] && ! { command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; }; then
  missing+=(redis-server)
fi
if ! command -v python3 >/dev/null 2>&1; then
  missing+=(python3)
fi
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
  echo "missing: ${missing[*]}; installing with apt-get" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  # Debian starts a system redis service on port 6379; the tests never use it.
else
  echo "missing: ${missing[*]}; install them (e.g. 'brew install redis python3') or set REDIS_URL" >&2
  exit 1
fi
