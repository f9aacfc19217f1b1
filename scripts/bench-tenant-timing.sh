#!/usr/bin/env bash
# Times refused post-call webhooks by kind against a real gateway: an existing tenant with a
# wrong signature, an unknown tenant, and an existing tenant without a webhook secret (no
# tenant enumeration by timing; RELIABILITY.md "Post-call refusals take the same steps").
# Starts a throwaway Redis and SQLite store in a temporary directory, creates the tenants with
# the `engram` CLI, starts engram-gateway, runs scripts/tenant_timing.py, stops what it started.
#
#   scripts/bench-tenant-timing.sh                     # release build, 2,000 of each kind
#   scripts/bench-tenant-timing.sh --debug --requests 500
#   ENGRAM_BENCH_SERVICE_BIN=/tmp/before scripts/bench-tenant-timing.sh --debug   # another build's gateway
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

main() {
  local configuration=release
  local client_args=()
  while (($#)); do
    case $1 in
      --debug) configuration=debug ;;
      *) client_args+=("$1") ;;
    esac
    shift
  done
  require_cmd redis-server
  require_cmd redis-cli
  require_cmd curl
  require_cmd python3

  log "building ($configuration)..."
  swift build -c "$configuration" --product engram-gateway
  swift build -c "$configuration" --product engram
  bin_dir=$(swift build -c "$configuration" --show-bin-path)
  service_dir=${ENGRAM_BENCH_SERVICE_BIN:-$bin_dir}
  for exe in "$service_dir/engram-gateway" "$bin_dir/engram"; do
    [[ -x "$exe" ]] || die "$exe was not built"
  done

  work=$(mktemp -d "${TMPDIR:-/tmp}/engram-tenant-timing.XXXXXX")
  chmod 700 "$work"
  redis_pid=""
  gateway_pid=""
  # shellcheck disable=SC2329 # called from the traps below
  cleanup() {
    trap '' INT TERM
    [[ -z "$gateway_pid" ]] || stop_pid "$gateway_pid" engram-gateway 20
    [[ -z "$redis_pid" ]] || stop_pid "$redis_pid" redis-server 10
    gateway_pid="" redis_pid=""
    rm -rf -- "$work"
  }
  trap cleanup EXIT
  trap 'cleanup; exit 130' INT
  trap 'cleanup; exit 143' TERM

  bench_start_redis "$work"
  bench_export_environment "$work"
  mkdir -p "$work/db"
  cd "$work"
  "$bin_dir/engram" tenant create acme >/dev/null
  "$bin_dir/engram" tenant create quiet >/dev/null
  printf 'wsec_acme_%s\n' "$(rand_hex 32)" | "$bin_dir/engram" tenant set-webhook-secret acme >/dev/null
  spawn "$service_dir/engram-gateway" >"$work/gateway.log" 2>&1
  gateway_pid=$!
  await_gateway_ready "http://127.0.0.1:$ENGRAM_HTTP_PORT" "$gateway_pid" "$work/gateway.log"
  log "gateway ready ($service_dir/engram-gateway); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  set +e
  python3 "$root/scripts/tenant_timing.py" --port "$ENGRAM_HTTP_PORT" \
    --body "$root/Tests/Fixtures/elevenlabs/post_call_transcription.json" "${client_args[@]}"
  status=$?
  set -e
  log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  cd "$root"
  cleanup
  exit "$status"
}

main "$@"
