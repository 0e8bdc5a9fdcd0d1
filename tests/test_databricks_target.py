"""The Databricks target end to end, against the loopback workspace double.

`mlci run --target databricks` on a scaffolded project, as a CI runner runs it (real `mlci`
processes, signed in by the SDK's github-oidc auth from a GitHub-runner-like environment):
the wheel and data go to a volume, the double's executor runs the job's task (mlci's own
`databricks-task train` from the uploaded wheel), MLflow logs to the double's real MLflow
store and registers in its Unity Catalog registry, and Model Serving serves the version the
double really loads and queries. Then the failures a team meets: an endpoint update that
fails and a smoke query that fails (each rolled back, the alias kept), a failed and a timed
out training run (exit 3 with the run's URL), a throttling workspace, a slow one. Every
request body is checked by the double against the SDK's (or MLflow's) own types; the module
fixture fails the tests if any was refused.

The tests share one workspace and one project and run in file order as one story (version 1
deployed, version 2 refused twice, production, the failures): run the module, not one test.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import run_cli, scaffold, stage_json
from databricks_double import PAT, Double, github_runner_environment, start

pytestmark = pytest.mark.databricks

MODEL = "main.default.dbxdemo"
CLIENT_ID = "mlci-ci-principal"
SUBJECT = "repo:acme/dbxdemo:ref:refs/heads/main"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Double]:
    double = start(tmp_path_factory.mktemp("workspace"))
    double.github_subject = SUBJECT  # type: ignore[attr-defined]  # the sub of the ID tokens it issues
    try:
        yield double
    finally:
        double.stop()
    assert double.rejections == [], double.rejections


def configure(project: Path, **databricks: Any) -> None:
    path = project / "mlci.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["databricks"].update(databricks)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, workspace: Double) -> Path:
    root = tmp_path_factory.mktemp("projects")
    assert scaffold("dbxdemo", root, "--target", "databricks") == 0
    project = root / "dbxdemo"
    configure(project, host=workspace.url, poll_interval=0.05, serving_timeout=60, http_timeout=10, retry_timeout=20)
    config = yaml.safe_load((project / "mlci.yaml").read_text(encoding="utf-8"))
    config["deploy"]["batch"] = {"input_table": "main.default.dbxdemo_features"}
    config["monitor"] = {"schedule": "0 6 * * *"}  # production gets the monitor and its check job
    (project / "mlci.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    assert run_cli("render", "-C", str(project)) == 0  # the bundle follows mlci.yaml
    # The bundle's training job, as `databricks bundle deploy` leaves it: the monitor's retrain starts it.
    body = {
        "name": "dbxdemo-train",
        "tasks": [
            {
                "task_key": "train",
                "python_wheel_task": {"package_name": "mlci", "entry_point": "mlci", "parameters": ["databricks-task"]},
                "environment_key": "mlci",
            }
        ],
        "environments": [{"environment_key": "mlci", "spec": {"environment_version": "3"}}],
    }
    request = urllib.request.Request(
        f"{workspace.url}/api/2.2/jobs/create",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {PAT}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.loads(answer.read())["job_id"]
    return project


def runner_env(workspace: Double) -> dict[str, str]:
    """What a GitHub Actions job with `id-token: write` has, as mlci's workflow sets it; the
    host comes from mlci.yaml (databricks.host), not from the environment."""
    env = github_runner_environment(workspace, CLIENT_ID, SUBJECT)
    del env["DATABRICKS_HOST"]
    return env


def process_env(workspace: Double) -> dict[str, str]:
    """A runner's environment: this one without any Databricks, MLflow or ID-token setting of
    its own, plus what the workflow's Databricks job sets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MLFLOW_", "ACTIONS_"))}
    return {**env, **runner_env(workspace), "MLFLOW_DISABLE_TELEMETRY": "true"}


