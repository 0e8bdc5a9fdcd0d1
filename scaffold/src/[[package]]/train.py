"""Training entrypoint called by ``mlci train``; also runnable as a module.

``python -m <package>.train`` fits on mlci.yaml's ``data.train`` with its ``train.params`` and
prints the metrics on ``data.holdout``, the same figures ``mlci train`` logs. Tracking (MLflow)
is done by mlci, so this module stays free of it.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.pipeline import Pipeline

from .features import build_preprocessor


@dataclass(frozen=True)
class Settings:
    """What this module reads from mlci.yaml: the data files, the label column and the params."""

    train: Path
    holdout: Path
    target: str
    params: dict[str, Any]


def load_settings(project_dir: Path = Path(".")) -> Settings:
    """Read ``data`` and ``train.params`` from ``project_dir/mlci.yaml`` (paths relative to it)."""
    config = yaml.safe_load((project_dir / "mlci.yaml").read_text(encoding="utf-8"))
    data = config["data"]
    return Settings(
        train=project_dir / data["train"],
        holdout=project_dir / data["holdout"],
        target=str(data["target"]),
        params=dict((config.get("train") or {}).get("params") or {}),
    )


def train(features: pd.DataFrame, target: pd.Series, params: Mapping[str, Any]) -> Pipeline:
    """Fit and return the full preprocessing + model pipeline."""
    model = LogisticRegression(
        C=float(params.get("C", 1.0)),
        max_iter=int(params.get("max_iter", 1000)),
        # Fixed seed so the same params always give the same model.
        random_state=int(params.get("random_state", 0)),
    )
    pipeline = Pipeline([("features", build_preprocessor()), ("model", model)])
    pipeline.fit(features, target)
    return pipeline


def load_split(path: Path, target: str) -> tuple[pd.DataFrame, pd.Series]:
    """Read a CSV and split it into features and the ``target`` label."""
    frame = pd.read_csv(path)
    return frame.drop(columns=[target]), frame[target]


def evaluate(model: Pipeline, features: pd.DataFrame, target: pd.Series) -> dict[str, float]:
    """Return accuracy and ROC AUC of ``model`` on the given data."""
    proba = model.predict_proba(features)[:, 1]
    return {
        "accuracy": float(accuracy_score(target, model.predict(features))),
        "roc_auc": float(roc_auc_score(target, proba)),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Train on the train split with mlci.yaml's params and print holdout metrics."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--project-dir", type=Path, default=Path("."), help="where mlci.yaml is")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one train.params value",
    )
    args = parser.parse_args(argv)

    settings = load_settings(args.project_dir)
    params = dict(settings.params)
    for pair in args.param:
        key, _, value = pair.partition("=")
        params[key] = yaml.safe_load(value)
    train_x, train_y = load_split(settings.train, settings.target)
    holdout_x, holdout_y = load_split(settings.holdout, settings.target)
    model = train(train_x, train_y, params)
    for metric, value in evaluate(model, holdout_x, holdout_y).items():
        print(f"{metric}: {value:.4f}")


if __name__ == "__main__":
    main()
