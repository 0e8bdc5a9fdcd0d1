"""train -> register -> deploy on the embedded default: a real sqlite MLflow store, a real
served model answering HTTP, real gates, and a rollback when serving fails."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import aliases, client_for, run_cli, scaffold, stage_json

from mlci.config import load_project


def edit_config(project: Path, old: str, new: str) -> None:
    path = project / "mlci.yaml"
    text = path.read_text()
    assert old in text, f"{old!r} not in mlci.yaml"
    path.write_text(text.replace(old, new, 1))


def relocated_copy(template: Path, dest: Path) -> Path:
    """A copy of the project `template` at `dest` whose MLflow store names the copy's own
    artifacts: the store records absolute artifact locations, so they are rewritten from the
    template's root to the copy's (and so are the stage records under .mlci/out)."""
    shutil.copytree(template, dest)
    old, new = str(template), str(dest)
    with closing(sqlite3.connect(dest / ".mlci" / "mlflow.db")) as db, db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for column in [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')]:
                update = f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) WHERE instr("{column}", ?) > 0'
                db.execute(update, (old, new, old))
    for record in (dest / ".mlci" / "out").glob("*.json"):
        record.write_text(record.read_text().replace(old, new))
    return dest


def use_store(project: Path) -> None:
    """Point this process's MLflow at the project's store, the registry too: an earlier
    in-process command leaves the registry URI set to another project's (the template's)."""
    import mlflow

    store = f"sqlite:///{project / '.mlci' / 'mlflow.db'}"
    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)


@pytest.fixture(scope="module")
def deployed_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One project taken through train, register, deploy to staging and production (v1 is
    champion), built once per module and never used in place: each test gets its own copy."""
    root = tmp_path_factory.mktemp("deployed")
    assert scaffold("gated-model", root) == 0
    project = root / "gated-model"
    for stage in ("train", "register", "deploy"):
        assert run_cli(stage, "-C", str(project)) == 0, stage
    assert stage_json(project, "deploy")["details"]["environment"] == "staging"
    assert aliases(project) == {"staging": "1"}  # the first deploy moves staging only
    assert run_cli("deploy", "--env", "production", "-C", str(project)) == 0
    return project


@pytest.fixture
def deployed(deployed_template: Path, tmp_path: Path) -> Path:
    """This test's own copy of the deployed project: what one test trains, registers or moves
    is never seen by another, whatever order they run in."""
    return relocated_copy(deployed_template, tmp_path / "gated-model")


def test_train_logs_run_with_metrics_signature_and_lineage(deployed: Path) -> None:
    train = stage_json(deployed, "train")
    assert train["status"] == "passed" and train["exit_code"] == 0
    details = train["details"]
    run = client_for(deployed).get_run(details["run_id"])
    # Metrics logged to MLflow are the ones reported, computed on the holdout split.
    assert run.data.metrics["roc_auc"] == pytest.approx(details["metrics"]["roc_auc"])
    assert details["metrics"]["accuracy"] > 0.95
    assert run.data.params == {"C": "1.0", "max_iter": "1000", "random_state": "0"}
    import hashlib

    digest = hashlib.sha256((deployed / "data" / "train.csv").read_bytes()).hexdigest()
    assert run.data.tags["mlci.data.train.sha256"] == digest
    assert "mlci.git.commit" not in run.data.tags  # --no-git: no fake lineage
    import mlflow.models

    model = mlflow.models.Model.load(details["logged_model_uri"])
    assert model.signature is not None
    assert [spec.name for spec in model.signature.inputs.inputs][:2] == ["mean_radius", "mean_texture"]
    assert model.saved_input_example_info is not None


def test_register_sets_challenger_and_deploy_promotes_to_champion(deployed: Path) -> None:
    register = stage_json(deployed, "register")["details"]
    assert register["version"] == "1"
    assert all(gate["passed"] for gate in register["gates"]) and len(register["gates"]) == 2
    assert register["champion"] is None and register["champion_existed"] is False  # nothing to beat yet
    assert register["registry"] == "local sqlite store .mlci/mlflow.db"
    deploy = stage_json(deployed, "deploy")["details"]
    assert deploy["version"] == "1" and deploy["previous_champion"] is None
    assert deploy["environment"] == "production" and deploy["aliases"] == ["production", "champion"]
    assert deploy["smoke_test"]["rows"] == 5
    assert set(deploy["smoke_test"]["predictions"]) <= {0, 1}
    # Promoted: production and champion set, challenger consumed by staging.
    assert aliases(deployed) == {"staging": "1", "production": "1", "champion": "1"}


def test_served_champion_answers_http_like_the_model(deployed: Path) -> None:
    import mlflow

    from mlci.targets.local import serving
    from mlci.targets.local.tracking import model_dir

    use_store(deployed)
    name = load_project(deployed).config.model_name
    path = model_dir(f"models:/{name}@champion")
    holdout = pd.read_csv(deployed / "data" / "holdout.csv").drop(columns=["malignant"]).head(20)
    expected = mlflow.pyfunc.load_model(str(path)).predict(holdout).tolist()
    with serving.serve_in_thread(path, "127.0.0.1", 0, ready_timeout=60) as endpoint:
        predictions, _ = serving.predict(endpoint.url, holdout)
    assert predictions == expected
    assert len(predictions) == 20


