#!/bin/bash
set -euo pipefail
git rev-parse HEAD > "${WORKSPACE_TMP:-$WORKSPACE@tmp}/mlci-upgrade-base"
git config user.name "mlci upgrade"
git config user.email "mlci-upgrade@invalid"
status=0
"${WORKSPACE_TMP:-$WORKSPACE@tmp}/mlci-venv/bin/mlci" upgrade --branch mlci/upgrade --commit --report .mlci-upgrade.json || status=$?
# 1 means conflicts: they are committed with markers and listed in the report.
if [ "$status" -gt 1 ]; then exit "$status"; fi
