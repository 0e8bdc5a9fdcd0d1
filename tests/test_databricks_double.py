"""The loopback Databricks workspace (tests/databricks_double) against real databricks-sdk clients:
auth (PAT, OAuth M2M, GitHub OIDC federation), Jobs 2.2 runs executed as real subprocesses, Model
Serving with real predictions, strict body checks and retries. One double per module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from databricks.sdk.errors import (
    BadRequest,
    DatabricksError,
    InternalError,
    InvalidParameterValue,
    NotFound,
    Unauthenticated,
)
from databricks.sdk.service import compute, jobs, serving
from databricks_double import PAT, Double, github_runner_environment, pat_environment

MODEL = "main.ml.churn"
VOLUME = "/Volumes/main/ml/artifacts/churn/1"

# A task package: `dtask <mode>` prints its arguments and the environment a Databricks task sees.
_TASK = """
import json, os, sys, time, urllib.request

def main():
    mode = sys.argv[1]
    print("args", sys.argv[1:])
    for name in ("DATABRICKS_HOST", "DATABRICKS_AUTH_TYPE", "DATABRICKS_RUNTIME_VERSION",
                 "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI",
                 "MLFLOW_USE_DATABRICKS_SDK_MODEL_ARTIFACTS_REPO_FOR_UC", "DATABRICKS_CLIENT_ID"):
        print(f"{name}={os.environ.get(name)}")
    if mode == "me":  # the token the double gave the task signs in
        request = urllib.request.Request(os.environ["DATABRICKS_HOST"] + "/api/2.0/preview/scim/v2/Me",
                                         headers={"Authorization": "Bearer " + os.environ["DATABRICKS_TOKEN"]})
        print("me", json.load(urllib.request.urlopen(request))["userName"])
    if mode == "fail":
        print("loading the training table", file=sys.stderr)
        raise SystemExit("ValueError: the training table main.ml.churn_features has no rows")
    if mode == "sleep":
        time.sleep(60)
"""


def _wheel(path: Path) -> Path:
    wheel = path / "dtask-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("dtask/__init__.py", _TASK)
        info = "dtask-0.1.dist-info"
        archive.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: dtask\nVersion: 0.1\n")
        archive.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        archive.writestr(f"{info}/entry_points.txt", "[console_scripts]\ndtask = dtask:main\n")
        archive.writestr(f"{info}/RECORD", "")
    return wheel


class _Registry:
    """Stands in for helper double-mlflow's `double.uc` until it is merged."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def version_dir(self, name: str, version: str) -> Path:
        return self.root / name / version


# Versions 1, 2 and 3 of the UC model: y = x, 2x, 3x. Saved by a subprocess started with the
# module's double, so MLflow's import overlaps the job tests and stays out of this process.
_SAVE_MODELS = """
import sys
import mlflow.sklearn
import numpy as np
from sklearn.linear_model import LinearRegression
x = np.array([[0.0], [1.0], [2.0]])
for version, slope in (("1", 1.0), ("2", 2.0), ("3", 3.0)):
    # pip_requirements given: no requirement inference (a subprocess per model)
    mlflow.sklearn.save_model(LinearRegression().fit(x, slope * x[:, 0]), f"{sys.argv[1]}/{version}",
                              pip_requirements=["scikit-learn"])
"""


