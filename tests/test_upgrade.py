"""`mlci upgrade`: scenarios on real files and real git repositories.

Each scenario scaffolds a project with today's templates, makes its manifest say an older
mlci rendered it, lets "the user" edit files, changes a copy of the templates to stand for a
newer mlci (tests/upgrade_kit.py), upgrades, and asserts that no line the user added is lost.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import run_cli
from upgrade_kit import (
    CI,
    CI_TEMPLATE,
    OLD_VERSION,
    PRE_COMMIT,
    Project,
    Templates,
    commit_all,
    files_of,
    make,
    no_subprocesses,
)

from mlci import __version__
from mlci.config import load_project
from mlci.manifest import MANIFEST_PATH
from mlci.upgrade import migrations, transaction
from mlci.upgrade.merge import TextStyle, has_conflict_markers, merge, normalise

NEW_CHECKOUT_SHA = "0123456789abcdef0123456789abcdef01234567"
UPGRADE_WF = ".github/workflows/mlci-upgrade.yml"


@pytest.fixture
def tpl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Templates]:
    yield Templates(tmp_path / "templates", monkeypatch)


@pytest.fixture
def proj(tmp_path: Path, tpl: Templates) -> Project:
    return make(tmp_path, "churn")


def new_pin(tpl: Templates) -> None:
    """The newer mlci pins a newer actions/checkout."""
    tpl.replace(
        "providers/github/action-pins.json",
        '"sha": "3d3c42e5aac5ba805825da76410c181273ba90b1"',
        f'"sha": "{NEW_CHECKOUT_SHA}"',
    )
    tpl.replace("providers/github/action-pins.json", '"tag": "v7.0.1"', '"tag": "v7.1.0"')


def new_timeout(tpl: Templates) -> None:
    """The newer mlci gives every job 100 more minutes: ci.yml's lint job goes from 15 to 115."""
    tpl.replace(
        CI_TEMPLATE, "timeout-minutes: <%= job.timeout_minutes %>", "timeout-minutes: <%= job.timeout_minutes + 100 %>"
    )


def manifest_base(proj: Project, path: str) -> str:
    managed = proj.manifest["managed"]
    assert isinstance(managed, dict)
    return str(managed[path]["base"])


# ------------------------------------------------------------------ the basic rules


def test_current_project_is_a_noop(tmp_path: Path, tpl: Templates, capsys: pytest.CaptureFixture[str]) -> None:
    proj = make(tmp_path, "current", age=False)
    proj.edit(CI, "  pull_request:\n", "  pull_request:\n    branches: [main, develop]\n")
    assert proj.upgrade() == 0
    assert proj.unchanged_since_snapshot()
    assert "up to date" in capsys.readouterr().out
    proj.assert_no_user_line_lost()


def test_untouched_file_is_replaced(proj: Project, tpl: Templates, capsys: pytest.CaptureFixture[str]) -> None:
    new_pin(tpl)
    assert proj.upgrade() == 0
    ci = proj.read(CI)
    assert f"actions/checkout@{NEW_CHECKOUT_SHA} # v7.1.0" in ci and "3d3c42e5" not in ci
    assert manifest_base(proj, CI) == ci and proj.manifest["mlci_version"] == __version__
    out = capsys.readouterr().out
    assert f"updated   {CI}" in out and f"mlci {OLD_VERSION} -> {__version__}" in out
    proj.assert_unmanaged_untouched()


def test_clean_edit_is_merged_with_the_new_template(
    proj: Project, tpl: Templates, capsys: pytest.CaptureFixture[str]
) -> None:
    proj.edit(CI, "  pull_request:\n", "  pull_request:\n    branches: [main, release/*]\n")
    proj.edit(CI, "permissions: {}\n", "permissions: {}\n\nenv:\n  FORCE_COLOR: '1'  # ours\n")
    new_pin(tpl)
    new_timeout(tpl)
    assert proj.upgrade() == 0
    ci = proj.read(CI)
    assert "timeout-minutes: 115" in ci and NEW_CHECKOUT_SHA in ci and not has_conflict_markers(ci)
    assert f"merged    {CI}" in capsys.readouterr().out
    assert manifest_base(proj, CI) != ci  # the base is the new render, the user's edit on top
    proj.assert_no_user_line_lost()
    proj.assert_unmanaged_untouched()


