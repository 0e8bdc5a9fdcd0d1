"""Stages under stress: user code that crashes or exits, other tasks and data formats, stale
results, config that would break a workflow, and SIGTERM in the middle of a deploy."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import run_cli


def result(project: Path, stage: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((project / ".mlci" / "out" / f"{stage}.json").read_text())
    return data


def set_entrypoint(project: Path, module_source: str, function: str = "train") -> None:
    package = next((project / "src").iterdir()).name
    (project / "src" / package / "custom.py").write_text(module_source)
    config = project / "mlci.yaml"
    text = config.read_text()
    text = text.replace(f"entrypoint: {package}.train:train", f"entrypoint: {package}.custom:{function}")
    config.write_text(text)


def test_crash_after_fit_fails_train_and_register_does_not_take_an_old_run(
    new_project: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    project = new_project()
    # In-process training leaves sys.path as it was, when it succeeds and when it fails: it used
    # to keep the project's root and src/ (and MLflow the logged model's code/) on it for good.
    path_before = list(sys.path)
    assert run_cli("train", "-C", str(project)) == 0
    assert sys.path == path_before
    set_entrypoint(
        project,
        (
            "class Broken:\n"
            "    def predict(self, features):\n"
            "        return [0, 1, 0]  # wrong length\n\n\n"
            "def train(features, target, params):\n"
            "    return Broken()\n"
        ),
    )
    assert run_cli("train", "-C", str(project)) == 1
    assert sys.path == path_before
    assert "the model returned by" in capsys.readouterr().err
    assert result(project, "train")["status"] == "failed"
    assert run_cli("register", "-C", str(project)) == 2
    assert "no successful 'mlci train' result" in capsys.readouterr().err


def test_sys_exit_in_the_entrypoint_fails_the_stage(new_project: Any, capsys: pytest.CaptureFixture[str]) -> None:
    project = new_project()
    set_entrypoint(project, "import sys\n\n\ndef train(features, target, params):\n    sys.exit(0)\n")
    assert run_cli("run", "train", "register", "-C", str(project)) == 1
    err = capsys.readouterr().err
    assert "exited with sys.exit(0)" in err and "register  skipped" in err
    assert result(project, "train")["status"] == "failed"


def test_regression_task_with_lower_is_better_gates(new_project: Any, capsys: pytest.CaptureFixture[str]) -> None:
    project = new_project()
    set_entrypoint(
        project,
        (
            "from sklearn.linear_model import Ridge\n\n\n"
            "def train(features, target, params):\n"
            "    return Ridge(alpha=params.get('alpha', 1.0)).fit(features, target)\n"
        ),
    )
    config = project / "mlci.yaml"
    text = config.read_text().replace("task: classification", "task: regression")
    text = text.replace("primary_metric: roc_auc", "primary_metric: rmse")
    text = text.replace("    - roc_auc >= 0.97\n    - accuracy >= 0.93", "    - rmse <= 0.4\n    - r2 >= 0.5")
    config.write_text(text)
    for stage in ("train", "register", "deploy"):
        assert run_cli(stage, "-C", str(project)) == 0, capsys.readouterr().err
    metrics = result(project, "train")["details"]["metrics"]
    assert set(metrics) == {"rmse", "mae", "r2"} and metrics["r2"] > 0.5
    # A worse regressor (rmse higher) loses to the champion: lower is better for rmse.
    config.write_text(config.read_text().replace("C: 1.0", "alpha: 100000.0").replace("rmse <= 0.4", "rmse <= 1"))
    config.write_text(config.read_text().replace("r2 >= 0.5", "r2 >= -1"))
    assert run_cli("train", "-C", str(project)) == 0
    assert run_cli("register", "-C", str(project)) == 1
    assert "challenger loses to staging v1 on rmse" in capsys.readouterr().err


def test_multiclass_parquet_with_string_labels(new_project: Any, tmp_path: Path) -> None:
    from sklearn.datasets import load_iris

    project = new_project()
    iris = load_iris(as_frame=True)
    frame = iris.frame.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    frame["species"] = [iris.target_names[i] for i in iris.target]
    frame = frame.drop(columns=["target"])
    train = frame.sample(frac=0.7, random_state=1)
    holdout = frame.drop(train.index)
    holdout = holdout[holdout["species"] != "setosa"]  # the holdout lacks one of the three classes
    train.to_parquet(project / "data" / "iris_train.parquet")
    holdout.to_parquet(project / "data" / "iris_holdout.parquet")
    set_entrypoint(
        project,
        (
            "from sklearn.linear_model import LogisticRegression\n\n\n"
            "def train(features, target, params):\n"
            "    return LogisticRegression(max_iter=500).fit(features, target)\n"
        ),
    )
    config = project / "mlci.yaml"
    text = config.read_text().replace("data/train.csv", "data/iris_train.parquet")
    text = text.replace("data/holdout.csv", "data/iris_holdout.parquet").replace("target: malignant", "target: species")
    text = text.replace("    - roc_auc >= 0.97\n    - accuracy >= 0.93", "    - accuracy >= 0.8")
    config.write_text(text)
    assert run_cli("train", "-C", str(project)) == 0
    metrics = result(project, "train")["details"]["metrics"]
    # Scored as the 3-class model it is: accuracy is real, and no nonsense "binary" AUC of 0.
    assert metrics["accuracy"] > 0.85
    assert "roc_auc" not in metrics  # one-vs-rest AUC is undefined without setosa: omitted, never NaN or 0
    assert metrics["log_loss"] < 1.0


def workflow_files(project: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((project / ".github" / "workflows").iterdir())}


def test_invalid_cron_and_trailing_newlines_are_refused(new_project: Any, capsys: pytest.CaptureFixture[str]) -> None:
    project = new_project()
    config = project / "mlci.yaml"
    original = config.read_text()
    rendered = workflow_files(project)
    with_cron = original.replace("  default_branch: main", "  default_branch: main\n  retrain_cron: CRON")
    config.write_text(with_cron.replace("CRON", "'0 3 * * 1\"'"))
    assert run_cli("render", "-C", str(project)) == 2
    assert "'ci.retrain_cron' is '0 3 * * 1\"', which does not match" in capsys.readouterr().err
    assert workflow_files(project) == rendered  # refused before anything is written: no retrain.yml
    config.write_text(original.replace('python: "', 'python: "3.11\\n" #'))
    assert run_cli("render", "-C", str(project)) == 2
    line = original.splitlines().index('  python: "3.11"') + 1
    expected = f"mlci: error: {config}:{line}: 'ci.python' is '3.11\\n', which does not match ^3\\.[0-9]+$\n"
    assert capsys.readouterr().err == expected
    assert workflow_files(project) == rendered
    # The same cron, valid, does render retrain.yml: its absence above was the refusal's doing.
    config.write_text(with_cron.replace("CRON", "'0 3 * * 1'"))
    assert run_cli("render", "-C", str(project)) == 0
    assert "retrain.yml" in workflow_files(project).keys() - rendered.keys()


def test_mlci_yaml_that_is_not_utf8(new_project: Any, capsys: pytest.CaptureFixture[str]) -> None:
    project = new_project()
    config = project / "mlci.yaml"
    config.write_bytes(config.read_bytes().replace(b"description:", b"description: \xff"))
    assert run_cli("lint", "-C", str(project)) == 2
    assert f"{config}:" in capsys.readouterr().err


def test_databricks_target_never_trains_locally_by_accident(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without a workspace a Databricks project's train says which key to set; it never falls
    back to the local store."""
    assert (
        run_cli("new", "dbx-model", "--defaults", "--no-git", "--target", "databricks", "--output-dir", str(tmp_path))
        == 0
    )
    assert run_cli("train", "-C", str(tmp_path / "dbx-model")) == 2
    assert "no workspace for environment staging: set databricks.environments.staging.host" in capsys.readouterr().err
    assert not (tmp_path / "dbx-model" / ".mlci" / "mlflow.db").exists()


