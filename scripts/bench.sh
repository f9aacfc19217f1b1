#!/usr/bin/env bash
# `make bench`: the load benchmark of issue 7 against throwaway services.
# Builds release, starts a Redis on a free loopback port and a fresh SQLite
# store in a temporary directory, generates throwaway secrets, starts
# engram-gateway and engram-worker (offline extractor and embedder), runs
# `engram bench` with the standard profile (100,000 memories + a heavy caller
# with 20,000; 20 s of mixed load; then the maximum post-call rate), and stops
# everything it started. Nothing in ./data is read or touched.
#
#   scripts/bench.sh                                   # standard profile
#   scripts/bench.sh --callers 50 --memories 20 --heavy 500 --duration 5   # quick
#   scripts/bench.sh --json                            # extra arguments go to `engram bench`
#
# The report is printed and kept, with the services' logs, in the directory
# named at the end (ENGRAM_BENCH_DIR, default a new /tmp/engram-bench.XXXXXX).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

# Everything runs inside main, called on the last line: bash has then read the whole file,
# so editing it during a run cannot change the run.
main() {
  standard_profile=(--callers 1000 --memories 100 --heavy 20000 --duration 20
    --rate-postcall 200 --rate-precall 50 --rate-search 50 --find-max-postcall
    --worker-burst 3000 --remember-burst 2000)

  bash scripts/deps.sh
  require_cmd swift "install the Swift toolchain: https://www.swift.org/install/"
  require_cmd redis-server
  require_cmd redis-cli
  require_cmd curl
  command -v openssl >/dev/null 2>&1 || require_cmd python3 "needed to generate throwaway secrets"

  log "building (release)..."
  swift build -c release
  bin_dir=$(swift build -c release --show-bin-path)
  # ENGRAM_BENCH_SERVICE_BIN: run the gateway and worker from another build (e.g. a copy of the
  # previous commit's release binaries) with this build's bench, to compare builds back to back.
  service_dir=${ENGRAM_BENCH_SERVICE_BIN:-$bin_dir}
  for exe in "$service_dir/engram-gateway" "$service_dir/engram-worker" "$bin_dir/engram"; do
    [[ -x "$exe" ]] || die "$exe was not built"
  done

  work=${ENGRAM_BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/engram-bench.XXXXXX")}
  mkdir -p "$work"
  chmod 700 "$work"
  report="$work/bench-report.txt"

  redis_pid=""
  gateway_pid=""
  worker_pid=""
  # shellcheck disable=SC2329 # called from the traps below
  cleanup() {
    trap '' INT TERM
    [[ -z "$gateway_pid" ]] || terminate "$gateway_pid"
    [[ -z "$worker_pid" ]] || terminate "$worker_pid"
    [[ -z "$gateway_pid" ]] || await_exit "$gateway_pid" engram-gateway 20
    [[ -z "$worker_pid" ]] || await_exit "$worker_pid" engram-worker 30
    [[ -z "$redis_pid" ]] || stop_pid "$redis_pid" redis-server 10
    gateway_pid="" worker_pid="" redis_pid=""
    # The store holds only generated data, but it is large: keep the report and logs only.
    rm -rf -- "$work/db" "$work/redis" "$work/spool" "$work/backups"
  }
  trap cleanup EXIT
  trap 'cleanup; exit 130' INT
  trap 'cleanup; exit 143' TERM

  # --- Redis (throwaway: no persistence) and the configuration (secrets never printed) ---
  bench_start_redis "$work"
  bench_export_environment "$work"
  mkdir -p "$work/db"
  base_url="http://127.0.0.1:$ENGRAM_HTTP_PORT"

  # The services and the CLI run from $work so that a ./data/dev.env of the
  # repository can never fill in a value.
  cd "$work"
  spawn "$service_dir/engram-gateway" >"$work/gateway.log" 2>&1
  gateway_pid=$!
  spawn "$service_dir/engram-worker" >"$work/worker.log" 2>&1
  worker_pid=$!

  await_gateway_ready "$base_url" "$gateway_pid" "$work/gateway.log" "$worker_pid" "$work/worker.log"
  log "gateway $base_url ready; worker running; redis 127.0.0.1:$redis_port; store $work/db"

  set +e
  # Bounded by the benchmark itself; the timeout is a last resort.
  timeout 900 "$bin_dir/engram" bench --gateway "$base_url" "${standard_profile[@]}" "$@" | tee "$report"
  status=${PIPESTATUS[0]}
  set -e
  cd "$root"

  cleanup
  log ""
  log "report: $report"
  log "logs:   $work/gateway.log, $work/worker.log, $work/redis.log"
  exit "$status"
}

main "$@"