def test_same_line_changed_on_both_sides_is_a_conflict_showing_the_base(
    proj: Project, tpl: Templates, capsys: pytest.CaptureFixture[str]
) -> None:
    old_base = manifest_base(proj, CI)
    proj.edit(CI, "timeout-minutes: 15", "timeout-minutes: 45")
    new_timeout(tpl)
    new_pin(tpl)
    assert proj.upgrade() == 1
    ci = proj.read(CI)
    assert "<<<<<<< ours (your edit)\n    timeout-minutes: 45\n" in ci
    assert f"||||||| base (mlci {OLD_VERSION})\n    timeout-minutes: 15\n=======\n    timeout-minutes: 115\n" in ci
    assert f">>>>>>> mlci {__version__}\n" in ci
    assert NEW_CHECKOUT_SHA in ci  # the clean part of the merge is applied
    out = capsys.readouterr().out
    assert f"CONFLICT  {CI} (1 conflict)" in out and CI in out.splitlines()[-1]
    # The manifest keeps the old base for the conflicted file and the old version.
    assert manifest_base(proj, CI) == old_base and proj.manifest["mlci_version"] == OLD_VERSION
    assert CI in proj.manifest["pending"]  # type: ignore[operator]
    proj.assert_no_user_line_lost()


def test_identical_change_on_both_sides_is_not_a_conflict(proj: Project, tpl: Templates) -> None:
    proj.edit(CI, "timeout-minutes: 15", "timeout-minutes: 115")
    new_timeout(tpl)
    assert proj.upgrade() == 0
    ci = proj.read(CI)
    assert not has_conflict_markers(ci) and ci.count("timeout-minutes: 115") == 1
    assert manifest_base(proj, CI).count("timeout-minutes: 115") == 1 and "timeout-minutes: 130" in ci
    proj.assert_no_user_line_lost()


def test_identical_whole_file_change_needs_no_write(proj: Project, tpl: Templates) -> None:
    new_timeout(tpl)
    text = re.sub(r"timeout-minutes: (\d+)", lambda m: f"timeout-minutes: {int(m.group(1)) + 100}", proj.read(CI))
    proj.write(CI, text)
    proj.snapshot()
    assert proj.upgrade() == 0
    assert proj.before[CI] == proj.read(CI).encode() and manifest_base(proj, CI) == text
    proj.assert_no_user_line_lost()


def test_user_deleted_file_stays_deleted_and_is_opted_out(
    proj: Project, tpl: Templates, capsys: pytest.CaptureFixture[str]
) -> None:
    (proj.root / UPGRADE_WF).unlink()
    new_pin(tpl)
    assert proj.upgrade() == 0
    assert not (proj.root / UPGRADE_WF).exists()
    assert proj.manifest["opted_out"] == [UPGRADE_WF] and UPGRADE_WF not in proj.manifest["managed"]  # type: ignore[operator]
    assert f"kept (deleted by you) {UPGRADE_WF}" in capsys.readouterr().out
    # A later upgrade does not bring it back either.
    tpl.replace("providers/github/mlci-upgrade.yml.j2", "timeout-minutes: 15", "timeout-minutes: 16")
    assert proj.upgrade() == 0 and not (proj.root / UPGRADE_WF).exists()


def test_template_removed_unedited_file_is_removed(proj: Project, tpl: Templates) -> None:
    tpl.remove("scaffold/.pre-commit-config.yaml")
    assert proj.upgrade() == 0
    assert not (proj.root / PRE_COMMIT).exists()
    assert PRE_COMMIT not in proj.manifest["managed"]  # type: ignore[operator]
    proj.assert_unmanaged_untouched()


def test_template_removed_edited_file_is_kept_as_a_conflict_then_released(
    proj: Project, tpl: Templates, capsys: pytest.CaptureFixture[str]
) -> None:
    proj.edit(PRE_COMMIT, "repos:\n", "repos:\n  # our hooks are below\n")
    tpl.remove("scaffold/.pre-commit-config.yaml")
    assert proj.upgrade() == 1
    assert "no longer generated, but edited by you" in capsys.readouterr().out
    assert (proj.root / PRE_COMMIT).exists()
    proj.assert_no_user_line_lost()
    # The user keeps it: the next run makes it theirs and completes the upgrade.
    assert proj.upgrade() == 0
    assert PRE_COMMIT not in proj.manifest["managed"] and PRE_COMMIT in proj.manifest["seeded"]  # type: ignore[operator]
    assert proj.manifest["mlci_version"] == __version__
    proj.assert_no_user_line_lost()


