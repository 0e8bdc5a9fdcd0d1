"""The generated Azure pipeline executed on this machine by the host runner
(tests/azure_pipelines/runner.py), the Azure analogue of test_act.py: a fresh project made by
`mlci new --provider azure`, whose setup template installs this working tree's mlci. A pull
request runs every check and the gate and delivers nothing; a seeded fault fails exactly the
job that checks for it and the gate; a push to the default branch trains, registers and
deploys to staging and production, the local store carried between the stages as pipeline
artifacts and the hand-overs flowing through output variables.

Stand-ins (the runner's): UsePythonVersion is this venv's Python, AzureCLI@2 runs its inline
script with bash (the local target never uses it), PublishTestResults/PublishCodeCoverageResults
parse the files, Cache@2 and artifacts are folders of the run's store. The agent is a
self-hosted one that kept the warm uv cache in its build directory, so installs take no
downloads. What none of this proves (the Azure service: approvals, service connections, the
workload identity token exchange, System.AccessToken, agent pools) is in docs/azure.md.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from azure_pipelines.runner import RunResult, run_pipeline
from conftest import REPO, run_cli
from seeded_faults import FAULTS, seed_fault

pytestmark = pytest.mark.azure

CHECK_JOBS = {"checks.lint", "checks.unit_test", "checks.data_test", "checks.gate"}
DELIVERY_JOBS = {"train.train", "register.register", "deploy_staging.deploy_staging"}
DELIVERY_JOBS |= {"deploy_production.deploy_production"}
FAULT_JOB = {"lint": "checks.lint", "unit-test": "checks.unit_test", "data-test": "checks.data_test"}
GATE_NAME = {"lint": "LINT", "unit-test": "UNIT_TEST", "data-test": "DATA_TEST"}
PULL_REQUEST = {"Build.Reason": "PullRequest", "Build.SourceBranch": "refs/pull/7/merge"}
PUSH = {"Build.Reason": "IndividualCI", "Build.SourceBranch": "refs/heads/main", "Build.BuildId": "41"}


def uv_cache_dir() -> Path:
    done = subprocess.run([sys.executable, "-m", "uv", "cache", "dir"], capture_output=True, text=True, check=True)
    return Path(done.stdout.strip())


@pytest.fixture(scope="module")
def scaffold(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fresh project per module; each test runs a copy of it."""
    root = tmp_path_factory.mktemp("azure-run")
    argv = ["new", "az-model", "--defaults", "--output-dir", str(root), "--provider", "azure"]
    assert run_cli(*argv, "--data", f"mlci_install={REPO}") == 0
    return root / "az-model"


@pytest.fixture
def agent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pinned installs, as in CI. An agent image sets no PYTHONDONTWRITEBYTECODE: with it, every
    # mlci process of a job would compile MLflow and scikit-learn anew (each job has a new venv).
    monkeypatch.setenv("UV_CONSTRAINT", str(REPO / "requirements" / "constraints.txt"))
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)


def run_copy(scaffold: Path, tmp_path: Path, variables: dict[str, str], faults: tuple[str, ...] = ()) -> RunResult:
    project = tmp_path / "az-model"
    shutil.copytree(scaffold, project, symlinks=True)
    for fault in faults:
        seed_fault(project, "az_model", fault)
    return run_pipeline(
        project,
        "azure-pipelines.yml",
        tmp_path / "agent",
        variables=variables,
        python_dir=Path(sys.executable).parent,
        kept_folders={".uv-cache": uv_cache_dir()},
    )


def job_lines(run: RunResult, job: str) -> str:
    return "\n".join(line for line in run.log.splitlines() if line.startswith(f"[{job}]"))


def assert_reports_parsed(run: RunResult, unit_failures: int = 0) -> None:
    """The PublishTestResults and PublishCodeCoverageResults stand-ins found and parsed the files."""
    unit, data = job_lines(run, "checks.unit_test"), job_lines(run, "checks.data_test")
    assert f"/.mlci/out/junit.xml ({unit_failures} failed)" in unit, run.explain("checks.unit_test")
    assert "/.mlci/out/coverage.xml']" in unit, run.explain("checks.unit_test")
    assert "published test results " in data and "/.mlci/out/data-test.xml (" in data, run.explain("checks.data_test")


def test_a_pull_request_runs_every_check_and_delivers_nothing(scaffold: Path, tmp_path: Path, agent_env: None) -> None:
    run = run_copy(scaffold, tmp_path, PULL_REQUEST)
    assert run.jobs == {**dict.fromkeys(CHECK_JOBS, "succeeded"), **dict.fromkeys(DELIVERY_JOBS, "skipped")}, (
        run.explain()
    )
    assert run.order == ["checks.lint", "checks.unit_test", "checks.data_test", "checks.gate"]
    assert "every job passed" in job_lines(run, "checks.gate"), run.explain("checks.gate")
    assert_reports_parsed(run)
    assert run.outputs["checks.unit_test"]["stage.result"] == "passed"
    assert "Stage train: condition and(succeeded(), in(variables['Build.Reason']" in run.log


