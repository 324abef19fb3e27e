# Sourced by scripts: `start_private_redis` starts a redis-server on a free loopback port,
# without persistence, exports REDIS_URL for it, and kills it (by its pid) when the calling
# shell exits. Needs only bash, redis-server and redis-cli; DISTKIT_REDIS_SERVER and
# DISTKIT_REDIS_CLI name other binaries (e.g. valkey-server and valkey-cli). Bounded: a server
# that exits for another reason than a taken port, or does not answer within 10 s, is an
# error naming the binary, its arguments and its log.
start_private_redis() {
  local port attempt server cli
  server="${DISTKIT_REDIS_SERVER:-redis-server}"
  cli="${DISTKIT_REDIS_CLI:-redis-cli}"
  PRIVATE_REDIS_DIR="$(mktemp -d)"
  trap 'if [ -n "${PRIVATE_REDIS_PID:-}" ]; then kill "$PRIVATE_REDIS_PID" 2>/dev/null || true; wait "$PRIVATE_REDIS_PID" 2>/dev/null || true; fi; rm -rf "$PRIVATE_REDIS_DIR"' EXIT
  for attempt in $(seq 20); do
    port=$((20000 + RANDOM % 40000))
    # Taken already (something answers there): pick another.
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi
    local args=(--port "$port" --bind 127.0.0.1 --save "" --appendonly no
      --dir "$PRIVATE_REDIS_DIR" --loglevel warning)
    "$server" "${args[@]}" >"$PRIVATE_REDIS_DIR/log" 2>&1 &
    PRIVATE_REDIS_PID=$!
    for _ in $(seq 100); do
      if "$cli" -p "$port" ping >/dev/null 2>&1; then
        export REDIS_URL="redis://127.0.0.1:$port"
        return 0
      fi
      kill -0 "$PRIVATE_REDIS_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill "$PRIVATE_REDIS_PID" 2>/dev/null || true
    wait "$PRIVATE_REDIS_PID" 2>/dev/null || true
    PRIVATE_REDIS_PID=""
    # The port was taken in between: try another one. Anything else is an error.
    if ! grep -q "Address already in use" "$PRIVATE_REDIS_DIR/log"; then
      echo "could not start a private server: '$server ${args[*]}' exited or did not answer" \
        "PING within 10 s; its log ends with:" >&2
      tail -n 20 "$PRIVATE_REDIS_DIR/log" >&2
      return 1
    fi
  done
  echo "could not start a private server: '$server' found each of 20 free ports taken" >&2
  tail -n 20 "$PRIVATE_REDIS_DIR/log" >&2
  return 1
}
