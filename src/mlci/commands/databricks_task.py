"""`mlci databricks-task`: what a Databricks job run executes (the jobs mlci submits and the
bundle declares call mlci's console script with these arguments).

`train --source V` downloads what `mlci train` uploaded to the volume folder V (mlci.yaml, the
data files, the lineage tags), trains exactly as `mlci train` does on this compute, and
uploads the stage's record for the submitting side. `batch` scores a table with a model.
`monitor-unpack` and `monitor-check` are the monitor job's tasks (targets/databricks/monitoring.py).
All sign in with the job run's own identity (the SDK's runtime auth).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from mlci.config import load_project
from mlci.errors import CheckFailed, MlciError


def main(args: argparse.Namespace) -> int:
    from mlci.targets.databricks import batch

    if args.task == "batch":
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.getOrCreate()
        rows = batch.score_table(spark, args.model, args.input, args.output)
        print(f"batch: scored {rows} rows of {args.input} with {args.model} into {args.output}", flush=True)
        return 0
    if args.task == "monitor-unpack":
        return _monitor_unpack(args.payload, args.output, args.model, args.labels)
    if args.task == "monitor-check":
        return _monitor_check(args.config, args.table)
    return _train(args.source)


def _monitor_unpack(payload: str, output: str, model: str, labels: str | None) -> int:
    import mlflow
    from pyspark.sql import SparkSession

    from mlci.targets.databricks import monitoring

    mlflow.set_registry_uri("databricks-uc")
    spark = SparkSession.builder.getOrCreate()
    rows = monitoring.unpack(spark, payload, output, monitoring.model_features(model), labels=labels)
    print(f"monitor: unpacked {payload} into {rows} rows of {output}", flush=True)
    return 0


def _monitor_check(config: str, table: str) -> int:
    """Refresh the monitor, read its metric tables, decide; the decision goes to the job's
    task value `retrain` (what the condition task reads) and to the run's output."""
    from datetime import datetime, timezone

    from mlflow import MlflowClient
    from pyspark.sql import SparkSession

    from mlci.config import DatabricksSection
    from mlci.monitoring.baseline import load_for_version  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from mlci.targets.databricks import jobs, monitoring, workspace

    defaults = DatabricksSection()
    w = workspace.job_client(defaults.http_timeout, defaults.retry_timeout)
    with tempfile.TemporaryDirectory(prefix="mlci-task-") as scratch:
        root = Path(scratch)
        (root / "mlci.yaml").write_bytes(jobs._download(w, config))
        project = load_project(root)
        tables = monitoring.names_of(table)
        action, _ = monitoring.ensure_monitor(w, project, tables, lambda line: print(line, flush=True))
        if action == "pending":
            raise MlciError(f"{table} does not exist: the unpack task did not write it")
        monitoring.refresh(w, table, project.config.databricks.poll_interval)
        client = MlflowClient(registry_uri="databricks-uc")
        model_id, last_retrain = monitoring.champion(client, project.config.model_name)
        baseline = load_for_version(client, project.config.model_name, model_id.rpartition("@")[2])
        spark = SparkSession.builder.getOrCreate()
        profile, drift = monitoring.metric_rows(spark, tables.profile_metrics, tables.drift_metrics, model_id)
        decision = monitoring.decide(
            project,
            profile,
            drift,
            baseline=baseline,
            model_id=model_id,
            now=datetime.now(timezone.utc),
            last_retrain=last_retrain,
        )
    retrain = decision.decision == "retrain"
    monitoring.set_task_value(monitoring.RETRAIN_VALUE, "true" if retrain else "false")
    print(json.dumps({"model_id": model_id, "decision": decision.decision, "reason": decision.reason}), flush=True)
    if decision.decision == "insufficient_data":  # as `mlci monitor check`: exit 1, the monitor cannot decide
        raise CheckFailed(f"monitor: {model_id}: {decision.reason}")
    return 0


def _train(source: str) -> int:
    """Train from the volume folder `source`; the record (passed or failed) goes back there:
    a failed run's own output is not something the submitting side can rely on reading."""
    from mlci.config import DatabricksSection
    from mlci.stages.train import train_here
    from mlci.targets.databricks import jobs, workspace

    defaults = DatabricksSection()
    w = workspace.job_client(defaults.http_timeout, defaults.retry_timeout)
    with tempfile.TemporaryDirectory(prefix="mlci-task-") as scratch:
        root = Path(scratch)
        inputs = jobs.fetch_inputs(w, source, root)
        try:
            project = load_project(root)
            result = train_here(project, dict(inputs["tags"]))
        except BaseException as exc:
            message = exc.message if isinstance(exc, MlciError) else f"unexpected {type(exc).__name__}: {exc}"
            jobs.publish_result(w, source, {"status": "failed", "error": message})
            raise
        record = {
            "status": "passed",
            "summary": result.summary,
            "details": result.details,
            "outputs": result.outputs,
            "markdown": result.markdown,
        }
        jobs.publish_result(w, source, record)
    print(json.dumps({"summary": result.summary, "outputs": result.outputs}), flush=True)
    return 0
