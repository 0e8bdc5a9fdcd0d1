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
# mlci and the project in a venv beside the workspace (WORKSPACE_TMP), not in it: lint and
# the tests see only the project.
venv="$tmp/mlci-venv"
"$uv" venv --quiet --clear --python "$MLCI_PYTHON" "$venv"
"$uv" pip install --quiet --python "$venv/bin/python" "$MLCI_INSTALL"
if [ "${MLCI_INSTALL_PROJECT:-true}" = "true" ]; then
  "$uv" pip install --quiet --python "$venv/bin/python" -e .
fi
echo "mlci $("$venv/bin/mlci" --version | cut -d' ' -f2) in $venv"
