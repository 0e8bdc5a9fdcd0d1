"""The generated Jenkinsfile validated and executed by the Groovy stub (tests/jenkins_stub.py),
the Jenkins analogue of test_act.py and test_azure_run.py: every file `mlci new --provider
jenkins` and `mlci render` write, for every option combination and both forms (declarative
stages, or the shared library's `mlciPipeline`), passes the Declarative rules; a fresh project's
builds run on this host, their sh steps for real, each stage on a fresh workspace.

- A seeded fault fails exactly the check that finds it; the gate and every delivery stage do
  not run, on a pull request and on the default branch. The library form runs the same steps
  with the same shell scripts.
- Two builds of the default branch deliver: the first trains, registers and deploys version 1
  (the store carried between stages by stash/unstash, the hand-overs read from the outputs
  files, production approved at its `input`), and archives the registry; the second, in the
  library form, runs the same steps from that registry (its unchanged model registers nothing
  new) and stops at production's `input`, which is refused.

Stand-ins (the stub's): every agent is this host with a fresh workspace, `checkout scm` clones
the project's repository, the stash and artifact stores are folders. The agent kept a warm uv
cache, so installs take no downloads. What this does not prove (a controller, plugins, agents,
the credential store, the sandbox) is in docs/jenkins.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, run_cli
from jenkins_stub import execute, validate
from provider_kit import COMBOS
from seeded_faults import seed_fault
from update_golden import combo_answers, config_text

from mlci import templates

pytestmark = pytest.mark.jenkins

CHECKS = ["Checks/Lint", "Checks/Unit tests", "Checks/Data tests"]
DELIVERY = ["Train", "Register", "Deploy to staging", "Deploy to production"]
CONSTRAINTS = REPO / "requirements" / "constraints.txt"
CHECK_OF = {"lint": "Checks/Lint", "unit-test": "Checks/Unit tests", "data-test": "Checks/Data tests"}


def uv_cache_dir() -> Path:
    done = subprocess.run([sys.executable, "-m", "uv", "cache", "dir"], capture_output=True, text=True, check=True)
    return Path(done.stdout.strip())


def git(project: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(project), *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def scaffold(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fresh project per module, installing this working tree's mlci as a wheel built once
    (not rebuilt by every stage); each build runs a copy of it."""
    root = tmp_path_factory.mktemp("jenkins-run")
    wheels = root / "dist"
    subprocess.run(
        [sys.executable, "-m", "uv", "build", "--quiet", "--wheel", "--out-dir", str(wheels), str(REPO)],
        check=True,
        capture_output=True,
        env={**os.environ, "UV_CACHE_DIR": str(uv_cache_dir())},
    )
    (wheel,) = wheels.glob("mlci-*.whl")
    argv = ["new", "jk-model", "--defaults", "--output-dir", str(root), "--provider", "jenkins"]
    assert run_cli(*argv, "--data", f"mlci_install={wheel}") == 0
    project = root / "jk-model"
    # The agents install offline (agent_env): fill the uv cache with everything a stage installs
    # once, online, so the builds do not depend on what earlier tests happened to install.
    uv = [sys.executable, "-m", "uv"]
    env = {**os.environ, "UV_CACHE_DIR": str(uv_cache_dir()), "UV_CONSTRAINT": str(CONSTRAINTS)}
    subprocess.run([*uv, "venv", "--quiet", "--python", sys.executable, str(root / "warm")], check=True, env=env)
    install = [*uv, "pip", "install", "--quiet", "--python", str(root / "warm" / "bin" / "python")]
    subprocess.run([*install, str(wheel), "-e", str(project)], check=True, env=env, capture_output=True)
    return project


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
    # pinned installs as in CI, and this machine's certificates and package index settings (an
    # agent's own environment). An agent sets no PYTHONDONTWRITEBYTECODE.
    own = ("SSL_", "PIP_", "UV_", "REQUESTS_CA", "CURL_CA")
    env = {k: v for k, v in os.environ.items() if k.startswith(own) or k.lower().endswith("_proxy")}
    # Its uv cache holds every package (the suite's own install put them there): installs need
    # no index, so a build's result never depends on the network.
    env |= {
        "UV_OFFLINE": "1",
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "UV_CACHE_DIR": str(uv_cache_dir()),
        "UV_CONSTRAINT": str(CONSTRAINTS),
        "BRANCH_NAME": branch,
        "JOB_NAME": f"jk-model/{branch}",
        "JENKINS_URL": "https://jenkins.example/",
    }
    if change_id is not None:
        env |= {"CHANGE_ID": change_id, "CHANGE_TARGET": "main"}
    return env


def build(
    project: Path, tmp: Path, env: dict[str, str], cause: str, store: Path | None = None, answer: str = "approve"
) -> dict[str, Any]:
    # The library form loads .jenkins/ of the commit being built (its legacySCM libraryPath).
    libraries = {"mlci": project / ".jenkins"}
    result = execute(
        project / "Jenkinsfile",
        project,
        tmp,
        env=env,
        cause=cause,
        store=store,
        answer=answer,
        approver="alice",
        libraries=libraries,
    )
    assert result["exit_code"] == 0, result["errors"]
    return result


def statuses(result: dict[str, Any]) -> dict[str, str]:
    return {s["path"]: s["status"] for s in result["stages"]}


def log_of(result: dict[str, Any]) -> str:
    return Path(result["log"]).read_text(encoding="utf-8")


