"""`mlci serve` on a real registered model: announced only once it answers, the version it
serves, the README's curl request, probabilities, a busy port, a fresh project."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import free_port, run_cli, scaffold

from mlci.config import load_project


@pytest.fixture(scope="module")
def served_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve")
    assert scaffold("serve-model", root) == 0
    project = root / "serve-model"
    for stage in ("train", "register", "deploy"):
        assert run_cli(stage, "-C", str(project)) == 0, stage
    assert run_cli("deploy", "--env", "production", "-C", str(project)) == 0  # champion = production
    return project


def post(url: str, body: bytes) -> Any:
    request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def readme_body(project: Path) -> bytes:
    """The JSON body of the curl request in the project's README, exactly as written."""
    text = (project / "README.md").read_text()
    found = re.search(r"curl -s http://127\.0\.0\.1:5055/invocations .*?\\\n\s+-d '(.+)'\n", text)
    assert found, "no curl request in the README"
    return found.group(1).encode()


def test_serve_announces_the_version_once_it_answers_and_the_readme_request_works(served_project: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlci", "serve", "--port", str(port)],
        cwd=served_project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, f"mlci serve ended: {process.wait()} {process.stderr.read() if process.stderr else ''}"
            lines.append(line)
            if line.startswith("serving "):
                break
        url = f"http://127.0.0.1:{port}"
        # Announced only when it answers: no retry needed right after the line.
        with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
            assert answer.status == 200
        assert lines[-1].startswith(f"serving serve_model v1 (alias champion) on {url}  (POST /invocations")
        assert post(url, readme_body(served_project)) == {"predictions": [0]}
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130
        assert process.stderr is not None
        err = process.stderr.read()
        assert "Creating initial MLflow database tables" not in err and "INFO" not in err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_probabilities_come_with_each_label(served_project: Path) -> None:
    import mlflow

    from mlci.targets.local import serving
    from mlci.targets.local.tracking import model_dir

    mlflow.set_tracking_uri(f"sqlite:///{served_project / '.mlci' / 'mlflow.db'}")
    path = model_dir("models:/serve_model/1")
    rows = pd.read_csv(served_project / "data" / "holdout.csv").drop(columns=["malignant"]).head(3)
    with serving.serve_in_thread(path, "127.0.0.1", 0, 60, probabilities=True) as endpoint:
        answer, _ = serving.predict(endpoint.url, rows)
    labels = mlflow.pyfunc.load_model(str(path)).predict(rows).tolist()
    assert [row["prediction"] for row in answer] == labels
    for row in answer:
        assert set(row) == {"prediction", "probability_0", "probability_1"}
        assert row["probability_0"] + row["probability_1"] == pytest.approx(1.0)
        assert row["prediction"] == (1 if row["probability_1"] > 0.5 else 0)


def test_a_busy_port_suggests_port_and_deploy_never_uses_it(
    served_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert run_cli("serve", "-C", str(served_project), "--port", str(port)) == 3
        assert f"cannot listen on 127.0.0.1:{port} (Address already in use); pass --port" in capsys.readouterr().err
        # deploy.port is serve's; the smoke test takes a free port, so it cannot collide.
        config = served_project / "mlci.yaml"
        text = config.read_text()
        config.write_text(text.replace("  port: 5055\n", f"  port: {port}\n"))
        name = load_project(served_project).config.model_name
        from mlflow.tracking import MlflowClient

        store = f"sqlite:///{served_project / '.mlci' / 'mlflow.db'}"
        # Take v1 out of staging, so the deploy below really serves and smoke-tests it.
        MlflowClient(tracking_uri=store, registry_uri=store).delete_registered_model_alias(name, "staging")
        try:
            assert run_cli("deploy", "--version", "1", "-C", str(served_project)) == 0
        finally:
            config.write_text(text)
    deployed = json.loads((served_project / ".mlci" / "out" / "deploy.json").read_text())
    assert deployed["details"]["promoted"] is True and "served on loopback" in deployed["summary"]
    assert not deployed["details"]["smoke_test"]["url"].endswith(f":{port}")
    assert load_project(served_project).config.deploy.port == 5055


def test_serve_on_a_fresh_project_says_there_is_no_model(new_project: Any, capsys: pytest.CaptureFixture[str]) -> None:
    project = new_project()
    assert run_cli("serve", "-C", str(project)) == 2
    err = capsys.readouterr().err
    assert err == (
        f"mlci: error: no model to serve: the MLflow store {project / '.mlci' / 'mlflow.db'} does not exist yet; "
        "run 'mlci run' (or mlci train, register and deploy) first\n"
    )
    assert not (project / ".mlci" / "mlflow.db").exists()