def test_template_added_file_is_added(proj: Project, tpl: Templates, capsys: pytest.CaptureFixture[str]) -> None:
    tpl.add("scaffold/.github/workflows/docs.yml.j2", "name: docs  # for <%= name %>\non: [push]\n")
    proj.edit(CI, "  pull_request:\n", "  pull_request:\n    branches: [trunk]\n")
    assert proj.upgrade() == 0
    added = ".github/workflows/docs.yml"
    assert proj.read(added) == "name: docs  # for churn\non: [push]\n"
    assert manifest_base(proj, added) == proj.read(added)
    assert f"added     {added}" in capsys.readouterr().out
    proj.assert_no_user_line_lost()


def test_template_added_file_never_overwrites_a_file_mlci_did_not_write(proj: Project, tpl: Templates) -> None:
    proj.write(".github/workflows/docs.yml", "name: our own docs workflow\n")
    tpl.add("scaffold/.github/workflows/docs.yml.j2", "name: docs\n")
    proj.snapshot()
    assert proj.upgrade() == 1
    assert proj.read(".github/workflows/docs.yml") == "name: our own docs workflow\n"
    proj.assert_no_user_line_lost()


def test_answers_changed_in_mlci_yaml_are_rendered(proj: Project, tpl: Templates) -> None:
    proj.edit("mlci.yaml", 'python: "3.11"', 'python: "3.12"  # we moved on')
    proj.edit(CI, "  pull_request:\n", "  pull_request:\n    branches: [main, hotfix]\n")
    assert proj.upgrade() == 0
    ci = proj.read(CI)
    assert 'python-version: "3.12"' in ci and '"3.11"' not in ci
    assert proj.manifest["answers"]["python_version"] == "3.12"  # type: ignore[index]
    proj.assert_no_user_line_lost()


def test_files_never_managed_are_never_touched(proj: Project, tpl: Templates) -> None:
    proj.edit("README.md", "\n", "\nOur notes.\n")
    proj.write(".github/CODEOWNERS", "* @team\n")
    (proj.root / "src/churn/train.py").unlink()
    new_pin(tpl)
    tpl.replace("scaffold/README.md.j2", "\n", "\nNew README text from mlci.\n")
    proj.snapshot()
    assert proj.upgrade() == 0
    assert "New README text" not in proj.read("README.md")
    assert proj.read(".github/CODEOWNERS") == "* @team\n" and not (proj.root / "src/churn/train.py").exists()
    proj.assert_unmanaged_untouched()
    proj.assert_no_user_line_lost()


# ------------------------------------------------------------------ line endings


def test_crlf_file_with_an_edit_is_merged_and_keeps_crlf(proj: Project, tpl: Templates) -> None:
    path = proj.root / CI
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    proj.edit(CI, "  pull_request:\r\n", "  pull_request:\r\n    branches: [main, dev]\r\n")
    new_pin(tpl)
    assert proj.upgrade() == 0
    data = path.read_bytes()
    assert data.count(b"\r\n") == data.count(b"\n") and NEW_CHECKOUT_SHA.encode() in data
    proj.assert_no_user_line_lost()


def test_crlf_only_change_counts_as_untouched(
    proj: Project, tpl: Templates, capsys: pytest.CaptureFixture[str]
) -> None:
    path = proj.root / CI
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))  # git autocrlf on Windows
    new_pin(tpl)
    assert proj.upgrade() == 0
    data = path.read_bytes()
    assert data.count(b"\r\n") == data.count(b"\n") and NEW_CHECKOUT_SHA.encode() in data
    assert f"updated   {CI}" in capsys.readouterr().out


def test_missing_final_newline_is_kept(proj: Project, tpl: Templates) -> None:
    path = proj.root / CI
    proj.edit(CI, "run: exit 1\n", "run: exit 1  # said we")
    assert not path.read_bytes().endswith(b"\n")
    new_pin(tpl)
    assert proj.upgrade() == 0
    data = path.read_bytes()
    assert data.endswith(b"run: exit 1  # said we") and NEW_CHECKOUT_SHA.encode() in data
    proj.assert_no_user_line_lost()


def test_crlf_conflict_markers_use_the_files_line_endings(proj: Project, tpl: Templates) -> None:
    path = proj.root / CI
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    proj.edit(CI, "timeout-minutes: 15", "timeout-minutes: 45")
    new_timeout(tpl)
    assert proj.upgrade() == 1
    data = path.read_bytes()
    assert b"<<<<<<< ours (your edit)\r\n" in data and data.count(b"\r\n") == data.count(b"\n")
    proj.assert_no_user_line_lost()


