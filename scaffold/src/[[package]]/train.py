"""Training entrypoint called by ``mlci train``; also runnable as a module.

``python -m <package>.train`` fits on ``data/train.csv`` and prints holdout metrics.
Tracking (MLflow) is done by mlci, so this module stays free of it.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.pipeline import Pipeline

from .features import build_preprocessor

TARGET = "malignant"


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


def load_split(path: Path) -> tuple[pd.DataFrame, pd.Series]:
    """Read a CSV and split it into features and the ``TARGET`` label."""
    frame = pd.read_csv(path)
    return frame.drop(columns=[TARGET]), frame[TARGET]


def evaluate(model: Pipeline, features: pd.DataFrame, target: pd.Series) -> dict[str, float]:
    """Return accuracy and ROC AUC of ``model`` on the given data."""
    proba = model.predict_proba(features)[:, 1]
    return {
        "accuracy": float(accuracy_score(target, model.predict(features))),
        "roc_auc": float(roc_auc_score(target, proba)),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Train on the train split and print holdout metrics."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--C", type=float, default=1.0)
    args = parser.parse_args(argv)

    train_x, train_y = load_split(args.data_dir / "train.csv")
    holdout_x, holdout_y = load_split(args.data_dir / "holdout.csv")
    model = train(train_x, train_y, {"C": args.C})
    for metric, value in evaluate(model, holdout_x, holdout_y).items():
        print(f"{metric}: {value:.4f}")


if __name__ == "__main__":
    main()
