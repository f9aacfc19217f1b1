#!/usr/bin/env bash
# `make bench-search`: search latency at scale on both store backends, without HTTP.
# Builds release, generates a throwaway master key, seeds a temporary SQLite file
# and a throwaway PostgreSQL with pgvector (scripts/postgres.sh) with the same
# deterministic data, runs `engram bench-search` on each, and removes everything.
#
#   scripts/bench-search.sh                                  # 100,000 memories
#   scripts/bench-search.sh --callers 9900 --heavy 10000     # 1,000,000 memories
#
# Arguments go to `engram bench-search` (see its --help). On PostgreSQL the seed
# runs without the HNSW index, which is then built once (timed) before the
# searches: maintaining it row by row makes seeding about twice as slow.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
# shellcheck source=scripts/postgres.sh
. scripts/postgres.sh

main() {
  local args=(--callers 990 --memories 100 --heavy 1000 --queries 1000 "$@")
  bash scripts/deps.sh
  log "building (release)..."
  swift build -c release --product engram
  local engram
  engram="$(swift build -c release --show-bin-path)/engram"

  work=$(mktemp -d "${TMPDIR:-/tmp}/engram-bench-search.XXXXXX")
  chmod 755 "$work"
  # shellcheck disable=SC2329 # called from the traps below
  cleanup() {
    stop_test_postgres
    rm -rf -- "$work"
  }
  trap cleanup EXIT
  trap 'cleanup; exit 130' INT
  trap 'cleanup; exit 143' TERM

  ENGRAM_MASTER_KEY=$(head -c 32 /dev/urandom | base64)
  export ENGRAM_MASTER_KEY
  export ENGRAM_LOG_LEVEL=warning

  log "== SQLite"
  ENGRAM_DATABASE_URL="sqlite://$work/bench.sqlite" "$engram" bench-search "${args[@]}"

  log "== PostgreSQL"
  local port
  port=$(free_port)
  start_test_postgres "$work/pg" "$port" || die "could not start PostgreSQL"
  local url="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
  ENGRAM_DATABASE_URL=$url "$engram" migrate >/dev/null
  "$PG_BIN/psql" -q -h 127.0.0.1 -p "$port" -U postgres -c 'DROP INDEX memory_vectors_hnsw_384'
  ENGRAM_DATABASE_URL=$url "$engram" bench-search "${args[@]}" --no-hnsw
  local started=$SECONDS
  "$PG_BIN/psql" -q -h 127.0.0.1 -p "$port" -U postgres \
    -c "SET maintenance_work_mem = '2GB'" -c "$(index_sql 384)"
  log "HNSW index (384 dimensions) built in $((SECONDS - started)) s"
  ENGRAM_DATABASE_URL=$url "$engram" bench-search "${args[@]}" --skip-seed
}

# The statement of PostgresSchema.hnswIndex (keep the two alike).
index_sql() {
  printf 'CREATE INDEX IF NOT EXISTS memory_vectors_hnsw_%s ON memory_vectors USING hnsw ((embedding::vector(%s)) vector_cosine_ops) WHERE dims = %s' "$1" "$1" "$1"
}

main "$@"
