"""Issue 14's 'done when', as a user does it: on a scaffolded project, `mlci run`, a few hundred
requests to `mlci serve`, a labels file, then `mlci monitor run && mlci monitor check` give a
decision, the metric tables and a report; a drifted batch of requests turns the decision to
retrain. Everything is real: the served model, its inference log, the baseline `mlci register`
stored with the version, DuckDB's tables.

The rule is the scaffold's default signals with the window guards scaled to the demo (one
window of a few hundred rows decides, no cooldown: the version was registered a minute ago).
Windows are days; `--now` is two days ahead, so the day the requests arrived in is closed
(a batch that straddles midnight UTC makes two closed windows, and the newest one still holds
the drifted rows, so the verdicts are the same).
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from conftest import free_port, run_cli, run_cli_process, scaffold

pytestmark = pytest.mark.slow

REQUESTS = 300
NOW = (datetime.now(timezone.utc) + timedelta(days=2)).replace(microsecond=0).isoformat()
MONITOR = """
monitor:
  granularity: 1 day
  retrain:
    evaluate_last_windows: 1
    min_violating_windows: 1
    min_rows_per_window: 200
    cooldown: 0h
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("monitor-e2e")
    assert scaffold("watched-model", root) == 0
    project = root / "watched-model"
    with (project / "mlci.yaml").open("a", encoding="utf-8") as config:
        config.write(MONITOR)
    assert run_cli("run", "-C", str(project)) == 0  # lint .. deploy to staging: the served version
    return project


def serve_and_send(project: Path, frames: list[pd.DataFrame]) -> list[str]:
    """Start `mlci serve`, POST each one-row frame with its own request id, stop it with Ctrl-C
    (the log is drained on the way out); the request ids, in order."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlci", "serve", "--port", str(port)],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ids: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, f"mlci serve ended early: {process.stderr.read() if process.stderr else ''}"
            if line.startswith("serving "):
                break
        url = f"http://127.0.0.1:{port}/invocations"
        for frame in frames:
            request_id = uuid.uuid4().hex
            body = json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False))})
            request = urllib.request.Request(
                url, data=body.encode(), headers={"Content-Type": "application/json", "X-Request-Id": request_id}
            )
            with urllib.request.urlopen(request, timeout=30) as answer:
                assert answer.status == 200
                assert answer.headers["X-Request-Id"] == request_id
            ids.append(request_id)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return ids


def holdout(project: Path) -> tuple[pd.DataFrame, pd.Series]:
    frame = pd.read_csv(project / "data" / "holdout.csv")
    return frame.drop(columns=["malignant"]), frame["malignant"]


def rows(features: pd.DataFrame, count: int) -> list[pd.DataFrame]:
    return [features.iloc[[index % len(features)]] for index in range(count)]


def monitor(project: Path, *action: str) -> subprocess.CompletedProcess[str]:
    return run_cli_process("monitor", *action, "--now", NOW, cwd=project)


def decision(project: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((project / ".mlci" / "monitor" / "decision.json").read_text())
    return data


def test_served_requests_labels_and_the_monitor_give_a_hold_decision_tables_and_a_report(project: Path) -> None:
    features, truth = holdout(project)
    ids = serve_and_send(project, rows(features, REQUESTS))
    logged = duckdb.sql(
        f"SELECT request_id, model_id FROM read_parquet('{project}/.mlci/inference/**/*.parquet', "
        "hive_partitioning = true, union_by_name = true)"
    ).fetchall()
    assert sorted(r[0] for r in logged) == sorted(ids)  # each request logged exactly once
    assert {r[1] for r in logged} == {"watched_model@1"}
    labels = project / "data" / "labels"
    labels.mkdir(parents=True)
    with (labels / "labels.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["request_id", "label", "label_timestamp"])
        for index, request_id in enumerate(ids):
            writer.writerow([request_id, int(truth.iloc[index % len(truth)]), NOW])

    computed = monitor(project, "run")
    assert computed.returncode == 0, computed.stderr
    checked = monitor(project, "check")
    assert checked.returncode == 0, checked.stderr
    made = decision(project)
    assert made["decision"] == "hold", made["reason"]
    assert made["model_id"] == "watched_model@1"
    signals = {s["name"]: s for s in made["signals"]}
    assert {"accuracy_score", "estimated_accuracy_score", "estimation_gap", "drifted_columns_share"} <= set(signals)
    assert all(s["evidence"] >= 1 and not s["fires"] for s in signals.values())

    out = project / ".mlci" / "monitor"
    profile = pd.read_parquet(out / "profile_metrics.parquet")
    table = profile[(profile["column_name"] == ":table") & profile["slice_key"].isna()]
    assert int(table["count"].sum()) == REQUESTS
    assert float(table["accuracy_score"].iloc[-1]) >= 0.9  # realised, from the labels file
    drift = pd.read_parquet(out / "drift_metrics.parquet")
    assert {"population_stability_index", "js_distance", "ks_test", "chi_squared_test"} <= set(drift.columns)
    performance = pd.read_parquet(out / "performance_metrics.parquet")
    assert float(performance["label_coverage"].iloc[-1]) == 1.0

    reported = monitor(project, "report")
    assert reported.returncode == 0, reported.stderr
    page = (out / "report.html").read_text()
    assert "hold" in page and "<script" not in page


def test_a_drifted_batch_of_requests_turns_the_decision_to_retrain(project: Path) -> None:
    features, _ = holdout(project)
    shifted = features * 3.0  # every feature far outside what the model was trained on
    serve_and_send(project, rows(shifted, REQUESTS))
    whole = monitor(project)  # no action: run, check and report
    assert whole.returncode == 0, whole.stderr
    made = decision(project)
    assert made["decision"] == "retrain", made["reason"]
    fired = {s["name"] for s in made["signals"] if s["fires"]}
    assert "drifted_columns_share" in fired
    record = json.loads((project / ".mlci" / "out" / "monitor.json").read_text())
    assert record["status"] == "passed" and record["details"]["decision"] == "retrain"
