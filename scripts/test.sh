#!/usr/bin/env bash
# Set up a virtual environment from this repository's own files and run the whole test suite.
# Usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${MLCI_VENV:-.venv}"
# The Jenkins tests load Jenkinsfiles with Debian's groovy 2.4 (tests/jenkins_stub.py): install
# it on a fresh machine (as root, where apt-get exists); elsewhere those tests fail, naming it.
if ! command -v groovy >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq groovy; } >/dev/null
fi
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv==0.13.8"
# --compile-bytecode: with PYTHONDONTWRITEBYTECODE set, MLflow and scikit-learn would be
# recompiled on every import, tripling the suite's run time.
"$VENV/bin/python" -m uv pip install --quiet --python "$VENV/bin/python" --compile-bytecode \
  --constraints requirements/constraints.txt -e ".[test]"
# Two workers (MLCI_TEST_WORKERS), whole files each (--dist loadfile): a module's fixtures (a
# scaffolded project, a trained model) are built once, on the worker that runs the module.
exec "$VENV/bin/python" -m pytest -n "${MLCI_TEST_WORKERS:-2}" --dist loadfile "$@"