# ------------------------------------------------------------------ conflicts, resolved later


def test_second_run_after_manual_resolution_completes(proj: Project, tpl: Templates) -> None:
    proj.edit(CI, "timeout-minutes: 15", "timeout-minutes: 45")
    new_timeout(tpl)
    assert proj.upgrade() == 1
    proj.resolve(CI, "    timeout-minutes: 45\n")  # the user keeps their 45
    assert proj.upgrade() == 0
    assert proj.read(CI).count("timeout-minutes: 45") == 1 and "pending" not in proj.manifest
    assert proj.manifest["mlci_version"] == __version__
    assert "timeout-minutes: 115" in manifest_base(proj, CI)  # the new render is the base now
    assert proj.upgrade("--check") == 0
    proj.assert_no_user_line_lost()


def test_unresolved_markers_stay_a_conflict(proj: Project, tpl: Templates) -> None:
    proj.edit(CI, "timeout-minutes: 15", "timeout-minutes: 45")
    new_timeout(tpl)
    assert proj.upgrade() == 1
    proj.snapshot()
    assert proj.upgrade() == 1
    assert proj.unchanged_since_snapshot()
    proj.assert_no_user_line_lost()


def test_resolved_conflict_then_a_newer_template_merges_against_what_was_resolved(
    proj: Project, tpl: Templates
) -> None:
    proj.edit(CI, "timeout-minutes: 15", "timeout-minutes: 45")
    new_timeout(tpl)
    assert proj.upgrade() == 1
    proj.resolve(CI, "    timeout-minutes: 45\n")
    new_pin(tpl)  # an even newer mlci before the second run
    assert proj.upgrade() == 0
    ci = proj.read(CI)
    assert NEW_CHECKOUT_SHA in ci and "timeout-minutes: 45" in ci and not has_conflict_markers(ci)
    proj.assert_no_user_line_lost()


# ------------------------------------------------------------------ schema migrations


RENAME = migrations.Migration(0, 1, renames=(("ci.python_version", "ci.python"),), note="test rename")


