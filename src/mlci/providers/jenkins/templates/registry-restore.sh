#!/bin/bash
set -euo pipefail
mkdir -p .mlci
cp -R mlci-registry/mlflow.db mlci-registry/artifacts .mlci/ 2>/dev/null || true
# Which registry this build started from: a save only replaces that one (registry-save.sh).
cp mlci-registry/key .mlci/registry-restored
rm -rf mlci-registry
