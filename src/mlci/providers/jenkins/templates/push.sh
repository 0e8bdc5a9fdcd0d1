#!/bin/bash
set -euo pipefail
if [ "$(git rev-parse HEAD)" = "$(cat "${WORKSPACE_TMP:-$WORKSPACE@tmp}/mlci-upgrade-base")" ]; then
  echo "already up to date: nothing to push"
  exit 0
fi
# shellcheck disable=SC2016  # expanded by git's helper shell, from the environment
git -c credential.helper='!f() { echo "username=$GIT_USERNAME"; echo "password=$GIT_PASSWORD"; }; f' \
  push --force origin mlci/upgrade
echo "pushed mlci/upgrade: open a pull request from it (its report: .mlci-upgrade.json)"
