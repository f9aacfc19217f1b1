# Shared helpers for scripts/run.sh and scripts/test.sh. Source it; do not run it.
# shellcheck shell=bash

log() { printf '%s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

require_cmd() {
  command -v "$1" >/dev/null 2>&1 || die "$1 not found in PATH${2:+ ($2)}"
}

# A free TCP port on 127.0.0.1 (the kernel picks it; the tiny race until the
# caller binds it is handled by retrying the start).
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
  else
    echo $((20000 + RANDOM % 40000))
  fi
}

# Hides the password in URLs like redis://:pw@host or postgres://u:pw@host.
redact_url() {
  printf '%s' "$1" | sed -E 's#^([a-zA-Z][a-zA-Z0-9+.-]*://)([^:/@]*):[^@/]*@#\1\2:***@#'
}

redis_pong() { # port
  [[ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == "PONG" ]]
}

# Runs a command in the background in its own session, so a Ctrl-C at the
# terminal reaches only this script, which then stops the children in order.
# setsid does not fork here (a background child is not a group leader), so $!
# is the service's own pid.
spawn() {
  if command -v setsid >/dev/null 2>&1; then
    setsid "$@" &
  else
    "$@" &
  fi
}

# Waits until the Redis at 127.0.0.1:port answers PONG. Fails early when the
# process (pid) dies, showing the end of its log.
wait_for_redis() { # port pid logfile timeout_seconds
  local port=$1 pid=$2 logfile=$3 timeout=${4:-10}
  local deadline=$((SECONDS + timeout))
  until redis_pong "$port"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "redis-server exited before answering on 127.0.0.1:$port; last lines of $logfile:"
      tail -n 20 "$logfile" >&2 2>/dev/null || true
      return 1
    fi
    if ((SECONDS >= deadline)); then
      log "redis-server on 127.0.0.1:$port did not answer PING within ${timeout}s; last lines of $logfile:"
      tail -n 20 "$logfile" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.1
  done
}

# Sends SIGTERM (once; a second one could escalate a graceful shutdown).
# Polls BASE_URL/health/ready for up to 60 s. Each PID LOG pair is a service that must stay up:
# if one exits, the tail of its log is shown and the script stops.
await_gateway_ready() { # base_url [pid logfile]...
  local url=$1 deadline=$((SECONDS + 60)) i
  shift
  local services=("$@")
  until curl -fsS -o /dev/null --max-time 2 "$url/health/ready" 2>/dev/null; do
    for ((i = 0; i + 1 < ${#services[@]}; i += 2)); do
      if ! kill -0 "${services[i]}" 2>/dev/null; then
        tail -n 20 "${services[i + 1]}" >&2
        die "$(basename "${services[i + 1]}" .log) exited (log: ${services[i + 1]})"
      fi
    done
    ((SECONDS < deadline)) || die "the gateway did not become ready within 60 s"
    sleep 0.2
  done
}

terminate() { # pid
  kill -TERM "$1" 2>/dev/null || true
}

# Waits up to timeout seconds for an already signalled pid, then SIGKILL.
await_exit() { # pid name timeout_seconds
  local pid=$1 name=$2 timeout=${3:-15}
  local deadline=$((SECONDS + timeout))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "$name (pid $pid) did not stop within ${timeout}s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
  wait "$pid" 2>/dev/null || true
}

stop_pid() { # pid name timeout_seconds
  terminate "$1"
  await_exit "$@"
}

# --- throwaway services for the benchmarks (scripts/bench.sh, scripts/bench-proxy.sh) ---

rand_hex() { # bytes
  if command -v openssl >/dev/null 2>&1; then openssl rand -hex "$1"; else python3 -c 'import secrets, sys; print(secrets.token_hex(int(sys.argv[1])))' "$1"; fi
}

# Starts a Redis without persistence under $1/redis; sets redis_pid and redis_port.
bench_start_redis() { # work
  local work=$1 attempt
  mkdir -p "$work/redis"
  for attempt in 1 2 3; do
    redis_port=$(free_port)
    spawn redis-server --port "$redis_port" --bind 127.0.0.1 --protected-mode yes \
      --save '' --appendonly no --dir "$work/redis" --daemonize no \
      --logfile "$work/redis.log"
    redis_pid=$!
    if wait_for_redis "$redis_port" "$redis_pid" "$work/redis.log" 10; then break; fi
    stop_pid "$redis_pid" redis-server 5
    redis_pid=""
    ((attempt < 3)) || die "could not start Redis for the benchmark"
  done
}

# Exports the configuration the benchmark's processes read (secrets generated, never printed).
bench_export_environment() { # work
  local work=$1
  export ENGRAM_DATABASE_URL="sqlite://$work/db/engram.sqlite"
  export ENGRAM_REDIS_URL="redis://127.0.0.1:$redis_port/0"
  export ENGRAM_HTTP_HOST=127.0.0.1
  export ENGRAM_HTTP_PORT
  ENGRAM_HTTP_PORT=$(free_port)
  export ENGRAM_METRICS_HOST=127.0.0.1
  export ENGRAM_METRICS_PORT
  ENGRAM_METRICS_PORT=$(free_port)
  # The gateway's metrics listener: a free port too, so parallel runs do not collide on 9465.
  export ENGRAM_GATEWAY_METRICS_PORT
  ENGRAM_GATEWAY_METRICS_PORT=$(free_port)
  export ENGRAM_SPOOL_DIR="$work/spool"
  # No scheduled backup: copying the store mid-run would be measured as the service's latency.
  export ENGRAM_BACKUP_INTERVAL_MS=0
  export ENGRAM_BACKUP_DIR="$work/backups"
  export ENGRAM_LOG_LEVEL=warning
  export ENGRAM_EXTRACTOR=local
  export ENGRAM_EMBEDDER=local
  export ENGRAM_WEBHOOK_SECRET
  ENGRAM_WEBHOOK_SECRET="wsec_bench_$(rand_hex 16)"
  export ENGRAM_API_KEY
  ENGRAM_API_KEY="ek_bench_$(rand_hex 20)"
  export ENGRAM_ADMIN_KEY
  ENGRAM_ADMIN_KEY="eka_bench_$(rand_hex 20)"
  export ENGRAM_MASTER_KEY
  ENGRAM_MASTER_KEY=$(head -c 32 /dev/urandom | base64 | tr -d '\n')
  # The benchmark drives one key far past the production default rate limit (600/min);
  # 1,000,000/min is the largest value the configuration accepts.
  export ENGRAM_RATE_LIMIT_PER_MINUTE=1000000
  export ENGRAM_RATE_LIMIT_BURST=100000
  unset ENGRAM_WEBHOOK_SECRET_PREVIOUS ENGRAM_QUEUE_PREFIX OPENAI_API_KEY
}
