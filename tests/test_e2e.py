"""End to end, as a user does it: `mlci new`, install the project into a fresh virtual
environment, `mlci run`, then query the served champion over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from conftest import free_port

from mlci.stage_specs import RUN_NAMES as STAGES  # what `mlci run` runs (monitor runs on a schedule)

pytestmark = pytest.mark.slow


def make_venv(path: Path) -> Path:
    """A fresh venv that sees this environment's packages (mlci, MLflow, ...) through a .pth
    file, so the test needs no network, yet the project is installed into the venv for real."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # addsitedir (not a bare path) so the outer environment's own .pth files, e.g. an editable
    # install of mlci, are processed too.
    outer = sysconfig.get_paths()["purelib"]
    Path(purelib, "outer-env.pth").write_text(f"import site; site.addsitedir({outer!r})\n")
    return python


def mlci(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "GITHUB_"))}
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [str(python), "-m", "mlci", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False
    )


def test_new_install_run_and_predict_over_http(tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv")
    created = mlci(python, "new", "e2e-model", "--defaults", "--output-dir", str(tmp_path), cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    project = tmp_path / "e2e-model"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q", str(project)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    found = subprocess.run(
        [str(python), "-c", "import e2e_model; print(e2e_model.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert found.startswith(str(tmp_path / "venv" / "lib"))  # built as a wheel and installed into the venv

    first = mlci(python, "run", cwd=project)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    # Every stage `mlci run` runs, data-test included, from the one list that defines them.
    assert "data-test" in STAGES
    for stage in STAGES:
        assert f"<== {stage}: passed" in first.stderr
    out = project / ".mlci" / "out"
    results = {s: json.loads((out / f"{s}.json").read_text()) for s in STAGES}
    assert {s: r["status"] for s, r in results.items()} == dict.fromkeys(results, "passed")
    assert results["test"]["details"]["coverage_percent"] >= 80
    assert results["register"]["details"]["version"] == "1"
    assert results["deploy"]["details"]["version"] == "1"

    # Lineage: the run records the project's git commit and that the tree was clean.
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{project / '.mlci' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store, registry_uri=store)  # never the process-wide registry URI
    run = client.get_run(results["train"]["details"]["run_id"])
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True, check=True)
    assert run.data.tags["mlci.git.commit"] == head.stdout.strip()
    assert run.data.tags["mlci.git.branch"] == "main" and run.data.tags["mlci.git.dirty"] == "false"

    # Production moves only by its own deploy, of exactly what staging verified.
    promoted = mlci(python, "deploy", "--env", "production", cwd=project)
    assert promoted.returncode == 0, promoted.stderr[-3000:]

    # A feature change, with the project installed as a wheel (the old code in site-packages):
    # the candidate is compared with champion v1, scored with v1's own logged code.
    features = project / "src" / "e2e_model" / "features.py"
    features.write_text(
        features.read_text().replace(
            '    "area_to_perimeter": ("mean_area", "mean_perimeter"),\n',
            '    "area_to_perimeter": ("mean_area", "mean_perimeter"),\n'
            '    "area_to_radius": ("mean_area", "mean_radius"),\n',
        )
    )
    second = mlci(python, "run", "train", "register", "deploy", cwd=project)
    assert second.returncode == 0, second.stderr[-3000:]
    register = json.loads((out / "register.json").read_text())["details"]
    assert register["version"] == "2" and register["champion"]["champion_version"] == "1"
    assert register["champion"]["passed"] is True and register["champion"]["against"] == "champion"
    recorded = client.get_model_version("e2e_model", "1").tags["mlci.metric.roc_auc"]
    assert f"{register['champion']['champion']:.6g}" == recorded
    aliases = {a: str(v) for a, v in client.get_registered_model("e2e_model").aliases.items()}
    assert aliases == {"staging": "2", "production": "1", "champion": "1"}
    promoted = mlci(python, "deploy", "--env", "production", cwd=project)
    assert promoted.returncode == 0, promoted.stderr[-3000:]
    aliases = {a: str(v) for a, v in client.get_registered_model("e2e_model").aliases.items()}
    assert aliases == {"staging": "2", "production": "2", "champion": "2"}

    # The champion, served by `mlci serve`, answers real HTTP requests correctly.
    port = free_port()
    env = {**os.environ, "PATH": f"{python.parent}{os.pathsep}{os.environ['PATH']}"}
    server = subprocess.Popen(
        [str(python), "-m", "mlci", "serve", "--port", str(port)],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                assert time.monotonic() < deadline, "mlci serve not ready"
                time.sleep(0.3)
        holdout = pd.read_csv(project / "data" / "holdout.csv")
        features = holdout.drop(columns=["malignant"])
        body = json.dumps({"dataframe_split": json.loads(features.to_json(orient="split", index=False))}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            predictions = json.loads(answer.read())["predictions"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert len(predictions) == len(holdout)
    accuracy = sum(int(p == t) for p, t in zip(predictions, holdout["malignant"], strict=True)) / len(holdout)
    assert accuracy == pytest.approx(results["train"]["details"]["metrics"]["accuracy"])