def mlci(project: Path, workspace: Double, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlci", *args],
        cwd=project,
        env=process_env(workspace),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def rest(workspace: Double, path: str) -> Any:
    request = urllib.request.Request(f"{workspace.url}{path}", headers={"Authorization": f"Bearer {PAT}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def served_versions(workspace: Double, endpoint: str) -> list[str]:
    detail = rest(workspace, f"/api/2.0/serving-endpoints/{endpoint}")
    return [e["entity_version"] for e in detail["config"]["served_entities"]]


def last_line(done: subprocess.CompletedProcess[str]) -> str:
    return done.stderr.strip().splitlines()[-1]


def test_doctor_reports_the_federated_sign_in_and_who_the_workspace_says_we_are(
    project: Path, workspace: Double
) -> None:
    done = mlci(project, workspace, "doctor", "--env", "staging")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert f"ok   sign-in staging: github-oidc on {workspace.url}, client id {CLIENT_ID}" in lines
    assert f"ok   workspace answers staging: signed in as {CLIENT_ID}" in lines
    request_token = runner_env(workspace)["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]
    assert request_token not in done.stdout + done.stderr
    # The exchange really happened: the double issued a token for the runner's ID token.
    assert workspace.calls("POST", r"/oidc/v1/token")


def test_mlci_run_trains_registers_and_deploys_on_the_workspace(project: Path, workspace: Double) -> None:
    # A throttling workspace first: the SDK must retry the 429 and the 503, not fail the stage.
    workspace.inject("GET", r"/api/2\.2/jobs/runs/get", [429, 503])
    done = mlci(project, workspace, "run", "--target", "databricks")
    assert done.returncode == 0, done.stdout + done.stderr
    submits = workspace.calls("POST", r"/api/2\.2/jobs/runs/submit")
    assert len(submits) == 1
    body = submits[0].body
    task = body["tasks"][0]
    source = task["python_wheel_task"]["parameters"][3]
    assert task["python_wheel_task"]["parameters"][:3] == ["databricks-task", "train", "--source"]
    assert source.startswith("/Volumes/main/default/mlci/dbxdemo/")
    (wheel,) = [d for d in body["environments"][0]["spec"]["dependencies"] if d.endswith(".whl")]
    assert wheel.startswith(source + "/dbxdemo-")
    assert workspace.calls("PUT", r"/api/2\.0/fs/files" + re.escape(wheel))  # uploaded through the Files API
    assert not workspace.file_path(source).exists()  # and the data removed from the volume after the run
    assert [r.status for r in workspace.calls("GET", r"/api/2\.2/jobs/runs/get")][:2] == [429, 503]

    trained = stage_json(project, "train")
    assert trained["details"]["databricks"]["run_page_url"].startswith(workspace.url)
    run = rest(workspace, f"/api/2.0/mlflow/runs/get?run_id={trained['details']['run_id']}")["run"]
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["mlci.fingerprint"] == trained["details"]["fingerprint"]
    assert tags["mlci.data.train.sha256"] == trained["details"]["data"]["train"]["sha256"]

    registered = stage_json(project, "register")
    assert registered["details"]["version"] == "1" and "Unity Catalog" in registered["details"]["registry"]
    assert workspace.uc.alias_version(MODEL, "staging") == "1"
    assert workspace.uc.alias_version(MODEL, "challenger") is None

    deployed = stage_json(project, "deploy")
    smoke = deployed["details"]["smoke_test"]
    assert smoke["endpoint"] == "dbxdemo-staging" and smoke["rows"] == 5
    assert served_versions(workspace, "dbxdemo-staging") == ["1"]
    gateway = rest(workspace, "/api/2.0/serving-endpoints/dbxdemo-staging")["ai_gateway"]["inference_table_config"]
    assert gateway == {
        "catalog_name": "main",
        "schema_name": "default",
        "table_name_prefix": "dbxdemo_staging",
        "enabled": True,
    }
    assert "served by Databricks endpoint dbxdemo-staging" in deployed["summary"]


def retrain(project: Path, workspace: Double, c: float) -> str:
    """Train and register a new version (other params: a new fingerprint); its number."""
    config = yaml.safe_load((project / "mlci.yaml").read_text(encoding="utf-8"))
    config["train"]["params"]["C"] = c
    config["register"]["champion_tolerance"] = 1.0  # the comparison is not what these tests test
    (project / "mlci.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    for stage in ("train", "register"):
        done = mlci(project, workspace, stage)
        assert done.returncode == 0, done.stdout + done.stderr
    return str(stage_json(project, "register")["details"]["version"])


def test_a_failed_endpoint_update_keeps_the_old_version_and_the_alias(project: Path, workspace: Double) -> None:
    version = retrain(project, workspace, 0.5)
    assert version == "2"
    workspace.failing_versions.add((MODEL, version))
    try:
        done = mlci(project, workspace, "deploy")
    finally:
        workspace.failing_versions.clear()
    assert done.returncode == 1, done.stdout + done.stderr
    assert last_line(done).startswith(f"mlci: error: deploy of {MODEL} v2 to staging failed: serving endpoint ")
    assert last_line(done).endswith("staging stays v1")
    assert workspace.uc.alias_version(MODEL, "staging") == "1"
    assert workspace.uc.alias_version(MODEL, "challenger") == "2"
    assert served_versions(workspace, "dbxdemo-staging") == ["1"]


def test_a_failed_smoke_query_rolls_the_endpoint_back(project: Path, workspace: Double) -> None:
    updates_before = len(workspace.calls("PUT", r"/api/2\.0/serving-endpoints/dbxdemo-staging/config"))
    workspace.broken_query_versions.add((MODEL, "2"))
    try:
        done = mlci(project, workspace, "deploy")
    finally:
        workspace.broken_query_versions.clear()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "refused the input example" in last_line(done) and last_line(done).endswith("staging stays v1")
    updates = workspace.calls("PUT", r"/api/2\.0/serving-endpoints/dbxdemo-staging/config")[updates_before:]
    # The new version went up, then the captured configuration was re-applied.
    assert [[e["entity_version"] for e in u.body["served_entities"]] for u in updates] == [["2"], ["1"]]
    assert served_versions(workspace, "dbxdemo-staging") == ["1"]
    assert workspace.uc.alias_version(MODEL, "staging") == "1"


def test_production_takes_what_staging_verified_and_keeps_the_batch_job(project: Path, workspace: Double) -> None:
    done = mlci(project, workspace, "deploy", "--env", "production")
    assert done.returncode == 0, done.stdout + done.stderr
    assert workspace.uc.alias_version(MODEL, "production") == "1"
    assert workspace.uc.alias_version(MODEL, "champion") == "1"
    assert served_versions(workspace, "dbxdemo-production") == ["1"]
    creates = {c.body["name"]: c for c in workspace.calls("POST", r"/api/2\.2/jobs/create")}
    assert sorted(creates) == ["dbxdemo-batch", "dbxdemo-monitor", "dbxdemo-train"]
    created, monitor_job = creates["dbxdemo-batch"], creates["dbxdemo-monitor"]
    parameters = created.body["tasks"][0]["python_wheel_task"]["parameters"]
    assert parameters == [
        "databricks-task",
        "batch",
        "--model",
        f"models:/{MODEL}@champion",
        "--input",
        "main.default.dbxdemo_features",
        "--output",
        "main.default.dbxdemo_features_predictions",
    ]
    assert created.body["schedule"] == {"quartz_cron_expression": "0 0 4 * * ?", "timezone_id": "UTC"}
    # The monitor on the unpacked inference table and the check job, as mlci.yaml says.
    table = "main.default.dbxdemo_production_inference"
    (monitor,) = workspace.calls("POST", rf"/api/2\.1/unity-catalog/tables/{table}/monitor")
    assert monitor.body["inference_log"] == {
        "problem_type": "PROBLEM_TYPE_CLASSIFICATION",
        "timestamp_col": "timestamp",
        "granularities": ["1 day"],
        "model_id_col": "model_id",
        "prediction_col": "prediction",
    }
    assert monitor.body["output_schema_name"] == "main.default"
    assert monitor.body["schedule"] == {"quartz_cron_expression": "0 0 6 * * ?", "timezone_id": "UTC"}
    assert monitor_job.body["name"] == "dbxdemo-monitor"
    tasks = {t["task_key"]: t for t in monitor_job.body["tasks"]}
    assert tasks["unpack"]["python_wheel_task"]["parameters"][:4] == [
        "databricks-task",
        "monitor-unpack",
        "--payload",
        "main.default.dbxdemo_production_payload",
    ]
    assert tasks["retrain"]["run_job_task"] == {"job_id": train_job_id(workspace)}
    assert stage_json(project, "deploy")["details"]["smoke_test"]["monitor"]["monitor"] == "created"
    # The next release to production resets the one job instead of creating another. Staging
    # takes the challenger, v2, as a canary first: 10% beside v1, queried on its own, then all.
    config = yaml.safe_load((project / "mlci.yaml").read_text(encoding="utf-8"))
    config["databricks"]["environments"]["staging"]["canary_percent"] = 10
    (project / "mlci.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    updates_before = len(workspace.calls("PUT", r"/api/2\.0/serving-endpoints/dbxdemo-staging/config"))
    done = mlci(project, workspace, "deploy")
    assert done.returncode == 0, done.stdout + done.stderr
    updates = workspace.calls("PUT", r"/api/2\.0/serving-endpoints/dbxdemo-staging/config")[updates_before:]
    assert [
        {r["served_entity_name"]: r["traffic_percentage"] for r in u.body["traffic_config"]["routes"]} for u in updates
    ] == [{"dbxdemo-2": 10, "dbxdemo-1": 90}, {"dbxdemo-2": 100}]
    assert workspace.calls("POST", r"/serving-endpoints/dbxdemo-staging/served-models/dbxdemo-2/invocations")
    # This release also changes the monitor section: the monitor is updated and its job reset
    # (an unchanged section leaves both alone: tests/test_databricks_monitoring.py).
    config = yaml.safe_load((project / "mlci.yaml").read_text(encoding="utf-8"))
    config["monitor"] = {"schedule": "0 7 * * 1", "granularity": "1 week", "slices": ["x1 > 0"]}
    (project / "mlci.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    done = mlci(project, workspace, "deploy", "--env", "production")
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(workspace.calls("POST", r"/api/2\.2/jobs/create")) == 3  # batch, monitor and the fixture's train
    resets = {r.body["new_settings"]["name"]: r for r in workspace.calls("POST", r"/api/2\.2/jobs/reset")}
    assert sorted(resets) == ["dbxdemo-batch", "dbxdemo-monitor"]
    assert resets["dbxdemo-batch"].body["job_id"] == created_job_id(workspace)
    assert resets["dbxdemo-monitor"].body["new_settings"]["schedule"]["quartz_cron_expression"] == "0 0 7 ? * 2"
    assert workspace.uc.alias_version(MODEL, "champion") == "2"
    (update,) = workspace.calls("PUT", rf"/api/2\.1/unity-catalog/tables/{table}/monitor")
    assert update.body["inference_log"]["granularities"] == ["1 week"]
    assert update.body["slicing_exprs"] == ["x1 > 0"]
    assert update.body["schedule"]["quartz_cron_expression"] == "0 0 7 ? * 2"
    assert stage_json(project, "deploy")["details"]["smoke_test"]["monitor"]["monitor"] == "updated"


def train_job_id(workspace: Double) -> int:
    jobs = rest(workspace, "/api/2.2/jobs/list?name=dbxdemo-train")["jobs"]
    (job,) = jobs
    return int(job["job_id"])


def created_job_id(workspace: Double) -> int:
    jobs = rest(workspace, "/api/2.2/jobs/list?name=dbxdemo-batch")["jobs"]
    (job,) = jobs
    return int(job["job_id"])


def test_a_failed_training_run_is_exit_3_with_its_url_and_error(project: Path, workspace: Double) -> None:
    train = project / "src" / "dbxdemo" / "train.py"
    original = train.read_text(encoding="utf-8")
    train.write_text(original.replace("def train(", "def train(*_a, **_k):\n    raise ValueError('boom')\n\n\ndef _x("))
    try:
        done = mlci(project, workspace, "train")
    finally:
        train.write_text(original, encoding="utf-8")
    assert done.returncode == 3, done.stdout + done.stderr
    line = last_line(done)
    assert re.fullmatch(
        r"mlci: error: Databricks training run \d+ ended FAILED: .*raised ValueError: boom; "
        + re.escape(workspace.url)
        + r"/#job/\d+/run/\d+",
        line,
    ), line


def test_a_training_run_past_its_timeout_is_cancelled(project: Path, workspace: Double) -> None:
    train = project / "src" / "dbxdemo" / "train.py"
    original = train.read_text(encoding="utf-8")
    slow = "def train(*_a, **_k):\n    import time\n\n    time.sleep(60)\n\n\ndef _x("
    train.write_text(original.replace("def train(", slow))
    config = (project / "mlci.yaml").read_text(encoding="utf-8")
    configure(project, train={"compute": "serverless", "timeout": 2})
    try:
        done = mlci(project, workspace, "train")
    finally:
        train.write_text(original, encoding="utf-8")
        (project / "mlci.yaml").write_text(config, encoding="utf-8")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "ended TIMEDOUT" in last_line(done)


def test_a_slow_workspace_ends_within_the_configured_timeouts(project: Path, workspace: Double) -> None:
    config = (project / "mlci.yaml").read_text(encoding="utf-8")
    configure(project, http_timeout=1, retry_timeout=2)
    workspace.delay = 3.0
    try:
        done = mlci(project, workspace, "train", timeout=90)
    finally:
        workspace.delay = 0.0
        (project / "mlci.yaml").write_text(config, encoding="utf-8")
    assert done.returncode == 3, done.stdout + done.stderr
    assert last_line(done).startswith("mlci: error: Databricks"), last_line(done)


def test_the_wheel_is_the_projects_own_build(tmp_path: Path) -> None:
    from mlci.config import load_project
    from mlci.targets.databricks.jobs import build_wheel

    assert scaffold("wheelcheck", tmp_path, "--target", "databricks") == 0
    wheel = build_wheel(load_project(tmp_path / "wheelcheck"), tmp_path)
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert wheel.name.startswith("wheelcheck-") and "wheelcheck/train.py" in names


def test_each_environment_signs_in_to_its_own_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What mlci exports for MLflow (the first environment's host) is never read back as the
    user's: production's client keeps production's host and OAuth endpoints."""
    from mlci.config import load_project
    from mlci.targets.databricks import workspace as connection

    assert scaffold("twohosts", tmp_path, "--target", "databricks") == 0
    project_dir = tmp_path / "twohosts"
    config = yaml.safe_load((project_dir / "mlci.yaml").read_text(encoding="utf-8"))
    config["databricks"]["environments"]["staging"]["host"] = "https://staging.example.com"
    config["databricks"]["environments"]["production"]["host"] = "https://prod.example.com"
    (project_dir / "mlci.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    project = load_project(project_dir)
    for name, value in connection.mlflow_environment(project).items():
        monkeypatch.setenv(name, value)
    production = connection.workspace(project, "production")
    assert production.host == "https://prod.example.com"
    assert (
        connection.discovery_url(production.host)
        == "https://prod.example.com/oidc/.well-known/oauth-authorization-server"
    )


def test_sigterm_while_the_run_trains_cancels_it(project: Path, workspace: Double) -> None:
    """CI cancels a job with SIGTERM: the Databricks run must not keep billing."""
    train = project / "src" / "dbxdemo" / "train.py"
    original = train.read_text(encoding="utf-8")
    slow = "def train(*_a, **_k):\n    import time\n\n    time.sleep(120)\n\n\ndef _x("
    train.write_text(original.replace("def train(", slow))
    env = process_env(workspace)
    polls = len(workspace.calls("GET", r"/api/2\.2/jobs/runs/get"))
    child = subprocess.Popen(
        [sys.executable, "-m", "mlci", "train"], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        for _ in range(600):  # until this train polls its run (60 s at most)
            if len(workspace.calls("GET", r"/api/2\.2/jobs/runs/get")) > polls + 2:
                break
            time.sleep(0.1)
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
    finally:
        train.write_text(original, encoding="utf-8")
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130, err
    (cancel,) = workspace.calls("POST", r"/api/2\.2/jobs/runs/cancel")
    run = rest(workspace, f"/api/2.2/jobs/runs/get?run_id={cancel.body['run_id']}")
    assert run["state"]["result_state"] == "CANCELED"
