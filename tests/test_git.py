"""mlci.git, the one git wrapper: its errors and its one fallback identity (real git, real repositories)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mlci import git
from mlci.errors import EXIT_INFRA, InfraError


def test_missing_git_is_an_infra_error_naming_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without git
    with pytest.raises(InfraError) as caught:
        git.run(tmp_path, "status")
    assert caught.value.message == "git status: git is not installed (or not on PATH); install git and run again"
    assert caught.value.exit_code == EXIT_INFRA
    assert git.output(tmp_path, "status") is None and git.toplevel(tmp_path) is None and not git.available()


def test_a_failing_git_command_names_gits_first_line(tmp_path: Path) -> None:
    with pytest.raises(InfraError, match=r"^git status failed in .*: fatal: not a git repository"):
        git.run(tmp_path, "status")
    assert git.head_info(tmp_path) is None


def test_init_and_commit_commits_as_mlci_when_the_machine_has_no_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    config = tmp_path / "gitconfig"  # no name, and no guessing one from the host name either
    config.write_text("[user]\n\tuseConfigOnly = true\n", encoding="utf-8")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    project = tmp_path / "p"
    project.mkdir()
    (project / "a.txt").write_text("a\n", encoding="utf-8")
    git.init_and_commit(project, "first")
    author = subprocess.run(
        ["git", "log", "-1", "--format=%an <%ae> %s"], cwd=project, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert author == "mlci <mlci@users.noreply.localhost> first"
    head = git.head_info(project)
    assert head is not None and head.branch == "main" and not head.dirty
    (project / "a.txt").write_text("b\n", encoding="utf-8")
    assert git.dirty_files(project, ["a.txt"]) == ["a.txt"]