@pytest.fixture(scope="module")
def double(module_databricks_double: Double) -> Iterator[Double]:
    wheel = _wheel(module_databricks_double.root)
    target = module_databricks_double.file_path(f"{VOLUME}/dtask-0.1-py3-none-any.whl")
    target.parent.mkdir(parents=True)
    target.write_bytes(wheel.read_bytes())
    registry = _Registry(module_databricks_double.root / "uc")
    saving = subprocess.Popen(
        [sys.executable, "-c", _SAVE_MODELS, str(registry.root / MODEL)],
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    module_databricks_double.saving_models = (saving, registry)  # type: ignore[attr-defined]
    yield module_databricks_double
    saving.kill()
    saving.wait()


@pytest.fixture(autouse=True)
def _no_databricks_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(("DATABRICKS_", "ACTIONS_ID_TOKEN_")):
            monkeypatch.delenv(name)
    yield


@pytest.fixture
def w(double: Double) -> WorkspaceClient:
    return WorkspaceClient(host=double.url, token=PAT, auth_type="pat")


def _refused(double: Double, part: str) -> str:
    """The one rejection the double recorded (the test expected it: taken off the list)."""
    assert len(double.rejections) == 1, double.rejections
    rejection = double.rejections.pop()
    assert part in rejection, rejection
    return rejection


def _poll(w: WorkspaceClient, run_id: int, seen: list[str] | None = None) -> jobs.Run:
    """Poll a run until it terminates (faster than the SDK's waiter, which sleeps 1 s, 2 s, ...)."""
    deadline = time.time() + 60
    while time.time() < deadline:
        run = w.jobs.get_run(run_id)
        assert run.state is not None and run.state.life_cycle_state is not None
        if seen is not None and (not seen or seen[-1] != run.state.life_cycle_state.value):
            seen.append(run.state.life_cycle_state.value)
        if run.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED:
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not terminate")


def _submit(w: WorkspaceClient, mode: str, **extra: Any) -> int:
    waiter = w.jobs.submit(
        run_name="churn-train",
        tasks=[
            jobs.SubmitTask(
                task_key="train",
                python_wheel_task=jobs.PythonWheelTask(package_name="dtask", entry_point="dtask", parameters=[mode]),
                environment_key="mlci",
            )
        ],
        environments=[
            jobs.JobEnvironment(
                environment_key="mlci",
                spec=compute.Environment(
                    environment_version="3",
                    dependencies=extra.pop(
                        "dependencies", ["databricks-sdk>=0.60", f"{VOLUME}/dtask-0.1-py3-none-any.whl"]
                    ),
                ),
            )
        ],
        **extra,
    )
    return int(waiter.run_id)


# ----- auth


def test_a_pat_signs_in_and_a_missing_or_unknown_token_is_a_401(double: Double, w: WorkspaceClient) -> None:
    assert w.current_user.me().user_name == "ci@example.com"
    request = urllib.request.Request(f"{double.url}/api/2.0/preview/scim/v2/Me")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request)
    assert caught.value.code == 401
    with pytest.raises(Unauthenticated, match="Credential was not sent"):
        WorkspaceClient(host=double.url, token="dapi-not-issued", auth_type="pat").current_user.me()
    assert pat_environment(double) == {
        "DATABRICKS_HOST": double.url,
        "DATABRICKS_TOKEN": PAT,
        "DATABRICKS_AUTH_TYPE": "pat",
    }


def test_oauth_m2m_takes_the_secret_and_needs_a_discovery_url_without_host_metadata(
    double: Double, monkeypatch: pytest.MonkeyPatch
) -> None:
    double.service_principals["sp-deploy"] = "s3cret"  # type: ignore[attr-defined]
    # SDK 0.162 reads the OIDC discovery URL from host metadata only: without it, none.
    with pytest.raises(ValueError, match="oauth-m2m: Invalid URL 'None'"):
        WorkspaceClient(host=double.url, client_id="sp-deploy", client_secret="s3cret", auth_type="oauth-m2m")
    monkeypatch.setenv("DATABRICKS_DISCOVERY_URL", f"{double.url}/oidc/.well-known/oauth-authorization-server")
    client = WorkspaceClient(host=double.url, client_id="sp-deploy", client_secret="s3cret", auth_type="oauth-m2m")
    assert client.current_user.me().user_name == "sp-deploy"
    exchange = double.calls("POST", r"/oidc/v1/token")[-1]
    assert exchange.body is None  # a form with the secret in a Basic header, not JSON
    with pytest.raises(ValueError, match="invalid_client: Client authentication failed"):
        WorkspaceClient(
            host=double.url, client_id="sp-deploy", client_secret="wrong", auth_type="oauth-m2m"
        ).current_user.me()


def test_github_oidc_exchanges_the_runners_id_token_for_a_workspace_token(
    double: Double, monkeypatch: pytest.MonkeyPatch
) -> None:
    double.host_metadata = True  # type: ignore[attr-defined]
    try:
        for name, value in github_runner_environment(double, "sp-github").items():
            monkeypatch.setenv(name, value)
        assert WorkspaceClient().current_user.me().user_name == "sp-github"
        exchange = double.calls("POST", r"/oidc/v1/token")[-1]
        assert exchange.body is None  # a form, not JSON
        ids = double.calls("GET", r"/github-actions/idtoken")
        assert ids[-1].query["audience"] == [f"{double.url}/oidc/v1/token"]
        # A federation policy for another repository refuses the exchange.
        double.federation["sp-github"] = "repo:acme/other:ref:refs/heads/main"  # type: ignore[attr-defined]
        with pytest.raises(ValueError, match="invalid_grant: subject 'repo:acme/churn:ref:refs/heads/main' does not"):
            WorkspaceClient().current_user.me()
        # The ID-token service wants the runner's request token.
        monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "stolen")
        with pytest.raises(ValueError, match="cannot configure default credentials"):
            WorkspaceClient()
    finally:
        double.host_metadata = False  # type: ignore[attr-defined]


