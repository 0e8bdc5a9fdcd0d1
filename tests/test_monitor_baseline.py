"""The monitor's baseline: built by `mlci register` from the training and holdout data, logged on
the run, tagged on the version, read back by version. A real scaffolded project, a real sqlite
MLflow store; a rejected or unchanged candidate logs no baseline."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import client_for, run_cli, scaffold, stage_json

from mlci.config import load_project
from mlci.contracts import drift
from mlci.errors import ConfigError
from mlci.monitoring import baseline as bl


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A scaffolded project trained and registered once (v1), shared by the module."""
    root = tmp_path_factory.mktemp("baseline")
    name = f"bl{os.getpid()}"
    assert scaffold(name, root) == 0
    project = root / name
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(project / "src")
    try:
        assert run_cli("train", "-C", str(project)) == 0
        assert run_cli("register", "-C", str(project)) == 0
        yield project
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def artifacts(client: Any, run_id: str) -> list[str]:
    return sorted(f.path for f in client.list_artifacts(run_id, "monitor"))


def test_register_logs_the_baseline_and_tags_the_version(registered: Path) -> None:
    project = load_project(registered)
    client = client_for(registered)
    name = project.config.model_name
    version = client.get_model_version(name, "1")
    assert version.tags[bl.BASELINE_TAG] == bl.BASELINE_ARTIFACT
    assert artifacts(client, version.run_id) == [bl.BASELINE_ARTIFACT]
    baseline = bl.load_for_version(client, name, "1")
    assert baseline is not None and baseline.run_id == version.run_id
    train = pd.read_csv(registered / "data" / "train.csv")
    holdout = pd.read_csv(registered / "data" / "holdout.csv")
    target = project.config.data.target
    assert baseline.target == target and baseline.task == "classification"
    assert baseline.rows == {"train": len(train), "holdout": len(holdout)}
    # Every feature of the training data, with the configured number of quantile bins.
    assert set(baseline.features) == set(train.columns) - {target}
    area = baseline.profile.columns["mean_area"]
    assert area.kind == "numeric" and len(area.edges) == project.config.monitor.drift.bins - 1
    assert sum(area.counts) == len(train) and area.edges == sorted(area.edges)
    # The counts are the training data's: recount them in pandas, bin i = [edges[i-1], edges[i]).
    which = np.searchsorted(np.asarray(area.edges, dtype=float), train["mean_area"].to_numpy(), side="right")
    assert np.bincount(which, minlength=len(area.edges) + 1).tolist() == area.counts
    # The prediction column is profiled on the holdout's predictions, one bin per class.
    prediction = baseline.profile.columns["prediction"]
    assert prediction.kind == "categorical" and [str(v) for v in prediction.values] == baseline.classes
    assert sum(prediction.counts) == len(holdout) and prediction.counts[-1] == 0
    # Holdout performance under Databricks' names; accuracy is the one register gated on.
    assert set(baseline.performance) >= {"accuracy_score", "precision", "recall", "f1_score", "roc_auc", "log_loss"}
    assert float(version.tags["mlci.metric.accuracy"]) == pytest.approx(
        baseline.performance["accuracy_score"], abs=1e-5
    )
    summary = baseline.summary["mean_area"]
    assert summary["count"] == len(train) and summary["avg"] == pytest.approx(train["mean_area"].mean())
    # A monotone calibration map per class, with at least 10 bins where the holdout allows.
    assert baseline.calibration is not None and set(baseline.calibration) == set(baseline.classes or [])
    for cal in baseline.calibration.values():
        assert cal.frequency == sorted(cal.frequency) and sum(cal.counts) == len(holdout)
        assert all(0.0 <= f <= 1.0 for f in cal.frequency)


