"""Test kit for `mlci upgrade`: an editable copy of mlci's templates standing for a newer mlci.

A scenario is: scaffold a project with today's templates (the "old" mlci), make it look
older (`age`), let the user edit files (each added line is remembered), change the template
copy (the "new" mlci), upgrade, then `assert_no_user_line_lost` and check the outcome.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli

from mlci import providers, templates
from mlci.manifest import MANIFEST_PATH

CI = ".github/workflows/ci.yml"
CI_TEMPLATE = "providers/github/workflow.yml.j2"
PRE_COMMIT = ".pre-commit-config.yaml"  # managed, and rendered from scaffold/
OLD_VERSION = "0.0.9"


class Templates:
    """A copy of scaffold/ and of every provider's templates (providers/<name>/) that `mlci`
    renders from: handed to it as its template root (templates.TemplateSource), so every
    render (in-process, forked or a child process) reads the copy and nothing is patched."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        shutil.copytree(templates.shipped_dir("scaffold"), root / "scaffold")
        for name in providers.NAMES:
            shutil.copytree(providers.get(name).shipped_templates(), root / "providers" / name)
        monkeypatch.setenv(templates.TEMPLATE_ROOT_ENV, str(root))

    def replace(self, relative: str, old: str, new: str) -> None:
        path = self.root / relative
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in {relative}"
        path.write_text(text.replace(old, new), encoding="utf-8")

    def add(self, relative: str, text: str) -> None:
        (self.root / relative).parent.mkdir(parents=True, exist_ok=True)
        (self.root / relative).write_text(text, encoding="utf-8")

    def remove(self, relative: str) -> None:
        (self.root / relative).unlink()


def git(root: Path, *args: str) -> str:
    identity = ["-c", "user.name=Test", "-c", "user.email=test@example.invalid", "-c", "init.defaultBranch=main"]
    done = subprocess.run(["git", *identity, *args], cwd=root, capture_output=True, text=True, check=True)
    return done.stdout


LOCK = ".mlci/lock"  # the project lock every mlci command holds (git-ignored runtime state)


def files_of(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts and p.relative_to(root).as_posix() != LOCK
    }


class Project:
    """One generated project and the lines its user added, to prove none is ever lost."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.added: dict[str, list[str]] = {}
        self.before: dict[str, bytes] = {}
        self.managed_before: set[str] = set()

    @property
    def manifest(self) -> dict[str, object]:
        data: dict[str, object] = json.loads((self.root / MANIFEST_PATH).read_text(encoding="utf-8"))
        return data

    def read(self, relative: str) -> str:
        return (self.root / relative).read_bytes().decode("utf-8")

    def age(self, version: str = OLD_VERSION) -> None:
        """Make the manifest say an older mlci rendered this project."""
        path = self.root / MANIFEST_PATH
        data = json.loads(path.read_text(encoding="utf-8"))
        data["mlci_version"] = version
        data["answers"]["mlci_version"] = version
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    def edit(self, relative: str, old: str, new: str, newline: str = "\n") -> None:
        """A user edit: replace text (once); remember every line it adds."""
        path = self.root / relative
        text = path.read_bytes().decode("utf-8")
        assert old in text, f"{old!r} not in {relative}"
        before = text
        text = text.replace(old, new, 1)
        path.write_bytes(text.encode("utf-8"))
        diff = difflib.ndiff(before.splitlines(), text.splitlines())
        self.added.setdefault(relative, []).extend(line[2:] for line in diff if line.startswith("+ "))

    def write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
        self.added.setdefault(relative, []).extend(text.splitlines())

    def resolve(self, relative: str, keep: str) -> None:
        """The user resolves the (first) conflict region by writing `keep` in its place."""
        text = self.read(relative)
        start = text.index("<<<<<<<")
        end = text.index("\n", text.index(">>>>>>>")) + 1
        (self.root / relative).write_bytes((text[:start] + keep + text[end:]).encode("utf-8"))
        self.added.setdefault(relative, []).extend(keep.splitlines())

    def snapshot(self) -> None:
        self.before = files_of(self.root)
        manifest = self.root / MANIFEST_PATH
        if manifest.exists():
            self.managed_before = set(json.loads(manifest.read_text(encoding="utf-8"))["managed"])

    def upgrade(self, *args: str) -> int:
        if not self.before:
            self.snapshot()
        return run_cli("upgrade", *args, str(self.root))

    def assert_no_user_line_lost(self) -> None:
        """Every line the user added is still in their file (unless they deleted the file)."""
        for relative, lines in self.added.items():
            path = self.root / relative
            assert path.exists(), f"{relative} was removed although the user edited it"
            present = path.read_bytes().decode("utf-8").splitlines()
            for line in lines:
                assert line in present, f"user line {line!r} lost from {relative}"

    def assert_unmanaged_untouched(self) -> None:
        """Files mlci never managed are byte for byte what they were (mlci.yaml aside)."""
        managed = set(self.manifest["managed"]) | self.managed_before | {MANIFEST_PATH, "mlci.yaml"}  # type: ignore[call-overload]
        after = files_of(self.root)
        for relative, data in self.before.items():
            if relative not in managed and not relative.startswith(".github/"):
                assert after.get(relative) == data, f"{relative} was touched"

    def unchanged_since_snapshot(self) -> bool:
        return files_of(self.root) == self.before


def make(tmp_path: Path, name: str, *, git_repo: bool = False, age: bool = True) -> Project:
    assert run_cli("new", name, "--defaults", "--no-git", "--output-dir", str(tmp_path)) == 0
    project = Project(tmp_path / name)
    if age:
        project.age()
    if git_repo:
        commit_all(project.root, "scaffold")
    return project


def commit_all(root: Path, message: str) -> None:
    if not (root / ".git").exists():
        git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "--no-verify", "-m", message)


def no_subprocesses(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Fail any subprocess spawn (the clean upgrade must spawn none); returns the calls seen."""
    calls: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise AssertionError(f"spawned a process: {args}")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    monkeypatch.setattr(os, "posix_spawn", refuse)
    monkeypatch.setattr(os, "fork", refuse)
    return calls
