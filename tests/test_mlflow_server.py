"""train -> register -> deploy through a real `mlflow server` over HTTP (sqlite backend,
artifacts proxied by the server), as a team with a shared tracking server runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from mlci.config import load_project


def test_pipeline_against_tracking_server(new_project: Any, mlflow_server: str) -> None:
    from mlflow.tracking import MlflowClient

    project: Path = new_project()
    for stage in ("train", "register", "deploy"):
        assert run_cli(stage, "-C", str(project), "--tracking-uri", mlflow_server) == 0, stage
    out = project / ".mlci" / "out"
    train = json.loads((out / "train.json").read_text())["details"]
    register = json.loads((out / "register.json").read_text())["details"]
    deploy = json.loads((out / "deploy.json").read_text())["details"]
    assert train["tracking_uri"] == mlflow_server
    assert not (project / ".mlci" / "mlflow.db").exists()  # nothing went to the local store
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    run = client.get_run(train["run_id"])
    assert run.data.metrics["accuracy"] == pytest.approx(train["metrics"]["accuracy"])
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # stored by the server, not on this disk
    name = load_project(project).config.model_name
    # Over HTTP MLflow returns versions as strings, on sqlite as ints: mlci reports "1" either way.
    assert register["version"] == deploy["version"] == "1"
    model = client.get_registered_model(name)
    assert {alias: str(v) for alias, v in model.aliases.items()} == {"staging": "1"}
    version = client.get_model_version(name, "1")
    assert version.tags["mlci.gates"] == "passed"
    assert "mlci.deployed_at" in version.tags
    assert deploy["smoke_test"]["rows"] == 5
    assert register["registry"] == f"registry {mlflow_server}" and register["champion_existed"] is False

    # With a champion on the server, the next candidate is compared with it, the champion
    # downloaded from the server and scored in isolation with its own code.
    assert run_cli("deploy", "--env", "production", "-C", str(project), "--tracking-uri", mlflow_server) == 0
    config = project / "mlci.yaml"
    config.write_text(config.read_text().replace("C: 1.0", "C: 0.5", 1))
    for stage in ("train", "register"):
        assert run_cli(stage, "-C", str(project), "--tracking-uri", mlflow_server) == 0, stage
    register = json.loads((out / "register.json").read_text())["details"]
    assert register["version"] == "2" and register["champion_existed"] is True
    assert register["champion"]["against"] == "champion" and register["champion"]["champion_version"] == "1"
    assert f"{register['champion']['champion']:.6g}" == version.tags["mlci.metric.roc_auc"]


def test_environment_variable_selects_the_server(
    new_project: Any, mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    project: Path = new_project()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    assert run_cli("train", "-C", str(project)) == 0
    train = json.loads((project / ".mlci" / "out" / "train.json").read_text())["details"]
    assert train["tracking_uri"] == mlflow_server


def test_unreachable_server_is_an_infrastructure_error(
    new_project: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    project: Path = new_project()
    code = run_cli("train", "-C", str(project), "--tracking-uri", f"http://127.0.0.1:{free_port()}")
    assert code == 3
    assert "tracking server" in capsys.readouterr().err
