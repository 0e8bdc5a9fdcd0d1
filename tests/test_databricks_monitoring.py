"""Monitoring on Databricks (targets/databricks/monitoring.py), below the end-to-end story:

- the settings from mlci.yaml: the Quartz schedule, the InferenceLog monitor, the check job;
- ensure() against the loopback workspace double (every body checked against databricks-sdk's
  own method signatures): created, left alone, updated, put back on failure, pending while
  the table does not exist, the monitor's refresh polled until it ends;
- the job's Spark parts for real on local PySpark: the payload table unpacked into the
  inference table, and the metric tables (Databricks' column names) read back into the rows
  mlci's retrain rule takes.

Lakehouse Monitoring's own computation never runs here (docs/monitoring.md, "Databricks").
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import scaffold
from databricks_double import PAT, Double, start

from mlci.config import Project, load_project
from mlci.errors import UsageError
from mlci.targets.databricks import monitoring

pytestmark = pytest.mark.databricks


def write_config(root: Path, **monitor: Any) -> Project:
    path = root / "mlci.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["monitor"] = {**config.get("monitor", {}), **monitor}
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return load_project(root)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Double]:
    double = start(tmp_path_factory.mktemp("workspace"))
    try:
        yield double
    finally:
        double.stop()
    assert double.rejections == [], double.rejections


@pytest.fixture(scope="module")
def project_dir(tmp_path_factory: pytest.TempPathFactory, workspace: Double) -> Path:
    root = tmp_path_factory.mktemp("projects")
    assert scaffold("churn", root, "--target", "databricks") == 0
    path = root / "churn" / "mlci.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["databricks"].update(host=workspace.url, http_timeout=5, retry_timeout=5)
    config["databricks"]["environments"]["production"].update(catalog="ml", schema="churn_prod")
    config["monitor"] = {"schedule": "30 6 * * *", "slices": ["plan"], "labels": "ml.churn_prod.labels"}
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return root / "churn"


@pytest.fixture
def signed_in(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DATABRICKS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABRICKS_TOKEN", PAT)
    monkeypatch.setenv("DATABRICKS_AUTH_TYPE", "pat")


# ----- settings from mlci.yaml


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        ("30 6 * * *", "0 30 6 * * ?"),
        ("0 */4 * * *", "0 0 */4 * * ?"),
        ("15 2 1 * *", "0 15 2 1 * ?"),
        ("0 6 * * 1-5", "0 0 6 ? * 2-6"),  # Monday..Friday: cron 1-5, Quartz 2-6 (Sunday is 1)
        ("0 6 * * 0,6", "0 0 6 ? * 1,7"),
        ("0 6 * * 7", "0 0 6 ? * 1"),
        ("0 6 * * MON", "0 0 6 ? * MON"),
        ("0 6 * * */2", "0 0 6 ? * */2"),
    ],
)
def test_a_cron_schedule_becomes_quartz(cron: str, expected: str) -> None:
    assert monitoring.quartz(cron) == expected


def test_a_schedule_quartz_cannot_express_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"^monitor.schedule: '0 6 1 \* 1' sets both the day of month"):
        monitoring.quartz("0 6 1 * 1")


def test_the_monitor_and_the_job_follow_mlci_yaml(project_dir: Path) -> None:
    project = load_project(project_dir)
    tables = monitoring.names(project, "production")
    assert tables.payload == "ml.churn_prod.churn_production_payload"
    assert tables.inference == "ml.churn_prod.churn_production_inference"
    assert tables.profile_metrics == "ml.churn_prod.churn_production_inference_profile_metrics"
    settings = monitoring.monitor_settings(project, tables)
    assert settings["output_schema_name"] == "ml.churn_prod"
    assert settings["inference_log"].as_dict() == {
        "problem_type": "PROBLEM_TYPE_CLASSIFICATION",
        "timestamp_col": "timestamp",
        "granularities": ["1 day"],
        "model_id_col": "model_id",
        "prediction_col": "prediction",
        "label_col": "label",  # monitor.labels names a table: labels are joined
    }
    assert settings["slicing_exprs"] == ["plan"]
    assert settings["schedule"].as_dict() == {"quartz_cron_expression": "0 30 6 * * ?", "timezone_id": "UTC"}

    job = monitoring.job_settings(project, tables, 42, monitoring.config_path(project)).as_dict()
    assert [t["task_key"] for t in job["tasks"]] == ["unpack", "check", "retrain_needed", "retrain"]
    unpack, check, condition, retrain = job["tasks"]
    assert unpack["python_wheel_task"]["parameters"] == [
        "databricks-task",
        "monitor-unpack",
        "--payload",
        tables.payload,
        "--output",
        tables.inference,
        "--model",
        f"models:/{project.config.model_name}@champion",
        "--labels",
        "ml.churn_prod.labels",
    ]
    assert check["depends_on"] == [{"task_key": "unpack"}]
    assert check["python_wheel_task"]["parameters"] == [
        "databricks-task",
        "monitor-check",
        "--config",
        "/Volumes/main/default/mlci/churn/monitor/mlci.yaml",
        "--table",
        tables.inference,
    ]
    assert condition["condition_task"] == {"op": "EQUAL_TO", "left": "{{tasks.check.values.retrain}}", "right": "true"}
    assert retrain == {
        "task_key": "retrain",
        "depends_on": [{"task_key": "retrain_needed", "outcome": "true"}],
        "run_job_task": {"job_id": 42},
    }
    assert job["schedule"] == {"quartz_cron_expression": "0 30 6 * * ?", "timezone_id": "UTC"}
    # Without a training job there is nothing to start: the check still sets its task value.
    alone = monitoring.job_settings(project, tables, None, monitoring.config_path(project)).as_dict()
    assert [t["task_key"] for t in alone["tasks"]] == ["unpack", "check"]
    assert monitoring.names_of(tables.inference) == tables


def test_labels_in_a_folder_are_not_joined_and_regression_is_its_problem_type(tmp_path: Path) -> None:
    assert scaffold("reg", tmp_path, "--target", "databricks") == 0
    path = tmp_path / "reg" / "mlci.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["train"]["task"] = "regression"
    config["register"].pop("gates", None)
    config["register"].pop("primary_metric", None)
    config["monitor"] = {"schedule": "0 6 * * *", "granularity": "1 week"}
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    project = load_project(tmp_path / "reg")
    settings = monitoring.monitor_settings(project, monitoring.Names("main", "default", "reg_production"))
    log = settings["inference_log"].as_dict()
    assert log["problem_type"] == "PROBLEM_TYPE_REGRESSION" and log["granularities"] == ["1 week"]
    assert "label_col" not in log and settings["slicing_exprs"] is None


# ----- against the workspace double


def monitors(workspace: Double) -> dict[str, Any]:
    result: dict[str, Any] = workspace.monitors  # type: ignore[attr-defined]
    return result


def test_ensure_creates_leaves_alone_updates_and_undoes(workspace: Double, project_dir: Path, signed_in: None) -> None:
    lines: list[str] = []
    project = load_project(project_dir)
    table = monitoring.names(project, "production").inference
    # A training job of the project's name (the bundle's): the retrain starts it.
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service import compute, jobs

    w = WorkspaceClient(host=workspace.url, token=PAT, auth_type="pat")
    train = w.jobs.create(
        name="churn-train",
        tasks=[
            jobs.Task(
                task_key="train",
                python_wheel_task=jobs.PythonWheelTask(package_name="mlci", entry_point="mlci", parameters=["x"]),
                environment_key="mlci",
            )
        ],
        environments=[jobs.JobEnvironment(environment_key="mlci", spec=compute.Environment(environment_version="3"))],
    ).job_id

    facts, undo = monitoring.ensure(project, "production", lines.append)
    assert facts is not None
    assert (facts["monitor"], facts["job"], facts["retrain_job_id"]) == ("created", "created", train)
    (created,) = workspace.calls("POST", rf"/api/2\.1/unity-catalog/tables/{table}/monitor")
    assert created.body["assets_dir"] == "/Workspace/Users/ci@example.com/mlci/churn/monitoring"
    assert created.body["inference_log"]["label_col"] == "label"
    uploaded = workspace.file_path("/Volumes/main/default/mlci/churn/monitor/mlci.yaml")
    assert uploaded.read_bytes() == project.config_path.read_bytes()
    job = w.jobs.get(facts["job_id"]).settings
    assert job is not None and job.tasks is not None
    assert job.tasks[-1].run_job_task is not None and job.tasks[-1].run_job_task.job_id == train

    again, _ = monitoring.ensure(project, "production", lines.append)
    assert again is not None and (again["monitor"], again["job"], again["job_id"]) == (
        "unchanged",
        "unchanged",
        facts["job_id"],
    )
    assert not workspace.calls("PUT", rf"/api/2\.1/unity-catalog/tables/{table}/monitor")
    assert not workspace.calls("POST", r"/api/2\.2/jobs/reset")

    changed = write_config(project_dir, slices=["plan", "region"], granularity="1 hour")
    updated, undo_update = monitoring.ensure(changed, "production", lines.append)
    assert updated is not None and (updated["monitor"], updated["job"]) == ("updated", "unchanged")
    assert monitors(workspace)[table]["slicing_exprs"] == ["plan", "region"]
    assert monitors(workspace)[table]["inference_log"]["granularities"] == ["1 hour"]
    # The deploy failed after this: the monitor goes back to what it was.
    undo_update()
    assert monitors(workspace)[table]["slicing_exprs"] == ["plan"]
    assert monitors(workspace)[table]["inference_log"]["granularities"] == ["1 day"]
    write_config(project_dir, slices=["plan"], granularity="1 day")
    # And a failed first deploy removes what it created.
    undo()
    assert table not in monitors(workspace)
    assert not [j for j in w.jobs.list(name="churn-monitor")]


def test_a_table_that_does_not_exist_yet_leaves_the_monitor_to_the_job(
    workspace: Double, project_dir: Path, signed_in: None
) -> None:
    project = load_project(project_dir)
    table = monitoring.names(project, "production").inference
    workspace.missing_tables.add(table)  # type: ignore[attr-defined]
    lines: list[str] = []
    try:
        facts, undo = monitoring.ensure(project, "production", lines.append)
    finally:
        workspace.missing_tables.clear()  # type: ignore[attr-defined]
    assert facts is not None and facts["monitor"] == "pending" and facts["job"] in ("created", "unchanged")
    assert any("does not exist yet" in line for line in lines)
    assert table not in monitors(workspace)
    undo()


def test_the_refresh_is_polled_until_it_succeeds(workspace: Double, project_dir: Path, signed_in: None) -> None:
    from databricks.sdk import WorkspaceClient

    project = load_project(project_dir)
    tables = monitoring.names(project, "production")
    w = WorkspaceClient(host=workspace.url, token=PAT, auth_type="pat")
    action, undo = monitoring.ensure_monitor(w, project, tables, print)
    try:
        done = monitoring.refresh(w, tables.inference, poll=0.01)
        assert done.state.value == "SUCCESS"
        polls = workspace.calls("GET", rf"/api/2\.1/unity-catalog/tables/{tables.inference}/monitor/refreshes/\d+")
        assert len(polls) == 2  # PENDING -> RUNNING -> SUCCESS
    finally:
        undo()
    assert action == "created"


# ----- the job's Spark parts, on local PySpark


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pyspark_sql = pytest.importorskip("pyspark.sql")
    warehouse = tmp_path_factory.mktemp("warehouse")
    os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)  # type: ignore[attr-defined]
    session = (
        pyspark_sql.SparkSession.builder.master("local[1]")
        .appName("mlci-dbx-monitoring")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.default.parallelism", "1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.warehouse.dir", str(warehouse))
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    # Tables of these tests in a database of their own, under tmp (not the working directory,
    # should a session started by another module be reused).
    session.sql(f"CREATE DATABASE IF NOT EXISTS mlci_dbx LOCATION '{warehouse / 'mlci_dbx'}'")
    yield session
    session.stop()


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, 2, hour, minute, tzinfo=timezone.utc)


def payload_rows() -> list[tuple[Any, ...]]:
    """Payload rows as AI Gateway logs them: request/response JSON text per request."""
    split = {"dataframe_split": {"columns": ["tenure", "plan"], "data": [[3.5, "basic"], [12.0, "pro"]]}}
    records = {"dataframe_records": [{"tenure": 7, "plan": "pro"}]}
    return [
        ("db-1", "c-1", at(9), 200, json.dumps(split), json.dumps({"predictions": ["no", "yes"]}), "ent-1"),
        ("db-2", None, at(10), 200, json.dumps(records), json.dumps({"predictions": ["yes"]}), "ent-2"),
        ("db-3", "c-3", at(11), 400, json.dumps(records), json.dumps({"error_code": "BAD_REQUEST"}), "ent-2"),
    ]


@pytest.mark.spark
def test_the_payload_table_unpacks_into_the_inference_table(spark: Any) -> None:
    from pyspark.sql import types as T

    payload = T.StructType(
        [
            T.StructField("databricks_request_id", T.StringType()),
            T.StructField("client_request_id", T.StringType()),
            T.StructField("request_time", T.TimestampType()),
            T.StructField("status_code", T.IntegerType()),
            T.StructField("request", T.StringType()),
            T.StructField("response", T.StringType()),
            T.StructField("served_entity_id", T.StringType()),
        ]
    )
    spark.createDataFrame(payload_rows(), payload).write.mode("overwrite").saveAsTable("mlci_dbx.ep_payload")
    entities = [("ent-1", "ml.models.churn", "3"), ("ent-2", "ml.models.churn", "4")]
    spark.createDataFrame(entities, "served_entity_id string, entity_name string, entity_version string").write.mode(
        "overwrite"
    ).saveAsTable("mlci_dbx.served_entities")
    labels = [("c-1-0", "yes", at(12)), ("c-1-0", "no", at(13)), ("db-2", "yes", at(12))]
    spark.createDataFrame(labels, "request_id string, label string, label_timestamp timestamp").write.mode(
        "overwrite"
    ).saveAsTable("mlci_dbx.labels")

    count = monitoring.unpack(
        spark,
        "mlci_dbx.ep_payload",
        "mlci_dbx.ep_inference",
        [("tenure", "double"), ("plan", "string")],
        served_entities="mlci_dbx.served_entities",
        labels="mlci_dbx.labels",
    )
    assert count == 3  # two rows of one request, one of another; the refused request (400) is none
    table = spark.read.table("mlci_dbx.ep_inference")
    assert [(f.name, f.dataType.simpleString()) for f in table.schema.fields] == [
        ("request_id", "string"),
        ("timestamp", "timestamp"),
        ("model_id", "string"),
        ("tenure", "double"),
        ("plan", "string"),
        ("prediction", "string"),
        ("label", "string"),
    ]
    rows = sorted((r.asDict() for r in table.collect()), key=lambda r: r["request_id"])
    for row in rows:  # PySpark's naive local time, as UTC
        row["timestamp"] = row["timestamp"].astimezone(timezone.utc)
    assert rows == [
        {
            "request_id": "c-1-0",
            "timestamp": at(9),
            "model_id": "ml.models.churn@3",
            "tenure": 3.5,
            "plan": "basic",
            "prediction": "no",
            "label": "no",  # the last label of the request id wins
        },
        {
            "request_id": "c-1-1",
            "timestamp": at(9),
            "model_id": "ml.models.churn@3",
            "tenure": 12.0,
            "plan": "pro",
            "prediction": "yes",
            "label": None,
        },
        {
            "request_id": "db-2",  # no client id: Databricks' own
            "timestamp": at(10),
            "model_id": "ml.models.churn@4",
            "tenure": 7.0,
            "plan": "pro",
            "prediction": "yes",
            "label": "yes",
        },
    ]


PROFILE_SCHEMA = (
    "window struct<start: timestamp, end: timestamp>, granularity string, model_id string, slice_key string, "
    "slice_value string, column_name string, log_type string, count bigint, accuracy_score double, "
    "f1_score struct<one_vs_all: map<string, double>, macro: double, weighted: double>"
)
DRIFT_SCHEMA = (
    "window struct<start: timestamp, end: timestamp>, granularity string, model_id string, slice_key string, "
    "slice_value string, column_name string, drift_type string, window_cmp struct<start: timestamp, end: timestamp>, "
    "population_stability_index double, ks_test struct<statistic: double, pvalue: double>"
)


@pytest.mark.spark
def test_the_metric_tables_read_back_as_the_rows_the_rule_takes(spark: Any) -> None:
    day = [(at(0), at(0).replace(day=3)), (at(0).replace(day=3), at(0).replace(day=4))]
    profile = [
        ({"start": day[1][0], "end": day[1][1]}, "1 day", "m@2", None, None, ":table", "INPUT", 90, 0.8,
         {"one_vs_all": {"yes": 0.7}, "macro": 0.75, "weighted": 0.78}),
        ({"start": day[0][0], "end": day[0][1]}, "1 day", "m@2", None, None, ":table", "INPUT", 120, 0.9,
         {"one_vs_all": {"yes": 0.85}, "macro": 0.86, "weighted": 0.88}),
        ({"start": day[0][0], "end": day[0][1]}, "1 day", "m@1", None, None, ":table", "INPUT", 5, 0.1, None),
        ({"start": day[0][0], "end": day[0][1]}, "1 day", "*", None, None, ":table", "INPUT", 125, 0.85, None),
    ]  # fmt: skip
    drift = [
        ({"start": day[1][0], "end": day[1][1]}, "1 day", "m@2", None, None, "tenure", "BASELINE", None, 0.31,
         {"statistic": 0.2, "pvalue": 0.01}),
        ({"start": day[1][0], "end": day[1][1]}, "1 day", "m@2", None, None, "tenure", "CONSECUTIVE",
         {"start": day[0][0], "end": day[0][1]}, 0.05, {"statistic": 0.05, "pvalue": 0.6}),
    ]  # fmt: skip
    spark.createDataFrame(profile, PROFILE_SCHEMA).write.mode("overwrite").saveAsTable("mlci_dbx.t_profile_metrics")
    spark.createDataFrame(drift, DRIFT_SCHEMA).write.mode("overwrite").saveAsTable("mlci_dbx.t_drift_metrics")

    rows, drifts = monitoring.metric_rows(spark, "mlci_dbx.t_profile_metrics", "mlci_dbx.t_drift_metrics", "m@2")
    # The served version's rows only, oldest window first, structs as dicts (row["window"]["start"]).
    assert [(r["window"]["start"], r["count"], r["f1_score"]["weighted"]) for r in rows] == [
        (day[0][0], 120, 0.88),
        (day[1][0], 90, 0.78),
    ]
    assert rows[0]["slice_key"] is None and rows[0]["column_name"] == ":table"
    assert {r["drift_type"] for r in drifts} == {"BASELINE", "CONSECUTIVE"}
    baseline = next(r for r in drifts if r["drift_type"] == "BASELINE")
    assert baseline["window_cmp"] is None and baseline["ks_test"] == {"statistic": 0.2, "pvalue": 0.01}
    assert baseline["population_stability_index"] == 0.31


def test_the_check_task_calls_the_retrain_rule_by_its_contract() -> None:
    """monitoring.decide hands the rows to check.decide_from_rows (SPEC14's signature); live once
    the check helper's module is merged."""
    import inspect

    check = pytest.importorskip("mlci.monitoring.check")
    parameters = inspect.signature(check.decide_from_rows).parameters
    assert list(parameters)[:3] == ["profile", "drift", "performance"]
    assert {"project", "baseline", "model_id", "now", "last_retrain"} <= set(parameters)
