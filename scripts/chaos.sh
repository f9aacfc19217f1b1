#!/usr/bin/env bash
# `make chaos`: Engram under faults, end to end, with the real release binaries.
#
# Builds release, then starts in a new temporary directory: its own Redis (AOF on), a fake
# OpenAI-compatible server (scripts/fake_llm.py) that can be switched to 500s, 429s and
# timeouts, the gateway, and two workers using that fake as their LLM. It sends --count
# distinct signed post-call webhooks (scripts/chaos_tool.py load) at --rate per second while it
#   - kills a worker with SIGKILL and starts a new one, five times (one worker lives through
#     everything);
#   - makes the LLM fake answer 429, then hang, then answer 500, for 22% of the run (the
#     breakers open; events follow ENGRAM_LLM_FAILURE_POLICY: local fallback, or dead letters
#     that are replayed once the LLM is back);
#   - kills Redis with SIGKILL and starts it again about 6 s later (the gateway spools meanwhile);
#   - stops Redis cleanly (SIGTERM) and starts it again about 3 s later.
# Then it waits for the spool and the queue to drain, stops everything with SIGTERM, and checks
# (scripts/chaos_tool.py verify) that every request was answered 200, that every conversation is
# in processed_events exactly once, that no event's memories were written twice, and that no
# event was dead-lettered. It prints a summary and exits 1 on any violation.
#
#   scripts/chaos.sh                          # 2,000 events at 25/s (about 2 minutes after the build)
#   scripts/chaos.sh --count 1200 --rate 20   # quicker (count/rate: at least 60 s)
#   scripts/chaos.sh --policy retry           # LLM failures dead-letter; replayed after recovery
#   CHAOS_APPENDFSYNC=everysec scripts/chaos.sh   # Redis as `make run` runs it (RELIABILITY.md)
# Other options: --callers C (distinct caller numbers, default 1500), --keep (keep the database
# and Redis files), --no-build.
#
# Logs and the summary stay in the directory printed at the end (ENGRAM_CHAOS_DIR, default a new
# /tmp/engram-chaos.XXXXXX); the database and Redis files are removed unless --keep.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

