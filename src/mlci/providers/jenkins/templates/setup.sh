#!/bin/bash
set -euo pipefail
# No uv.toml of the agent's user applies: a pull request's code, run on the same agent, could
# have written one (another index, say) for the next default-branch build to read.
export UV_NO_CONFIG=1
tmp="${WORKSPACE_TMP:-$WORKSPACE@tmp}"
# uv of the pinned version: the agent's own (on PATH), or installed for this stage beside the
# workspace (nothing an earlier build on the agent could have left in its place).
uv="$(command -v uv || true)"
if [ -z "$uv" ] || [ "$("$uv" --version | cut -d' ' -f2)" != "$MLCI_UV_VERSION" ]; then
  "$MLCI_PYTHON" -m venv --clear "$tmp/mlci-uv"
  "$tmp/mlci-uv/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$MLCI_UV_VERSION"
  uv="$tmp/mlci-uv/bin/uv"
fi
# Agents are shared: a change request's build runs its code where branch builds run theirs, so
# it downloads into a uv cache of its own, never the one a branch build installs from.
cache="${UV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/uv}"
if [ -n "${CHANGE_ID:-}" ]; then
  cache="$cache-change-requests"
fi
export UV_CACHE_DIR="$cache"
# mlci and the project in a venv beside the workspace (WORKSPACE_TMP), not in it: lint and
# the tests see only the project.
venv="$tmp/mlci-venv"
"$uv" venv --quiet --clear --python "$MLCI_PYTHON" "$venv"
extras="${MLCI_EXTRAS:-}"
if ! [[ "$extras" =~ ^[a-z0-9,-]*$ ]]; then
  echo "mlci: MLCI_EXTRAS must be names of mlci's extras, comma-separated (e.g. train), not $extras" >&2
  exit 2
fi
# Only what the stage needs: the extras as a second requirement of mlci, which uv takes from
# MLCI_INSTALL with them.
with_extras=()
if [ -n "$extras" ]; then
  with_extras=("mlci[$extras]")
fi
"$uv" pip install --quiet --python "$venv/bin/python" "$MLCI_INSTALL" ${with_extras[@]+"${with_extras[@]}"}
if [ "${MLCI_INSTALL_PROJECT:-true}" = "true" ]; then
  "$uv" pip install --quiet --python "$venv/bin/python" -e .
fi
echo "mlci $("$venv/bin/mlci" --version | cut -d' ' -f2)${extras:+ [$extras]} in $venv (uv cache $UV_CACHE_DIR)"
