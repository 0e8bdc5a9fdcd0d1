#!/usr/bin/env bash
# The main job: install mlci, scaffold a demo ML project and run its whole pipeline locally
# (lint, unit tests, data tests, train, register, deploy to staging) on the embedded MLflow
# default.
# Usage: bash scripts/demo.sh [DIRECTORY]   (default: ./demo-workspace)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-demo-workspace}"
VENV="${MLCI_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv==0.13.8"
"$VENV/bin/python" -m uv pip install --quiet --python "$VENV/bin/python" --compile-bytecode \
  --constraints requirements/constraints.txt -e ".[all]"  # every stage's extras: mlci run runs them all
PATH="$PWD/$VENV/bin:$PATH"
mkdir -p "$WORK"
rm -rf "$WORK/demo-model"
mlci new demo-model --defaults --output-dir "$WORK"
cd "$WORK/demo-model"
python -m uv pip install --quiet --python "$(command -v python)" --no-deps -e .
mlci run
echo
echo "Done. Explore it: cd $WORK/demo-model && mlflow ui --backend-store-uri sqlite:///.mlci/mlflow.db"
