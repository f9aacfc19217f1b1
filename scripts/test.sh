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
# The layering (no cycle, arrows down, executables off the store) is checked before anything starts.
bash scripts/module-graph.sh

# Formatting lint and the docs' relative links, before anything is started or built, so a
# violation fails in seconds with its file:line list (scripts/format.sh fixes the formatting).
log "swift-format lint"
bash scripts/format.sh --lint
python3 scripts/check-doc-links.py

tmpdir=""
redis_pid=""

# shellcheck disable=SC2329 # called from the traps below
cleanup() {
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
timeout --kill-after=30s "$test_timeout" swift test --skip-build "$@"
status=$?
if ((status == 124 || status == 137)); then
  log "swift test did not finish within $test_timeout (ENGRAM_TEST_TIMEOUT): a test hangs"
fi
set -e

elapsed=$((SECONDS - started_at))
log "swift test exited with $status after $((elapsed / 60))m$((elapsed % 60))s"
exit "$status"