# ----- retries


def test_the_sdk_retries_503_and_429_and_its_retry_timeout_ends_it(double: Double, w: WorkspaceClient) -> None:
    before = len(double.calls("GET", r"/api/2\.0/preview/scim/v2/Me"))
    double.inject("GET", r"/api/2\.0/preview/scim/v2/Me", [503, 429])
    assert w.current_user.me().user_name == "ci@example.com"
    assert len(double.calls("GET", r"/api/2\.0/preview/scim/v2/Me")) - before == 3
    double.inject("GET", r"/api/2\.0/preview/scim/v2/Me", [503] * 50)
    impatient = WorkspaceClient(config=Config(host=double.url, token=PAT, auth_type="pat", retry_timeout_seconds=1))
    started = time.time()
    with pytest.raises(TimeoutError, match="Timed out after 0:00:01"):
        impatient.current_user.me()
    assert time.time() - started < 5
    double.faults.clear()


# ----- jobs


def test_a_submitted_run_executes_the_wheel_task_through_pending_running_terminated(
    double: Double, w: WorkspaceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "file:///the/test/process/store")
    runs_before = len(double.workspace.runs)  # type: ignore[attr-defined]
    submit = dict(
        run_name="churn-train",
        tasks=[
            jobs.SubmitTask(
                task_key="train",
                python_wheel_task=jobs.PythonWheelTask(package_name="dtask", entry_point="dtask", parameters=["me"]),
                environment_key="mlci",
            )
        ],
        environments=[
            jobs.JobEnvironment(
                environment_key="mlci",
                spec=compute.Environment(
                    environment_version="3", dependencies=[f"{VOLUME}/dtask-0.1-py3-none-any.whl"]
                ),
            )
        ],
        timeout_seconds=120,
        idempotency_token="churn-1",
    )
    waiter = w.jobs.submit(**submit)  # type: ignore[arg-type]
    seen: list[str] = []
    run = waiter.result(callback=lambda r: seen.append(r.state.life_cycle_state.value))  # the SDK's own waiter
    assert seen == ["PENDING", "RUNNING"]
    assert run.state is not None and run.state.result_state == jobs.RunResultState.SUCCESS
    assert run.run_page_url == f"{double.url}/#job/{run.job_id}/run/{run.run_id}"
    assert run.run_type == jobs.RunType.SUBMIT_RUN
    assert run.tasks is not None and len(run.tasks) == 1
    output = w.jobs.get_run_output(run.tasks[0].run_id)
    assert output.error is None
    assert output.logs is not None
    lines = output.logs.splitlines()
    assert lines[0] == "args ['me']"
    assert f"DATABRICKS_HOST={double.url}" in lines
    assert "DATABRICKS_AUTH_TYPE=pat" in lines
    assert "DATABRICKS_RUNTIME_VERSION=client.3.1" in lines
    assert "MLFLOW_TRACKING_URI=databricks" in lines
    assert "MLFLOW_REGISTRY_URI=databricks-uc" in lines
    assert "MLFLOW_USE_DATABRICKS_SDK_MODEL_ARTIFACTS_REPO_FOR_UC=true" in lines
    assert lines[-1] == "me ci@example.com"
    # The response is what the SDK's types describe: nothing dropped by from_dict.
    raw = double.calls("GET", r"/api/2\.2/jobs/runs/get")[-1]
    assert raw.status == 200
    # A second submit with the same idempotency token is the same run.
    assert w.jobs.submit(**submit).run_id == run.run_id  # type: ignore[arg-type]
    assert len(double.workspace.runs) == runs_before + 1  # type: ignore[attr-defined]


def test_the_run_response_round_trips_through_the_sdks_types(double: Double, w: WorkspaceClient) -> None:
    run_id = _submit(w, "ok")
    _poll(w, run_id)
    with urllib.request.urlopen(
        urllib.request.Request(
            f"{double.url}/api/2.2/jobs/runs/get?run_id={run_id}", headers={"Authorization": f"Bearer {PAT}"}
        )
    ) as response:
        body = json.load(response)
    assert jobs.Run.from_dict(body).as_dict() == body


