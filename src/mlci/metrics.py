"""Model metrics, computed the same way at train time and when comparing against the champion."""

from __future__ import annotations

from typing import Any

from mlci.config import LOWER_IS_BETTER


def evaluate(model: Any, features: Any, target: Any, task: str) -> dict[str, float]:
    """Score `model` on holdout data. Uses predict_proba for ROC AUC and log loss when it exists."""
    import numpy as np
    from sklearn import metrics

    predicted = np.asarray(model.predict(features))
    if predicted.ndim > 1 and predicted.shape[1] == 1:
        predicted = predicted.ravel()
    if task == "regression":
        return {
            "rmse": float(np.sqrt(metrics.mean_squared_error(target, predicted))),
            "mae": float(metrics.mean_absolute_error(target, predicted)),
            "r2": float(metrics.r2_score(target, predicted)),
        }
    truth = np.asarray(target)
    # The model's own classes decide binary vs multiclass and which probability column is which;
    # a holdout that lacks a class must not turn a 3-class model into a "binary" one.
    known = getattr(model, "classes_", None)
    classes = np.asarray(known) if known is not None else np.unique(np.concatenate([truth, predicted]))
    binary = len(classes) == 2
    positive = classes[1] if binary else None
    averaged = {"average": "binary", "pos_label": positive} if binary else {"average": "weighted", "labels": classes}
    scores = {
        "accuracy": float(metrics.accuracy_score(truth, predicted)),
        "precision": float(metrics.precision_score(truth, predicted, zero_division=0, **averaged)),
        "recall": float(metrics.recall_score(truth, predicted, zero_division=0, **averaged)),
        "f1": float(metrics.f1_score(truth, predicted, zero_division=0, **averaged)),
    }
    if len(np.unique(truth)) < 2:
        return scores  # ROC AUC and log loss are undefined on a single-class holdout
    proba = np.asarray(model.predict_proba(features)) if hasattr(model, "predict_proba") else None
    try:
        if proba is not None and binary:
            scores["roc_auc"] = float(metrics.roc_auc_score(truth == positive, proba[:, 1]))
        elif proba is not None:
            scores["roc_auc"] = float(metrics.roc_auc_score(truth, proba, multi_class="ovr", labels=classes))
        elif binary:
            # A model without probabilities (e.g. a generic pyfunc): AUC of its hard labels.
            scores["roc_auc"] = float(metrics.roc_auc_score(truth == positive, predicted == positive))
        if proba is not None:
            scores["log_loss"] = float(metrics.log_loss(truth, proba, labels=classes))
    except ValueError:
        pass  # e.g. a holdout missing one of several classes: one-vs-rest AUC is undefined
    # sklearn may also answer NaN (with a warning) where a score is undefined: report none.
    return {name: value for name, value in scores.items() if np.isfinite(value)}


def better_or_equal(metric: str, candidate: float, reference: float, tolerance: float) -> bool:
    """Whether the candidate is no worse than the reference by more than `tolerance`."""
    if metric in LOWER_IS_BETTER:
        return candidate <= reference + tolerance
    return candidate >= reference - tolerance
