#!/usr/bin/env bash
# Build mlci's sdist and wheel, then prove the wheel works on its own: a fresh virtual
# environment with only the wheel (and its dependencies) runs `mlci --version` and scaffolds a
# project with `mlci new`, outside this checkout so nothing is imported from src/.
# The release workflow publishes exactly the files this script checked.
#
# Usage: bash scripts/check_dist.sh [DIST_DIR]     (default: dist; it must be empty or absent)
# Environment: MLCI_EXPECTED_VERSION (e.g. the tag without its "v"): fail unless the wheel has it.
#              UV: the uv command (default: uv on PATH); PYTHON: the interpreter of the fresh venv.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
dist="${1:-dist}"
uv="${UV:-uv}"
python="${PYTHON:-$(command -v python3)}"

if [ -d "$dist" ] && [ -n "$(ls -A "$dist")" ]; then
  echo "check_dist: $dist is not empty; remove it or pass an empty directory" >&2
  exit 2
fi
mkdir -p "$dist"
dist="$(cd "$dist" && pwd)"

echo "check_dist: building the sdist and the wheel into $dist"
"$uv" build --quiet --sdist --wheel --out-dir "$dist" "$root"
shopt -s nullglob
wheels=("$dist"/mlci-*-py3-none-any.whl)
sdists=("$dist"/mlci-*.tar.gz)
if [ "${#wheels[@]}" -ne 1 ] || [ "${#sdists[@]}" -ne 1 ]; then
  echo "check_dist: expected one wheel and one sdist in $dist, found: $(ls "$dist")" >&2
  exit 1
fi
wheel="${wheels[0]}"
version="$(basename "$wheel" | cut -d- -f2)"
if [ -n "${MLCI_EXPECTED_VERSION:-}" ] && [ "$version" != "$MLCI_EXPECTED_VERSION" ]; then
  echo "check_dist: the wheel is mlci $version but $MLCI_EXPECTED_VERSION was expected (tag and src/mlci/__init__.py disagree)" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "check_dist: installing $(basename "$wheel") into a fresh venv"
"$uv" venv --quiet --python "$python" "$work/venv"
"$uv" pip install --quiet --python "$work/venv/bin/python" --constraints "$root/requirements/constraints.txt" "$wheel"

cd "$work"
reported="$("$work/venv/bin/mlci" --version)"
if [ "$reported" != "mlci $version" ]; then
  echo "check_dist: mlci --version says '$reported', expected 'mlci $version'" >&2
  exit 1
fi
"$work/venv/bin/mlci" new x --defaults --no-git > "$work/new.log"
for file in x/mlci.yaml x/.mlci/manifest.json x/.github/workflows/ci.yml x/.github/workflows/cd.yml; do
  if [ ! -f "$file" ]; then
    echo "check_dist: mlci new from the wheel did not write $file" >&2
    cat "$work/new.log" >&2
    exit 1
  fi
done
echo "check_dist: ok: $(basename "$wheel") and $(basename "${sdists[0]}") ($reported; mlci new works from the wheel)"
