#!/bin/bash
set -euo pipefail
rm -rf mlci-registry
if [ -s mlci-newest/mlci-registry/key ]; then
  mv mlci-newest/mlci-registry mlci-registry
  echo "Registry: the local MLflow store kept by an earlier build ($(cat mlci-registry/key))"
else
  echo "Registry: no kept local MLflow store (the first build, discarded, or not the default branch): starting empty"
  mkdir -p mlci-registry
  : > mlci-registry/key
fi
rm -rf mlci-newest