def test_key_migration_renames_in_place_keeping_comments(
    proj: Project, tpl: Templates, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(migrations, "MIGRATIONS", [RENAME])
    proj.edit("mlci.yaml", "schema: 1", "schema: 0  # old format")
    proj.edit("mlci.yaml", 'python: "3.11"', 'python_version: "3.12"  # our pin')
    assert run_cli("lint", "-C", str(proj.root)) == 2  # an old schema is refused by the stages
    new_pin(tpl)
    assert proj.upgrade() == 0
    text = proj.read("mlci.yaml")
    assert "schema: 1  # old format" in text and 'python: "3.12"  # our pin' in text
    assert "# The candidate must meet every gate" in text  # the file's own comments survive
    assert load_project(proj.root).config.ci.python == "3.12"
    assert 'python-version: "3.12"' in proj.read(CI)
    # The user's key line was renamed on purpose; every other line they added is there.
    proj.added["mlci.yaml"] = ["schema: 1  # old format", '  python: "3.12"  # our pin']
    proj.assert_no_user_line_lost()


def test_migrations_run_in_order_and_quoted_keys_stay_quoted(tmp_path: Path) -> None:
    registry = [
        migrations.Migration(1, 2, renames=(("a.old", "a.mid"),)),
        migrations.Migration(2, 3, renames=(("a.mid", "a.new"), ('"q"', '"q"'))),
    ]
    text = 'schema: 1\n# keep me\na:\n  "old": 1  # trailing\n  other: 2\n'
    out, done = migrations.migrate(text, "mlci.yaml", 3, registry)
    assert out == 'schema: 3\n# keep me\na:\n  "new": 1  # trailing\n  other: 2\n'
    assert done == ["renamed a.old -> a.mid", "schema 1 -> 2", "renamed a.mid -> a.new", "schema 2 -> 3"]


def test_migration_refuses_both_old_and_new_key(
    proj: Project, tpl: Templates, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(migrations, "MIGRATIONS", [RENAME])
    proj.edit("mlci.yaml", "schema: 1", "schema: 0")
    proj.edit("mlci.yaml", 'python: "3.11"', 'python: "3.11"\n  python_version: "3.12"')
    proj.snapshot()
    assert proj.upgrade() == 2
    assert "keep only 'ci.python'" in capsys.readouterr().err
    assert proj.unchanged_since_snapshot()


def test_migration_missing_a_step_is_bad_input(proj: Project, tpl: Templates) -> None:
    proj.edit("mlci.yaml", "schema: 1", "schema: 0")
    proj.snapshot()
    assert proj.upgrade() == 2 and proj.unchanged_since_snapshot()


# ------------------------------------------------------------------ git, no git, atomicity


def test_shallow_clone_upgrades_without_history(tmp_path: Path, tpl: Templates) -> None:
    origin = make(tmp_path, "origin", git_repo=True)
    for n in range(3):
        (origin.root / "notes.txt").write_text(f"{n}\n")
        commit_all(origin.root, f"commit {n}")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", origin.root.as_uri(), str(clone)], check=True)
    assert (clone / ".git/shallow").exists()
    proj = Project(clone)
    proj.edit(CI, "  pull_request:\n", "  pull_request:\n    branches: [main, shallow]\n")
    new_pin(tpl)
    assert proj.upgrade() == 0
    assert NEW_CHECKOUT_SHA in proj.read(CI)
    proj.assert_no_user_line_lost()


def test_no_git_at_all_and_no_subprocess(proj: Project, tpl: Templates, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(proj.root / "no-such-dir"))
    proj.edit(CI, "  pull_request:\n", "  pull_request:\n    branches: [main, nogit]\n")
    new_pin(tpl)
    new_timeout(tpl)
    proj.snapshot()
    calls = no_subprocesses(monkeypatch)
    assert proj.upgrade() == 0
    assert calls == [] and not (proj.root / ".git").exists()
    assert NEW_CHECKOUT_SHA in proj.read(CI)
    proj.assert_no_user_line_lost()


@pytest.mark.parametrize("fail_at", [1, 2, 3])
def test_interruption_mid_upgrade_leaves_every_file_as_it_was(
    proj: Project, tpl: Templates, monkeypatch: pytest.MonkeyPatch, fail_at: int, capsys: pytest.CaptureFixture[str]
) -> None:
    proj.edit(CI, "  pull_request:\n", "  pull_request:\n    branches: [main, x]\n")
    (proj.root / UPGRADE_WF).unlink()
    new_pin(tpl)
    tpl.add("scaffold/.github/nested/deeper.yml.j2", "name: deeper\n")  # a new directory too
    tpl.replace("scaffold/.pre-commit-config.yaml", "repos:", "repos:  # v2")
    proj.snapshot()
    real_replace = transaction.Disk.replace
    seen: list[Path] = []

    def failing_swap(disk: transaction.Disk, source: Path, target: Path) -> None:
        if ".mlci/upgrade-" not in target.as_posix():  # a swap into the project, not the journal
            seen.append(target)
            if len(seen) == fail_at:
                raise OSError(28, "No space left on device")
        real_replace(disk, source, target)

    monkeypatch.setattr(transaction.Disk, "replace", failing_swap)
    assert proj.upgrade() == 3
    assert "No space left on device" in capsys.readouterr().err
    assert proj.unchanged_since_snapshot()
    assert not (proj.root / ".github/nested").exists()
    assert [p.name for p in (proj.root / ".mlci").iterdir() if p.name.startswith("upgrade-")] == []
    # Once the disk has room again, the same upgrade goes through.
    monkeypatch.setattr(transaction.Disk, "replace", real_replace)
    assert proj.upgrade() == 0 and NEW_CHECKOUT_SHA in proj.read(CI)
    proj.assert_no_user_line_lost()


def test_require_clean_refuses_uncommitted_edits_under_merge(
    tmp_path: Path, tpl: Templates, capsys: pytest.CaptureFixture[str]
) -> None:
    proj = make(tmp_path, "dirty", git_repo=True)
    proj.edit(CI, "  pull_request:\n", "  pull_request:\n    branches: [main, wip]\n")
    new_pin(tpl)
    proj.snapshot()
    assert proj.upgrade("--require-clean") == 2
    assert "uncommitted changes in .github/workflows/ci.yml" in capsys.readouterr().err
    assert proj.unchanged_since_snapshot()
    commit_all(proj.root, "our edit")
    assert proj.upgrade("--require-clean") == 0
    proj.assert_no_user_line_lost()


def test_executable_bit_survives(proj: Project, tpl: Templates) -> None:
    (proj.root / CI).chmod(0o755)
    new_pin(tpl)
    assert proj.upgrade() == 0
    assert (proj.root / CI).stat().st_mode & 0o777 == 0o755


# ------------------------------------------------------------------ modes and bad input


def test_check_detects_a_newer_template(proj: Project, tpl: Templates, capsys: pytest.CaptureFixture[str]) -> None:
    new_pin(tpl)
    proj.snapshot()
    assert proj.upgrade("--check") == 1
    assert proj.unchanged_since_snapshot()
    out = capsys.readouterr().out
    assert f"updated   {CI}" in out and "is behind" in out
    assert proj.upgrade() == 0 and proj.upgrade("--check") == 0


def test_check_detects_drift_from_mlci_yaml(tmp_path: Path, tpl: Templates) -> None:
    proj = make(tmp_path, "drift", age=False)
    assert proj.upgrade("--check") == 0
    proj.edit("mlci.yaml", 'python: "3.11"', 'python: "3.13"')  # edited, never rendered
    assert proj.upgrade("--check") == 1
    proj.assert_no_user_line_lost()


def test_check_detects_an_older_manifest_version_alone(proj: Project, tpl: Templates) -> None:
    assert proj.upgrade("--check") == 1  # same templates, but the manifest says 0.0.9
    assert proj.upgrade() == 0
    assert proj.manifest["mlci_version"] == __version__ and proj.upgrade("--check") == 0


def test_check_tolerates_user_edits(tmp_path: Path, tpl: Templates) -> None:
    proj = make(tmp_path, "edited", age=False)
    proj.edit(CI, "  pull_request:\n", "  pull_request:\n    branches: [main, mine]\n")
    assert proj.upgrade("--check") == 0
    proj.assert_no_user_line_lost()


def test_dry_run_prints_diffs_and_changes_nothing(
    proj: Project, tpl: Templates, capsys: pytest.CaptureFixture[str]
) -> None:
    proj.edit(CI, "timeout-minutes: 15", "timeout-minutes: 45")
    new_timeout(tpl)
    new_pin(tpl)
    tpl.remove("scaffold/.pre-commit-config.yaml")
    proj.snapshot()
    assert proj.upgrade("--dry-run") == 1  # a conflict would remain
    assert proj.unchanged_since_snapshot()
    out = capsys.readouterr().out
    assert f"--- a/{CI}\n+++ b/{CI}\n" in out and f"+      - uses: actions/checkout@{NEW_CHECKOUT_SHA}" in out
    assert f"--- a/{PRE_COMMIT}\n+++ /dev/null\n" in out and "+<<<<<<< ours (your edit)" in out


def test_downgrade_is_refused(proj: Project, tpl: Templates, capsys: pytest.CaptureFixture[str]) -> None:
    proj.age("9.0.0")
    proj.snapshot()
    assert proj.upgrade() == 2
    assert "downgrades are not supported: install mlci>=9.0.0" in capsys.readouterr().err
    assert proj.unchanged_since_snapshot()


def test_no_manifest_is_bad_input(proj: Project, capsys: pytest.CaptureFixture[str]) -> None:
    (proj.root / MANIFEST_PATH).unlink()
    assert proj.upgrade() == 2
    assert "no manifest" in capsys.readouterr().err


def test_invalid_mlci_yaml_is_bad_input_with_its_line(proj: Project, capsys: pytest.CaptureFixture[str]) -> None:
    proj.edit("mlci.yaml", "  task: classification", "  task: clustering")
    proj.snapshot()
    assert proj.upgrade() == 2
    assert "mlci.yaml:" in capsys.readouterr().err
    assert proj.unchanged_since_snapshot()


def test_check_and_dry_run_together_are_refused(proj: Project) -> None:
    with pytest.raises(SystemExit) as done:
        run_cli("upgrade", "--check", "--dry-run", str(proj.root))
    assert done.value.code == 2


def test_upgrade_from_the_project_directory(proj: Project, tpl: Templates) -> None:
    new_pin(tpl)
    assert run_cli("upgrade", cwd=proj.root / "src") == 0
    assert NEW_CHECKOUT_SHA in proj.read(CI)


# ------------------------------------------------------------------ the merge engine itself


def test_merge_unit_rules() -> None:
    base = "a\nb\nc\nd\ne\n"
    assert merge(base, base, "a\nB\nc\nd\ne\n", "o", "n").text == "a\nB\nc\nd\ne\n"
    assert merge(base, "a\nB\nc\nd\ne\n", base, "o", "n").text == "a\nB\nc\nd\ne\n"
    both = merge(base, "a\nB\nc\nd\ne\n", "a\nb\nc\nd\nE\n", "o", "n")
    assert (both.text, both.conflicts) == ("a\nB\nc\nd\nE\n", 0)
    same = merge(base, "a\nX\nc\nd\ne\n", "a\nX\nc\nd\nE\n", "o", "n")
    assert (same.text, same.conflicts) == ("a\nX\nc\nd\nE\n", 0)
    clash = merge(base, "a\nX\nc\nd\ne\n", "a\nY\nc\nd\ne\n", "old", "new")
    assert clash.conflicts == 1
    assert clash.text == "a\n<<<<<<< ours (your edit)\nX\n||||||| base (old)\nb\n=======\nY\n>>>>>>> new\nc\nd\ne\n"
    assert has_conflict_markers(clash.text) and not has_conflict_markers("a\n======== b\n# =======\n")


def test_text_style_round_trip() -> None:
    for text in ("a\r\nb\r\n", "a\nb", "a\r\nb", "", "a\n"):
        assert TextStyle.of(text).apply(normalise(text)) == text


# ------------------------------------------------------------------ generated files


def test_generated_upgrade_workflow_is_least_privilege_and_pinned(tmp_path: Path) -> None:
    assert run_cli("new", "wf", "--defaults", "--no-git", "--output-dir", str(tmp_path)) == 0
    text = (tmp_path / "wf" / UPGRADE_WF).read_text()
    workflow = yaml.safe_load(text)
    assert workflow["permissions"] == {} and "concurrency" in workflow
    assert set(workflow[True]) == {"schedule", "workflow_dispatch"}  # YAML 1.1 reads `on` as True
    for job in workflow["jobs"].values():
        assert job["timeout-minutes"] and job["permissions"] == {"contents": "write", "pull-requests": "write"}
        for step in job["steps"]:
            if "uses" in step:
                assert len(step["uses"].split("@")[1]) == 40
            if "run" in step:
                assert "${{" not in step["run"]
        pr = [s for s in job["steps"] if s.get("uses", "").startswith("peter-evans/create-pull-request@")]
        assert pr and pr[0]["with"]["body-path"].endswith("mlci-upgrade.md")
    checkout = workflow["jobs"]["upgrade"]["steps"][0]
    assert checkout["with"]["persist-credentials"] is False


def test_pre_commit_hook_is_published() -> None:
    hooks = yaml.safe_load((Path(__file__).resolve().parents[1] / ".pre-commit-hooks.yaml").read_text())
    hook = {h["id"]: h for h in hooks}["mlci-upgrade-check"]
    assert hook["entry"] == "mlci upgrade --check" and hook["language"] == "python"
    assert hook["pass_filenames"] is False and hook["always_run"] is True


def test_render_respects_what_upgrade_recorded(proj: Project, tpl: Templates) -> None:
    (proj.root / UPGRADE_WF).unlink()
    proj.edit(CI, "timeout-minutes: 15", "timeout-minutes: 45")
    new_timeout(tpl)
    assert proj.upgrade() == 1
    assert run_cli("render", "-C", str(proj.root)) == 1  # the conflicted file is edited: kept
    assert not (proj.root / UPGRADE_WF).exists()  # opted out: render does not bring it back
    assert proj.manifest["opted_out"] == [UPGRADE_WF] and CI in proj.manifest["pending"]  # type: ignore[operator]
    proj.resolve(CI, "    timeout-minutes: 45\n")
    assert proj.upgrade() == 0
    proj.assert_no_user_line_lost()


# A real SIGKILL at the second swap into the project: no rollback, no clean-up, no flush.
KILL_AFTER_FIRST_SWAP = (
    "import os, signal, sys\n"
    "from mlci.upgrade import transaction\n"
    "real, calls = transaction.Disk.replace, []\n"
    "def swap(disk, source, target):\n"
    "    if '.mlci/upgrade-' not in target.as_posix():\n"
    "        calls.append(target)\n"
    "        if len(calls) == 2:\n"
    "            os.kill(os.getpid(), signal.SIGKILL)\n"
    "    real(disk, source, target)\n"
    "transaction.Disk.replace = swap\n"
    "from mlci.cli import main\n"
    "sys.exit(main(['upgrade', sys.argv[1]]))\n"
)


def test_upgrade_killed_half_way_is_undone_by_the_next_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proj = make(tmp_path, "killed")
    proj.edit("mlci.yaml", 'python: "3.11"', 'python: "3.12"')  # two workflows and the manifest change
    proj.snapshot()
    done = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_FIRST_SWAP, str(proj.root)], capture_output=True, text=True, check=False
    )
    assert done.returncode == -signal.SIGKILL
    assert not proj.unchanged_since_snapshot()  # one workflow was swapped before the kill
    copy = tmp_path / "copy"
    shutil.copytree(proj.root, copy)
    assert transaction.recover(copy) and files_of(copy) == proj.before  # every file as it was
    assert proj.upgrade("--check") == 2  # refuses to judge a half-upgraded project
    assert run_cli("upgrade", "--dry-run", str(proj.root)) == 2
    capsys.readouterr()
    assert proj.upgrade() == 0
    assert "restored  .github/workflows/" in capsys.readouterr().out
    assert 'python-version: "3.12"' in proj.read(CI) and 'python-version: "3.12"' in proj.read(UPGRADE_WF)
    assert not transaction.leftovers(proj.root) and proj.upgrade("--check") == 0
    proj.assert_no_user_line_lost()


