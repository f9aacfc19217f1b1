#!/usr/bin/env bash
# Installs the Debian packages Engram needs to build, test and run locally.
# Idempotent: silent when everything is already installed; runs
# `apt-get update` first only when something is missing (a new machine has
# empty package lists).
set -euo pipefail

packages=(
  redis-server          # queue for `make run` and `make test`
  libhiredis-dev        # CHiredis system-library target
  libsqlite3-dev        # GRDB
  libssl-dev
  libcurl4-openssl-dev  # FoundationNetworking
  pkg-config            # SwiftPM finds hiredis through it
)

if ! command -v dpkg-query >/dev/null 2>&1; then
  # Not Debian (e.g. macOS with Homebrew): check the essentials, install nothing.
  missing_cmds=()
  for cmd in redis-server redis-cli pkg-config; do
    command -v "$cmd" >/dev/null 2>&1 || missing_cmds+=("$cmd")
  done
  if ((${#missing_cmds[@]})); then
    echo "deps: not a Debian system and missing: ${missing_cmds[*]}" >&2
    echo "deps: install redis, hiredis, sqlite3 and pkg-config with your package manager" >&2
    exit 1
  fi
  exit 0
fi

installed() {
  # `dpkg -s` also succeeds for removed packages that left config files.
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

missing=()
for pkg in "${packages[@]}"; do
  installed "$pkg" || missing+=("$pkg")
done
((${#missing[@]})) || exit 0

echo "deps: installing ${missing[*]}" >&2
if [[ $(id -u) -eq 0 ]]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "deps: need root to install ${missing[*]} (no sudo found)" >&2
  exit 1
fi

"${sudo[@]}" apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends "${missing[@]}"

# Debian's redis-server package starts a system service on 6379. `make run`
# reuses a Redis already answering there, but that one does not use AOF
# everysec; tell the operator instead of silently changing their system.
if [[ " ${missing[*]} " == *" redis-server "* ]]; then
  echo "deps: note: the redis-server package may have started a system Redis on 127.0.0.1:6379;" >&2
  echo "deps:       \`make run\` reuses it if it answers (stop it to get Engram's AOF-everysec Redis)." >&2
fi
