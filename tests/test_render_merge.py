"""`mlci render` and `mlci upgrade` share one planner (upgrade/engine.py, issue 10 item 3).

So they share one rule for "edited by hand" (normalised text: CRLF is no edit) and render
merges a hand-edited managed file three ways like upgrade: exit 0 when it merges cleanly,
exit 1 on a conflict, written with diff3 markers in one transaction. Before, render compared
raw bytes and refused every edited file (exit 1) forever.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import run_cli

from mlci import __version__
from mlci.manifest import MANIFEST_PATH

CI = ".github/workflows/ci.yml"


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One scaffold per module; each test works on its own copy."""
    root = tmp_path_factory.mktemp("seed")
    assert run_cli("new", "churn", "--defaults", "--no-git", "--output-dir", str(root)) == 0
    return root / "churn"


@pytest.fixture
def project(seed: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(seed, tmp_path / "churn", symlinks=True))


def files_of(root: Path) -> dict[str, bytes]:
    """Every file of the project but the lock (which names the command that held it)."""
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    files.pop(".mlci/lock", None)
    return files


def set_python(root: Path) -> tuple[str, str]:
    """Edit mlci.yaml's ci.python to another supported Python; returns (old, new)."""
    config = root / "mlci.yaml"
    text = config.read_text(encoding="utf-8")
    match = re.search(r'^  python: "(3\.\d+)"$', text, re.MULTILINE)
    assert match, "mlci new writes ci.python"
    old = match.group(1)
    new = "3.12" if old != "3.12" else "3.13"
    config.write_text(text.replace(f'python: "{old}"', f'python: "{new}"'), encoding="utf-8")
    return old, new


def edit(root: Path, relative: str, old: str, new: str) -> None:
    path = root / relative
    text = path.read_bytes().decode("utf-8")
    assert old in text, f"{old!r} not in {relative}"
    path.write_bytes(text.replace(old, new, 1).encode("utf-8"))


def test_crlf_managed_file_gets_the_same_answer_from_render_and_upgrade(project: Path, tmp_path: Path) -> None:
    path = project / CI
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))  # a Windows checkout with autocrlf
    _, new = set_python(project)
    twin = Path(shutil.copytree(project, tmp_path / "twin", symlinks=True))
    assert run_cli("render", "-C", str(project)) == 0  # on main: 1, "edited by hand"
    assert run_cli("upgrade", str(twin)) == 0
    data = path.read_bytes()
    assert f'python-version: "{new}"\r\n'.encode() in data and data.count(b"\r\n") == data.count(b"\n")
    assert files_of(project) == files_of(twin)


def test_render_merges_a_hand_edit_and_keeps_it(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(project, CI, "  pull_request:\n", "  pull_request:\n    branches: [main, dev]\n")
    old, new = set_python(project)
    capsys.readouterr()
    assert run_cli("render", "-C", str(project)) == 0  # on main: 1, and the file kept as it was
    text = (project / CI).read_text(encoding="utf-8")
    assert "    branches: [main, dev]\n" in text and f'python-version: "{new}"' in text and old not in text
    assert f"merged   {CI} (edited by hand: your edits kept, mlci's changes merged in)\n" in capsys.readouterr().out
    manifest = json.loads((project / MANIFEST_PATH).read_text(encoding="utf-8"))
    assert f'python-version: "{new}"' in manifest["managed"][CI]["base"] and "pending" not in manifest
    assert run_cli("render", "-C", str(project)) == 0
    assert capsys.readouterr().out.endswith("render: everything is up to date\n")


def test_render_conflict_exits_1_with_markers_in_one_transaction(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = set_python(project)
    edit(project, CI, f'python-version: "{old}"', 'python-version: "3.14"  # ours')
    before = files_of(project)
    capsys.readouterr()
    assert run_cli("render", "-C", str(project)) == 1
    captured = capsys.readouterr()
    assert re.search(rf"^CONFLICT {re.escape(CI)} \(\d+ conflicts?\)$", captured.out, re.MULTILINE)
    assert captured.err == (
        f"mlci: error: 1 managed file(s) with conflicts: {CI}; resolve the markers ('<<<<<<<'), "
        "then run 'mlci render' again\n"
    )
    text = (project / CI).read_text(encoding="utf-8")
    assert (
        '<<<<<<< ours (your edit)\n          python-version: "3.14"  # ours\n'
        f'||||||| base (mlci {__version__})\n          python-version: "{old}"\n'
        f'=======\n          python-version: "{new}"\n>>>>>>> mlci {__version__}\n'
    ) in text  # the markers `mlci upgrade` writes
    manifest = json.loads((project / MANIFEST_PATH).read_text(encoding="utf-8"))
    assert f'python-version: "{new}"' in manifest["pending"][CI]["theirs"]
    after = files_of(project)
    # Nothing half-written: every other file is either what it was or the render of the new mlci.yaml,
    # and no staged file or work directory is left behind.
    assert not [p for p in after if p.endswith(".mlci-tmp") or p.startswith(".mlci/upgrade-")]
    for path, data in after.items():
        if path not in (CI, MANIFEST_PATH) and data != before.get(path):
            assert f'"{new}"'.encode() in data, f"{path} changed, but not into the new render"
    # Resolved by hand, the next render finishes it (exit 0), as the next upgrade would.
    text = (project / CI).read_text(encoding="utf-8")
    while "<<<<<<<" in text:
        start, end = text.index("<<<<<<<"), text.index("\n", text.index(">>>>>>>")) + 1
        text = text[:start] + f'          python-version: "{new}"\n' + text[end:]
    (project / CI).write_text(text, encoding="utf-8")
    assert run_cli("render", "-C", str(project)) == 0
    assert "pending" not in json.loads((project / MANIFEST_PATH).read_text(encoding="utf-8"))


def test_an_edited_file_mlci_no_longer_renders_is_kept_and_named_for_render(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The retrain workflow, edited by hand, then turned off in mlci.yaml: render keeps it and
    says what to do in its own words (no markers to look for, no 'mlci upgrade' to run)."""
    config = project / "mlci.yaml"
    original = config.read_text(encoding="utf-8")
    config.write_text(original.replace("ci:\n", 'ci:\n  retrain_cron: "0 3 * * 1"\n', 1), encoding="utf-8")
    assert run_cli("render", "-C", str(project)) == 0
    retrain = ".github/workflows/retrain.yml"
    (project / retrain).write_text((project / retrain).read_text(encoding="utf-8") + "# ours\n", encoding="utf-8")
    config.write_text(original, encoding="utf-8")
    capsys.readouterr()
    assert run_cli("render", "-C", str(project)) == 1
    captured = capsys.readouterr()
    assert (
        f"CONFLICT {retrain} (no longer generated, but edited by you: kept; delete it, or keep it and "
        "run 'mlci render' again to make it yours)\n"
    ) in captured.out
    assert captured.err == (
        f"mlci: error: 1 managed file(s) with conflicts: {retrain}; do what the line above each says, "
        "then run 'mlci render' again\n"
    )
    assert run_cli("render", "-C", str(project)) == 0  # kept again: now the team's file
    captured = capsys.readouterr()
    assert f"kept     {retrain} (no longer generated: now yours)\n" in captured.out
    assert (project / retrain).read_text(encoding="utf-8").endswith("# ours\n")
    assert retrain not in json.loads((project / MANIFEST_PATH).read_text(encoding="utf-8"))["managed"]
