"""`mlci monitor` as a stage (mlci/stages/monitor.py): the served version from a real MLflow
sqlite registry, its newest version's creation time as the last retrain, exit codes, one-line
errors, decision.json / JUnit / report written, and the `retrain` output on GitHub."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import MINIMAL_CONFIG, run_cli, stage_json
from monitor_fixture_tables import DAY, Tables, days

MODEL = "churn_model"  # MINIMAL_CONFIG's package: the model name
CONFIG = (
    MINIMAL_CONFIG
    + """\
monitor:
  retrain:
    signals:
      - accuracy_score >= 0.8
      - drifted_columns_share <= 0.5
    min_rows_per_window: 500
    cooldown: 1h
"""
)
# Five closed windows ending at today's midnight (the registry stamps versions with the wall clock).
TODAY = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
STARTS = days(TODAY - 5 * DAY, 5)
REASON = "no signal has 2 window(s) of at least 500 rows with a value"
# Two days after TODAY's midnight: past the 1h cooldown of versions the fixture registers
# whenever this module runs (the suite takes minutes), and a fixed distance from the windows,
# so `--since` keeps the same windows at any time of day.
LATER = (TODAY + 2 * DAY).isoformat()


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose registry serves churn_model v2 in staging (v1 is older), built once."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("monitored")
    (root / "mlci.yaml").write_text(CONFIG)
    (root / ".mlci").mkdir()
    store = f"sqlite:///{root / '.mlci' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    client.create_registered_model(MODEL)
    (root / "model").mkdir()
    for _ in range(2):
        version = client.create_model_version(MODEL, source=str(root / "model"))
    client.set_registered_model_alias(MODEL, "staging", version.version)
    return root


@pytest.fixture
def project(registered: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of the registered project per test (each writes its own tables and outputs)."""
    root = tmp_path / "project"
    shutil.copytree(registered, root)
    yield root


@pytest.fixture
def github(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    files = {"output": tmp_path / "github-output", "summary": tmp_path / "github-summary"}
    for path in files.values():
        path.write_text("")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(files["output"]))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(files["summary"]))
    return files


def tables(project: Path, *accuracy: float, rows: int = 1000, model_id: str = f"{MODEL}@2") -> None:
    built = Tables(model_id)
    for start, value in zip(STARTS[-len(accuracy) :], accuracy, strict=True):
        built.window(start, accuracy=value, rows=rows, psi={"x1": 0.05})
    built.write(project / ".mlci" / "monitor")


def outputs(github: dict[str, Path]) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in github["output"].read_text().splitlines() if "=" in line)
    return dict(pairs)