def test_recovery_never_overwrites_an_edit_made_after_the_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proj = make(tmp_path, "edited-after-crash")
    proj.edit("mlci.yaml", 'python: "3.11"', 'python: "3.12"')
    done = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_FIRST_SWAP, str(proj.root)], capture_output=True, text=True, check=False
    )
    assert done.returncode == -signal.SIGKILL
    swapped = next(p for p in (CI, UPGRADE_WF, ".github/workflows/cd.yml") if '"3.12"' in proj.read(p))
    before_crash = manifest_base(proj, swapped)
    proj.write(swapped, proj.read(swapped) + "# IMPORTANT user edit after the crash\n")
    capsys.readouterr()
    # The kept edit is an edit like any other: it does not touch the lines the upgrade changes,
    # so the upgrade after the recovery merges it three ways, cleanly (exit 0, no conflict).
    assert proj.upgrade() == 0
    out = capsys.readouterr().out
    assert "IMPORTANT user edit after the crash" in proj.read(swapped) and '"3.12"' in proj.read(swapped)
    assert f"{swapped} (edited after the interrupted upgrade: kept" in out
    assert f"\nmerged    {swapped}\n" in out
    assert not transaction.leftovers(proj.root) and proj.upgrade("--check") == 0
    assert (proj.root / (swapped + ".mlci-orig")).read_text() == before_crash
    proj.assert_no_user_line_lost()


