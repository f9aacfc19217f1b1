#!/usr/bin/env bash
# `make bench-proxy`: the custom-LLM proxy's overhead (issue 15) against throwaway services.
# Builds release, starts a Redis on a free loopback port, a fresh SQLite store in a temporary
# directory and engram-gateway whose ENGRAM_LLM_UPSTREAM_URL is the local upstream that
# `engram bench-proxy` runs, then runs it (seeds 100,000 memories + a heavy caller with 20,000;
# time to first byte through the proxy and straight to the upstream), and stops everything it
# started. Nothing in ./data is read or touched.
#
#   scripts/bench-proxy.sh                                 # standard profile
#   scripts/bench-proxy.sh --callers 10 --memories 10 --heavy 2000 --requests 100   # quick
#
# Then the MCP round trip (tools/call search_memory) on the same gateway, with the Python client
# in .venv-mcp (installed if missing); ENGRAM_BENCH_MCP=0 skips it.
#
# ENGRAM_BENCH_BUILD=debug uses the debug build (quicker to build, slower to run);
# ENGRAM_BENCH_BIN_DIR=<dir> uses the executables already built there.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
# shellcheck source=scripts/mcp-client.sh
. scripts/mcp-client.sh

main() {
  bash scripts/deps.sh
  require_cmd swift "install the Swift toolchain: https://www.swift.org/install/"
  require_cmd redis-server
  require_cmd redis-cli
  require_cmd curl
  command -v openssl >/dev/null 2>&1 || require_cmd python3 "needed to generate throwaway secrets"

  build=${ENGRAM_BENCH_BUILD:-release}
  if [[ -n "${ENGRAM_BENCH_BIN_DIR:-}" ]]; then
    bin_dir=$ENGRAM_BENCH_BIN_DIR
  else
    log "building ($build)..."
    swift build -c "$build"
    bin_dir=$(swift build -c "$build" --show-bin-path)
  fi
  for exe in engram-gateway engram; do
    [[ -x "$bin_dir/$exe" ]] || die "$bin_dir/$exe was not built"
  done

  work=${ENGRAM_BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/engram-bench-proxy.XXXXXX")}
  mkdir -p "$work"
  chmod 700 "$work"
  report="$work/bench-proxy-report.txt"

  redis_pid=""
  gateway_pid=""
  # shellcheck disable=SC2329 # called from the traps below
  cleanup() {
    trap '' INT TERM
    [[ -z "$gateway_pid" ]] || terminate "$gateway_pid"
    [[ -z "$gateway_pid" ]] || await_exit "$gateway_pid" engram-gateway 20
    [[ -z "$redis_pid" ]] || stop_pid "$redis_pid" redis-server 10
    gateway_pid="" redis_pid=""
    rm -rf -- "$work/db" "$work/redis" "$work/spool" "$work/backups"
  }
  trap cleanup EXIT
  trap 'cleanup; exit 130' INT
  trap 'cleanup; exit 143' TERM

  # --- Redis (throwaway: no persistence) and the configuration (secrets never printed) ---
  bench_start_redis "$work"
  bench_export_environment "$work"
  upstream_port=$(free_port)
  export ENGRAM_LLM_UPSTREAM_URL="http://127.0.0.1:$upstream_port/v1"
  unset ENGRAM_LLM_UPSTREAM_KEY  # ENGRAM_LLM_MEMORY_DEADLINE_MS and _CHARS pass through, to measure other settings
  mkdir -p "$work/db"
  base_url="http://127.0.0.1:$ENGRAM_HTTP_PORT"

  cd "$work"
  spawn "$bin_dir/engram-gateway" >"$work/gateway.log" 2>&1
  gateway_pid=$!
  await_gateway_ready "$base_url" "$gateway_pid" "$work/gateway.log"
  log "gateway $base_url ready; upstream 127.0.0.1:$upstream_port; store $work/db"

  set +e
  timeout 1800 "$bin_dir/engram" bench-proxy --gateway "$base_url" --upstream-port "$upstream_port" "$@" | tee "$report"
  status=${PIPESTATUS[0]}
  set -e
  cd "$root"

  # The MCP round trip on the same gateway and store (ENGRAM_BENCH_MCP=0 skips it): tools/call
  # search_memory for the heavy caller and for a regular one, through the official Python client
  # and as bare JSON-RPC POSTs (scripts/mcp_client.py bench).
  if ((status == 0)) && [[ "${ENGRAM_BENCH_MCP:-1}" != 0 ]]; then
    ensure_mcp_client
    for caller in +15552019999 +15552000000; do
      log "MCP round trip, caller ${caller:0:6}..., ${ENGRAM_BENCH_MCP_ROUNDS:-300} calls"
      printf 'MCP tools/call search_memory, caller %s: ' "$([[ $caller == +15552019999 ]] && echo heavy || echo regular)" | tee -a "$report"
      ENGRAM_MCP_KEY=$ENGRAM_API_KEY timeout 900 "$MCP_VENV/bin/python" scripts/mcp_client.py bench \
        --url "$base_url/mcp" --caller "$caller" --rounds "${ENGRAM_BENCH_MCP_ROUNDS:-300}" | tee -a "$report" || status=1
    done
  fi

  cleanup
  log ""
  log "report: $report"
  log "logs:   $work/gateway.log, $work/redis.log"
  exit "$status"
}

main "$@"