def decision(project: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((project / ".mlci" / "monitor" / "decision.json").read_text())
    return data


def test_retrain_is_exit_0_with_retrain_true_on_github(
    project: Path, github: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    tables(project, 0.9, 0.9, 0.9, 0.7, 0.6)
    assert run_cli("monitor", "check", "-C", str(project), "--now", LATER) == 0
    assert outputs(github) == {"result": "passed", "retrain": "true", "decision": "retrain"}
    made = decision(project)
    assert made["decision"] == "retrain" and made["model_id"] == f"{MODEL}@2"
    # The newest registered version's creation time is the last retrain.
    last = datetime.fromisoformat(made["last_retrain"])
    assert timedelta(0) <= datetime.now(timezone.utc) - last < timedelta(hours=1)
    summary = github["summary"].read_text()
    assert "### mlci monitor: passed" in summary and "| accuracy_score | >= 0.8 |" in summary
    suite = ET.parse(project / ".mlci" / "out" / "monitor.xml").getroot()
    assert suite.get("failures") == "2" and suite.get("tests") == "10"
    assert stage_json(project, "monitor")["details"]["decision"] == "retrain"
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("retrain: accuracy_score >= 0.8 violated")


def test_hold_is_exit_0_with_retrain_false_on_github(project: Path, github: dict[str, Path]) -> None:
    tables(project, 0.9, 0.9, 0.9, 0.9, 0.9)
    assert run_cli("monitor", "check", "-C", str(project), "--now", LATER) == 0
    assert outputs(github) == {"result": "passed", "retrain": "false", "decision": "hold"}
    assert decision(project)["retrain"] is False


def test_a_degradation_just_after_a_retrain_holds_for_the_cooldown(project: Path, github: dict[str, Path]) -> None:
    tables(project, 0.9, 0.9, 0.9, 0.7, 0.6)
    assert run_cli("monitor", "check", "-C", str(project)) == 0  # now: minutes after v2 was registered
    assert outputs(github)["retrain"] == "false"
    made = decision(project)
    assert made["decision"] == "hold" and "cooldown" in made["reason"] and made["cooldown_until"]


def test_insufficient_data_is_exit_1_with_every_file_and_output_written(
    project: Path, github: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    tables(project, 0.5, 0.5, 0.5, rows=100)
    assert run_cli("monitor", "check", "-C", str(project), "--now", LATER) == 1
    assert outputs(github) == {"result": "failed", "retrain": "false", "decision": "insufficient_data"}
    assert decision(project)["decision"] == "insufficient_data"
    suite = ET.parse(project / ".mlci" / "out" / "monitor.xml").getroot()
    assert suite.get("skipped") == "6"  # 3 windows x 2 signals: the rule's own cases, not an errored stand-in
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(f"monitor cannot decide: insufficient_data: {REASON} ({MODEL}@2)")


def test_the_previous_versions_windows_are_not_the_served_ones(project: Path, github: dict[str, Path]) -> None:
    tables(project, 0.5, 0.5, 0.5, 0.5, 0.5, model_id=f"{MODEL}@1")
    assert run_cli("monitor", "check", "-C", str(project), "--now", LATER) == 1
    assert outputs(github)["decision"] == "insufficient_data"


def test_check_without_tables_is_a_one_line_usage_error(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("monitor", "check", "-C", str(project), "--now", LATER) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no metric tables in" in err[0] and "run 'mlci monitor run' first" in err[0]
    assert not (project / ".mlci" / "monitor" / "decision.json").exists()


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--now", "yesterday", "--now: 'yesterday' is not an ISO 8601 time"),
        ("--since", "30 days", "--since: '30 days'"),
    ],
)
def test_bad_times_are_one_line_errors_and_clear_the_stale_report(
    project: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, expected: str
) -> None:
    stale = project / ".mlci" / "out" / "monitor.xml"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text('<testsuite tests="1"><testcase name="accuracy_score @ old"/></testsuite>')
    assert run_cli("monitor", "check", "-C", str(project), option, value) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]
    # The earlier run's passing report is gone; CI sees this run's error instead.
    case = ET.parse(stale).getroot().find("testcase")
    assert case is not None and case.get("name") == "monitor" and case.find("error") is not None


def test_report_alone_needs_no_registry_and_draws_the_last_decision(project: Path) -> None:
    tables(project, 0.9, 0.9, 0.9, 0.7, 0.6)
    assert run_cli("monitor", "check", "-C", str(project), "--now", LATER) == 0
    (project / ".mlci" / "mlflow.db").unlink()  # report reads the tables and decision.json only
    assert run_cli("monitor", "report", "-C", str(project), "--now", LATER) == 0
    page = (project / ".mlci" / "monitor" / "report.html").read_text()
    assert "Decision: retrain" in page and f"{MODEL}@2" in page
    assert not (project / ".mlci" / "mlflow.db").exists()


def test_since_keeps_only_the_recent_windows(project: Path, github: dict[str, Path]) -> None:
    tables(project, 0.5, 0.5, 0.5, 0.9, 0.9)  # the bad windows are the three oldest
    assert run_cli("monitor", "check", "-C", str(project), "--now", LATER, "--since", "4d") == 0
    accuracy = next(s for s in decision(project)["signals"] if s["name"] == "accuracy_score")
    assert len(accuracy["windows"]) == 2 and accuracy["violating"] == 0


def test_a_project_with_no_store_yet_is_told_to_run_first_and_gets_no_empty_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest import scaffold

    assert scaffold("unwatched", tmp_path) == 0
    project = tmp_path / "unwatched"
    assert run_cli("monitor", "-C", str(project)) == 2  # run (no traffic: empty tables), then check
    store = project / ".mlci" / "mlflow.db"
    assert capsys.readouterr().err == (
        f"mlci: error: no model to monitor: the MLflow store {store} does not exist yet; "
        "run 'mlci run' (or mlci train, register and deploy) first\n"
    )
    assert not store.exists()  # MLflow never got to create an empty one
