"""Monitoring on Databricks: a Lakehouse Monitoring monitor on the production endpoint's
inference table and the scheduled job that turns its metric tables into a retrain decision.

What the production deploy keeps (when mlci.yaml has `monitor.schedule`):

- the **processed inference table** `<catalog>.<schema>.<prefix>_inference` in the columns of
  mlci's own inference table (request_id, timestamp, model_id, the features, prediction, and
  `label` when monitor.labels names a Unity Catalog table): the endpoint's AI Gateway payload
  table `<prefix>_payload` holds raw request/response JSON, which Lakehouse Monitoring cannot
  profile, so the job's first task (`mlci databricks-task monitor-unpack`) unpacks it with Spark;
- the **monitor** (`w.quality_monitors`): an InferenceLog profile of that table, one window
  per monitor.granularity, slices monitor.slices, the metric tables in the environment's schema;
  created, updated when mlci.yaml changed, left alone when it did not;
- the **check job** `<project>-monitor`, as mlops-stacks wires it: unpack, then
  `mlci databricks-task monitor-check` (refresh the monitor, read `_profile_metrics` and
  `_drift_metrics` with Spark, mlci's retrain rule, the task value `retrain`), then a
  condition task and a run_job_task that starts the training job `<project>-train` (the
  bundle's, or the team's own job of that name) when the value is "true".

A deploy that fails after these changed puts them back as they were (deleted when this deploy
created them). databricks-sdk and pyspark are imported inside functions only.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from mlci.config import Project
from mlci.errors import InfraError, UsageError, first_line
from mlci.registry import CHAMPION
from mlci.targets.databricks import jobs, workspace

UNPACK_TASK_KEY = "unpack"
CHECK_TASK_KEY = "check"
CONDITION_TASK_KEY = "retrain_needed"
RETRAIN_TASK_KEY = "retrain"
# The task value the check task sets and the condition task compares ("true"/"false").
RETRAIN_VALUE = "retrain"
# Where a served entity's id gets its model name and version (AI Gateway's payload rows name
# the entity by id only): the workspace's system table of served entities.
SERVED_ENTITIES = "system.serving.served_entities"
# How long the check task waits for the monitor's refresh before it gives up (exit 3).
REFRESH_TIMEOUT = 3600
_UC_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\.[A-Za-z_][A-Za-z0-9_-]*\.[A-Za-z_][A-Za-z0-9_-]*")


@dataclass(frozen=True)
class Names:
    """The tables of one environment: catalog and schema of its inference tables and the
    endpoint's table prefix (its name with '-' as '_', as serving.deploy sets it)."""

    catalog: str
    schema: str
    prefix: str

    @property
    def output_schema(self) -> str:
        return f"{self.catalog}.{self.schema}"

    @property
    def payload(self) -> str:
        return f"{self.output_schema}.{self.prefix}_payload"

    @property
    def inference(self) -> str:
        return f"{self.output_schema}.{self.prefix}_inference"

    @property
    def profile_metrics(self) -> str:
        return f"{self.inference}_profile_metrics"

    @property
    def drift_metrics(self) -> str:
        return f"{self.inference}_drift_metrics"


def names(project: Project, env: str) -> Names:
    where = workspace.workspace(project, env)
    return Names(where.settings.catalog, where.settings.schema, where.endpoint.replace("-", "_"))


# The bundle's names: each target's own variables (databricks.yml).
BUNDLE_NAMES = Names("${var.catalog}", "${var.schema}", "${var.inference_table_prefix}")


def job_name(project: Project) -> str:
    return f"{project.config.project.name}-monitor"


def training_job_name(project: Project) -> str:
    """The job a retrain starts: the bundle's training job (resources.jobs.train)."""
    return f"{project.config.project.name}-train"


def config_path(project: Project) -> str:
    """Where the production deploy uploads mlci.yaml for the check task (the retrain rule)."""
    return f"{jobs.volume_path(project)}/monitor/mlci.yaml"


