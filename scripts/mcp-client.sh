# The official Python MCP client (PyPI `mcp`) in a project-local virtual environment
# (.venv-mcp), for the MCP tests and `make bench-mcp` (scripts/mcp_client.py). Source it after
# scripts/lib.sh; do not run it.
# shellcheck shell=bash

MCP_CLIENT_VERSION=2.3.0
MCP_VENV=${MCP_VENV:-.venv-mcp}

# Installs mcp==$MCP_CLIENT_VERSION into .venv-mcp unless that version is there.
ensure_mcp_client() {
  require_cmd python3 "needed for the MCP client tests (pip package mcp)"
  if [[ ! -x "$MCP_VENV/bin/python" ]]; then
    log "mcp: creating $MCP_VENV"
    python3 -m venv "$MCP_VENV"
  fi
  local installed
  installed=$("$MCP_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp"))' 2>/dev/null || true)
  if [[ "$installed" != "$MCP_CLIENT_VERSION" ]]; then
    log "mcp: installing mcp==$MCP_CLIENT_VERSION into $MCP_VENV"
    "$MCP_VENV/bin/pip" install -q --disable-pip-version-check "mcp==$MCP_CLIENT_VERSION"
  fi
}
