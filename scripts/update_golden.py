"""Regenerate tests/golden/github/ after an intended change to the generated workflows.

Renders every combination of the option matrix with `mlci new` into a temporary directory
and writes each project's `.github/workflows/*.yml` to tests/golden/github/<combination>/.
tests/test_github.py renders the same combinations (it imports COMBOS and render_combo from
here) and only compares: a test never rewrites what it checks. Review the diff
(`git diff tests/golden`) before committing, and record the change in CHANGELOG.md: every
template change is an upgrade for projects generated earlier.

Usage: python scripts/update_golden.py
"""

from __future__ import annotations

import itertools
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "github"
SHA = "0123456789abcdef0123456789abcdef01234567"  # a stand-in mlci_ref for remote actions
COMBOS: list[tuple[str, str, str]] = list(
    itertools.product(("local", "databricks"), ("vendored", "remote"), ("no-retrain", "retrain"))
)


def combo_name(combo: tuple[str, str, str]) -> str:
    return "-".join(combo)


def render_combo(root: Path, target: str, actions: str, retrain: str) -> Path:
    """`mlci new` one combination into root; returns the project directory."""
    from mlci import __version__
    from mlci.cli import main

    data = ["--data", f"actions={actions}"]
    if actions == "vendored":
        # Pinned, so the goldens never depend on how the mlci under test was installed.
        data += ["--data", f"mlci_install=mlci=={__version__}"]
    if actions == "remote":
        data += ["--data", "mlci_repository=mlci-dev/mlci", "--data", f"mlci_ref={SHA}"]
    if retrain == "retrain":
        data += ["--data", "retrain_cron=0 3 * * 1"]
    name = combo_name((target, actions, retrain))
    code = main(["new", name, "--defaults", "--no-git", "--output-dir", str(root), "--target", target, *data])
    if code != 0:
        raise SystemExit(f"mlci new {name} exited {code}")
    return root / name


def workflow_files(project: Path) -> dict[str, str]:
    """{file name: text} of a project's generated workflows, as the golden folder holds them."""
    return {p.name: p.read_text(encoding="utf-8") for p in sorted((project / ".github" / "workflows").glob("*.yml"))}


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        for combo in COMBOS:
            files = workflow_files(render_combo(Path(tmp), *combo))
            golden = GOLDEN / combo_name(combo)
            shutil.rmtree(golden, ignore_errors=True)
            golden.mkdir(parents=True)
            for name, text in files.items():
                (golden / name).write_text(text, encoding="utf-8")
            print(f"wrote {golden.relative_to(ROOT)}/ ({', '.join(files)})")
    print("review the changes with: git diff tests/golden")
    return 0


if __name__ == "__main__":
    sys.exit(main())
