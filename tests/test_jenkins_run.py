"""The generated Jenkinsfile validated and executed by the Groovy stub (tests/jenkins_stub.py),
the Jenkins analogue of test_act.py and test_azure_run.py: every file `mlci new --provider
jenkins` and `mlci render` write, for every option combination and both forms (declarative
stages, or the shared library's `mlciPipeline`), passes the Declarative rules; a fresh project's
builds run on this host, their sh steps for real, each stage on a fresh workspace.

- A pull request with a seeded fault fails exactly the check that finds it; the gate and every
  delivery stage do not run. The library form runs the same stages, with the same results, the
  same shell scripts and the same environments.
- Two builds of the default branch deliver: the first trains, registers and deploys version 1
  (the store carried between stages by stash/unstash, the hand-overs read from the outputs
  files, production approved at its `input`), and archives the registry; the second, in the
  library form, starts from that registry and promotes version 2.

Stand-ins (the stub's): every agent is this host with a fresh workspace, `checkout scm` clones
the project's repository, the stash and artifact stores are folders. The agent kept a warm uv
cache, so installs take no downloads. What this does not prove (a controller, plugins, agents,
the credential store, the sandbox) is in docs/jenkins.md.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, run_cli
from jenkins_stub import execute, stage, validate
from provider_kit import COMBOS
from seeded_faults import seed_fault
from update_golden import combo_answers, config_text

from mlci import templates

pytestmark = pytest.mark.jenkins

CHECKS = ["Checks/Lint", "Checks/Unit tests", "Checks/Data tests"]
DELIVERY = ["Train", "Register", "Deploy to staging", "Deploy to production"]
CHECK_OF = {"lint": "Checks/Lint", "unit-test": "Checks/Unit tests", "data-test": "Checks/Data tests"}


def uv_cache_dir() -> Path:
    done = subprocess.run([sys.executable, "-m", "uv", "cache", "dir"], capture_output=True, text=True, check=True)
    return Path(done.stdout.strip())


def git(project: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(project), *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def scaffold(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fresh project per module; each build runs a copy of it."""
    root = tmp_path_factory.mktemp("jenkins-run")
    argv = ["new", "jk-model", "--defaults", "--output-dir", str(root), "--provider", "jenkins"]
    assert run_cli(*argv, "--data", f"mlci_install={REPO}") == 0
    return root / "jk-model"


def copy_of(scaffold: Path, tmp_path: Path, *, faults: tuple[str, ...] = (), library: bool = False) -> Path:
    """A copy of the project with `faults` seeded and (library) the library form rendered,
    committed: `checkout scm` builds the repository's HEAD."""
    project = tmp_path / "jk-model"
    shutil.copytree(scaffold, project, symlinks=True)
    for fault in faults:
        seed_fault(project, "jk_model", fault)
    if library:
        config = project / "mlci.yaml"
        config.write_text(config.read_text().replace("\nci:\n", "\nci:\n  jenkins:\n    library: true\n", 1))
        assert run_cli("render", cwd=project) == 0
    git(project, "add", "-A")
    git(project, "-c", "user.name=t", "-c", "user.email=t@invalid", "commit", "-q", "--allow-empty", "-m", "change")
    return project


def agent_env(branch: str, change_id: str | None = None) -> dict[str, str]:
    # The agent's Python (python3.11) and a uv of the pinned version on PATH, its warm uv cache,
    # pinned installs as in CI. An agent sets no PYTHONDONTWRITEBYTECODE.
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "UV_CACHE_DIR": str(uv_cache_dir()),
        "UV_CONSTRAINT": str(REPO / "requirements" / "constraints.txt"),
        "BRANCH_NAME": branch,
        "JOB_NAME": f"jk-model/{branch}",
        "JENKINS_URL": "https://jenkins.example/",
    }
    if change_id is not None:
        env |= {"CHANGE_ID": change_id, "CHANGE_TARGET": "main"}
    return env


def build(project: Path, tmp: Path, env: dict[str, str], cause: str, store: Path | None = None) -> dict[str, Any]:
    result = execute(project / "Jenkinsfile", project, tmp, env=env, cause=cause, store=store, approver="alice")
    assert result["exit_code"] == 0 and not result["errors"], result["errors"]
    return result