def test_a_failing_task_fails_the_run_with_the_last_stderr_line_as_its_error(w: WorkspaceClient) -> None:
    run = _poll(w, _submit(w, "fail"))
    assert run.state is not None and run.state.result_state == jobs.RunResultState.FAILED
    assert run.tasks is not None
    output = w.jobs.get_run_output(run.tasks[0].run_id)
    assert output.error == "ValueError: the training table main.ml.churn_features has no rows"
    assert output.error_trace == (
        "loading the training table\nValueError: the training table main.ml.churn_features has no rows"
    )
    assert run.status is not None and run.status.termination_details is not None
    assert run.status.termination_details.code == jobs.TerminationCodeCode.RUN_EXECUTION_ERROR


def test_a_dependency_never_uploaded_fails_library_installation(w: WorkspaceClient) -> None:
    run = _poll(w, _submit(w, "ok", dependencies=[f"{VOLUME}/missing-0.1-py3-none-any.whl"]))
    assert run.state is not None and run.state.result_state == jobs.RunResultState.FAILED
    assert run.state.state_message == (
        "Library installation failed for library due to user error: "
        f"{VOLUME}/missing-0.1-py3-none-any.whl does not exist"
    )
    run = _poll(w, _submit(w, "ok", dependencies=["databricks-sdk<0.1"]))
    assert run.state is not None and run.state.state_message is not None
    assert "no version satisfies 'databricks-sdk<0.1'" in run.state.state_message


def test_cancel_kills_the_task_and_a_timeout_ends_it_timedout(double: Double, w: WorkspaceClient) -> None:
    run_id = _submit(w, "sleep")
    deadline = time.time() + 20
    ws = double.workspace  # type: ignore[attr-defined]
    task = ws.runs[run_id].tasks[0]
    while task.process is None and time.time() < deadline:
        time.sleep(0.02)
    w.jobs.cancel_run(run_id)
    run = _poll(w, run_id)
    assert run.state is not None and run.state.result_state == jobs.RunResultState.CANCELED
    assert run.state.user_cancelled_or_timedout is True
    assert task.process.poll() is not None  # killed, not left sleeping

    started = time.time()
    run = _poll(w, _submit(w, "sleep", timeout_seconds=1))
    assert run.state is not None and run.state.result_state == jobs.RunResultState.TIMEDOUT
    assert time.time() - started < 10


def test_get_output_of_the_job_run_instead_of_its_task_run_is_refused(double: Double, w: WorkspaceClient) -> None:
    run_id = _submit(w, "ok")
    with pytest.raises(InvalidParameterValue, match="Retrieving the output of runs with multiple tasks"):
        w.jobs.get_run_output(run_id)
    _refused(double, "GET /api/2.2/jobs/runs/get-output")
    _poll(w, run_id)


def test_a_bad_submit_body_is_a_400_naming_the_field_and_is_recorded(double: Double, w: WorkspaceClient) -> None:
    with pytest.raises(InvalidParameterValue, match=r"\$.tasks\[0\].run_if: 'SOMETIMES' not in RunIf"):
        w.api_client.do(
            "POST",
            "/api/2.2/jobs/runs/submit",
            body={"tasks": [{"task_key": "train", "run_if": "SOMETIMES", "environment_key": "mlci"}]},
        )
    _refused(double, "POST /api/2.2/jobs/runs/submit: $.tasks[0].run_if: 'SOMETIMES' not in RunIf")
    with pytest.raises(InvalidParameterValue, match="environment_key 'gpu' is not among the job's environments"):
        w.jobs.submit(
            tasks=[
                jobs.SubmitTask(
                    task_key="t",
                    environment_key="gpu",
                    python_wheel_task=jobs.PythonWheelTask(package_name="dtask", entry_point="dtask"),
                )
            ]
        )
    _refused(double, "environment_key 'gpu'")