def explain(result: dict[str, Any]) -> str:
    return log_of(result)[-6000:]


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


def steps_run(result: dict[str, Any]) -> dict[str, list[tuple[str, str | None, str | None]]]:
    """Each stage's steps that act, (step, label, script) in order: not the wrappers (mlciStage,
    withEnv, script) and not the look-up of the newest kept registry, whose steps depend on how
    many builds came before."""
    wrappers = {"mlciStage", "withEnv", "withCredentials", "script", "dir", "fileExists", "copyArtifacts"}
    return {
        s["path"]: [(st["step"], st.get("label"), st.get("script")) for st in s["steps"] if st["step"] not in wrappers]
        for s in result["stages"]
    }


def test_a_fault_fails_exactly_the_check_that_finds_it_and_nothing_after_it_runs(
    scaffold: Path, tmp_path: Path
) -> None:
    runs = {}
    # A pull request (delivery is not for it anyway), and a build of the default branch, where
    # the failed checks are what stops the gate and every delivery stage (in the library form).
    for name, faults, branch, library in (
        ("pull-request", ("lint",), "PR-7", False),
        ("main", ("unit-test", "data-test"), "main", True),
    ):
        env = agent_env(branch, change_id="7" if branch == "PR-7" else None)
        project = copy_of(scaffold, tmp_path / name, faults=faults, library=library)
        result = build(project, tmp_path / name / "build", env, "BranchEventCause")
        failed = {CHECK_OF[f] for f in faults}
        found = {s["path"]: (s["status"], s["skipped_by"]) for s in result["stages"]}
        assert {p: found[p][0] for p in CHECKS} == {p: "FAILURE" if p in failed else "SUCCESS" for p in CHECKS}, (
            explain(result)
        )
        # As in Jenkins, a stage after a failed one is skipped for that failure, its `when` unread.
        later = ["CI gate", *DELIVERY]
        assert {p: found[p] for p in later} == dict.fromkeys(later, ("SKIPPED", "failure")), explain(result)
        assert found["Registry"][0] == ("SKIPPED" if branch == "PR-7" else "SUCCESS")
        assert result["result"] == "FAILURE"
        runs[name] = result
    # The library form ran the same check steps, scripts and all.
    checks = {path: steps for path, steps in steps_run(runs["pull-request"]).items() if path in CHECKS}
    assert {path: steps for path, steps in steps_run(runs["main"]).items() if path in CHECKS} == checks
    # The failing unit test and the data check's violations are in their JUnit reports.
    reports = {r["stage"]: r for r in runs["main"]["junit"]}
    assert reports["Checks/Unit tests"]["files"] == [".mlci/out/junit.xml"]
    assert reports["Checks/Unit tests"]["failures"] == 1
    assert reports["Checks/Data tests"]["files"] == [".mlci/out/data-test.xml"]
    assert reports["Checks/Data tests"]["failures"] >= 1


def properties(archive: Path, job: str) -> dict[str, str]:
    lines = (archive / ".mlci" / "out" / "jenkins" / f"{job}.properties").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_the_default_branch_delivers_and_keeps_its_registry_for_the_next_build(scaffold: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    env = agent_env("main")
    first = build(copy_of(scaffold, tmp_path / "first"), tmp_path / "first" / "build", env, "BranchEventCause", store)
    assert statuses(first) == dict.fromkeys(["Registry", "Checks", *CHECKS, "CI gate", *DELIVERY], "SUCCESS"), explain(
        first
    )
    assert first["result"] == "SUCCESS"
    assert [(i["stage"], i["submitter"], i["answer"], i["approver"]) for i in first["inputs"]] == [
        ("Deploy to production", "mlci-approvers", "approve", "alice")
    ]
    archive = store / "builds" / str(first["build_number"]) / "archive"
    run_id = properties(archive, "train")["run-id"]
    assert properties(archive, "register")["model-version"] == "1"
    assert properties(archive, "deploy-production")["model-version"] == "1"
    # register scored the run train handed over (its outputs file, unstashed).
    assert f"register: scoring run {run_id} " in log_of(first), explain(first)
    assert (archive / "mlci-registry" / "key").read_text().strip() == f"{first['build_number']}-deploy-production"
    # The second build, in the library form: the same steps, from the registry the first kept;
    # its production deployment is not approved, so production keeps serving version 1.
    project = copy_of(scaffold, tmp_path / "second", library=True)
    second = build(project, tmp_path / "second" / "build", env, "BranchEventCause", store, answer="abort")
    assert statuses(second) == {**statuses(first), "Deploy to production": "ABORTED"}, explain(second)
    assert second["result"] == "ABORTED"
    ran = {path: steps for path, steps in steps_run(first).items() if path != "Deploy to production"}
    assert {path: steps for path, steps in steps_run(second).items() if path in ran} == ran
    kept = f"{first['build_number']}-deploy-production"
    assert f"Registry: the local MLflow store kept by an earlier build ({kept})" in log_of(second)
    # register found the first build's version in the registry it restored: the same code, data
    # and parameters register nothing new (a fresh store would have registered a version 1).
    assert "unchanged: same code, data and params as v1; nothing registered" in log_of(second), explain(second)
    archive = store / "builds" / str(second["build_number"]) / "archive"
    assert properties(archive, "register")["model-version"] == "1", explain(second)
    assert properties(archive, "deploy-staging")["model-version"] == "1"
    assert (archive / "mlci-registry" / "key").read_text().strip() == f"{second['build_number']}-deploy-staging"
