"""Shared fixtures: scaffolded projects, a real `mlflow server` on loopback, CLI runners."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlci.cli import main as mlci_main

REPO = Path(__file__).resolve().parents[1]
# pyspark.sql.connect, which MLflow imports while it logs a model when pyspark is installed,
# takes a __main__ module without __spec__ or __file__ for a doctest run and calls
# sys.exit(0). A pytest-xdist worker's __main__ (execnet's) is such a module: name its file.
_MAIN = sys.modules["__main__"]
if getattr(_MAIN, "__spec__", None) is None and not hasattr(_MAIN, "__file__"):
    _MAIN.__file__ = "<pytest-xdist worker>"
# Hypothesis keeps its example database and its Unicode tables in `.hypothesis/` under the
# working directory of the moment: the checkout or some test's tmp dir, whichever test first
# draws text, so `_repository_stays_clean` would fail or pass by test order. One directory
# outside the checkout per session, fixed before any test runs.
os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = _HYPOTHESIS_DIR = tempfile.mkdtemp(prefix="mlci-hypothesis-")
atexit.register(shutil.rmtree, _HYPOTHESIS_DIR, ignore_errors=True)
_MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
# A developer's or runner's Databricks sign-in must never reach a test; the Databricks
# target exports the workspace's host for MLflow, in-process too.
_DATABRICKS_ENV = (
    "DATABRICKS_HOST",
    "DATABRICKS_TOKEN",
    "DATABRICKS_AUTH_TYPE",
    "DATABRICKS_CLIENT_ID",
    "DATABRICKS_CLIENT_SECRET",
    "DATABRICKS_CONFIG_PROFILE",
    "DATABRICKS_CONFIG_FILE",
    "DATABRICKS_RUNTIME_VERSION",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "MLFLOW_USE_DATABRICKS_SDK_MODEL_ARTIFACTS_REPO_FOR_UC",
)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Tests must not see the developer's or the runner's tracking server or CI variables.
    for name in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_REGISTRY_URI",
        "GITHUB_ACTIONS",
        "GITHUB_OUTPUT",
        "GITHUB_STEP_SUMMARY",
        "TF_BUILD",
        "JENKINS_URL",
        "BUILD_URL",  # Jenkins is detected by any of these (providers/jenkins/runtime.py)
        "BUILD_TAG",
        "MLCI_JOB",
        "CI",
        "MLCI_TEMPLATE_ROOT",  # a copy of mlci's templates (tests/upgrade_kit.py sets it per test)
        *_DATABRICKS_ENV,
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    yield
    # mlflow.set_tracking_uri() called by a test itself exports MLFLOW_TRACKING_URI where
    # monkeypatch cannot see it; left set, it steered the next module's fixtures (they run
    # before this fixture clears it) to another project's store.
    for name in (*_MLFLOW_ENV, *_DATABRICKS_ENV):
        os.environ.pop(name, None)


# A minimal valid mlci.yaml, shared by the config and pipeline-model tests.
MINIMAL_CONFIG = """\
schema: 1
project:
  name: churn-model
  package: churn_model
data:
  train: data/train.csv
  holdout: data/holdout.csv
  target: label
train:
  entrypoint: churn_model.train:train
register:
  gates:
    - roc_auc >= 0.9
"""


def stage_json(project: Path, stage: str) -> dict[str, Any]:
    """A stage's record, .mlci/out/<stage>.json."""
    data: dict[str, Any] = json.loads((project / ".mlci" / "out" / f"{stage}.json").read_text())
    return data


def client_for(project: Path) -> Any:
    """An MLflow client of the project's local store, registry included: an earlier in-process
    command leaves mlflow's process-wide registry URI set to another project's."""
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{project / '.mlci' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=store, registry_uri=store)


def aliases(project: Path) -> dict[str, str]:
    """{alias: version} of the project's registered model."""
    from mlci.config import load_project

    name = load_project(project).config.model_name
    model = client_for(project).get_registered_model(name)
    return {alias: str(version) for alias, version in model.aliases.items()}


def run_cli(*args: str, cwd: Path | None = None) -> int:
    """Run mlci in-process (fast: MLflow is imported once per test session).

    mlflow.set_tracking_uri() also exports MLFLOW_TRACKING_URI; restore the environment so
    one in-process command cannot steer the next one to another store, as separate processes
    never would.
    """
    old_cwd = Path.cwd()
    old_env = {name: os.environ.get(name) for name in _MLFLOW_ENV}
    if cwd is not None:
        os.chdir(cwd)
    try:
        return mlci_main(list(args))
    finally:
        os.chdir(old_cwd)
        for name, value in old_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_cli_process(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run mlci as a separate process, exactly as a user or a CI runner does."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "mlci", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def scaffold(name: str, output_dir: Path, *extra: str) -> int:
    """`mlci new NAME --defaults --no-git --output-dir DIR [extra...]`, in-process.

    CI's mlci source is pinned to `mlci==<version>` (unless `extra` sets it or uses remote
    actions), so renders do not depend on how the mlci under test was installed.
    """
    from mlci import __version__

    if not any(arg.startswith(("mlci_install=", "actions=remote")) for arg in extra):
        extra = (*extra, "--data", f"mlci_install=mlci=={__version__}")
    return run_cli("new", name, "--defaults", "--no-git", "--output-dir", str(output_dir), *extra)


_counter = iter(range(10_000))


@pytest.fixture
def new_project(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A factory: scaffold a project with a unique package name (in-process imports stay apart)."""

    def make(name: str | None = None, *extra: str) -> Path:
        name = name or f"proj{next(_counter)}-{os.getpid()}"
        assert scaffold(name, tmp_path, *extra) == 0
        return tmp_path / name

    return make


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` (sqlite backend, proxied artifacts) on a loopback port."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")  # the server execs uvicorn/gunicorn by name
    log = (root / "server.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
        ],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited {process.returncode}: {(root / 'server.log').read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("mlflow server not ready after 120 s")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="session", autouse=True)
def _repository_stays_clean() -> Iterator[None]:
    """No test may write MLflow runs (or anything else) into the checkout."""
    before = set(os.listdir(REPO))
    yield
    stray = set(os.listdir(REPO)) - before
    assert not stray, f"tests left files in the repository: {sorted(stray)}"


def _serve_databricks_double(root: Path) -> Iterator[Any]:
    from databricks_double import start

    double = start(root)
    try:
        yield double
    finally:
        double.stop()
    # A body the SDK's types refuse, or an endpoint the double lacks, fails the test even when
    # the caller swallowed the 400/404.
    assert double.rejections == [], double.rejections


@pytest.fixture
def databricks_double(tmp_path: Path) -> Iterator[Any]:
    """A loopback Databricks workspace (tests/databricks_double) for one test."""
    yield from _serve_databricks_double(tmp_path / "workspace")


@pytest.fixture(scope="module")
def module_databricks_double(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The same, shared by a module's tests (start it once: a model server costs seconds)."""
    yield from _serve_databricks_double(tmp_path_factory.mktemp("workspace"))