def test_a_created_job_is_listed_by_name_reset_run_now_with_parameters_and_deleted(
    double: Double, w: WorkspaceClient
) -> None:
    def settings(entry_parameters: list[str]) -> dict[str, Any]:
        return {
            "name": "churn-batch",
            "tasks": [
                jobs.Task(
                    task_key="batch",
                    python_wheel_task=jobs.PythonWheelTask(
                        package_name="mlci", entry_point="mlci", parameters=entry_parameters
                    ),
                    new_cluster=compute.ClusterSpec(spark_version="15.4.x-scala2.12", num_workers=0),
                    libraries=[compute.Library(pypi=compute.PythonPyPiLibrary(package="mlci"))],
                )
            ],
            "parameters": [jobs.JobParameterDefinition(name="flag", default="--help")],
        }

    job_id = w.jobs.create(**settings(["--version"])).job_id
    assert job_id is not None
    w.jobs.create(name="other", tasks=settings([])["tasks"])
    assert [j.job_id for j in w.jobs.list(name="churn-batch")] == [job_id]
    w.jobs.reset(job_id, new_settings=jobs.JobSettings(**settings(["{{job.parameters.flag}}"])))
    assert w.jobs.get(job_id).settings.tasks[0].python_wheel_task.parameters == ["{{job.parameters.flag}}"]
    run_id = w.jobs.run_now(job_id, job_parameters={"flag": "--version"}).run_id
    run = _poll(w, run_id)
    assert run.state is not None and run.state.result_state == jobs.RunResultState.SUCCESS, run.state
    assert run.run_type == jobs.RunType.JOB_RUN and run.job_id == job_id and run.number_in_job == 1
    assert run.tasks is not None
    assert w.jobs.get_run_output(run.tasks[0].run_id).logs == "mlci 0.1.0\n"  # mlci's own entry point ran
    with pytest.raises(InvalidParameterValue, match=r"job_parameters \['flg'\] are not defined"):
        w.jobs.run_now(job_id, job_parameters={"flg": "x"})
    _refused(double, "POST /api/2.2/jobs/run-now")
    with pytest.raises(InvalidParameterValue, match=r"\$.new_settings.tasks\[0\].task_key: required by Task"):
        w.api_client.do("POST", "/api/2.2/jobs/reset", body={"job_id": job_id, "new_settings": {"tasks": [{}]}})
    _refused(double, "POST /api/2.2/jobs/reset")
    w.jobs.delete(job_id)
    with pytest.raises(DatabricksError, match=f"Job {job_id} does not exist"):
        w.jobs.get(job_id)


# ----- Model Serving


@pytest.fixture(scope="module")
def models(double: Double) -> Double:
    """The UC model's versions saved; version 3 never finishes deploying."""
    saving, registry = double.saving_models  # type: ignore[attr-defined]
    assert saving.wait(timeout=120) == 0
    double.uc = registry  # type: ignore[attr-defined]
    double.failing_versions = {(MODEL, "3")}  # type: ignore[attr-defined]
    return double


def _entity(version: str) -> serving.ServedEntityInput:
    return serving.ServedEntityInput(
        entity_name=MODEL, entity_version=version, workload_size="Small", scale_to_zero_enabled=True
    )


def _wait_ready(w: WorkspaceClient, name: str) -> serving.ServingEndpointDetailed:
    for _ in range(20):
        endpoint = w.serving_endpoints.get(name)
        assert endpoint.state is not None
        if endpoint.state.config_update != serving.EndpointStateConfigUpdate.IN_PROGRESS:
            return endpoint
    raise AssertionError("never left IN_PROGRESS")


def _predict(w: WorkspaceClient, name: str) -> tuple[list[Any], str | None]:
    answer = w.serving_endpoints.query(name, dataframe_split=serving.DataframeSplitInput(columns=["x"], data=[[3.0]]))
    assert answer.predictions is not None
    return [round(p, 6) for p in answer.predictions], answer.served_model_name


