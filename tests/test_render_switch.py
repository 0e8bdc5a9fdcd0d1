"""`mlci render` switches a project between CI providers (issue 11, item 3): after `ci.provider`
(or `target`) changes in mlci.yaml, the new provider's files are added, the old one's removed
where unedited (with the directories they leave empty), and an edited one kept as the team's,
reported on its own line. Proven with GitHub and the throwaway provider of the conformance kit.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_cli, scaffold

from mlci import providers
from mlci.errors import ConfigError
from mlci.manifest import MANIFEST_PATH
from mlci.upgrade import transaction

CI = ".github/workflows/ci.yml"
CD = ".github/workflows/cd.yml"
THROWAWAY = [".throwaway/cd.json", ".throwaway/ci.json"]


@pytest.fixture(autouse=True)
def throwaway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(providers.NAMES, "throwaway", "throwaway_provider")


@pytest.fixture(scope="module")
def github_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `mlci new --provider github` for the module (throwaway registered, as in every
    test: mlci.schema.json lists the providers); each test works on a copy."""
    where = tmp_path_factory.mktemp("switch")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(providers.NAMES, "throwaway", "throwaway_provider")
        assert scaffold("switchy", where, "--provider", "github") == 0
    return where / "switchy"


@pytest.fixture
def project(github_project: Path, tmp_path: Path) -> Iterator[Path]:
    copy = tmp_path / "switchy"
    shutil.copytree(github_project, copy, symlinks=True)
    yield copy


def set_provider(root: Path, old: str, new: str) -> None:
    config = root / "mlci.yaml"
    text = config.read_text(encoding="utf-8")
    assert f"  provider: {old}\n" in text
    config.write_text(text.replace(f"  provider: {old}\n", f"  provider: {new}\n"), encoding="utf-8")