main() {
  # Not local: the EXIT trap runs after main has returned.
  count=2000 rate=25 callers=1500 policy=retry-then-local keep=0 build=1
  while (($#)); do
    case $1 in
      --count) count=$2; shift 2 ;;
      --rate) rate=$2; shift 2 ;;
      --callers) callers=$2; shift 2 ;;
      --policy) policy=$2; shift 2 ;;
      --keep) keep=1; shift ;;
      --no-build) build=0; shift ;;
      -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "${BASH_SOURCE[0]}"; exit 0 ;;
      *) die "unknown option $1 (see --help)" ;;
    esac
  done
  [[ $policy == retry-then-local || $policy == retry ]] || die "--policy must be retry-then-local or retry"
  ((count >= 1 && rate >= 1 && callers >= 1)) || die "--count, --rate and --callers must be positive"
  # The faults are placed at shares of the load's length; below a minute they overlap and the
  # LLM outage is too short for a breaker to open.
  ((count / rate >= 60)) || die "--count / --rate must be at least 60 (seconds of load); got $((count / rate))"
  appendfsync=${CHAOS_APPENDFSYNC:-always}

  bash scripts/deps.sh
  require_cmd python3
  require_cmd redis-server
  require_cmd redis-cli
  require_cmd curl
  require_cmd swift "install the Swift toolchain: https://www.swift.org/install/"

  if ((build)); then
    log "building (release)..."
    # One product per invocation: `swift build` keeps only the last of several --product options.
    for product in engram-gateway engram-worker engram; do
      swift build -c release --product "$product"
    done
  fi
  bin_dir=$(swift build -c release --show-bin-path)
  for exe in engram-gateway engram-worker engram; do
    [[ -x "$bin_dir/$exe" ]] || die "$bin_dir/$exe was not built"
  done

  work=${ENGRAM_CHAOS_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/engram-chaos.XXXXXX")}
  mkdir -p "$work/redis" "$work/db" "$work/logs"
  chmod 700 "$work"
  t0=$SECONDS

  redis_pid="" fake_pid="" gateway_pid="" load_pid=""
  workers=()        # pids of the running workers
  worker_ports=()   # their metrics ports, same order
  worker_serial=0
  # shellcheck disable=SC2329 # called from the traps below
  cleanup() {
    trap '' INT TERM
    local pid
    if [[ -n "$load_pid" ]]; then kill -KILL "$load_pid" 2>/dev/null || true; wait "$load_pid" 2>/dev/null || true; fi
    [[ -z "$gateway_pid" ]] || terminate "$gateway_pid"
    for pid in "${workers[@]}"; do terminate "$pid"; done
    [[ -z "$gateway_pid" ]] || await_exit "$gateway_pid" engram-gateway 20
    for pid in "${workers[@]}"; do await_exit "$pid" engram-worker 30; done
    [[ -z "$fake_pid" ]] || stop_pid "$fake_pid" fake-llm 5
    [[ -z "$redis_pid" ]] || stop_pid "$redis_pid" redis-server 10
    load_pid="" gateway_pid="" fake_pid="" redis_pid=""
    workers=()
    if ((!keep)); then rm -rf -- "$work/db" "$work/redis" "$work/spool"; fi
  }
  trap cleanup EXIT
  trap 'cleanup; exit 130' INT
  trap 'cleanup; exit 143' TERM

  say() { printf '[chaos %4ds] %s\n' "$((SECONDS - t0))" "$*" | tee -a "$work/timeline.txt" >&2; }

  # --- Redis (AOF on, in the work directory) --------------------------------------------------
  redis_port=$(free_port)
  start_redis() {
    spawn redis-server --port "$redis_port" --bind 127.0.0.1 --protected-mode yes \
      --appendonly yes --appendfsync "$appendfsync" --save '' \
      --dir "$work/redis" --daemonize no --logfile "$work/logs/redis.log"
    redis_pid=$!
    wait_for_redis "$redis_port" "$redis_pid" "$work/logs/redis.log" 30 || die "Redis did not start"
  }
  start_redis

  # --- the fake LLM ---------------------------------------------------------------------------
  spawn python3 "$root/scripts/fake_llm.py" --port-file "$work/fake.port" >"$work/logs/fake-llm.log" 2>&1
  fake_pid=$!
  local deadline=$((SECONDS + 10))
  until [[ -s "$work/fake.port" ]]; do
    kill -0 "$fake_pid" 2>/dev/null || die "the fake LLM exited (log: $work/logs/fake-llm.log)"
    ((SECONDS < deadline)) || die "the fake LLM did not start"
    sleep 0.1
  done
  fake_url="http://127.0.0.1:$(cat "$work/fake.port")"
  llm_mode() { curl -fsS -o /dev/null --max-time 2 -X POST --data "$1" "$fake_url/control/mode"; }

  # --- configuration (throwaway secrets, never printed) ---------------------------------------
  rand_hex() { python3 -c 'import secrets, sys; print(secrets.token_hex(int(sys.argv[1])))' "$1"; }
  export ENGRAM_DATABASE_URL="sqlite://$work/db/engram.sqlite"
  export ENGRAM_REDIS_URL="redis://127.0.0.1:$redis_port/0"
  export ENGRAM_REDIS_TIMEOUT_MS=1000
  export ENGRAM_HTTP_HOST=127.0.0.1
  export ENGRAM_HTTP_PORT
  ENGRAM_HTTP_PORT=$(free_port)
  # The gateway's metrics listener: a free port too, so parallel runs do not collide on 9465.
  export ENGRAM_GATEWAY_METRICS_PORT
  ENGRAM_GATEWAY_METRICS_PORT=$(free_port)
  export ENGRAM_METRICS_HOST=127.0.0.1
  export ENGRAM_SPOOL_DIR="$work/spool"
  export ENGRAM_BACKUP_INTERVAL_MS=0
  export ENGRAM_BACKUP_DIR="$work/backups"
  export ENGRAM_LOG_LEVEL=info
  export ENGRAM_EXTRACTOR=openai
  export ENGRAM_EMBEDDER=local
  export OPENAI_API_KEY="sk-chaos-$(rand_hex 8)"
  export ENGRAM_LLM_BASE_URL="$fake_url/v1"
  export ENGRAM_LLM_MODEL=chaos-fake
  export ENGRAM_LLM_TIMEOUT_MS=1500
  export ENGRAM_LLM_FAILURE_POLICY=$policy
  # Short schedules so that a run fits in minutes: 4 attempts, 0.5 s → 4 s backoff.
  export ENGRAM_MAX_ATTEMPTS=4
  export ENGRAM_RETRY_BASE_MS=500
  export ENGRAM_RETRY_MAX_MS=4000
  # The production heartbeat TTL (15 s), longer than each Redis outage below: a worker that
  # lives through an outage keeps its in-flight list (the reaper must not be what saves it).
  export ENGRAM_HEARTBEAT_TTL_MS=15000
  export ENGRAM_REAPER_INTERVAL_MS=1000
  export ENGRAM_WEBHOOK_SECRET
  ENGRAM_WEBHOOK_SECRET="wsec_chaos_$(rand_hex 16)"
  export ENGRAM_API_KEY
  ENGRAM_API_KEY="ek_chaos_$(rand_hex 20)"
  export ENGRAM_ADMIN_KEY
  ENGRAM_ADMIN_KEY="eka_chaos_$(rand_hex 20)"
  export ENGRAM_MASTER_KEY
  ENGRAM_MASTER_KEY=$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')
  unset ENGRAM_WEBHOOK_SECRET_PREVIOUS ENGRAM_QUEUE_PREFIX ENGRAM_WORKER_ID ENGRAM_METRICS_PORT
  base_url="http://127.0.0.1:$ENGRAM_HTTP_PORT"
  # The services and the CLI run from $work, so a ./data/dev.env of the repository is never read.
  cd "$work"

  start_worker() {
    local port
    port=$(free_port)
    worker_serial=$((worker_serial + 1))
    spawn env ENGRAM_METRICS_PORT="$port" "$bin_dir/engram-worker" >"$work/logs/worker-$worker_serial.log" 2>&1
    workers+=("$!")
    worker_ports+=("$port")
    say "worker #$worker_serial started (pid $!)"
  }

  kill_worker() { # index in workers
    local i=$1 pid=${workers[$1]}
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    say "worker pid $pid killed with SIGKILL"
    workers=("${workers[@]:0:i}" "${workers[@]:i+1}")
    worker_ports=("${worker_ports[@]:0:i}" "${worker_ports[@]:i+1}")
  }

  breaker_states() { # prints "port:state" for each live worker (state of the llm breaker; - if unknown)
    local port state out=""
    for port in "${worker_ports[@]}"; do
      # One series per state; the current one is 1. Printed as 0 closed, 1 half-open, 2 open.
      state=$(curl -fsS --max-time 2 "http://127.0.0.1:$port/metrics" 2>/dev/null |
        sed -n 's/^engram_circuit_breaker_state{name="llm",state="\([a-z_]*\)"} 1\(\.0*\)\{0,1\}$/\1/p' | head -n 1)
      case "$state" in closed) state=0 ;; half_open) state=1 ;; open) state=2 ;; *) state="" ;; esac
      out+=" ${state:--}"
    done
    printf '%s' "${out# }"
  }

  spawn "$bin_dir/engram-gateway" >"$work/logs/gateway.log" 2>&1
  gateway_pid=$!
  await_gateway_ready "$base_url" "$gateway_pid" "$work/logs/gateway.log"
  start_worker
  start_worker
  say "gateway $base_url, 2 workers, redis 127.0.0.1:$redis_port (appendfsync $appendfsync), fake LLM $fake_url, policy $policy"

  # --- load and faults ------------------------------------------------------------------------
  run_id=$(date -u +%H%M%S)$RANDOM
  CHAOS_WEBHOOK_SECRET=$ENGRAM_WEBHOOK_SECRET python3 "$root/scripts/chaos_tool.py" load \
    --url "$base_url/v1/elevenlabs/post-call" --fixture "$root/Tests/Fixtures/elevenlabs/post_call_transcription.json" \
    --run "$run_id" --count "$count" --rate "$rate" --callers "$callers" --out "$work/results.jsonl" \
    2> >(tee -a "$work/timeline.txt" >&2) &
  load_pid=$!
  say "sending $count signed post-call webhooks at $rate/s (run $run_id)"

  # The schedule is in seconds from the start of the load, spread over its length.
  local load_seconds=$(((count + rate - 1) / rate)) load_start=$SECONDS
  at() { # fraction of the load (percent) → wait until then; false if the load is already over
    local target=$((load_start + load_seconds * $1 / 100))
    while ((SECONDS < target)); do
      kill -0 "$load_pid" 2>/dev/null || return 1
      sleep 0.2
    done
  }
  breaker_opened=0 breaker_seen=""
  # Worker #2 runs from start to end, through both Redis outages and the LLM outage; the others
  # are killed and replaced one after the other (index 1 is always the newest).
  faults() {
    at 6 || return 0
    kill_worker 0; start_worker
    # Each worker's breaker opens within a few failed calls and stays open for its 30 s
    # cool-down, so a fresh worker is started in each LLM failure mode to meet it.
    at 14 || return 0
    llm_mode 429 && say "LLM fake: 429 (Retry-After: 1) for every request"
    at 20 || return 0
    llm_mode timeout && say "LLM fake: hangs (client timeout 1.5 s)"
    at 22 || return 0
    kill_worker 1; start_worker
    at 28 || return 0
    llm_mode 500 && say "LLM fake: 500 for every request"
    at 30 || return 0
    kill_worker 1; start_worker
    at 36 || return 0
    breaker_seen=$(breaker_states)
    say "llm breaker state per worker (0 closed, 1 half-open, 2 open): $breaker_seen"
    [[ " $breaker_seen " != *" 2 "* ]] || breaker_opened=1
    llm_mode ok && say "LLM fake: healthy again"
    at 42 || return 0
    kill -KILL "$redis_pid"; wait "$redis_pid" 2>/dev/null || true
    say "redis killed with SIGKILL (gateway spools)"
    at 50 || return 0
    start_redis
    say "redis started again (AOF replayed)"
    at 58 || return 0
    kill_worker 1; start_worker
    at 68 || return 0
    kill -TERM "$redis_pid"; wait "$redis_pid" 2>/dev/null || true
    say "redis stopped with SIGTERM"
    at 72 || return 0
    start_redis
    say "redis started again"
    at 85 || return 0
    kill_worker 1; start_worker
  }
  faults
  local load_status=0
  wait "$load_pid" || load_status=$?
  load_pid=""
  ((load_status == 0)) || die "the load generator failed (status $load_status)"
  say "load finished; llm breaker states now: $(breaker_states)"

  # --- drain ----------------------------------------------------------------------------------
  stats_json() { "$bin_dir/engram" queue stats --json 2>/dev/null; }
  drained() { # spool empty and nothing pending, in flight or scheduled
    local ready stats
    ready=$(curl -fsS --max-time 2 "$base_url/health/ready" 2>/dev/null) || return 1
    stats=$(stats_json) || return 1
    python3 - "$ready" "$stats" <<'PY'
import json, sys
ready, stats = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.exit(0 if ready.get("spool_depth") == "0" and stats["pending"] == 0 and stats["processing"] == 0 and stats["retry"] == 0 else 1)
PY
  }
  wait_drained() { # timeout seconds
    local end=$((SECONDS + $1))
    until drained; do
      if ((SECONDS >= end)); then
        say "not drained after $1 s: $(stats_json || echo 'stats unavailable'), ready: $(curl -fsS --max-time 2 "$base_url/health/ready" 2>/dev/null || true)"
        return 1
      fi
      sleep 1
    done
  }
  local drain_ok=1
  wait_drained 150 || drain_ok=0
  ((drain_ok)) && say "spool and queue drained: $(stats_json)"

  dead=$(stats_json | python3 -c 'import json, sys; print(json.load(sys.stdin)["dead"])' 2>/dev/null || echo -1)
  replayed=0
  if ((drain_ok)) && [[ $policy == retry ]] && ((dead > 0)); then
    # Policy retry dead-letters what the LLM could not extract; after the outage the operator replays them.
    "$bin_dir/engram" queue dead list --limit 5 >"$work/dead-letters-before-replay.txt" 2>&1 || true
    replayed=$("$bin_dir/engram" queue dead replay --all 2>/dev/null | grep -Eo '[0-9]+' | head -n 1 || echo 0)
    say "policy retry: replayed ${replayed:-0} dead letters after the LLM recovered"
    wait_drained 120 || drain_ok=0
    dead=$(stats_json | python3 -c 'import json, sys; print(json.load(sys.stdin)["dead"])' 2>/dev/null || echo -1)
  fi
  if ((dead != 0)); then
    "$bin_dir/engram" queue dead list --limit 20 >"$work/dead-letters.txt" 2>&1 || true
    say "dead letters ($dead): error classes $(sed -n 's/.*\(Error[A-Za-z]*\).*/\1/p' "$work/dead-letters.txt" | sort | uniq -c | tr '\n' ' ')"
  fi
  local fake_stats
  fake_stats=$(curl -fsS --max-time 2 "$fake_url/control/stats" 2>/dev/null || echo '{}')

  # --- stop everything (SIGTERM): each must exit 0 ------------------------------------------
  local pid status stop_failures=0
  terminate "$gateway_pid"
  for pid in "${workers[@]}"; do terminate "$pid"; done
  for pid in "$gateway_pid" "${workers[@]}"; do
    local end=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < end)); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      stop_failures=$((stop_failures + 1))
      say "pid $pid did not stop within 30 s of SIGTERM"
    fi
    status=0
    wait "$pid" 2>/dev/null || status=$?
    if ((status != 0)); then stop_failures=$((stop_failures + 1)); say "pid $pid exited with status $status after SIGTERM"; fi
  done
  gateway_pid=""
  workers=()

  # --- verify ---------------------------------------------------------------------------------
  {
    echo "== Engram chaos run $run_id: $count events at $rate/s, policy $policy, appendfsync $appendfsync =="
    echo "faults:"
    grep -E 'killed|stopped|started again|LLM fake|breaker' "$work/timeline.txt" | sed 's/^/  /'
    echo "fake LLM requests by route:mode: $(python3 -c 'import json, sys; print(json.load(sys.stdin).get("counts", {}))' <<<"$fake_stats")"
    echo "llm breaker seen open during the outage: $( ((breaker_opened)) && echo yes || echo no) (states: $breaker_seen)"
    ((replayed == 0)) || echo "dead letters replayed after recovery: $replayed"
  } | tee "$work/summary.txt"
  local verify_status=0
  python3 "$root/scripts/chaos_tool.py" verify --results "$work/results.jsonl" --database "$work/db/engram.sqlite" \
    --run "$run_id" --dead "$((dead < 0 ? 0 : dead))" --json "$work/summary.json" | tee -a "$work/summary.txt" || verify_status=$?
  local failed=$((verify_status != 0))
  if ((!drain_ok)); then echo "VIOLATION: the spool and queue did not drain within the time limit" | tee -a "$work/summary.txt"; failed=1; fi
  if ((dead < 0)); then echo "VIOLATION: could not read the dead-letter count" | tee -a "$work/summary.txt"; failed=1; fi
  if ((!breaker_opened)); then echo "VIOLATION: the llm circuit breaker was not seen open during the LLM outage" | tee -a "$work/summary.txt"; failed=1; fi
  if ((stop_failures)); then echo "VIOLATION: $stop_failures services did not exit 0 on SIGTERM" | tee -a "$work/summary.txt"; failed=1; fi
  echo "services stopped cleanly on SIGTERM: $( ((stop_failures)) && echo no || echo yes)" | tee -a "$work/summary.txt"
  echo "elapsed (after the build): $((SECONDS - t0)) s" | tee -a "$work/summary.txt"
  cd "$root"
  cleanup
  log "summary: $work/summary.txt; logs: $work/logs/"
  ((failed == 0)) || { echo "CHAOS FAILED"; exit 1; }
  echo "CHAOS PASSED"
}

main "$@"
