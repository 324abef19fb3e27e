# Sourced by scripts: `start_private_redis` starts a redis-server on a free loopback port,
# without persistence, exports REDIS_URL for it, and kills it (by its pid) when the calling
# shell exits. Needs only bash, redis-server and redis-cli.
start_private_redis() {
  local port attempt
  PRIVATE_REDIS_DIR="$(mktemp -d)"
  trap 'if [ -n "${PRIVATE_REDIS_PID:-}" ]; then kill "$PRIVATE_REDIS_PID" 2>/dev/null || true; wait "$PRIVATE_REDIS_PID" 2>/dev/null || true; fi; rm -rf "$PRIVATE_REDIS_DIR"' EXIT
  for attempt in $(seq 20); do
    port=$((20000 + RANDOM % 40000))
    # Taken already (something answers there): pick another.
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
      --dir "$PRIVATE_REDIS_DIR" --loglevel warning >"$PRIVATE_REDIS_DIR/log" 2>&1 &
    PRIVATE_REDIS_PID=$!
    for _ in $(seq 100); do
      if redis-cli -p "$port" ping >/dev/null 2>&1; then
        export REDIS_URL="redis://127.0.0.1:$port"
        return 0
      fi
      # Exited (e.g. the port was taken in between): try another port.
      kill -0 "$PRIVATE_REDIS_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill "$PRIVATE_REDIS_PID" 2>/dev/null || true
    wait "$PRIVATE_REDIS_PID" 2>/dev/null || true
    PRIVATE_REDIS_PID=""
  done
  echo "could not start a private redis-server:" >&2
  cat "$PRIVATE_REDIS_DIR/log" >&2
  return 1
}