def manifest_of(root: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((root / MANIFEST_PATH).read_text(encoding="utf-8"))
    return data


def files_of(root: Path) -> dict[str, bytes]:
    """Every file of the project but the lock file `mlci render` leaves (an OS lock's anchor)."""
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    files.pop(".mlci/lock", None)
    return files


def github_files(root: Path) -> list[str]:
    return sorted(path for path in manifest_of(root)["managed"] if path.startswith(".github/"))  # type: ignore[attr-defined]


def test_a_switch_removes_the_unedited_files_and_their_empty_directories(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = github_files(project)
    (project / ".github" / "CODEOWNERS").write_text("* @team\n", encoding="utf-8")  # the team's file
    set_provider(project, "github", "throwaway")
    capsys.readouterr()
    assert run_cli("render", cwd=project) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        out[-1] == f"render: switched CI from github to throwaway: 2 added, {len(old)} removed, 0 kept (edited by you)"
    )
    assert f"removed  {CI} (ci.provider is throwaway now, which does not use it)" in out
    assert "removed  .github/workflows/ (empty)" in out and "removed  .github/actions/mlci-lint/ (empty)" in out
    assert sorted(p.relative_to(project).as_posix() for p in (project / ".github").rglob("*")) == [".github/CODEOWNERS"]
    assert sorted(p.relative_to(project).as_posix() for p in (project / ".throwaway").iterdir()) == THROWAWAY
    manifest = manifest_of(project)
    assert manifest["answers"]["provider"] == "throwaway"  # type: ignore[index]
    assert not [path for path in manifest["managed"] if path.startswith(".github/")]  # type: ignore[attr-defined]
    assert set(THROWAWAY) <= set(manifest["managed"])  # type: ignore[arg-type]
    assert run_cli("upgrade", "--check", str(project)) == 0  # nothing pending: the manifest follows
    assert run_cli("render", cwd=project) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "render: everything is up to date"


def test_an_edited_workflow_is_kept_released_and_reported(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edited = (project / CI).read_text(encoding="utf-8") + "# our own step\n"
    (project / CI).write_text(edited, encoding="utf-8")
    set_provider(project, "github", "throwaway")
    capsys.readouterr()
    assert run_cli("render", cwd=project) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        f"kept     {CI} (edited by you; ci.provider is throwaway now, which does not use it: "
        "no longer managed by mlci, now yours)"
    ) in out
    assert out[-1].endswith(" removed, 1 kept (edited by you)")
    assert (project / CI).read_text(encoding="utf-8") == edited
    assert not (project / CD).exists() and (project / ".github" / "workflows").is_dir()
    assert not (project / ".github" / "actions").exists()
    manifest = manifest_of(project)
    assert CI not in manifest["managed"] and CI in manifest["seeded"]  # type: ignore[operator]
    assert "pending" not in manifest
    assert run_cli("upgrade", "--check", str(project)) == 0


def test_a_managed_file_the_user_deleted_is_dropped(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / CD).unlink()
    set_provider(project, "github", "throwaway")
    capsys.readouterr()
    assert run_cli("render", cwd=project) == 0
    out = capsys.readouterr().out
    assert CD not in out and not (project / CD).exists()
    manifest = manifest_of(project)
    assert CD not in manifest["managed"] and CD not in manifest.get("opted_out", [])  # type: ignore[operator, attr-defined]
    assert not (project / ".github").exists()


def test_switching_back_restores_the_files_of_a_fresh_mlci_new(
    project: Path, github_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    set_provider(project, "github", "throwaway")
    assert run_cli("render", cwd=project) == 0
    set_provider(project, "throwaway", "github")
    capsys.readouterr()
    assert run_cli("render", cwd=project) == 0
    out = capsys.readouterr().out.splitlines()
    added = len(github_files(github_project))
    assert out[-1] == f"render: switched CI from throwaway to github: {added} added, 2 removed, 0 kept (edited by you)"
    assert "removed  .throwaway/ (empty)" in out
    assert files_of(project) == files_of(github_project)  # the manifest too: byte for byte


def test_a_target_switch_goes_through_the_same_path(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = project / "mlci.yaml"
    text = config.read_text(encoding="utf-8")
    text = text.replace("target: local\n", "target: databricks\n").replace(
        "model_name: switchy\n", "model_name: ml.prod.switchy\n"
    )
    config.write_text(text, encoding="utf-8")
    capsys.readouterr()
    assert run_cli("render", cwd=project) == 0
    out = capsys.readouterr().out.splitlines()
    # Databricks' own files (its bundle: databricks.yml, resources/) are added; the workflow's credentials change.
    assert out == [
        f"rendered {CD}",
        "rendered databricks.yml",
        "rendered resources/switchy.job.yml",
        "rendered resources/switchy.model.yml",
        "rendered resources/switchy.serving.yml",
        "render: switched target from local to databricks: 4 added, 0 removed, 0 kept (edited by you), 1 updated",
    ]
    assert manifest_of(project)["answers"]["target"] == "databricks"  # type: ignore[index]
    assert run_cli("upgrade", "--check", str(project)) == 0


def test_an_interrupted_switch_is_recovered_all_old(project: Path, tmp_path: Path) -> None:
    """Killed right after it removed the first empty directory (every old file deleted by then):
    the next `mlci render` puts every file and directory back, then switches whole."""
    set_provider(project, "github", "throwaway")
    before = files_of(project)
    probe = tmp_path / "probe"
    shutil.copytree(project, probe, symlinks=True)
    kill_at, emptied = first_project_rmdir(probe)
    switched = files_of(probe)

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child, killed by the seam
        os.environ[transaction.CRASH_ENV] = str(kill_at)
        run_cli("render", cwd=project)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status), "the crash seam did not kill the render"
    assert not (project / emptied).exists() and files_of(project) not in (before, switched)  # half-way

    assert transaction.recover(project, "render")  # what the next render does first
    assert files_of(project) == before and (project / emptied).is_dir()
    assert run_cli("render", cwd=project) == 0
    assert files_of(project) == switched


def first_project_rmdir(root: Path) -> tuple[int, str]:
    """Switch `root` for real, counting the transaction's steps: the step at which it removes
    its first directory of the project (not its work directory), and that directory."""
    seen: list[tuple[int, str]] = []
    rmdir = transaction.Disk.rmdir

    def counting(disk: transaction.Disk, path: Path) -> None:
        rmdir(disk, path)
        if not path.name.startswith(transaction.WORK_PREFIX):
            seen.append((disk.steps, path.relative_to(root).as_posix()))

    patch = pytest.MonkeyPatch()
    patch.setattr(transaction.Disk, "rmdir", counting)
    try:
        assert run_cli("render", cwd=root) == 0
    finally:
        patch.undo()
    return seen[0]


def test_a_planted_journal_cannot_make_recovery_recreate_other_directories(project: Path) -> None:
    """`removed_dirs` is journal input like the rest: a rollback recreates only a directory
    that held a file the journal deletes, so one naming any other is refused, untouched."""
    work = project / ".mlci" / f"{transaction.WORK_PREFIX}planted"
    work.mkdir()
    entry = {"target": CI, "backup": None, "old": None, "new": None}
    journal = {"format": 1, "entries": [entry], "dirs": [], "removed_dirs": ["src/elsewhere"]}
    (work / transaction.JOURNAL).write_text(json.dumps(journal), encoding="utf-8")
    before = files_of(project)
    with pytest.raises(ConfigError, match="directory 'src/elsewhere' is not the directory of a file this journal"):
        transaction.recover(project, "render")
    assert files_of(project) == before and not (project / "src" / "elsewhere").exists()
