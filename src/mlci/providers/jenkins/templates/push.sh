#!/bin/bash
set -euo pipefail
if [ "$(git rev-parse HEAD)" = "$(cat "${WORKSPACE_TMP:-$WORKSPACE@tmp}/mlci-upgrade-base")" ]; then
  echo "already up to date: nothing to push"
  exit 0
fi
# The agent's own credential helpers are reset (none may store the token), and no hook runs:
# mlci and its dependencies ran in this workspace before the token was bound.
# shellcheck disable=SC2016  # expanded by git's helper shell, from the environment
git -c credential.helper= \
  -c credential.helper='!f() { echo "username=$GIT_USERNAME"; echo "password=$GIT_PASSWORD"; }; f' \
  -c core.hooksPath=/dev/null push --no-verify --force origin mlci/upgrade
echo "pushed mlci/upgrade: open a pull request from it (its report: .mlci-upgrade.json)"