def labels_table(project: Project) -> str | None:
    """monitor.labels when it names a Unity Catalog table (request_id, label, label_timestamp):
    on Databricks labels are joined from a table, not from a folder."""
    labels = project.config.monitor.labels
    return labels if _UC_TABLE.fullmatch(labels) else None


def quartz(cron: str, where: str = "monitor.schedule") -> str:
    """A five-field cron (minute hour day-of-month month day-of-week, Sunday 0 or 7) as the
    Quartz expression Databricks schedules take (seconds first, Sunday 1, one of the two day
    fields '?')."""
    minute, hour, dom, month, dow = cron.split()
    if dow == "*":
        dow = "?"
    elif dom in ("*", "?"):
        dom = "?"
        dow = re.sub(r"(?<![/\d])\d+", lambda m: str(int(m.group()) % 7 + 1), dow)
    else:
        raise UsageError(
            f"{where}: '{cron}' sets both the day of month and the day of week, which Databricks' "
            "Quartz schedules cannot; set one of them to '*'"
        )
    return f"0 {minute} {hour} {dom} {month} {dow}"


# ----- the monitor


def monitor_settings(project: Project, tables: Names) -> dict[str, Any]:
    """The monitor's settings as quality_monitors.create/update take them (keyword arguments)."""
    from databricks.sdk.service import catalog

    cfg = project.config
    problem = (
        catalog.MonitorInferenceLogProblemType.PROBLEM_TYPE_CLASSIFICATION
        if cfg.train.task == "classification"
        else catalog.MonitorInferenceLogProblemType.PROBLEM_TYPE_REGRESSION
    )
    assert cfg.monitor.schedule is not None
    return {
        "output_schema_name": tables.output_schema,
        "inference_log": catalog.MonitorInferenceLog(
            problem_type=problem,
            timestamp_col="timestamp",
            granularities=[cfg.monitor.granularity],
            model_id_col="model_id",
            prediction_col="prediction",
            # Labels exist only where they are joined; Model Serving answers labels, not
            # probabilities, so there is no prediction_proba_col.
            label_col="label" if labels_table(project) else None,
        ),
        "slicing_exprs": list(cfg.monitor.slices) or None,
        "schedule": catalog.MonitorCronSchedule(quartz_cron_expression=quartz(cfg.monitor.schedule), timezone_id="UTC"),
    }


def _comparable(settings: Mapping[str, Any]) -> dict[str, Any]:
    """What decides whether a monitor needs an update: its settings as JSON, without what the
    workspace fills in (a schedule's pause status) or what an update cannot change."""
    inference = settings.get("inference_log")
    schedule = settings.get("schedule")
    return {
        "output_schema_name": settings.get("output_schema_name"),
        "inference_log": inference.as_dict() if inference is not None else None,
        "slicing_exprs": list(settings.get("slicing_exprs") or []),
        "schedule": (
            {"quartz_cron_expression": schedule.quartz_cron_expression, "timezone_id": schedule.timezone_id}
            if schedule is not None
            else None
        ),
    }


def _current(info: Any) -> dict[str, Any]:
    return {
        "output_schema_name": info.output_schema_name,
        "inference_log": info.inference_log,
        "slicing_exprs": info.slicing_exprs,
        "schedule": info.schedule,
    }


def assets_dir(w: Any, project: Project) -> str:
    """Where the monitor's dashboard goes: the signed-in principal's own workspace folder."""
    me = w.current_user.me()
    return f"/Workspace/Users/{me.user_name}/mlci/{project.config.project.name}/monitoring"


