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


def main(args: argparse.Namespace) -> int:
    from databricks.sdk import WorkspaceClient

    from mlci.targets.databricks import batch, jobs

    if args.task == "batch":
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.getOrCreate()
        rows = batch.score_table(spark, args.model, args.input, args.output)
        print(f"batch: scored {rows} rows of {args.input} with {args.model} into {args.output}", flush=True)
        return 0
    from mlci.stages.train import train_here

    w = WorkspaceClient()
    with tempfile.TemporaryDirectory(prefix="mlci-task-") as scratch:
        root = Path(scratch)
        inputs = jobs.fetch_inputs(w, args.source, root)
        project = load_project(root)
        result = train_here(project, dict(inputs["tags"]))
        record = {
            "summary": result.summary,
            "details": result.details,
            "outputs": result.outputs,
            "markdown": result.markdown,
        }
        jobs.publish_result(w, args.source, record)
    print(json.dumps({"summary": result.summary, "outputs": result.outputs}), flush=True)
    return 0
