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
from mlci.templates import action_pins

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
        "build": {"contents": "read"},
        "publish": {"id-token": "write"},
        "github-release": {"contents": "write"},
    }
    assert jobs["publish"]["environment"] == "pypi"
    assert jobs["publish"]["needs"] == ["build"] and jobs["github-release"]["needs"] == ["publish"]
    runs = {job_id: [s.get("run", "") for s in job["steps"]] for job_id, job in jobs.items()}
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