def test_worse_model_fails_a_gate_and_champion_stays(deployed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit_config(deployed, "C: 1.0", "C: 0.000001")  # so regularised it predicts one class
    assert run_cli("train", "-C", str(deployed)) == 0
    assert run_cli("register", "-C", str(deployed)) == 1
    accuracy = stage_json(deployed, "train")["details"]["metrics"]["accuracy"]
    assert accuracy < 0.93
    error = capsys.readouterr().err
    assert f"mlci: error: model rejected: gate accuracy >= 0.93 not met: candidate accuracy = {accuracy:.4f}" in error
    assert "aliases unchanged (local sqlite store .mlci/mlflow.db)" in error
    result = stage_json(deployed, "register")
    assert result["status"] == "failed" and result["exit_code"] == 1
    assert [g["passed"] for g in result["details"]["gates"]] == [True, False]
    assert aliases(deployed) == {"staging": "1", "production": "1", "champion": "1"}
    name = load_project(deployed).config.model_name
    assert [str(v.version) for v in client_for(deployed).search_model_versions(f"name='{name}'")] == ["1"]
    run = client_for(deployed).get_run(stage_json(deployed, "train")["details"]["run_id"])
    assert run.data.tags["mlci.register"] == "rejected"


def test_challenger_that_loses_to_champion_is_rejected(deployed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # C=0.01 still meets both gates but is more than the tolerance below the champion's accuracy.
    champion = stage_json(deployed, "train")["details"]["metrics"]["accuracy"]  # v1's own run
    edit_config(deployed, "C: 1.0", "C: 0.01")
    edit_config(deployed, "primary_metric: roc_auc", "primary_metric: accuracy")
    assert run_cli("train", "-C", str(deployed)) == 0
    assert run_cli("register", "-C", str(deployed)) == 1
    candidate = stage_json(deployed, "train")["details"]["metrics"]["accuracy"]
    assert candidate < champion - 0.005
    error = capsys.readouterr().err
    assert f"challenger loses to champion v1 on accuracy: {candidate:.4f} vs {champion:.4f} (tolerance 0.005)" in error
    register = stage_json(deployed, "register")["details"]
    assert all(gate["passed"] for gate in register["gates"])  # lost on the comparison alone
    comparison = register["champion"]
    assert comparison["passed"] is False and comparison["champion_version"] == "1"
    assert comparison["against"] == "champion"
    assert aliases(deployed) == {"staging": "1", "production": "1", "champion": "1"}


def _log_broken_model(project: Path) -> str:
    import mlflow
    import mlflow.pyfunc

    class Broken(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
        def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
            raise RuntimeError("feature store unreachable")

    use_store(project)
    example = pd.read_csv(project / "data" / "holdout.csv").drop(columns=["malignant"]).head(3)
    mlflow.set_experiment(load_project(project).config.experiment)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model", python_model=Broken(), input_example=example, pip_requirements=["mlflow"]
        )
    name = load_project(project).config.model_name
    version = mlflow.register_model(info.model_uri, name)
    return str(version.version)


def test_deploy_failure_rolls_back_to_previous_champion(deployed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = _log_broken_model(deployed)
    client_for(deployed).set_registered_model_alias(load_project(deployed).config.model_name, "challenger", broken)
    assert run_cli("deploy", "-C", str(deployed)) == 1
    error = capsys.readouterr().err
    assert f"deploy of {load_project(deployed).config.model_name} v{broken} to staging failed" in error
    assert "feature store unreachable" in error
    assert "staging stays v1" in error
    assert aliases(deployed) == {"staging": "1", "production": "1", "champion": "1", "challenger": broken}
    result = stage_json(deployed, "deploy")
    assert result["status"] == "failed" and result["details"]["promoted"] is False


def test_a_bug_during_the_smoke_test_is_exit_3_not_a_failed_check(
    deployed: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """P18: only a model that answers wrongly is 'check failed' (exit 1, champion kept); an
    exception of mlci's own code while checking it is a bug: exit 3, and no alias moves."""
    from mlci.targets.local import serving

    def bug(url: str, frame: Any, timeout: float = 30) -> Any:
        raise KeyError("stands for any bug in mlci's smoke test")

    version = _log_broken_model(deployed)
    client_for(deployed).set_registered_model_alias(load_project(deployed).config.model_name, "challenger", version)
    monkeypatch.setattr(serving, "predict", bug)
    assert run_cli("deploy", "-C", str(deployed)) == 3
    assert "unexpected KeyError" in capsys.readouterr().err
    assert aliases(deployed) == {"staging": "1", "production": "1", "champion": "1", "challenger": version}
    assert stage_json(deployed, "deploy")["status"] == "error"


def test_register_without_train_result_is_a_usage_error(new_project: Any, capsys: pytest.CaptureFixture[str]) -> None:
    project = new_project()
    assert run_cli("register", "-C", str(project)) == 2
    assert "no successful 'mlci train' result in .mlci/out/train.json" in capsys.readouterr().err


def test_deploy_with_nothing_registered_is_a_usage_error(new_project: Any, capsys: pytest.CaptureFixture[str]) -> None:
    project = new_project()
    assert run_cli("deploy", "-C", str(project)) == 2
    assert "nothing to deploy" in capsys.readouterr().err
