#!/usr/bin/env bash
# Checks that a test process that dies leaves nothing behind (RELIABILITY.md, "A test run leaves
# no processes behind"). Runs scripts/test.sh on suites that start the real engram-gateway,
# engram-worker and their own redis-server, kills the test process with SIGKILL once it has
# children, and fails if any of those children outlives it by more than a few seconds, or if
# scripts/test.sh does not end, non-zero, soon after.
#
#   scripts/check-test-reaping.sh            # ENGRAM_TEST_POSTGRES=0, suites below
#   CHECK_FILTER='SpoolTests' scripts/check-test-reaping.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

filter=${CHECK_FILTER:-'ProcessTests|SpoolTests|ShutdownUnderLoad'}
work=$(mktemp -d "${TMPDIR:-/tmp}/engram-reaping.XXXXXX")
runner=""
# shellcheck disable=SC2329 # called from the trap
cleanup() {
  [[ -z "$runner" ]] || kill -TERM "$runner" 2>/dev/null || true
  rm -rf -- "$work"
}
trap cleanup EXIT

ENGRAM_TEST_POSTGRES=0 bash scripts/test.sh --filter "$filter" >"$work/test.log" 2>&1 &
runner=$!

# The test process (the .xctest bundle under this worktree's .build), once it has a child.
test_pid="" children=""
deadline=$((SECONDS + 1800)) # the build comes first
while ((SECONDS < deadline)); do
  kill -0 "$runner" 2>/dev/null || {
    tail -n 30 "$work/test.log" >&2
    die "scripts/test.sh ended before the test process had children"
  }
  for pid in $(pgrep -f "$PWD/.build/.*/EngramPackageTests.xctest" || true); do
    children=$(ps -o pid= --ppid "$pid" 2>/dev/null | tr -s ' \n' ' ' | sed 's/^ //; s/ $//')
    if [[ -n "$children" ]]; then
      test_pid=$pid
      break 2
    fi
  done
  sleep 0.2
done
[[ -n "$test_pid" ]] || die "no test process with children within 30 minutes"
# Let a few more children start, then note every one of them.
sleep 3
children=$(ps -o pid= --ppid "$test_pid" 2>/dev/null | tr -s ' \n' ' ' | sed 's/^ //; s/ $//')
log "test process $test_pid has children: $(ps -o pid=,comm= -p "${children// /,}" | awk '{printf "%s%s (%s)", sep, $2, $1; sep=", "}')"
log "killing the test process with SIGKILL"
kill -KILL "$test_pid"

# Each child must be gone within 5 s (PR_SET_PDEATHSIG, set for every child by ChildProcess).
survivors=""
deadline=$((SECONDS + 5))
while ((SECONDS < deadline)); do
  survivors=""
  for child in $children; do
    if kill -0 "$child" 2>/dev/null && [[ "$(ps -o stat= -p "$child")" != Z* ]]; then survivors+=" $child"; fi
  done
  [[ -n "$survivors" ]] || break
  sleep 0.2
done
status=0
if [[ -n "$survivors" ]]; then
  log "FAIL: children of the killed test process still running after 5 s: $(ps -o pid=,comm= -p "${survivors# }" | tr '\n' ' ')"
  status=1
else
  log "ok: every child of the killed test process is gone"
fi

# scripts/test.sh must then end by itself, non-zero.
deadline=$((SECONDS + 120))
while kill -0 "$runner" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
if kill -0 "$runner" 2>/dev/null; then
  log "FAIL: scripts/test.sh still running 120 s after its test process was killed"
  status=1
else
  runner_status=0
  wait "$runner" || runner_status=$?
  runner=""
  if ((runner_status == 0)); then
    log "FAIL: scripts/test.sh exited 0 although its test process was killed"
    status=1
  else
    log "ok: scripts/test.sh exited $runner_status"
  fi
fi
grep -E 'processes left by swift test|swift test exited' "$work/test.log" >&2 || true
exit "$status"
