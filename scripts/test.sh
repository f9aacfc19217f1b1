#!/usr/bin/env bash
# `make test` (and `.ci/run`): installs what is missing, starts a throwaway
# Redis on a free loopback port, runs `swift test` against it, and stops it.
#
#   scripts/test.sh                    # all tests
#   scripts/test.sh --filter Queue     # extra arguments go to `swift test`
#
# Tests find the server in ENGRAM_TEST_REDIS_URL. If that variable is already
# set (e.g. a CI service container), no Redis is started.
#
# It also starts a throwaway PostgreSQL with pgvector (scripts/postgres.sh) for
# the store contract on the second backend; tests find it in
# ENGRAM_TEST_POSTGRES_URL and create a database each. ENGRAM_TEST_POSTGRES=0
# skips it, and with it the PostgreSQL cases (a quick local run only).
#
# `scripts/format.sh --lint` and the docs' link check run first and fail the run on any
# formatting violation (listed as file:line) or broken relative link.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
# shellcheck source=scripts/postgres.sh
. scripts/postgres.sh
# shellcheck source=scripts/mcp-client.sh
. scripts/mcp-client.sh

started_at=$SECONDS
bash scripts/deps.sh
require_cmd swift "install the Swift toolchain: https://www.swift.org/install/"
require_cmd setsid "util-linux"
require_cmd stdbuf "coreutils"
# The layering (no cycle, arrows down, executables off the store) is checked before anything starts.
bash scripts/module-graph.sh

# Formatting lint and the docs' relative links, before anything is started or built, so a
# violation fails in seconds with its file:line list (scripts/format.sh fixes the formatting).
log "swift-format lint"
bash scripts/format.sh --lint
python3 scripts/check-doc-links.py

tmpdir=""
redis_pid=""
test_session=""
tail_pid=""

# `swift test` runs in a session of its own (setsid), and everything it starts stays in that
# session: SwiftPM puts the test process in a process group of its own (so killing swift test's
# group, as timeout(1) does, left the test process and its children running), but not in another
# session. Whatever is left of the session when the run ends (a test process that crashed or
# hung, a child a failing test did not stop) is listed and killed here, so no run leaves
# processes behind. (Each child of the test process also dies with it: PR_SET_PDEATHSIG, set by
# Tests/EngramTests/Support/ChildProcess.swift.)
# shellcheck disable=SC2329 # called from cleanup and below
stop_test_session() {
  [[ -n "$test_session" ]] || return 0
  local session=$test_session left pids
  test_session=""
  # Zombies (dead, not yet reaped by init) are not listed: they hold nothing.
  left=$(ps -eo pid=,sid=,stat=,comm= 2>/dev/null | awk -v s="$session" '$2 == s && $3 !~ /^Z/ {printf "%s%s (%s)", sep, $4, $1; sep=", "}')
  if [[ -n "$left" ]]; then
    log "processes left by swift test (session $session), stopping them: $left"
    pids=$(ps -eo pid=,sid=,stat= | awk -v s="$session" '$2 == s && $3 !~ /^Z/ {print $1}')
    # shellcheck disable=SC2086 # one pid per word
    kill -TERM $pids 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while ((SECONDS < deadline)); do
      pids=$(ps -eo pid=,sid=,stat= | awk -v s="$session" '$2 == s && $3 !~ /^Z/ {print $1}')
      [[ -n "$pids" ]] || break
      sleep 0.2
    done
    # shellcheck disable=SC2086
    [[ -z "$pids" ]] || kill -KILL $pids 2>/dev/null || true
  fi
}

