#!/bin/bash
set -euo pipefail
# uv of the pinned version: the agent's own, or one bootstrapped once per agent (tool cache).
uv="$(command -v uv || true)"
if [ -z "$uv" ] || [ "$("$uv" --version | cut -d' ' -f2)" != "$MLCI_UV_VERSION" ]; then
  tools="${XDG_CACHE_HOME:-$HOME/.cache}/mlci/uv-$MLCI_UV_VERSION"
  if [ ! -x "$tools/bin/uv" ]; then
    mkdir -p "${tools%/*}"
    fresh="$(mktemp -d "$tools.XXXXXX")"
    "$MLCI_PYTHON" -m venv "$fresh"
    "$fresh/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$MLCI_UV_VERSION"
    mv -T "$fresh" "$tools" 2>/dev/null || rm -rf "$fresh"  # a parallel stage won: use its copy
  fi
  uv="$tools/bin/uv"
fi
# mlci and the project in a venv beside the workspace (WORKSPACE_TMP), not in it: lint and
# the tests see only the project.
venv="${WORKSPACE_TMP:-$WORKSPACE@tmp}/mlci-venv"
"$uv" venv --quiet --clear --python "$MLCI_PYTHON" "$venv"
"$uv" pip install --quiet --python "$venv/bin/python" "$MLCI_INSTALL"
if [ "${MLCI_INSTALL_PROJECT:-true}" = "true" ]; then
  "$uv" pip install --quiet --python "$venv/bin/python" -e .
fi
echo "mlci $("$venv/bin/mlci" --version | cut -d' ' -f2) in $venv"
