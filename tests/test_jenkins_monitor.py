"""The monitor pipeline's Jenkinsfile (monitor.schedule) run by the Groovy stub
(tests/jenkins_stub.py): what its conditions decide, build by build.

- A timer build runs the Monitor stage first; its outputs file, written by mlci's real Jenkins
  runtime adapter, is read back with readProperties. With retrain=true every later stage runs
  (production approved at its input); the monitor's JUnit failures (the violated signal) are
  published without marking the build unstable, and its reports are archived. With
  retrain=false every later stage is skipped by its `when`, and the build succeeds.
- A manual build that sets MLCI_RUN_MONITOR is a monitor build; one that does not runs cd.
- A push to the default branch skips the Monitor stage and runs cd exactly as before.

Stand-ins: the `mlci <stage>` steps and the install step are tests/jenkins/standin_stage.py
(the real `mlci monitor` is not on this branch; every other stage's real run on this host is
test_jenkins_run.py's, with the same stage scripts, which parse-back checks by text). The
registry scripts are the real ones. Four JVMs, a few seconds each.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from jenkins_stub import execute

sys.path.insert(0, str(REPO / "scripts"))
from update_golden import render_monitor_files

pytestmark = pytest.mark.jenkins

CHECKS = ["Checks/Lint", "Checks/Unit tests", "Checks/Data tests"]
LATER = ["Checks", *CHECKS, "CI gate", "Train", "Register", "Deploy to staging", "Deploy to production"]
JOBS = ["lint", "unit-test", "data-test", "train", "register", "deploy-staging", "deploy-production"]
STANDIN = REPO / "tests" / "jenkins" / "standin_stage.py"
# Every stage's script definition in the Jenkinsfile (def MLCI_<STAGE> = '''...'''), but the
# registry's, which stay real.
_DEFINITION = re.compile(r"^def (MLCI_[A-Z_]+) = '''.*?'''$", re.MULTILINE | re.DOTALL)


def _stand_in(match: re.Match[str]) -> str:
    name = match.group(1)
    if name.startswith("MLCI_REGISTRY_"):
        return match.group(0)
    if name == "MLCI_SETUP":
        return f"def {name} = '''#!/bin/bash\ntrue\n'''"
    return f"def {name} = '''#!/bin/bash\nset -euo pipefail\n\"$MLCI_TEST_PYTHON\" \"$MLCI_TEST_STANDIN\"\n'''"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository holding the Jenkinsfile mlci renders for a local project with the monitor
    scheduled, its stage steps replaced by the stand-in."""
    root = tmp_path_factory.mktemp("jenkins-monitor")
    files = render_monitor_files("jenkins", ("local", "vendored", "no-retrain"), root / "render")
    text = files["Jenkinsfile"].decode()
    standin, count = _DEFINITION.subn(_stand_in, text)
    assert count >= 9 and "readProperties" in standin
    repo = root / "repo"
    repo.mkdir()
    (repo / "Jenkinsfile").write_text(standin, encoding="utf-8")
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@invalid", "commit", "-qm", "x"],
    ):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    return repo


def run(project: Path, tmp: Path, cause: str, retrain: str, params: dict[str, str] | None = None) -> dict[str, Any]:
    ran = tmp / "ran.txt"
    ran.parent.mkdir(parents=True, exist_ok=True)
    ran.write_text("")
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "BRANCH_NAME": "main",
        "JOB_NAME": "model/main",
        "MLCI_TEST_PYTHON": sys.executable,
        "MLCI_TEST_STANDIN": str(STANDIN),
        "MLCI_TEST_RETRAIN": retrain,
        "MLCI_TEST_RAN": str(ran),
    }
    result = execute(project / "Jenkinsfile", project, tmp, env=env, cause=cause, params=params, approver="alice")
    assert result["exit_code"] == 0, result["errors"]
    result["ran"] = ran.read_text().split()
    return result


def found(result: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {s["path"]: (s["status"], s["skipped_by"]) for s in result["stages"]}


def explain(result: dict[str, Any]) -> str:
    return Path(result["log"]).read_text(encoding="utf-8")[-6000:]


def test_a_timer_build_retrains_when_the_monitor_decides_to(project: Path, tmp_path: Path) -> None:
    result = run(project, tmp_path, "TimerTrigger", "true")
    stages = found(result)
    assert {p: stages[p][0] for p in ["Registry", "Monitor", *LATER]} == dict.fromkeys(
        ["Registry", "Monitor", *LATER], "SUCCESS"
    ), explain(result)
    assert result["ran"] == ["monitor", *JOBS]
    assert [i["stage"] for i in result["inputs"]] == ["Deploy to production"]
    # The violated signal is published, and the build is not marked unstable for it.
    monitor = next(r for r in result["junit"] if r["stage"] == "Monitor")
    assert (monitor["files"], monitor["failures"]) == ([".mlci/out/monitor.xml"], 1)
    assert result["result"] == "SUCCESS", explain(result)
    archive = Path(result["log"]).parent / "archive"
    assert (archive / ".mlci" / "monitor" / "decision.json").is_file()
    assert (archive / ".mlci" / "monitor" / "report.html").is_file()
    assert (archive / ".mlci" / "out" / "monitor.xml").is_file()


def test_a_timer_build_that_holds_skips_every_later_stage_and_succeeds(project: Path, tmp_path: Path) -> None:
    result = run(project, tmp_path, "TimerTrigger", "false")
    stages = found(result)
    assert stages["Monitor"] == ("SUCCESS", None), explain(result)
    assert {p: stages[p] for p in LATER} == dict.fromkeys(LATER, ("SKIPPED", "when")), explain(result)
    assert result["ran"] == ["monitor"] and result["inputs"] == []
    assert result["result"] == "SUCCESS"
    archive = Path(result["log"]).parent / "archive"
    assert (archive / ".mlci" / "monitor" / "decision.json").is_file()  # kept whatever the verdict


def test_a_manual_build_runs_the_monitor_only_when_asked(project: Path, tmp_path: Path) -> None:
    asked = run(project, tmp_path / "asked", "UserIdCause", "false", params={"MLCI_RUN_MONITOR": "true"})
    assert asked["ran"] == ["monitor"] and asked["result"] == "SUCCESS", explain(asked)
    assert {p: found(asked)[p] for p in LATER} == dict.fromkeys(LATER, ("SKIPPED", "when"))
    # Without the parameter a manual build is cd's: no monitor, every stage (retrain is unread).
    plain = run(project, tmp_path / "plain", "UserIdCause", "false")
    assert found(plain)["Monitor"] == ("SKIPPED", "when")
    assert plain["ran"] == JOBS and plain["result"] == "SUCCESS", explain(plain)


def test_a_push_runs_cd_as_before(project: Path, tmp_path: Path) -> None:
    result = run(project, tmp_path, "BranchEventCause", "false")
    stages = found(result)
    assert stages["Monitor"] == ("SKIPPED", "when")
    assert {p: stages[p][0] for p in ["Registry", *LATER]} == dict.fromkeys(["Registry", *LATER], "SUCCESS"), explain(
        result
    )
    assert result["ran"] == JOBS and result["result"] == "SUCCESS"
