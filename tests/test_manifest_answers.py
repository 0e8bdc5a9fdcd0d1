"""The manifest's answers cannot inject into generated files (issue 9, items 2 and 14).

`mlci render` and `mlci upgrade` render workflows from `.mlci/manifest.json`'s answers, and a
pull request can edit that file. Every answer key mlci records gets hostile values; each must
either be refused (exit 2, one line naming `answers.<key>`, nothing written) or render workflows
whose parsed YAML is exactly the normal one. Also: --json stays exact data on CI.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import run_cli, scaffold

from mlci.answers import RECORDED_ANSWERS
from mlci.manifest import MANIFEST_PATH

# Each breaks out of a different context: a comment or plain scalar (a newline), a double-quoted
# scalar (a quote, then U+2028, a line break to YAML that str.splitlines() also knows), and text
# that is inert only when written through an emitter (an expression, ': ', ' #').
HOSTILE = [
    "0.1.0\non:\n  pull_request_target:\n#",
    'x"\u2028on: pull_request_target\nx: "',
    "${{ github.token }} a: b # c",
]
# `mlci upgrade` reads the manifest through the same validation: the first and the last suffice.
UPGRADE_HOSTILE = (HOSTILE[0], HOSTILE[2])


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One project made by `mlci new`, copied per test."""
    root = tmp_path_factory.mktemp("seed")
    assert scaffold("churn", root) == 0
    return root / "churn"


def workflows(root: Path) -> dict[str, Any]:
    """Every generated YAML file, parsed (the structure a runner sees)."""
    return {
        path.relative_to(root).as_posix(): yaml.safe_load(path.read_text(encoding="utf-8"))
        for path in sorted((root / ".github").rglob("*.yml"))
    }


def files_of(root: Path) -> dict[str, bytes]:
    """Every file but the project lock (a run leaves it, released, by design)."""
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    files.pop(".mlci/lock", None)
    return files


@pytest.fixture(scope="module")
def normal(seed: Path) -> dict[str, Any]:
    return workflows(seed)


@pytest.fixture(scope="module")
def work(seed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the seed the cases share: a refused case writes nothing, an inert one is undone."""
    root = tmp_path_factory.mktemp("work") / "churn"
    shutil.copytree(seed, root)
    return root


CASES = [
    pytest.param(command, key, value, id=f"{command}-{key}-{HOSTILE.index(value)}")
    for command, values in (("render", HOSTILE), ("upgrade", UPGRADE_HOSTILE))
    for key in sorted(RECORDED_ANSWERS)
    for value in values
]


@pytest.mark.parametrize(("command", "key", "value"), CASES)
def test_a_hostile_manifest_answer_is_refused_or_inert(
    seed: Path,
    work: Path,
    normal: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    command: str,
    key: str,
    value: str,
) -> None:
    manifest = json.loads((seed / MANIFEST_PATH).read_text(encoding="utf-8"))
    manifest["answers"][key] = value
    (work / MANIFEST_PATH).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    before = files_of(work)
    capsys.readouterr()
    try:
        code = run_cli(*(["render", "-C", str(work)] if command == "render" else ["upgrade", str(work)]))
        err = capsys.readouterr().err
        if code == 2:
            assert err.startswith(f"mlci: error: {work / MANIFEST_PATH}: answers.{key}"), err
            assert err.count("\n") == 1, err  # one line, whatever the value holds
            assert files_of(work) == before  # nothing written
        else:
            assert code == 0, err
            assert workflows(work) == normal  # no extra keys, no other values
            assert err.count("\n") <= 1  # no warning split over lines
    finally:
        if files_of(work) != before:
            shutil.rmtree(work)
            shutil.copytree(seed, work)


def test_every_answer_mlci_new_records_is_covered(seed: Path) -> None:
    recorded = json.loads((seed / MANIFEST_PATH).read_text(encoding="utf-8"))["answers"]
    assert set(recorded) <= RECORDED_ANSWERS


def copy_with_manifest(seed: Path, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A copy of the seeded project and its manifest, to be edited and written back."""
    root = tmp_path / "churn"
    shutil.copytree(seed, root)
    return root, json.loads((root / MANIFEST_PATH).read_text(encoding="utf-8"))


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    (root / MANIFEST_PATH).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def test_an_answer_mlci_never_records_is_refused(
    seed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown key would reach the templates' context (and could shadow a template global)."""
    root, manifest = copy_with_manifest(seed, tmp_path)
    manifest["answers"]["pins"] = "x"
    write_manifest(root, manifest)
    capsys.readouterr()
    assert run_cli("render", "-C", str(root)) == 2
    assert capsys.readouterr().err == (
        f"mlci: error: {root / MANIFEST_PATH}: answers.pins is not an answer mlci records; "
        f"restore {MANIFEST_PATH} from git (it is never edited by hand)\n"
    )


def test_the_manifest_mlci_version_is_a_version_not_text_around_one(
    seed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """packaging's Version() strips whitespace: '0.1.0\\n...' parsed, and the warning printed it."""
    root, manifest = copy_with_manifest(seed, tmp_path)
    manifest["mlci_version"] = "0.0.1\n"
    write_manifest(root, manifest)
    capsys.readouterr()
    assert run_cli("render", "-C", str(root)) == 2
    assert capsys.readouterr().err == (
        f"mlci: error: {root / MANIFEST_PATH}: mlci_version '0.0.1\\n' is not a version; "
        f"restore {MANIFEST_PATH} from git (it is never edited by hand)\n"
    )


def test_the_pin_behind_warning_cannot_print_manifest_text_over_lines(
    seed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mlci render` warns with the manifest's mlci_version when a detected pin is behind: that
    text printed a second line (`::error::...`, a command on GitHub) before it was validated."""
    root, manifest = copy_with_manifest(seed, tmp_path)
    manifest["answers"].update(mlci_install_detected=True, mlci_version="0.0.1\n::error::spoofed")
    write_manifest(root, manifest)
    capsys.readouterr()
    code = run_cli("render", "-C", str(root))
    err = capsys.readouterr().err
    assert (code, err.count("\n")) == (2, 1), err
    assert err.startswith(f"mlci: error: {root / MANIFEST_PATH}: answers.mlci_version '0.0.1\\n::error::spoofed'")
