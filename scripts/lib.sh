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
