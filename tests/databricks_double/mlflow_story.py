"""The MLflow story against the workspace double, run by tests/test_databricks_mlflow_double.py in a
subprocess with only the DATABRICKS_*/MLFLOW_* variables a Databricks client has; prints JSON facts.

    python mlflow_story.py <work dir>
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression

NAME = "main.default.demo"
EXPERIMENT = "/Users/double-user@example.com/mlci-story"


def main(work: Path) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    helpers = work / "story_helpers.py"
    helpers.write_text("SCALE = 2\n")
    features = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    model = LogisticRegression().fit(features, [0, 0, 1, 1])
    facts["expected"] = model.predict(features).tolist()

    experiment_id = mlflow.create_experiment(EXPERIMENT)
    experiment = mlflow.set_experiment(EXPERIMENT)
    facts["experiment"] = [experiment.experiment_id == experiment_id, experiment.name]
    facts["artifact_location"] = experiment.artifact_location
    with mlflow.start_run(tags={"mlci.stage": "train"}) as run:
        mlflow.log_params({"C": 1.0, "solver": "lbfgs"})
        mlflow.log_metric("accuracy", 1.0)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(features, model.predict(features)),
            input_example=features.head(2),
            code_paths=[str(helpers)],
            pip_requirements=["scikit-learn", "pandas"],  # no requirement inference: a subprocess, seconds
        )
    run_id = run.info.run_id
    facts["model_uri"] = info.model_uri
    found = mlflow.search_runs([experiment_id], filter_string="tags.`mlci.stage` = 'train'", output_format="list")
    facts["search_runs"] = [r.info.run_id == run_id for r in found]
    got = MlflowClient().get_run(run_id)
    facts["run"] = {"params": got.data.params, "metrics": got.data.metrics, "tag": got.data.tags.get("mlci.stage")}
    facts["predict_model_id"] = mlflow.pyfunc.load_model(info.model_uri).predict(features).tolist()
    facts["predict_runs"] = mlflow.pyfunc.load_model(f"runs:/{run_id}/model").predict(features).tolist()

    client = MlflowClient()
    first = mlflow.register_model(info.model_uri, NAME)
    second = mlflow.register_model(info.model_uri, NAME)
    facts["versions"] = [first.version, second.version, first.status, second.status]
    client.set_registered_model_alias(NAME, "champion", first.version)
    client.set_registered_model_alias(NAME, "challenger", second.version)
    facts["challenger"] = client.get_model_version_by_alias(NAME, "challenger").version
    client.delete_registered_model_alias(NAME, "challenger")
    try:
        client.get_model_version_by_alias(NAME, "challenger")
        facts["deleted_alias"] = "found"
    except MlflowException as exc:
        facts["deleted_alias"] = exc.error_code
    client.set_model_version_tag(NAME, first.version, "validated", "true")
    client.set_model_version_tag(NAME, second.version, "scratch", "x")
    client.delete_model_version_tag(NAME, second.version, "scratch")
    searched = client.search_model_versions(f"name='{NAME}'")
    facts["search_versions"] = sorted([v.name, v.version] for v in searched)
    version = client.get_model_version(NAME, first.version)
    facts["version"] = [version.version, version.status, version.aliases, version.tags, version.run_id == run_id]
    facts["registered_model"] = client.get_registered_model(NAME).aliases
    by_number = mlflow.artifacts.download_artifacts(f"models:/{NAME}/{first.version}", dst_path=str(work / "v1"))
    by_alias = mlflow.artifacts.download_artifacts(f"models:/{NAME}@champion", dst_path=str(work / "champion"))
    facts["downloaded"] = sorted(p.name for p in Path(by_number).iterdir())
    facts["downloaded_code"] = sorted(p.name for p in (Path(by_number) / "code").iterdir())
    facts["mlmodel"] = (Path(by_alias) / "MLmodel").read_text()
    facts["predict_alias"] = mlflow.pyfunc.load_model(f"models:/{NAME}@champion").predict(features).tolist()
    facts["predict_version"] = mlflow.pyfunc.load_model(f"models:/{NAME}/{second.version}").predict(features).tolist()
    return facts


if __name__ == "__main__":
    print("FACTS " + json.dumps(main(Path(sys.argv[1])), default=repr))