def test_render_then_upgrade_keeps_a_deleted_file_deleted(proj: Project, tpl: Templates) -> None:
    (proj.root / ".github/workflows/cd.yml").unlink()
    proj.edit("mlci.yaml", 'python: "3.11"', 'python: "3.12"')
    assert run_cli("render", "-C", str(proj.root)) == 0
    assert ".github/workflows/cd.yml" in proj.manifest["opted_out"]  # type: ignore[operator]
    new_timeout(tpl)
    assert proj.upgrade() == 0
    assert not (proj.root / ".github/workflows/cd.yml").exists()


def test_manifest_missing_a_key_is_bad_input(proj: Project, capsys: pytest.CaptureFixture[str]) -> None:
    import json as _json

    path = proj.root / MANIFEST_PATH
    data = _json.loads(path.read_text())
    del data["answers"]
    path.write_text(_json.dumps(data))
    assert proj.upgrade() == 2
    assert "manifest.json: answers is missing; restore .mlci/manifest.json from git" in capsys.readouterr().err


def test_require_clean_in_a_project_inside_a_monorepo(tmp_path: Path, tpl: Templates) -> None:
    from upgrade_kit import git

    mono = tmp_path / "mono"
    mono.mkdir()
    proj = make(mono, "inner")
    git(mono, "init", "-q")
    git(mono, "add", "-A")
    git(mono, "commit", "-qm", "monorepo")
    proj.age()
    new_timeout(tpl)
    proj.edit(CI, "name: ci\n", "name: ci\n# our note\n")  # uncommitted, under merge
    assert proj.upgrade("--require-clean") == 2  # git found above the project, the edit seen
    assert "# our note" in proj.read(CI)
    git(mono, "commit", "-qam", "edit")
    assert proj.upgrade("--require-clean") == 0
    proj.assert_no_user_line_lost()
