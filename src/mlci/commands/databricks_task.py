"""`mlci databricks-task`: what a Databricks job run executes (the jobs mlci submits and the
bundle declares call mlci's console script with these arguments).

`train --source V` downloads what `mlci train` uploaded to the volume folder V (mlci.yaml, the
data files, the lineage tags), trains exactly as `mlci train` does on this compute, and
uploads the stage's record for the submitting side. `batch` scores a table with a model.
Both sign in with the job run's own identity (the SDK's runtime auth).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from mlci.config import load_project
from mlci.errors import MlciError


def main(args: argparse.Namespace) -> int:
    from mlci.targets.databricks import batch

    if args.task == "batch":
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.getOrCreate()
        rows = batch.score_table(spark, args.model, args.input, args.output)
        print(f"batch: scored {rows} rows of {args.input} with {args.model} into {args.output}", flush=True)
        return 0
    return _train(args.source)


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
