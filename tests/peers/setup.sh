#!/usr/bin/env bash
# Makes the two virtualenvs the MCP SDK peers run in (mcp_server.py,
# mcp_client.py), with the machine's python3 (CPython 3.11):
#
#   ${MCP_WARDEN_PEERS:-/opt/mcp-warden-peers}/mcp2   mcp 2.3.0  (requirements-mcp2.txt)
#   ${MCP_WARDEN_PEERS:-/opt/mcp-warden-peers}/mcp1   mcp 1.30.0 (requirements-mcp1.txt)
#
#   bash tests/peers/setup.sh            # idempotent; ~0.1 s when already done
#
# Opt in to others by name; only `cargo xtask bench` uses this one:
#
#   bash tests/peers/setup.sh presidio   # .../presidio: presidio-analyzer and
#                                        # spaCy en_core_web_sm (requirements-presidio.txt)
#
# The requirement files are complete `pip freeze` pins, installed with
# --no-deps (nothing unpinned can sneak in) and checked with `pip check`.
# A venv is rebuilt from scratch unless its stamp file holds the sha256 of
# its requirements file. Concurrent runs serialise on a lock file.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="${MCP_WARDEN_PEERS:-/opt/mcp-warden-peers}"
python="${PYTHON:-python3}"

mkdir -p "$root"
exec 9>"$root/.lock"
flock 9

make_venv() {
  local name="$1"
  local req="$here/requirements-$name.txt"
  local venv="$root/$name"
  local stamp="$venv/.requirements.sha256"
  local want
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && "$venv/bin/python" -c '' 2>/dev/null; then
    return 0
  fi
  echo "setup.sh: building $venv from $(basename "$req")" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$req"
  "$venv/bin/python" -m pip check --disable-pip-version-check >/dev/null
  echo "$want" >"$stamp"
}

[[ $# -gt 0 ]] || set -- mcp2 mcp1
for name in "$@"; do
  make_venv "$name"
done
