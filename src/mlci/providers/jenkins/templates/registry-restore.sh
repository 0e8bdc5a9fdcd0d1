#!/bin/bash
set -euo pipefail
mkdir -p .mlci
cp -R mlci-registry/mlflow.db mlci-registry/artifacts .mlci/ 2>/dev/null || true
# Which registry this build started from, and every one it kept since: a save replaces only one
# of them (registry-save.sh).
cp mlci-registry/key .mlci/registry-lineage
rm -rf mlci-registry
