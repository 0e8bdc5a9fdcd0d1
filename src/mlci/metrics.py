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
    labels = np.unique(np.asarray(target))
    binary = len(labels) <= 2
    average = "binary" if binary else "weighted"
    positive = labels.max() if binary else 1
    scores = {
        "accuracy": float(metrics.accuracy_score(target, predicted)),
        "precision": float(
            metrics.precision_score(target, predicted, average=average, pos_label=positive, zero_division=0)
        ),
        "recall": float(metrics.recall_score(target, predicted, average=average, pos_label=positive, zero_division=0)),
        "f1": float(metrics.f1_score(target, predicted, average=average, pos_label=positive, zero_division=0)),
    }
    proba = model.predict_proba(features) if hasattr(model, "predict_proba") else None
    if proba is not None and len(labels) > 1:
        proba = np.asarray(proba)
        scores["roc_auc"] = float(metrics.roc_auc_score(target, proba[:, 1] if binary else proba, multi_class="ovr"))
        scores["log_loss"] = float(metrics.log_loss(target, proba, labels=getattr(model, "classes_", labels)))
    elif len(labels) > 1 and binary:
        # A model without probabilities (e.g. a generic pyfunc): AUC of its hard labels.
        scores["roc_auc"] = float(metrics.roc_auc_score(target, predicted))
    return scores


def better_or_equal(metric: str, candidate: float, reference: float, tolerance: float) -> bool:
    """Whether the candidate is no worse than the reference by more than `tolerance`."""
    if metric in LOWER_IS_BETTER:
        return candidate <= reference + tolerance
    return candidate >= reference - tolerance
