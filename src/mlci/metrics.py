"""Model metrics, computed the same way at train time and when comparing against the champion."""

from __future__ import annotations

from typing import Any

# The metric names evaluate() reports per task: mlci.yaml's gates and primary_metric may name
# only these (config.py checks them against metrics_for).
CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")
# Metrics where a smaller value is better; gates and champion comparisons respect this.
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})


def metrics_for(task: str) -> tuple[str, ...]:
    return CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS


def evaluate(model: Any, features: Any, target: Any, task: str, notes: list[str] | None = None) -> dict[str, float]:
    """Score `model` on holdout data. ROC AUC ranks by predict_proba, else by decision_function;
    a model with neither gets no ROC AUC (the AUC of hard labels is balanced accuracy, not
    AUC), and `notes` (when given) says why a metric was left out."""
    import numpy as np
    from sklearn import metrics

    def note(text: str) -> None:
        if notes is not None:
            notes.append(text)

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
        note("roc_auc and log_loss left out: the holdout has a single class")
        return scores
    proba = np.asarray(model.predict_proba(features)) if hasattr(model, "predict_proba") else None
    decision = (
        np.asarray(model.decision_function(features)) if proba is None and hasattr(model, "decision_function") else None
    )
    try:
        if proba is not None and binary:
            scores["roc_auc"] = float(metrics.roc_auc_score(truth == positive, proba[:, 1]))
        elif proba is not None:
            scores["roc_auc"] = float(metrics.roc_auc_score(truth, proba, multi_class="ovr", labels=classes))
        elif decision is not None and binary:
            # sklearn's binary decision_function scores the positive class (classes_[1]).
            scores["roc_auc"] = float(metrics.roc_auc_score(truth == positive, decision.ravel()))
        elif decision is not None:
            # One score column per class: macro one-vs-rest AUC, as roc_auc_score does with
            # probabilities (which it requires to sum to one, so it cannot take margins).
            per_class = [metrics.roc_auc_score(truth == c, decision[:, i]) for i, c in enumerate(classes)]
            scores["roc_auc"] = float(np.mean(per_class))
        else:
            note(
                f"roc_auc left out: {type(model).__name__} has neither predict_proba nor decision_function, "
                "and the AUC of hard labels would be balanced accuracy"
            )
        if proba is not None:
            scores["log_loss"] = float(metrics.log_loss(truth, proba, labels=classes))
    except ValueError as exc:
        note(f"roc_auc left out: {exc}")  # e.g. a holdout missing one of several classes
    # sklearn may also answer NaN (with a warning) where a score is undefined: report none.
    return {name: value for name, value in scores.items() if np.isfinite(value)}


def better_or_equal(metric: str, candidate: float, reference: float, tolerance: float) -> bool:
    """Whether the candidate is no worse than the reference by more than `tolerance`."""
    if metric in LOWER_IS_BETTER:
        return candidate <= reference + tolerance
    return candidate >= reference - tolerance