def ensure_monitor(w: Any, project: Project, tables: Names, progress: Callable[[str], None]) -> tuple[str, Any]:
    """Create the monitor on the processed inference table, update it when its settings
    differ, leave it alone when they do not: ("created" | "updated" | "unchanged" | "pending",
    what undoes it). "pending": the table does not exist yet (the check job's first unpack
    writes it and its check task creates the monitor then)."""
    from databricks.sdk.errors import NotFound
    from databricks.sdk.errors.base import DatabricksError

    wanted = monitor_settings(project, tables)
    table = tables.inference
    try:
        info = w.quality_monitors.get(table)
    except NotFound:
        info = None
    if info is None:
        try:
            w.quality_monitors.create(table, assets_dir=assets_dir(w, project), **wanted)
        except DatabricksError as exc:
            if not _no_such_table(exc):
                raise
            progress(f"deploy: {table} does not exist yet: the monitor job creates its monitor after the first unpack")
            return "pending", lambda: None
        return "created", lambda: _delete_monitor_quietly(w, table, progress)
    if _comparable(_current(info)) == _comparable(wanted):
        return "unchanged", lambda: None
    previous = _current(info)
    w.quality_monitors.update(table, **wanted)

    def restore() -> None:
        try:
            w.quality_monitors.update(table, **previous)
        except Exception as exc:
            progress(f"deploy: could not restore the monitor of {table} ({first_line(exc)}); restore it by hand")

    return "updated", restore


def _no_such_table(exc: Exception) -> bool:
    from databricks.sdk.errors import NotFound

    return isinstance(exc, NotFound) or getattr(exc, "error_code", None) == "TABLE_DOES_NOT_EXIST"


def _delete_monitor_quietly(w: Any, table: str, progress: Callable[[str], None]) -> None:
    progress(f"deploy: deleting the monitor of {table}, which this deploy created")
    try:
        w.quality_monitors.delete(table)
    except Exception as exc:
        progress(f"deploy: could not delete the monitor of {table} ({first_line(exc)}); delete it by hand")


# ----- the check job


def job_settings(project: Project, tables: Names, retrain_job_id: int | str | None, config: str) -> Any:
    """The check job (also what the bundle declares): unpack, check, and, when a training job
    is given, the condition and the run_job_task that starts it; on monitor.schedule."""
    from databricks.sdk.service import compute
    from databricks.sdk.service import jobs as sdk_jobs

    cfg = project.config
    assert cfg.monitor.schedule is not None

    def wheel(*parameters: str) -> Any:
        return sdk_jobs.PythonWheelTask(
            package_name="mlci", entry_point="mlci", parameters=["databricks-task", *parameters]
        )

    unpack = ["monitor-unpack", "--payload", tables.payload, "--output", tables.inference]
    unpack += ["--model", f"models:/{cfg.model_name}@{CHAMPION}"]
    labels = labels_table(project)
    if labels:
        unpack += ["--labels", labels]
    check = ["monitor-check", "--config", config, "--table", tables.inference]
    tasks = [
        sdk_jobs.Task(task_key=UNPACK_TASK_KEY, python_wheel_task=wheel(*unpack), environment_key=jobs.ENVIRONMENT_KEY),
        sdk_jobs.Task(
            task_key=CHECK_TASK_KEY,
            depends_on=[sdk_jobs.TaskDependency(task_key=UNPACK_TASK_KEY)],
            python_wheel_task=wheel(*check),
            environment_key=jobs.ENVIRONMENT_KEY,
        ),
    ]
    if retrain_job_id is not None:
        tasks += [
            sdk_jobs.Task(
                task_key=CONDITION_TASK_KEY,
                depends_on=[sdk_jobs.TaskDependency(task_key=CHECK_TASK_KEY)],
                condition_task=sdk_jobs.ConditionTask(
                    op=sdk_jobs.ConditionTaskOp.EQUAL_TO,
                    left=f"{{{{tasks.{CHECK_TASK_KEY}.values.{RETRAIN_VALUE}}}}}",
                    right="true",
                ),
            ),
            sdk_jobs.Task(
                task_key=RETRAIN_TASK_KEY,
                depends_on=[sdk_jobs.TaskDependency(task_key=CONDITION_TASK_KEY, outcome="true")],
                run_job_task=sdk_jobs.RunJobTask(job_id=retrain_job_id),  # type: ignore[arg-type]
            ),
        ]
    return sdk_jobs.JobSettings(
        name=job_name(project),
        tasks=tasks,
        environments=[
            sdk_jobs.JobEnvironment(
                environment_key=jobs.ENVIRONMENT_KEY,
                spec=compute.Environment(
                    environment_version=cfg.databricks.train.environment_version,
                    dependencies=[jobs.mlci_requirement(project)],
                ),
            )
        ],
        schedule=sdk_jobs.CronSchedule(quartz_cron_expression=quartz(cfg.monitor.schedule), timezone_id="UTC"),
        max_concurrent_runs=1,
        tags={"mlci-project": cfg.project.name},
    )


