#!/bin/bash
set -euo pipefail
# A restarted or replayed stage of an older build must not replace the registry later builds
# kept: save only while the newest kept one is the registry this build started from.
newest="$(cat mlci-newest/mlci-registry/key 2>/dev/null || true)"
restored="$(cat .mlci/registry-restored 2>/dev/null || true)"
rm -rf mlci-newest mlci-registry
if [ -z "$newest" ] || [ "$newest" = "$restored" ]; then
  mkdir -p mlci-registry
  cp -R .mlci/mlflow.db .mlci/artifacts mlci-registry/ 2>/dev/null || true
  echo "$BUILD_NUMBER-$MLCI_JOB" > mlci-registry/key
  echo "Registry: kept for the next build ($(cat mlci-registry/key))"
else
  echo "Registry: a newer registry exists ($newest; this build started from ${restored:-an empty registry}), so this build's was not kept"
fi