def statuses(result: dict[str, Any]) -> dict[str, str]:
    return {s["path"]: s["status"] for s in result["stages"]}


def explain(result: dict[str, Any]) -> str:
    return str(result.get("log", ""))[-6000:]


def test_every_rendered_jenkins_file_passes_the_declarative_rules(tmp_path: Path) -> None:
    files: list[Path] = []
    for combo in COMBOS:
        for library in (False, True):
            answers = combo_answers("jenkins", combo)
            text = config_text(answers)
            if library:
                text = text.replace("\nci:\n", "\nci:\n  jenkins:\n    library: true\n", 1)
            folder = tmp_path / f"{'-'.join(combo)}-{library}"
            for name, data in templates.render_ci(text, answers, folder).items():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(data)
            files += [folder / "Jenkinsfile", folder / "Jenkinsfile.upgrade"]
    library_dir = tmp_path / "local-vendored-retrain-False" / ".jenkins"
    results = validate(files, libraries={"mlci": library_dir})
    assert [(r["file"], r["syntax_error"], r["errors"]) for r in results if not r["ok"]] == []
    # The declarative form's stages, as the stub read them.
    first = results[0]
    assert [s["path"] for s in first["stages"]][:5] == ["Registry", "Checks", *CHECKS]


def test_pull_requests_fail_exactly_the_check_that_finds_a_fault(scaffold: Path, tmp_path: Path) -> None:
    env = agent_env("PR-7", change_id="7")
    expected_skipped = {path: "SKIPPED" for path in ["Registry", "CI gate", *DELIVERY]}
    runs = {}
    for name, faults, library in (("lint", ("lint",), False), ("both", ("unit-test", "data-test"), False)):
        project = copy_of(scaffold, tmp_path / name, faults=faults, library=library)
        runs[name] = build(project, tmp_path / name / "build", env, "BranchEventCause")
    for name, faults in (("lint", ("lint",)), ("both", ("unit-test", "data-test"))):
        result = runs[name]
        failed = {CHECK_OF[f] for f in faults}
        found = statuses(result)
        assert {p: found[p] for p in CHECKS} == {p: "FAILURE" if p in failed else "SUCCESS" for p in CHECKS}, explain(
            result
        )
        assert {p: found[p] for p in expected_skipped} == expected_skipped, explain(result)
        assert result["result"] == "FAILURE"
    # The failing unit test is in its JUnit report, and the data check's too.
    reports = {r["file"].rsplit("/", 1)[-1]: r for r in runs["both"]["junit"]}
    assert reports["junit.xml"]["failures"] >= 1 and reports["data-test.xml"]["failures"] >= 1


def test_the_default_branch_delivers_and_keeps_its_registry_for_the_next_build(scaffold: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    env = agent_env("main")
    first = build(copy_of(scaffold, tmp_path / "first"), tmp_path / "first" / "build", env, "BranchEventCause", store)
    assert statuses(first) == dict.fromkeys(["Registry", "Checks", *CHECKS, "CI gate", *DELIVERY], "SUCCESS"), (
        explain(first)
    )
    assert first["result"] == "SUCCESS"
    assert [(i["stage"], i["submitter"], i["answered_by"]) for i in first["inputs"]] == [
        ("Deploy to production", "mlci-approvers", "alice")
    ]
    archive = store / "builds" / str(first["build_number"]) / "archive"
    outputs = (archive / ".mlci" / "out" / "jenkins" / "deploy-production.properties").read_text()
    assert "model-version=1\n" in outputs and "result=passed\n" in outputs
    assert (archive / "mlci-registry" / "key").read_text().strip() == f"{first['build_number']}-deploy-production"
    # The second build, in the library form: the same stages, from the registry the first kept.
    project = copy_of(scaffold, tmp_path / "second", library=True)
    second = build(project, tmp_path / "second" / "build", env, "BranchEventCause", store)
    assert statuses(second) == statuses(first), explain(second)
    assert "Registry: the local MLflow store kept by an earlier build" in stage(second, "Registry")["log"]
    archive = store / "builds" / str(second["build_number"]) / "archive"
    outputs = (archive / ".mlci" / "out" / "jenkins" / "deploy-production.properties").read_text()
    assert "model-version=2\n" in outputs, explain(second)