def _job_by_name(w: Any, name: str) -> Any | None:
    found = [job for job in w.jobs.list(name=name) if job.settings and job.settings.name == name]
    return min(found, key=lambda job: int(job.job_id)) if found else None


def ensure_check_job(w: Any, settings: Any, progress: Callable[[str], None]) -> tuple[int, str, Callable[[], None]]:
    """Create the check job, reset it when its settings differ, leave it alone when not:
    (job id, "created" | "reset" | "unchanged", what undoes it)."""
    existing = _job_by_name(w, settings.name)
    if existing is None:
        job_id = jobs.create_job(w, settings)

        def delete() -> None:
            progress(f"deploy: deleting job {settings.name} ({job_id}), which this deploy created")
            try:
                w.jobs.delete(job_id)
            except Exception as exc:
                progress(f"deploy: could not delete job {job_id} ({first_line(exc)}); delete it by hand")

        return job_id, "created", delete
    job_id = int(existing.job_id)
    before = w.jobs.get(job_id).settings
    if _job_comparable(before) == _job_comparable(settings):
        return job_id, "unchanged", lambda: None
    w.jobs.reset(job_id, settings)

    def restore() -> None:
        try:
            w.jobs.reset(job_id, before)
        except Exception as exc:
            progress(f"deploy: could not restore job {job_id} ({first_line(exc)}); restore it by hand")

    return job_id, "reset", restore


def _job_comparable(settings: Any) -> dict[str, Any]:
    """A job's settings as JSON, without the defaults the workspace adds (format, timeout,
    notifications): what mlci sets is what decides."""
    data = settings.as_dict()
    return {k: data.get(k) for k in ("name", "tasks", "environments", "schedule", "max_concurrent_runs", "tags")}


def ensure(
    project: Project, env: str, progress: Callable[[str], None]
) -> tuple[dict[str, Any] | None, Callable[[], None]]:
    """What the production deploy keeps: mlci.yaml on the volume, the monitor and the check
    job; their facts and what undoes every change (None and a no-op without monitor.schedule)."""
    if project.config.monitor.schedule is None:
        return None, lambda: None
    w = workspace.client(project, env)
    tables = names(project, env)
    undo: list[Callable[[], None]] = []

    def undo_all() -> None:
        for step in reversed(undo):
            step()

    try:
        config = config_path(project)
        w.files.upload(config, io.BytesIO(project.config_path.read_bytes()), overwrite=True)
        monitor_action, monitor_undo = ensure_monitor(w, project, tables, progress)
        undo.append(monitor_undo)
        training = _job_by_name(w, training_job_name(project))
        if training is None:
            progress(
                f"deploy: no job {training_job_name(project)} in the workspace: the monitor job sets the task value "
                f"'{RETRAIN_VALUE}' but starts no retrain (deploy the bundle, or name your training job so)"
            )
        settings = job_settings(project, tables, int(training.job_id) if training else None, config)
        job_id, job_action, job_undo = ensure_check_job(w, settings, progress)
        undo.append(job_undo)
    except BaseException:
        undo_all()
        raise
    progress(
        f"deploy: monitor of {tables.inference} {monitor_action}; check job {settings.name} ({job_id}) {job_action}"
    )
    facts = {
        "table": tables.inference,
        "payload_table": tables.payload,
        "monitor": monitor_action,
        "job_id": job_id,
        "job": job_action,
        "retrain_job_id": int(training.job_id) if training else None,
        "profile_metrics": tables.profile_metrics,
        "drift_metrics": tables.drift_metrics,
    }
    return facts, undo_all


