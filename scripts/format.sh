#!/usr/bin/env bash
# Formats the Swift code in place with swift-format and the repository's .swift-format
# (line length 150; which rules are off and why: docs/operations.md, "Formatting").
#
#   scripts/format.sh          # format Sources, Tests and Package.swift in place
#   scripts/format.sh --lint   # check only: list every file:line the formatter would change
#                              # or a lint rule rejects, and exit non-zero if there is one
#
# scripts/test.sh runs the --lint form before the build, so the tree stays formatted.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

require_cmd swift "install the Swift toolchain: https://www.swift.org/install/"
paths=(Sources Tests Package.swift)

case "${1:-}" in
  "")
    swift format format --in-place --recursive --parallel "${paths[@]}"
    log "formatted ${paths[*]}"
    ;;
  --lint)
    if ! swift format lint --strict --recursive --parallel "${paths[@]}"; then
      log "swift-format lint failed (the file:line list is above): run scripts/format.sh and commit the result"
      exit 1
    fi
    ;;
  *)
    die "usage: scripts/format.sh [--lint]"
    ;;
esac