# Every fault once, two runs: a check that fails and two at once; each failed job is one a
# fault was seeded for, and every other check passes.
FAULT_RUNS = [("lint",), ("unit-test", "data-test")]


@pytest.mark.parametrize("faults", FAULT_RUNS, ids=["+".join(f) for f in FAULT_RUNS])
def test_seeded_faults_fail_exactly_their_jobs_and_the_gate(
    scaffold: Path, tmp_path: Path, agent_env: None, faults: tuple[str, ...]
) -> None:
    assert {f for run in FAULT_RUNS for f in run} == set(FAULTS)
    run = run_copy(scaffold, tmp_path, PULL_REQUEST, faults)
    failed = {FAULT_JOB[fault] for fault in faults} | {"checks.gate"}
    expected = {job: "failed" if job in failed else "succeeded" for job in CHECK_JOBS}
    assert run.jobs == {**expected, **dict.fromkeys(DELIVERY_JOBS, "skipped")}, run.explain()
    gate_errors = [i.message for i in run.issues if i.job == "checks.gate" and i.type == "error"]
    names = " ".join(f"{GATE_NAME[fault]}: Failed" for fault in FAULTS if fault in faults)
    assert gate_errors == [f"CI gate: jobs did not pass: {names}"], run.explain("checks.gate")
    if "lint" in faults:  # the finding is annotated on its file and line
        found = [i for i in run.issues if i.job == "checks.lint" and i.type == "error"]
        assert [(i.properties.get("sourcepath"), i.properties.get("linenumber")) for i in found] == [
            ("src/az_model/helpers.py", "3")
        ], run.explain("checks.lint")
        assert_reports_parsed(run)
    else:  # a failing unit test still leaves its JUnit file to publish
        unit = job_lines(run, "checks.unit_test")
        assert "/.mlci/out/junit.xml (1 failed)" in unit, run.explain("checks.unit_test")


def kept_registry(store: Path, key: str) -> Path:
    """The folder the runner's Cache@2 saved under `key`."""
    saved = [p for p in (store / "caches").iterdir() if (p / "key").read_text() == key]
    assert len(saved) == 1, sorted((p / "key").read_text() for p in (store / "caches").iterdir())
    return saved[0] / "data"


def test_a_push_to_the_default_branch_delivers_with_the_state_and_hand_overs_flowing(
    scaffold: Path, tmp_path: Path, agent_env: None
) -> None:
    run = run_copy(scaffold, tmp_path, PUSH)
    assert run.jobs == dict.fromkeys(CHECK_JOBS | DELIVERY_JOBS, "succeeded"), run.explain()
    assert run.order[4:] == [
        "train.train",
        "register.register",
        "deploy_staging.deploy_staging",
        "deploy_production.deploy_production",
    ]
    run_id = run.outputs["train.train"]["stage.run-id"]
    # register took train's run id through stageDependencies, and scored that run.
    register = job_lines(run, "register.register")
    assert f"variable MLCI_HANDOVER_RUN_ID = '{run_id}'" in register, run.explain("register.register")
    assert f"register: scoring run {run_id} " in register, run.explain("register.register")
    assert run.outputs["register.register"]["stage.model-version"] == "1"
    staging = job_lines(run, "deploy_staging.deploy_staging")
    assert "variable MLCI_HANDOVER_VERSION = '1'" in staging, run.explain("deploy_staging.deploy_staging")
    production = run.outputs["deploy_production.deploy_production"]
    assert production["deploy_production.stage.model-version"] == "1"
    # The state travelled as pipeline artifacts, one per job that hands it on.
    store = tmp_path / "agent" / "store"
    artifacts = sorted(p.name for p in (store / "artifacts").iterdir())
    assert artifacts == ["mlci-state-deploy-staging", "mlci-state-register", "mlci-state-train"]
    # The registry production kept: version 1, trained by this run, with every alias on it.
    database = kept_registry(store, "mlci-registry|main|41|1|deploy-production") / "mlflow.db"
    with sqlite3.connect(database) as db:
        versions = db.execute("SELECT name, version, run_id FROM model_versions").fetchall()
        aliases = dict(db.execute("SELECT alias, version FROM registered_model_aliases").fetchall())
    assert versions == [("az_model", 1, run_id)]
    assert aliases == {"staging": 1, "production": 1, "champion": 1}
    assert os.path.isfile(store / "artifacts" / "mlci-state-register" / "out" / "register.json")
    assert_reports_parsed(run)