# ----- inside the job: monitor-unpack


def _spark_type(mlflow_type: str) -> str:
    return {
        "double": "double",
        "float": "float",
        "long": "bigint",
        "integer": "int",
        "boolean": "boolean",
        "string": "string",
        "datetime": "timestamp",
        "binary": "binary",
    }.get(mlflow_type, "string")


def model_features(model_uri: str) -> list[tuple[str, str]]:
    """(name, Spark type) of the model's inputs, from its logged signature."""
    import mlflow

    info = mlflow.models.get_model_info(model_uri)
    signature = info.signature
    if signature is None or signature.inputs is None:
        raise UsageError(f"{model_uri} has no signature to unpack requests with; retrain with 'mlci train'")
    return [(str(spec.name), _spark_type(str(spec.type.name))) for spec in signature.inputs.inputs]


def unpack(
    spark: Any,
    payload: str,
    output: str,
    features: Sequence[tuple[str, str]],
    *,
    served_entities: str = SERVED_ENTITIES,
    labels: str | None = None,
) -> int:
    """Overwrite `output` with one row per scored row of the payload table's successful
    requests (dataframe_split or dataframe_records bodies): request_id (the client's id, else
    Databricks'; `-<i>` after it for the i-th row of a request of several), timestamp,
    model_id (`<model>@<version>` of the served entity), the features, prediction, and label
    (the last label of the request id) when `labels` is given; the row count."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T
    from pyspark.sql.window import Window

    names_ = [name for name, _ in features]
    body = T.StructType(
        [
            T.StructField(
                "dataframe_split",
                T.StructType(
                    [
                        T.StructField("columns", T.ArrayType(T.StringType())),
                        T.StructField("data", T.ArrayType(T.ArrayType(T.StringType()))),
                    ]
                ),
            ),
            T.StructField("dataframe_records", T.ArrayType(T.MapType(T.StringType(), T.StringType()))),
        ]
    )
    answer = T.StructType([T.StructField("predictions", T.ArrayType(T.StringType()))])
    raw = spark.read.table(payload).where(F.col("status_code") == 200)
    parsed = raw.select(
        F.coalesce(F.col("client_request_id"), F.col("databricks_request_id")).alias("request_id"),
        F.col("request_time").alias("timestamp"),
        F.col("served_entity_id"),
        F.from_json("request", body).alias("body"),
        F.from_json("response", answer).alias("answer"),
    )
    # Each input row as a map column -> value text, whichever body shape the client sent.
    split = F.col("body.dataframe_split")
    from_split = F.transform(split["data"], lambda row: F.map_from_arrays(split["columns"], row))
    parsed = parsed.withColumn("records", F.coalesce(F.col("body.dataframe_records"), from_split))
    parsed = parsed.withColumn("n", F.size("records"))
    rows = parsed.select(
        "request_id",
        "timestamp",
        "served_entity_id",
        "n",
        F.posexplode(F.arrays_zip(F.col("records").alias("record"), F.col("answer.predictions").alias("p"))),
    )
    entities = spark.read.table(served_entities).select(
        "served_entity_id", F.concat_ws("@", "entity_name", "entity_version").alias("model_id")
    )
    rows = rows.join(F.broadcast(entities.dropDuplicates(["served_entity_id"])), "served_entity_id", "left")
    columns = [
        F.when(F.col("n") > 1, F.concat_ws("-", "request_id", F.col("pos").cast("string")))
        .otherwise(F.col("request_id"))
        .alias("request_id"),
        F.col("timestamp"),
        F.col("model_id"),
        *[F.col("col.record").getItem(name).cast(kind).alias(name) for name, kind in features],
        F.col("col.p").alias("prediction"),
    ]
    table = rows.select(*columns)
    if labels:
        latest = Window.partitionBy("request_id").orderBy(F.col("label_timestamp").desc())
        joined = (
            spark.read.table(labels)
            .withColumn("_rank", F.row_number().over(latest))
            .where(F.col("_rank") == 1)
            .select("request_id", F.col("label").cast("string").alias("label"))
        )
        table = table.join(joined, "request_id", "left")
    table = table.select("request_id", "timestamp", "model_id", *names_, "prediction", *(["label"] if labels else []))
    # The monitor profiles the table as a whole each refresh: a rewrite keeps late labels joined.
    table.write.mode("overwrite").option("overwriteSchema", "true").saveAsTable(output)
    return int(spark.read.table(output).count())


# ----- inside the job: monitor-check


def metric_rows(
    spark: Any, profile_table: str, drift_table: str, model_id: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The profile and drift metric rows of one model version, as plain dicts (nested
    structs as dicts: `row["window"]["start"]` is a UTC datetime), oldest window first."""
    from pyspark.sql import functions as F

    def read(table: str) -> list[dict[str, Any]]:
        frame = spark.read.table(table).where(F.col("model_id") == model_id).orderBy(F.col("window.start"))
        return [_aware(row.asDict(recursive=True)) for row in frame.collect()]

    return read(profile_table), read(drift_table)


