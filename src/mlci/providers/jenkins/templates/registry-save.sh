#!/bin/bash
set -euo pipefail
# A replayed or restarted stage of an older build must not replace the registry later builds
# kept: save only while the newest kept one is the registry this build started from, or one it
# kept since (.mlci/registry-lineage travels with the state from stage to stage).
newest="$(cat mlci-newest/mlci-registry/key 2>/dev/null || true)"
rm -rf mlci-newest mlci-registry
if [ -s .mlci/registry-lineage ] && [ ! -f .mlci/mlflow.db ]; then
  echo "mlci: this build restored a kept registry but has no .mlci/mlflow.db to keep; refusing to replace it with an empty one" >&2
  exit 3
fi
if [ -z "$newest" ] || grep -qxF -- "$newest" .mlci/registry-lineage 2>/dev/null; then
  mkdir -p mlci-registry
  cp -R .mlci/mlflow.db mlci-registry/ 2>/dev/null || true
  if [ -d .mlci/artifacts ]; then cp -R .mlci/artifacts mlci-registry/; fi
  echo "$BUILD_NUMBER-$MLCI_JOB" > mlci-registry/key
  cat mlci-registry/key >> .mlci/registry-lineage
  echo "Registry: kept for the next build ($(cat mlci-registry/key))"
else
  echo "Registry: a newer registry exists ($newest; this build started from $(head -n 1 .mlci/registry-lineage 2>/dev/null || echo 'an empty registry')), so this build's was not kept"
fi