def test_an_endpoint_is_created_updated_canaried_and_rolled_back_with_real_predictions(
    models: Double, w: WorkspaceClient
) -> None:
    name = "churn-staging"
    created = w.serving_endpoints.create(
        name, config=serving.EndpointCoreConfigInput(name=name, served_entities=[_entity("1")])
    ).response
    assert created.state is not None and created.state.config_update == serving.EndpointStateConfigUpdate.IN_PROGRESS
    assert created.pending_config is not None and created.config is None
    polls = [w.serving_endpoints.get(name) for _ in range(3)]
    assert [p.state.config_update.value for p in polls] == ["IN_PROGRESS", "IN_PROGRESS", "NOT_UPDATING"]
    assert polls[-1].state.ready == serving.EndpointStateReady.READY and polls[-1].pending_config is None
    assert _predict(w, name) == ([3.0], "churn-1")

    previous = polls[-1].config
    assert previous is not None and previous.served_entities is not None
    # A canary: version 2 takes 90 % of the traffic (the largest route answers).
    w.serving_endpoints.update_config(
        name,
        served_entities=[_entity("1"), _entity("2")],
        traffic_config=serving.TrafficConfig(
            routes=[
                serving.Route(served_model_name="churn-1", traffic_percentage=10),
                serving.Route(served_model_name="churn-2", traffic_percentage=90),
            ]
        ),
    )
    assert _predict(w, name) == ([3.0], "churn-1")  # the old config serves while the update is pending
    updated = _wait_ready(w, name)
    assert updated.config is not None and updated.config.config_version == 2
    assert _predict(w, name) == ([6.0], "churn-2")

    # Version 3 fails to deploy: UPDATE_FAILED, the old config keeps serving.
    w.serving_endpoints.update_config(name, served_entities=[_entity("3")])
    failed = _wait_ready(w, name)
    assert failed.state is not None and failed.state.config_update == serving.EndpointStateConfigUpdate.UPDATE_FAILED
    assert _predict(w, name) == ([6.0], "churn-2")

    # Rollback: re-PUT the captured previous config.
    w.serving_endpoints.update_config(
        name,
        served_entities=[_entity(e.entity_version) for e in previous.served_entities],
        traffic_config=previous.traffic_config,
    )
    rolled = _wait_ready(w, name)
    assert rolled.state is not None and rolled.state.config_update == serving.EndpointStateConfigUpdate.NOT_UPDATING
    assert [e.entity_version for e in rolled.config.served_entities] == ["1"]
    assert _predict(w, name) == ([3.0], "churn-1")

    models.broken_query_versions = {(MODEL, "1")}  # type: ignore[attr-defined]
    try:
        with pytest.raises(InternalError, match=f"Model {MODEL} version 1 failed to score the request"):
            _predict(w, name)
    finally:
        models.broken_query_versions = set()  # type: ignore[attr-defined]
    w.serving_endpoints.delete(name)
    with pytest.raises(NotFound, match="Endpoint with name 'churn-staging' does not exist"):
        w.serving_endpoints.get(name)


def test_serving_refuses_bad_bodies_and_a_bad_query(models: Double, w: WorkspaceClient) -> None:
    name = "churn-bad"
    with pytest.raises(InvalidParameterValue, match=r"\$.config.served_entities\[0\].entity_version: expected str"):
        w.api_client.do(
            "POST",
            "/api/2.0/serving-endpoints",
            body={
                "name": name,
                "config": {"name": name, "served_entities": [{"entity_name": MODEL, "entity_version": 1}]},
            },
        )
    _refused(models, "POST /api/2.0/serving-endpoints")
    w.serving_endpoints.create(name, config=serving.EndpointCoreConfigInput(name=name, served_entities=[_entity("1")]))
    _wait_ready(w, name)
    with pytest.raises(InvalidParameterValue, match=r"traffic_percentage: required by Route"):
        w.api_client.do(
            "PUT",
            f"/api/2.0/serving-endpoints/{name}/config",
            body={
                "served_entities": [_entity("2").as_dict()],
                "traffic_config": {"routes": [{"served_model_name": "churn-2"}]},
            },
        )
    _refused(models, f"PUT /api/2.0/serving-endpoints/{name}/config")
    with pytest.raises(InvalidParameterValue, match="traffic percentages sum to 50, not 100"):
        w.serving_endpoints.update_config(
            name,
            served_entities=[_entity("2")],
            traffic_config=serving.TrafficConfig(
                routes=[serving.Route(served_model_name="churn-2", traffic_percentage=50)]
            ),
        )
    _refused(models, "traffic percentages")
    with pytest.raises(InvalidParameterValue, match=r"\$.inference_table_config.enabled: expected bool, got str"):
        w.api_client.do(
            "PUT", f"/api/2.0/serving-endpoints/{name}/ai-gateway", body={"inference_table_config": {"enabled": "yes"}}
        )
    _refused(models, "ai-gateway")
    gateway = w.serving_endpoints.put_ai_gateway(
        name,
        inference_table_config=serving.AiGatewayInferenceTableConfig(
            enabled=True, catalog_name="main", schema_name="ml", table_name_prefix="churn"
        ),
    )
    assert gateway.inference_table_config is not None and gateway.inference_table_config.enabled is True
    with pytest.raises(InvalidParameterValue, match=r"\$.dataframe_splt: unknown field of ServingEndpointsAPI.query"):
        w.api_client.do("POST", f"/serving-endpoints/{name}/invocations", body={"dataframe_splt": {}})
    _refused(models, "invocations")
    with pytest.raises(BadRequest, match="Encountered an unexpected error while evaluating the model"):
        w.serving_endpoints.query(name, dataframe_records=[{"wrong": "text"}])
    w.serving_endpoints.delete(name)