SLOW_MODEL = """\
import time
from pathlib import Path

import mlflow.pyfunc

class Slow(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        # The marker is created once the model is logged (MLflow also predicts while logging it).
        if Path(SLOW_MARKER_PATH).exists():
            Path(PREDICTING_PATH).touch()  # tells the test the smoke test is now inside predict
            time.sleep(60)  # the smoke test waits here until the test sends SIGTERM
        return [0] * len(model_input)
"""


def test_sigterm_during_deploy_leaves_the_champion(new_project: Any) -> None:
    """CI cancels jobs with SIGTERM: the challenger under test must not end up champion."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from mlci.config import load_project

    project = new_project()
    for stage in ("train", "register", "deploy"):
        assert run_cli(stage, "-C", str(project)) == 0
    name = load_project(project).config.model_name
    uri = f"sqlite:///{project / '.mlci' / 'mlflow.db'}"
    sys.path.insert(0, str(project))
    marker, predicting = project / "slow-marker", project / "predicting-marker"
    source = SLOW_MODEL.replace("SLOW_MARKER_PATH", repr(str(marker)))
    (project / "slow_model.py").write_text(source.replace("PREDICTING_PATH", repr(str(predicting))))
    try:
        import slow_model

        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(load_project(project).config.experiment)  # artifacts under the project's .mlci/
        example = pd.read_csv(project / "data" / "holdout.csv").drop(columns=["malignant"]).head(2)
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=slow_model.Slow(),
                input_example=example,
                code_paths=[str(project / "slow_model.py")],
                pip_requirements=["mlflow"],
            )
    finally:
        sys.path.remove(str(project))
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    slow = str(mlflow.register_model(info.model_uri, name).version)
    marker.write_text("slow")
    client.set_registered_model_alias(name, "challenger", slow)
    process = subprocess.Popen(
        [sys.executable, "-m", "mlci", "deploy"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
    )
    deadline = time.monotonic() + 120
    while not predicting.exists():  # SIGTERM must land while the smoke test waits on predict
        assert process.poll() is None, f"deploy ended before the smoke test reached predict: {process.communicate()}"
        assert time.monotonic() < deadline, "the smoke test never reached the model's predict"
        time.sleep(0.1)
    assert result(project, "deploy")["status"] == "running"
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert "mlci: interrupted" in err
    aliases = {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}
    assert aliases == {"staging": "1", "challenger": slow}
    assert result(project, "deploy")["status"] == "error"


def test_an_errored_unit_test_stage_never_leaves_the_green_junit_of_an_earlier_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import xml.etree.ElementTree as ET

    from conftest import MINIMAL_CONFIG

    # The stage's pytest loads pytest-cov by name (-p); skipping the other plugins halves its start-up.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    package = f"reports{os.getpid()}"
    config = MINIMAL_CONFIG.replace("churn_model", package)
    (tmp_path / "src" / package).mkdir(parents=True)
    (tmp_path / "src" / package / "__init__.py").write_text("ANSWER = 42\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_answer.py").write_text(
        f"from {package} import ANSWER\n\n\ndef test_answer():\n    assert ANSWER == 42\n"
    )
    (tmp_path / "mlci.yaml").write_text(config)
    out = tmp_path / ".mlci" / "out"
    assert run_cli("test", "-C", str(tmp_path)) == 0
    assert ET.parse(out / "junit.xml").getroot().find(".//testcase[@name='test_answer']") is not None
    assert (out / "coverage.json").is_file()
    capsys.readouterr()

    def errored(expected_error: str) -> None:
        message = capsys.readouterr().err.removeprefix("mlci: error: ").rstrip("\n")
        assert expected_error in message
        suite = ET.parse(out / "junit.xml").getroot()
        error = suite.find("testcase/error")
        assert (suite.get("tests"), suite.get("errors"), error.get("message") if error is not None else None) == (
            "1",
            "1",
            message,
        )
        assert not (out / "coverage.json").exists()
        assert (result(tmp_path, "test")["status"], result(tmp_path, "test")["exit_code"]) == ("error", 2)

    # mlci.yaml broken after a green run: the stage fails before it starts.
    (tmp_path / "mlci.yaml").write_text(config + "test:\n  pathz: [tests]\n")
    assert run_cli("test", "-C", str(tmp_path)) == 2
    errored("mlci.yaml:15: unknown key 'test.pathz'; did you mean 'paths'?")
    # pytest refuses its arguments and writes an empty suite: an errored one stands in for it.
    (tmp_path / "mlci.yaml").write_text(config + "test:\n  paths: [no-such-tests]\n")
    assert run_cli("test", "-C", str(tmp_path)) == 2
    errored("pytest rejected its arguments")