def _aware(value: Any) -> Any:
    """PySpark hands timestamps back as naive datetimes in this process's local time: as UTC
    datetimes, comparable with the rule's `now`."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc) if value.tzinfo is None else value
    if isinstance(value, dict):
        return {k: _aware(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_aware(v) for v in value]
    return value


def refresh(w: Any, table: str, poll: float, timeout: float = REFRESH_TIMEOUT) -> Any:
    """Run a refresh of the monitor and wait until it ends; InfraError unless it succeeded."""
    started = time.monotonic()
    info = w.quality_monitors.run_refresh(table)
    while True:
        state = info.state.value if info.state else "UNKNOWN"
        if state == "SUCCESS":
            return info
        if state in ("FAILED", "CANCELED"):
            raise InfraError(f"the refresh of the monitor of {table} ended {state}: {info.message or 'no message'}")
        if time.monotonic() - started >= timeout:
            raise InfraError(f"the refresh of the monitor of {table} did not end within {int(timeout)}s ({state})")
        time.sleep(poll)
        info = w.quality_monitors.get_refresh(table, info.refresh_id)


def champion(client: Any, model_name: str) -> tuple[str, datetime | None]:
    """The champion's model id and the creation time of the model's newest version (the
    last retrain, which the cooldown counts from)."""
    version = client.get_model_version_by_alias(model_name, CHAMPION)
    newest = max(
        (int(v.creation_timestamp or 0) for v in client.search_model_versions(f"name='{model_name}'")), default=0
    )
    last = datetime.fromtimestamp(newest / 1000, tz=timezone.utc) if newest else None
    return f"{model_name}@{version.version}", last


def decide(
    project: Project,
    profile: Sequence[Mapping[str, Any]],
    drift: Sequence[Mapping[str, Any]],
    *,
    baseline: Any,
    model_id: str,
    now: datetime,
    last_retrain: datetime | None,
) -> Any:
    """mlci's retrain rule on the Databricks metric tables (no performance_metrics table:
    Lakehouse Monitoring estimates no performance, so those signals have no value)."""
    from mlci.monitoring.check import decide_from_rows  # type: ignore[import-untyped,import-not-found,unused-ignore]

    return decide_from_rows(
        profile, drift, [], project=project, baseline=baseline, model_id=model_id, now=now, last_retrain=last_retrain
    )


def set_task_value(key: str, value: str) -> None:
    """The job's task value (what the condition task reads): dbutils of the job run."""
    from databricks.sdk.runtime import dbutils

    dbutils.jobs.taskValues.set(key=key, value=value)


def names_of(table: str) -> Names:
    """The Names whose processed inference table is `table` (the check task's --table)."""
    catalog, schema, name = table.split(".")
    return Names(catalog, schema, name.removesuffix("_inference"))