def test_unchanged_and_rejected_candidates_log_no_baseline(registered: Path) -> None:
    project = load_project(registered)
    client = client_for(registered)
    name = project.config.model_name
    # Same code, data and params: nothing registered, nothing logged on the new run.
    assert run_cli("train", "-C", str(registered)) == 0
    assert run_cli("register", "-C", str(registered)) == 0
    unchanged_run = stage_json(registered, "register")["details"]["run_id"]
    assert stage_json(registered, "register")["details"]["unchanged"] is True
    assert artifacts(client, unchanged_run) == []
    # A gate no model meets: rejected, nothing logged.
    config = registered / "mlci.yaml"
    text = config.read_text()
    config.write_text(text.replace("C: 1.0", "C: 0.5").replace("- roc_auc >= 0.97", "- roc_auc >= 0.99999"))
    try:
        assert run_cli("train", "-C", str(registered)) == 0
        assert run_cli("register", "-C", str(registered)) == 1
        rejected_run = stage_json(registered, "train")["details"]["run_id"]
        assert client.get_run(rejected_run).data.tags["mlci.register"] == "rejected"
        assert artifacts(client, rejected_run) == []
    finally:
        config.write_text(text)
    assert [str(v.version) for v in client.search_model_versions(f"name = '{name}'")] == ["1"]


def test_a_version_without_the_tag_has_no_baseline(registered: Path) -> None:
    project = load_project(registered)
    client = client_for(registered)
    name = project.config.model_name
    run_id = client.get_model_version(name, "1").run_id
    client.delete_model_version_tag(name, "1", bl.BASELINE_TAG)
    try:
        assert bl.load_for_version(client, name, "1") is None
    finally:
        client.set_model_version_tag(name, "1", bl.BASELINE_TAG, bl.BASELINE_ARTIFACT)
    assert bl.load_for_version(client, name, "1") is not None
    assert run_id


def test_a_malformed_baseline_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"models:/m/2 monitor/baseline.json: not a valid mlci monitor baseline"):
        bl.Baseline.from_text(json.dumps({"mlci_baseline": 99}), "models:/m/2 monitor/baseline.json")
    with pytest.raises(ConfigError, match="has 2 counts for 3 bins"):
        text = json.dumps(
            {
                "mlci_baseline": 1,
                "run_id": "r",
                "task": "regression",
                "target": "y",
                "features": {},
                "classes": None,
                "performance": {},
                "rows": {"train": 1, "holdout": 1},
                "profile": {
                    "mlci_profile": 1,
                    "source": "",
                    "rows": 1,
                    "columns": {
                        "x": {"kind": "numeric", "type": "float", "nulls": 0, "edges": [1, 2], "counts": [1, 0]}
                    },
                },
            }
        )
        bl.Baseline.from_text(text, "b.json")


def test_isotonic_pools_adjacent_violators() -> None:
    # 0.5 then 0.25 violate: pooled to 3/8; an empty bin joins the block before it.
    assert bl.isotonic([1, 2, 1, 0, 4], [4, 4, 4, 0, 4]) == [0.25, 0.375, 0.375, 0.375, 1.0]
    assert bl.isotonic([0, 0], [0, 0]) == [0.0, 0.0]


def test_the_training_data_against_its_own_baseline_drifts_by_zero() -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x": rng.normal(size=500), "c": rng.choice(["a", "b"], 500), "k": rng.integers(0, 3, 500)})
    profile, summary = bl.profile_frame(frame, 10)
    again, _ = bl.profile_frame(frame, 10)
    for name, col in profile.columns.items():
        assert drift.psi(col.counts, again.columns[name].counts) == 0.0
    assert profile.columns["k"].kind == "categorical" and profile.columns["x"].kind == "numeric"
    assert summary["c"]["distinct_count"] == 2 and summary["x"]["data_type"] == "double"


def test_a_version_deleted_from_the_registry_has_no_baseline_and_says_so(
    registered: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its logged rows are still profiled: one warning line, not an infrastructure error."""
    name = load_project(registered).config.model_name
    assert bl.load_for_version(client_for(registered), name, "999") is None
    assert capsys.readouterr().err == (
        f"monitor: models:/{name}/999 is not in the registry (deleted?); its rows are profiled without a baseline\n"
    )
