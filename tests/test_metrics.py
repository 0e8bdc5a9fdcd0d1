"""Holdout metrics: ROC AUC ranks by probabilities, else by decision scores, never by labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from mlci.metrics import evaluate

DATA = Path(__file__).resolve().parents[1] / "scaffold" / "data"


def split(name: str) -> tuple[pd.DataFrame, pd.Series]:
    frame = pd.read_csv(DATA / f"{name}.csv")
    return frame.drop(columns=["malignant"]), frame["malignant"]


def test_roc_auc_of_a_model_without_probabilities_uses_its_decision_function() -> None:
    train_x, train_y = split("train")
    holdout_x, holdout_y = split("holdout")
    model = make_pipeline(StandardScaler(), LinearSVC(C=0.001, random_state=0)).fit(train_x, train_y)
    notes: list[str] = []
    scores = evaluate(model, holdout_x, holdout_y, "classification", notes)
    assert scores["roc_auc"] == pytest.approx(roc_auc_score(holdout_y, model.decision_function(holdout_x)))
    # Not the AUC of hard labels (balanced accuracy), which is what it used to report.
    assert scores["roc_auc"] != pytest.approx(roc_auc_score(holdout_y, model.predict(holdout_x)))
    assert "log_loss" not in scores and notes == []


def test_multiclass_decision_scores_give_macro_one_vs_rest_auc() -> None:
    rng = np.random.default_rng(0)
    features = pd.DataFrame(rng.normal(size=(300, 4)), columns=list("abcd"))
    target = pd.Series(np.argmax(features.to_numpy()[:, :3] + rng.normal(scale=0.5, size=(300, 3)), axis=1))
    model = LinearSVC(random_state=0).fit(features, target)
    scores = evaluate(model, features, target, "classification")
    decision = model.decision_function(features)
    expected = np.mean([roc_auc_score(target == c, decision[:, i]) for i, c in enumerate(model.classes_)])
    assert scores["roc_auc"] == pytest.approx(expected)


class LabelsOnly:
    """A model with predict() only, as a generic pyfunc is."""

    def __init__(self, labels: Any) -> None:
        self.labels = labels

    def predict(self, features: Any) -> Any:
        return self.labels


def test_model_with_labels_only_gets_no_roc_auc_and_a_note() -> None:
    holdout_x, holdout_y = split("holdout")
    notes: list[str] = []
    scores = evaluate(LabelsOnly(holdout_y.to_numpy()), holdout_x, holdout_y, "classification", notes)
    assert "roc_auc" not in scores and scores["accuracy"] == 1.0
    assert notes == [
        "roc_auc left out: LabelsOnly has neither predict_proba nor decision_function, "
        "and the AUC of hard labels would be balanced accuracy"
    ]


@pytest.mark.parametrize(
    ("metric", "candidate", "reference", "verdict"),
    [
        ("roc_auc", 0.99, 0.98, "beats"),
        ("roc_auc", 0.98, 0.98, "ties"),
        ("roc_auc", 0.996, 0.997, "within tolerance of"),
        ("rmse", 0.2, 0.3, "beats"),
        ("rmse", 0.31, 0.3, "within tolerance of"),
    ],
)
def test_register_says_beats_only_when_strictly_better(
    metric: str, candidate: float, reference: float, verdict: str
) -> None:
    from mlci.stages.register import _verdict

    assert _verdict(metric, candidate, reference) == verdict
