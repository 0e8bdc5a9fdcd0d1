"""Batch scoring: a scheduled Databricks job that scores `deploy.batch.input_table` with the
model's `@champion` and writes `deploy.batch.output_table`.

The job names the alias, not a version: whatever production serves is what the next run
scores with, so a deploy to production keeps it current by creating it once and resetting it
(schedule, compute, parameters) each time after, never by editing a version number into it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlci.config import Project
from mlci.registry import CHAMPION
from mlci.targets.databricks import jobs, workspace

BATCH_TASK_KEY = "score"


def job_name(project: Project) -> str:
    return f"{project.config.project.name}-batch"


def output_table(project: Project) -> str | None:
    batch = project.config.deploy.batch
    if batch.input_table is None:
        return None
    return batch.output_table or f"{batch.input_table}_predictions"


def job_settings(project: Project, wheel: str | None = None) -> Any:
    """The batch job's settings (also what the bundle declares): the champion's scores of the
    input table, on the schedule, on serverless compute with mlci installed."""
    from databricks.sdk.service import compute
    from databricks.sdk.service import jobs as sdk_jobs

    cfg = project.config
    batch = cfg.deploy.batch
    assert batch.input_table is not None
    dependencies = [jobs.mlci_requirement(project)] + ([wheel] if wheel else [])
    return sdk_jobs.JobSettings(
        name=job_name(project),
        tasks=[
            sdk_jobs.Task(
                task_key=BATCH_TASK_KEY,
                python_wheel_task=sdk_jobs.PythonWheelTask(
                    package_name="mlci",
                    entry_point="mlci",
                    parameters=[
                        "databricks-task",
                        "batch",
                        "--model",
                        f"models:/{cfg.model_name}@{CHAMPION}",
                        "--input",
                        batch.input_table,
                        "--output",
                        str(output_table(project)),
                    ],
                ),
                environment_key=jobs.ENVIRONMENT_KEY,
            )
        ],
        environments=[
            sdk_jobs.JobEnvironment(
                environment_key=jobs.ENVIRONMENT_KEY,
                spec=compute.Environment(
                    environment_version=cfg.databricks.train.environment_version, dependencies=dependencies
                ),
            )
        ],
        schedule=sdk_jobs.CronSchedule(quartz_cron_expression=batch.schedule, timezone_id="UTC"),
        max_concurrent_runs=1,
        tags={"mlci-project": cfg.project.name},
    )


def ensure_job(project: Project, env: str, progress: Callable[[str], None]) -> dict[str, Any] | None:
    """Create the batch job, or reset the one there is to these settings; its facts (None when
    mlci.yaml has no deploy.batch.input_table)."""
    if project.config.deploy.batch.input_table is None:
        return None
    w = workspace.client(project, env)
    settings = job_settings(project)
    existing = [job for job in w.jobs.list(name=settings.name) if job.settings and job.settings.name == settings.name]
    if len(existing) > 1:
        ids = ", ".join(str(job.job_id) for job in existing)
        progress(f"deploy: {len(existing)} jobs are named {settings.name} ({ids}); resetting the oldest")
    if existing:
        job_id = min(int(job.job_id) for job in existing)
        w.jobs.reset(job_id, settings)
        action = "reset"
    else:
        job_id = jobs.create_job(w, settings)
        action = "created"
    batch = project.config.deploy.batch
    progress(f"deploy: batch job {settings.name} ({job_id}) {action}: scores {batch.input_table} with @{CHAMPION}")
    return {"job_id": job_id, "name": settings.name, "action": action, "output_table": output_table(project)}


def score_table(spark: Any, model_uri: str, input_table: str, output: str) -> int:
    """Inside the batch job: score every row of `input_table` with `model_uri` as a Spark UDF
    and overwrite `output` with the rows and a `prediction` column; the row count."""
    import mlflow.pyfunc

    frame = spark.read.table(input_table)
    predict = mlflow.pyfunc.spark_udf(spark, model_uri, result_type="double")
    scored = frame.withColumn("prediction", predict(*[frame[c] for c in frame.columns]))
    scored.write.mode("overwrite").option("overwriteSchema", "true").saveAsTable(output)
    return int(spark.read.table(output).count())  # the written table's count: no second scoring pass