# shellcheck disable=SC2329 # called from the traps below
cleanup() {
  stop_test_session
  if [[ -n "$tail_pid" ]]; then
    kill "$tail_pid" 2>/dev/null || true
    tail_pid=""
  fi
  stop_test_postgres
  if [[ -n "$redis_pid" ]]; then
    stop_pid "$redis_pid" redis-server 10
    redis_pid=""
  fi
  if [[ -n "$tmpdir" ]]; then
    rm -rf -- "$tmpdir"
    tmpdir=""
  fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

if [[ -z "${ENGRAM_TEST_REDIS_URL:-}" ]]; then
  require_cmd redis-server
  require_cmd redis-cli
  tmpdir=$(mktemp -d "${TMPDIR:-/tmp}/engram-test.XXXXXX")
  # A port picked by the kernel can be taken before Redis binds it: retry.
  for attempt in 1 2 3; do
    port=$(free_port)
    spawn redis-server --port "$port" --bind 127.0.0.1 \
      --save '' --appendonly no --dir "$tmpdir" --daemonize no \
      --logfile "$tmpdir/redis.log"
    redis_pid=$!
    if wait_for_redis "$port" "$redis_pid" "$tmpdir/redis.log" 10; then
      break
    fi
    stop_pid "$redis_pid" redis-server 5
    redis_pid=""
    ((attempt < 3)) || die "could not start a test Redis (log: see above)"
    log "retrying with another port"
  done
  export ENGRAM_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
  log "test Redis: $ENGRAM_TEST_REDIS_URL (pid $redis_pid)"
else
  log "test Redis: $(redact_url "$ENGRAM_TEST_REDIS_URL") (from the environment)"
fi

if [[ -z "${ENGRAM_TEST_POSTGRES_URL:-}" && "${ENGRAM_TEST_POSTGRES:-1}" != 0 ]]; then
  [[ -n "$tmpdir" ]] || tmpdir=$(mktemp -d "${TMPDIR:-/tmp}/engram-test.XXXXXX")
  chmod 755 "$tmpdir"
  for attempt in 1 2 3; do
    pg_port=$(free_port)
    if start_test_postgres "$tmpdir/pg$attempt" "$pg_port"; then
      break
    fi
    stop_test_postgres
    ((attempt < 3)) || die "could not start a test PostgreSQL (log: see above)"
    log "retrying PostgreSQL with another port"
  done
  export ENGRAM_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$pg_port/postgres?sslmode=disable"
  log "test PostgreSQL: $ENGRAM_TEST_POSTGRES_URL (pid $pg_pid, $("$PG_BIN/postgres" --version))"
fi

# The official Python MCP client (PyPI `mcp`) that the MCP tests drive /mcp with, in .venv-mcp
# (scripts/mcp_client.py); ENGRAM_TEST_MCP_PYTHON points the tests at it.
if [[ -z "${ENGRAM_TEST_MCP_PYTHON:-}" ]]; then
  ensure_mcp_client
  export ENGRAM_TEST_MCP_PYTHON="$PWD/$MCP_VENV/bin/python"
fi

# Build everything first: the process tests start the real engram-gateway and engram-worker.
swift build --build-tests
set +e
# Each test has a time limit of its own; this bounds the whole run too, so that a hang fails
# CI with a message instead of holding it until CI's own limit.
test_timeout=${ENGRAM_TEST_TIMEOUT:-40m}
# A test past its time limit that does not end on cancellation (it awaits something that never
# comes) keeps Swift Testing waiting for it, and the process sits idle for ever (its main thread
# in libdispatch's sigsuspend). So the run is watched: once a time limit was exceeded, the run
# gets ENGRAM_TEST_STUCK_GRACE seconds to end (60 s if it prints nothing meanwhile); once it
# printed its summary, ENGRAM_TEST_EXIT_GRACE seconds to exit. Past either, it is killed and fails
# with that reason.
stuck_grace=${ENGRAM_TEST_STUCK_GRACE:-180}
exit_grace=${ENGRAM_TEST_EXIT_GRACE:-60}
[[ -n "$tmpdir" ]] || tmpdir=$(mktemp -d "${TMPDIR:-/tmp}/engram-test.XXXXXX")
test_log="$tmpdir/swift-test.log"
: >"$test_log"
# stdbuf: line-buffered, so the log (and the watch) sees each line when it is written; a pipe
# otherwise gets the test process's output only at its exit. In the background with a polling
# loop, so that the INT/TERM traps run at once (bash runs a trap only after a foreground child
# has exited).
setsid timeout --kill-after=30s "$test_timeout" stdbuf -oL -eL swift test --skip-build "$@" >"$test_log" 2>&1 &
test_session=$!
tail -n +1 -f --pid="$test_session" "$test_log" &
tail_pid=$!
verdict=""
summary_at=""
limit_at=""
last_size=""
quiet_since=$SECONDS
# After a time limit was exceeded, a run that prints nothing for this long is stuck too.
quiet_grace=$((stuck_grace < 60 ? stuck_grace : 60))
while kill -0 "$test_session" 2>/dev/null; do
  if [[ -z "$limit_at" ]] && grep -q 'Time limit was exceeded' "$test_log"; then limit_at=$SECONDS; fi
  if [[ -z "$summary_at" ]] && grep -qE 'Test run with [0-9]+ tests?.* (passed|failed)' "$test_log"; then summary_at=$SECONDS; fi
  if [[ -n "$summary_at" ]] && ((SECONDS - summary_at >= exit_grace)); then
    verdict="the test process did not exit within ${exit_grace}s of its summary (ENGRAM_TEST_EXIT_GRACE): killed"
    break
  fi
  size=$(stat -c %s "$test_log")
  if [[ "$size" != "$last_size" ]]; then
    last_size=$size
    quiet_since=$SECONDS
  fi
  if [[ -z "$summary_at" && -n "$limit_at" ]] && ((SECONDS - limit_at >= stuck_grace || SECONDS - quiet_since >= quiet_grace)); then
    verdict="a test exceeded its time limit and the run did not end (${stuck_grace}s after it, or ${quiet_grace}s without output; ENGRAM_TEST_STUCK_GRACE): killed; $(grep -m 3 'Time limit was exceeded' "$test_log" | tr '\n' ' ')"
    break
  fi
  sleep 1
done
session_leader=$test_session
if [[ -n "$verdict" ]]; then
  stop_test_session
  wait "$session_leader" 2>/dev/null
  status=1
else
  wait "$session_leader"
  status=$?
fi
# Let tail print the last lines, then stop whatever is left of the run.
wait "$tail_pid" 2>/dev/null
tail_pid=""
stop_test_session
[[ -z "$verdict" ]] || log "$verdict"
if ((status == 124 || status == 137)); then
  log "swift test did not finish within $test_timeout (ENGRAM_TEST_TIMEOUT): a test hangs"
fi
set -e

elapsed=$((SECONDS - started_at))
log "swift test exited with $status after $((elapsed / 60))m$((elapsed % 60))s"
exit "$status"
