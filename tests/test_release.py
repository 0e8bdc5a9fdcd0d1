"""mlci's own release: the workflow's shape (least privilege, pinned actions, trusted publishing)
and scripts/check_dist.sh, the same check of the built wheel the release runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from mlci import __version__
from mlci.providers.github.actions import action_pins

RELEASE = REPO / ".github" / "workflows" / "release.yml"
SCRIPT = REPO / "scripts" / "check_dist.sh"


def check_dist(dist: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "UV": str(Path(sys.executable).parent / "uv"), "PYTHON": sys.executable, **env}
    return subprocess.run(
        ["bash", str(SCRIPT), str(dist)], capture_output=True, text=True, env=full_env, timeout=600, check=False
    )


def test_release_workflow_grants_each_job_only_what_it_needs() -> None:
    workflow = yaml.safe_load(RELEASE.read_text())
    assert workflow[True] == {"push": {"tags": ["v[0-9]+.[0-9]+.[0-9]+"]}}  # YAML 1.1 reads `on` as True
    assert workflow["permissions"] == {}
    jobs = workflow["jobs"]
    assert {job_id: job["permissions"] for job_id, job in jobs.items()} == {
        "tests": {"contents": "read"},
        "build": {"contents": "read"},
        "publish": {"id-token": "write"},
        "github-release": {"contents": "write"},
    }
    assert jobs["publish"]["environment"] == "pypi"
    # Nothing is published before the suite passed at the tagged commit and the tag is on main.
    assert jobs["publish"]["needs"] == ["tests", "build"] and jobs["github-release"]["needs"] == ["build", "publish"]
    runs = {job_id: [s.get("run", "") for s in job["steps"]] for job_id, job in jobs.items()}
    assert any("bash scripts/test.sh" in run for run in runs["tests"])
    assert any('git merge-base --is-ancestor "$GITHUB_SHA" origin/main' in run for run in runs["build"])
    move = next(s for s in jobs["github-release"]["steps"] if s["name"].startswith("Move the major tag"))
    assert move["if"] == "needs.build.outputs.newest-of-major == 'true'"  # a backport never moves it back
    assert any("bash scripts/check_dist.sh dist" in run for run in runs["build"])
    assert any("uv publish --trusted-publishing always dist/*" in run for run in runs["publish"])
    assert any("gh release create" in run for run in runs["github-release"])
    pins = {name: pin["sha"] for name, pin in action_pins().items()}
    for job in jobs.values():
        for step in job["steps"]:
            assert "${{" not in step.get("run", "")
            if "uses" in step:
                action, ref = step["uses"].split("@")
                assert ref == pins[action], step["uses"]  # pinned by full SHA, from action-pins.json
    # Nothing a cache could have poisoned reaches a release.
    assert "actions/cache" not in RELEASE.read_text()
    assert re.findall(r"enable-cache: \"(\w+)\"", RELEASE.read_text()) == ["false", "false"]


@pytest.mark.slow
def test_check_dist_builds_and_runs_the_wheel_in_a_fresh_venv(tmp_path: Path) -> None:
    done = check_dist(tmp_path / "dist", MLCI_EXPECTED_VERSION=__version__)
    assert done.returncode == 0, done.stdout + done.stderr
    # (uv also writes a .gitignore there; the release's dist/* globs never match it.)
    assert sorted(p.name for p in (tmp_path / "dist").iterdir() if not p.name.startswith(".")) == [
        f"mlci-{__version__}-py3-none-any.whl",
        f"mlci-{__version__}.tar.gz",
    ]
    assert (
        f"check_dist: ok: mlci-{__version__}-py3-none-any.whl and mlci-{__version__}.tar.gz (mlci {__version__}; "
        in (done.stdout)
    )


def test_check_dist_refuses_a_tag_that_is_not_the_package_version(tmp_path: Path) -> None:
    done = check_dist(tmp_path / "dist", MLCI_EXPECTED_VERSION="9.9.9")
    assert done.returncode == 1
    assert f"check_dist: the wheel is mlci {__version__} but 9.9.9 was expected" in done.stderr


def test_check_dist_refuses_a_dist_directory_with_old_files(tmp_path: Path) -> None:
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "mlci-0.0.1-py3-none-any.whl").write_text("old")
    done = check_dist(tmp_path / "dist")
    assert done.returncode == 2
    assert done.stderr.strip() == f"check_dist: {tmp_path / 'dist'} is not empty; remove it or pass an empty directory"


def _tag_check(repo: Path, tag: str, sha: str) -> tuple[int, str, str]:
    """Run the release's tag-check step, as rendered in release.yml, against a real git repo."""
    step = next(s for s in yaml.safe_load(RELEASE.read_text())["jobs"]["build"]["steps"] if s.get("id") == "tag")
    output = repo / "github-output"
    output.write_text("")
    done = subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        cwd=repo,
        env={**os.environ, "TAG": tag, "GITHUB_SHA": sha, "GITHUB_OUTPUT": str(output)},
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, output.read_text(), done.stdout


def test_release_tag_check_refuses_a_tag_off_main_and_never_moves_the_major_tag_back(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    git("init", "-q", "-b", "main")
    git("commit", "-q", "--allow-empty", "-m", "one")
    old = git("rev-parse", "HEAD")
    git("tag", "v0.3.1")
    git("commit", "-q", "--allow-empty", "-m", "two")
    new = git("rev-parse", "HEAD")
    git("tag", "v0.4.0")
    git("update-ref", "refs/remotes/origin/main", new)
    assert _tag_check(tmp_path, "v0.4.0", new)[:2] == (0, "newest-of-major=true\n")
    assert _tag_check(tmp_path, "v0.3.1", old)[:2] == (0, "newest-of-major=false\n")  # a backport

    git("checkout", "-q", "-b", "side", old)
    git("commit", "-q", "--allow-empty", "-m", "off main")
    side = git("rev-parse", "HEAD")
    git("tag", "v0.4.1")
    code, _, out = _tag_check(tmp_path, "v0.4.1", side)
    assert code == 1 and "v0.4.1 is not on main" in out
