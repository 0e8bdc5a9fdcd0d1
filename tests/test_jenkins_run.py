"""The generated Jenkinsfile validated and executed by the Groovy stub (tests/jenkins_stub.py),
the Jenkins analogue of test_act.py and test_azure_run.py: every file `mlci new --provider
jenkins` and `mlci render` write, for every option combination and both forms (declarative
stages, or the shared library's `mlciPipeline`), passes the Declarative rules; a fresh project's
builds run on this host, their sh steps for real, each stage on a fresh workspace.

- A pull request with a lint error fails exactly its check; nothing after it runs.
- A build of the default branch trains, registers and deploys version 1 (the store carried
  between stages by stash/unstash, the hand-overs read from the outputs files, production
  approved at its `input`) and archives the registry. The next build, in the library form with a
  failing test and a contract violation, finds that registry and hands it on, runs the same
  check steps with the same shell scripts, fails exactly those two checks and delivers nothing.
  (The registry scripts' save guard is tested on its own in test_jenkins.py.)

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
import tempfile
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
    # Every stage's extras (mlci[all]): each stage installs only its own.
    subprocess.run([*install, str(wheel), "mlci[all]", "-e", str(project)], check=True, env=env, capture_output=True)
    return project


def agent_caches() -> Path:
    """The agents' uv cache for branch builds, beside the one for change requests (setup.sh
    appends `-change-requests`): both links to the suite's warm cache, so either installs
    offline, while the log says which one a build used."""
    links = Path(tempfile.gettempdir()) / f"mlci-jenkins-agent-{os.getpid()}"
    links.mkdir(exist_ok=True)
    for name in ("uv", "uv-change-requests"):
        if not (links / name).exists():
            (links / name).symlink_to(uv_cache_dir(), target_is_directory=True)
    return links / "uv"


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
        "UV_CACHE_DIR": str(agent_caches()),
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


def test_a_pull_request_with_a_lint_error_fails_its_check_and_delivers_nothing(scaffold: Path, tmp_path: Path) -> None:
    project = copy_of(scaffold, tmp_path, faults=("lint",))
    result = build(project, tmp_path / "build", agent_env("PR-7", change_id="7"), "BranchEventCause")
    found = {s["path"]: (s["status"], s["skipped_by"]) for s in result["stages"]}
    assert {p: found[p][0] for p in CHECKS} == {"Checks/Lint": "FAILURE", **dict.fromkeys(CHECKS[1:], "SUCCESS")}, (
        explain(result)
    )
    # As in Jenkins, a stage after a failed one is skipped for that failure, its `when` unread;
    # the Registry stage, first, is not for pull requests.
    later = ["CI gate", *DELIVERY]
    assert {p: found[p] for p in later} == dict.fromkeys(later, ("SKIPPED", "failure")), explain(result)
    assert found["Registry"] == ("SKIPPED", "when")
    assert result["result"] == "FAILURE"
    assert "helpers.py:3:8: F401" in log_of(result), explain(result)
    # A change request's build downloads into a uv cache of its own (agents are shared).
    assert f"(uv cache {agent_caches()}-change-requests)" in log_of(result), explain(result)
    # Each check installed only its stage's extras: lint mlci's core alone.
    assert " [unit-test] in " in log_of(result) and " [data] in " in log_of(result), explain(result)


def properties(archive: Path, job: str) -> dict[str, str]:
    lines = (archive / ".mlci" / "out" / "jenkins" / f"{job}.properties").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_the_default_branch_delivers_and_the_next_build_starts_from_its_registry(
    scaffold: Path, tmp_path: Path
) -> None:
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
    assert f"(uv cache {agent_caches()})" in log_of(first) and "-change-requests" not in log_of(first)
    kept = f"{first['build_number']}-deploy-production"
    assert (archive / "mlci-registry" / "key").read_text().strip() == kept
    # The next build of the branch, in the library form, with a failing test and a contract
    # violation: its Registry stage finds what the first kept and hands it on at once; its checks
    # run the same steps as the first build's and fail exactly where the faults are; nothing
    # after them runs.
    project = copy_of(scaffold, tmp_path / "second", faults=("unit-test", "data-test"), library=True)
    second = build(project, tmp_path / "second" / "build", env, "BranchEventCause", store)
    found = {s["path"]: (s["status"], s["skipped_by"]) for s in second["stages"]}
    assert {p: found[p][0] for p in ["Registry", *CHECKS]} == {
        "Registry": "SUCCESS",
        "Checks/Lint": "SUCCESS",
        "Checks/Unit tests": "FAILURE",
        "Checks/Data tests": "FAILURE",
    }, explain(second)
    later = ["CI gate", *DELIVERY]
    assert {p: found[p] for p in later} == dict.fromkeys(later, ("SKIPPED", "failure")), explain(second)
    assert f"Registry: the local MLflow store kept by an earlier build ({kept})" in log_of(second)
    archive = store / "builds" / str(second["build_number"]) / "archive"
    assert (archive / "mlci-registry" / "key").read_text().strip() == kept  # carried forward
    checks = {path: steps for path, steps in steps_run(first).items() if path in CHECKS}
    assert {path: steps for path, steps in steps_run(second).items() if path in CHECKS} == checks
    # The failing unit test and the data check's violations are in their JUnit reports.
    reports = {r["stage"]: r for r in second["junit"]}
    assert reports["Checks/Unit tests"]["files"] == [".mlci/out/junit.xml"]
    assert reports["Checks/Unit tests"]["failures"] == 1
    assert reports["Checks/Data tests"]["files"] == [".mlci/out/data-test.xml"]
    assert reports["Checks/Data tests"]["failures"] >= 1
