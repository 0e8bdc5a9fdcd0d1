"""The reference a registered model version is monitored against, built when it is registered.

`mlci register` builds it from the data the candidate was trained and scored on, logs it on the
version's run as `monitor/baseline.json` and tags the version with its path, so every version
(and so `@champion`) carries its own reference:

- `profile`: the training data's feature columns with `monitor.drift.bins` quantile bins
  (numeric) or their most frequent values (categorical) and the counts in each, plus the
  `prediction` column profiled on the holdout's predictions (a `contracts.drift.Profile`);
- `summary`: the same columns' profile-table figures (count, nulls, mean, quantiles, ...),
  the `BASELINE` rows of the profile table and the other side of each BASELINE drift delta;
- `performance`: the holdout figures under Databricks Lakehouse Monitoring's metric names
  (precision, recall and F1 support-weighted, as the monitor computes them per window);
- `calibration` (classifiers with probabilities): per class, the holdout's predicted
  probability bin edges and the observed frequency of the class in each bin, made monotone
  (pool adjacent violators): a histogram-binning calibration map, which confidence-based
  performance estimation (CBPE) turns a window's probabilities into expected hits with.

The figures are computed by DuckDB over the frames with exactly the SQL the monitor runs on
each window (monitoring/sql.py), so the training data against its own baseline drifts by 0.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlci import sql_types
from mlci.config import Project
from mlci.contracts import drift
from mlci.contracts.compiler import norm
from mlci.errors import ConfigError, InfraError, first_line
from mlci.monitoring import sql

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.tracking import MlflowClient

BASELINE_ARTIFACT = "monitor/baseline.json"
BASELINE_TAG = "mlci.monitor.baseline"
BASELINE_VERSION = 1
CALIBRATION_MIN_BINS = 10
PREDICTION = "prediction"
_REGENERATE = "register the model again with 'mlci register' to rebuild it"


@dataclass(frozen=True)
class Calibration:
    """Histogram-binning calibration of one class's probability: bin i is [edges[i-1], edges[i])."""

    edges: list[float]
    frequency: list[float]  # observed share of the class per bin, non-decreasing
    counts: list[int]  # holdout rows per bin

    def to_json(self) -> dict[str, Any]:
        return {"edges": self.edges, "frequency": self.frequency, "counts": self.counts}


@dataclass(frozen=True)
class Baseline:
    run_id: str
    task: str  # classification | regression
    target: str
    features: dict[str, dict[str, str]]  # name -> {"kind": numeric|categorical, "type": contract type}
    profile: drift.Profile  # the features (training data) and `prediction` (holdout)
    summary: dict[str, dict[str, Any]]  # column -> profile-table figures of the reference
    classes: list[str] | None
    performance: dict[str, float]
    calibration: dict[str, Calibration] | None
    rows: dict[str, int]  # train, holdout

    def to_text(self) -> str:
        data = {
            "mlci_baseline": BASELINE_VERSION,
            "run_id": self.run_id,
            "task": self.task,
            "target": self.target,
            "features": self.features,
            "classes": self.classes,
            "performance": self.performance,
            "rows": self.rows,
            "profile": json.loads(self.profile.to_text()),
            "summary": self.summary,
            "calibration": (
                {name: cal.to_json() for name, cal in self.calibration.items()} if self.calibration else None
            ),
        }
        return json.dumps(_finite(data), indent=1, allow_nan=False) + "\n"

    @staticmethod
    def from_text(text: str, where: str) -> Baseline:
        """Parse a baseline; anything malformed is a ConfigError naming `where` (exit 2)."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("mlci_baseline") != BASELINE_VERSION:
                found = data.get("mlci_baseline") if isinstance(data, dict) else None
                raise ValueError(f"'mlci_baseline' is {found!r}, expected {BASELINE_VERSION}")
            task = str(data["task"])
            if task not in ("classification", "regression"):
                raise ValueError(f"task is {task!r}")
            features = {
                str(name): {"kind": str(spec["kind"]), "type": str(spec["type"])}
                for name, spec in dict(data["features"]).items()
            }
            calibration = None
            if data.get("calibration"):
                calibration = {}
                for name, cal in dict(data["calibration"]).items():
                    edges = [float(e) for e in cal["edges"]]
                    frequency = [float(f) for f in cal["frequency"]]
                    counts = [int(c) for c in cal["counts"]]
                    if len(frequency) != len(edges) + 1 or len(counts) != len(frequency):
                        raise ValueError(
                            f"calibration of class {name!r} has {len(frequency)} bins for {len(edges)} edges"
                        )
                    calibration[str(name)] = Calibration(edges, frequency, counts)
            classes = [str(c) for c in data["classes"]] if data.get("classes") is not None else None
            return Baseline(
                run_id=str(data["run_id"]),
                task=task,
                target=str(data["target"]),
                features=features,
                profile=_profile_from_data(data["profile"]),
                summary={str(k): dict(v) for k, v in dict(data.get("summary") or {}).items()},
                classes=classes,
                performance={str(k): float(v) for k, v in dict(data["performance"]).items()},
                calibration=calibration,
                rows={str(k): int(v) for k, v in dict(data["rows"]).items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(where, None, f"not a valid mlci monitor baseline ({exc}); {_REGENERATE}") from None


def _finite(value: Any) -> Any:
    """NaN and infinities (a mean over NaN values) as null: the file stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _profile_from_data(data: Mapping[str, Any]) -> drift.Profile:
    """A Profile from its JSON object, checked as contracts.drift.load_profile checks a file."""
    if data.get("mlci_profile") != drift.PROFILE_VERSION:
        raise ValueError(f"profile 'mlci_profile' is {data.get('mlci_profile')!r}, expected {drift.PROFILE_VERSION}")
    columns = {}
    for name, col in dict(data["columns"]).items():
        kind = col["kind"]
        if kind not in ("numeric", "categorical"):
            raise ValueError(f"column {name!r} has kind {kind!r}")
        counts = [int(c) for c in col["counts"]]
        edges, values = list(col.get("edges", [])), list(col.get("values", []))
        expected = len(edges) + 1 if kind == "numeric" else len(values) + 1
        if len(counts) != expected:
            raise ValueError(f"column {name!r} has {len(counts)} counts for {expected} bins")
        columns[str(name)] = drift.ColumnProfile(kind, str(col["type"]), int(col["nulls"]), counts, edges, values)
    return drift.Profile(str(data["source"]), int(data["rows"]), columns)


# ---------------------------------------------------------------- building


def build_baseline(
    project: Project,
    model: Any,
    train: pd.DataFrame,
    holdout_x: pd.DataFrame,
    holdout_y: pd.Series,
    run_id: str,
) -> Baseline:
    """The baseline of a candidate: `train` is the training frame (the target column, when
    present, is left out), the holdout is what register scored the candidate on."""
    import numpy as np
    import pandas as pd

    cfg = project.config
    task = cfg.train.task
    target = cfg.data.target
    bins = cfg.monitor.drift.bins
    features_frame = train.drop(columns=[target]) if target in train.columns else train
    predicted = np.asarray(model.predict(holdout_x))
    if predicted.ndim > 1 and predicted.shape[1] == 1:
        predicted = predicted.ravel()
    truth = np.asarray(holdout_y)
    classes_raw: list[Any] | None = None
    proba = None
    if task == "classification":
        known = getattr(model, "classes_", None)
        classes_raw = list(known) if known is not None else sorted(set(truth.tolist()) | set(predicted.tolist()))
        if hasattr(model, "predict_proba"):
            proba = np.asarray(model.predict_proba(holdout_x), dtype=float)
    predictions = pd.DataFrame({PREDICTION: predicted})
    class_values = [norm(_python(c)) for c in classes_raw] if classes_raw is not None else None
    features_profile, features_summary = profile_frame(features_frame, bins)
    prediction_profile, prediction_summary = profile_frame(
        predictions, bins, categorical_values={PREDICTION: class_values} if class_values is not None else None
    )
    columns = {**features_profile.columns, **prediction_profile.columns}
    profile = drift.Profile(f"run {run_id}: train (features), holdout (prediction)", len(features_frame), columns)
    features = {name: {"kind": col.kind, "type": col.type} for name, col in features_profile.columns.items()}
    if task == "classification":
        assert classes_raw is not None
        performance = classification_performance(truth, predicted, proba, classes_raw)
        calibration = (
            calibrate(truth, proba, classes_raw, max(CALIBRATION_MIN_BINS, bins)) if proba is not None else None
        )
    else:
        performance = regression_performance(truth.astype(float), predicted.astype(float))
        calibration = None
    return Baseline(
        run_id=run_id,
        task=task,
        target=target,
        features=features,
        profile=profile,
        summary={**features_summary, **prediction_summary},
        classes=[str(c) for c in class_values] if class_values is not None else None,
        performance=performance,
        calibration=calibration,
        rows={"train": len(features_frame), "holdout": len(holdout_x)},
    )


def _python(value: Any) -> Any:
    """A numpy scalar as the Python value it holds."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def profile_frame(
    frame: pd.DataFrame, bins: int, categorical_values: Mapping[str, list[Any]] | None = None
) -> tuple[drift.Profile, dict[str, dict[str, Any]]]:
    """Profile (bins and counts) and profile-table figures of a frame's columns, through DuckDB
    with the monitor's own SQL. `categorical_values` fixes the vocabulary of some columns (the
    model's classes for its predictions). Columns of other types (dates, objects) are left out."""
    import duckdb

    from mlci.contracts.engines.duckdb import DuckDBDialect

    d = DuckDBDialect()
    con = duckdb.connect(":memory:")
    try:
        con.register("__mlci_frame", frame)
        schema = {str(r[0]): str(r[1]) for r in con.execute("DESCRIBE SELECT * FROM __mlci_frame").fetchall()}
        fixed = dict(categorical_values or {})
        integers = [n for n, t in schema.items() if sql_types.family(t) == "integer" and n not in fixed]
        distinct: dict[str, int] = {}
        if integers:
            row = con.execute(
                "SELECT " + ", ".join(f"count(DISTINCT {d.ident(n)})" for n in integers) + " FROM __mlci_frame"
            ).fetchone()
            distinct = {n: int(v) for n, v in zip(integers, row or (), strict=True)}
        kinds = sql.kinds_of(schema, distinct)
        for name in fixed:
            if name in kinds:
                kinds[name] = ("categorical", kinds[name][1])
        probabilities = [round(i / bins, 6) for i in range(1, bins)]
        shells: dict[str, drift.ColumnProfile] = {}
        for name, (kind, ctype) in kinds.items():
            c = d.ident(name)
            if kind == "numeric":
                row = con.execute(f"SELECT {d.quantiles(sql.double(c), probabilities)} FROM __mlci_frame").fetchone()
                raw = row[0] if row and row[0] is not None else []
                edges = sorted({norm(float(e)) for e in raw if e is not None and not math.isnan(float(e))})
                if ctype == "integer":
                    edges = [int(e) if float(e).is_integer() else e for e in edges]
                shells[name] = drift.ColumnProfile("numeric", ctype, 0, [], edges=edges)
            else:
                if name in fixed:
                    values = list(fixed[name])
                else:
                    top = con.execute(
                        f"SELECT {c}, count(*) AS n FROM __mlci_frame WHERE {c} IS NOT NULL "
                        f"GROUP BY {c} ORDER BY n DESC, {c} LIMIT {sql.MAX_CATEGORIES}"
                    ).fetchall()
                    values = [norm(v) for v, _ in top]
                values = sorted(values, key=lambda v: (str(type(v)), v))
                shells[name] = drift.ColumnProfile("categorical", ctype, 0, [], values=values)
        agg = sql.Aggregates()
        aliases = {
            name: sql.column_aggregates(d, agg, sql.ColumnSpec(name, shell.kind, shell.type, shell))
            for name, shell in shells.items()
        }
        if not aliases:
            return drift.Profile("", len(frame), {}), {}
        cursor = con.execute(f"SELECT\n  {agg.select_list()}\nFROM __mlci_frame")
        names = [col[0] for col in cursor.description or []]
        row_values = cursor.fetchone() or ()
        result = dict(zip(names, row_values, strict=True))
    finally:
        con.close()
    columns: dict[str, drift.ColumnProfile] = {}
    summary: dict[str, dict[str, Any]] = {}
    for name, shell in shells.items():
        figures = sql.column_figures(result, aliases[name])
        bin_figures = figures.pop("bin_figures")
        columns[name] = drift.ColumnProfile(
            shell.kind,
            shell.type,
            figures["num_nulls"],
            drift.bin_counts(shell, bin_figures),
            shell.edges,
            shell.values,
        )
        figures["data_type"] = sql.data_type(schema[name])
        summary[name] = figures
    return drift.Profile("", len(frame), columns), summary


def classification_performance(truth: Any, predicted: Any, proba: Any, classes: Sequence[Any]) -> dict[str, float]:
    """Holdout figures under the profile table's names; precision, recall and F1 support-weighted
    (the `.weighted` field the monitor's signals read), ROC AUC binary or macro one-vs-rest."""
    import numpy as np
    from sklearn import metrics

    labels = list(classes)
    out = {
        "accuracy_score": float(metrics.accuracy_score(truth, predicted)),
        "precision": float(
            metrics.precision_score(truth, predicted, labels=labels, average="weighted", zero_division=0)
        ),
        "recall": float(metrics.recall_score(truth, predicted, labels=labels, average="weighted", zero_division=0)),
        "f1_score": float(metrics.f1_score(truth, predicted, labels=labels, average="weighted", zero_division=0)),
    }
    if proba is not None and len(np.unique(truth)) > 1:
        try:
            if len(labels) == 2:
                out["roc_auc"] = float(metrics.roc_auc_score(truth == labels[1], proba[:, 1]))
            else:
                out["roc_auc"] = float(metrics.roc_auc_score(truth, proba, multi_class="ovr", labels=labels))
            out["log_loss"] = float(metrics.log_loss(truth, proba, labels=labels))
        except ValueError:
            pass  # a holdout missing a class of several: no AUC, as mlci.metrics.evaluate
    return {k: round(v, 9) for k, v in out.items() if math.isfinite(v)}


def regression_performance(truth: Any, predicted: Any) -> dict[str, float]:
    from sklearn import metrics

    mse = float(metrics.mean_squared_error(truth, predicted))
    out = {
        "mean_squared_error": mse,
        "root_mean_squared_error": math.sqrt(mse),
        "mean_average_error": float(metrics.mean_absolute_error(truth, predicted)),
        "mean_absolute_percentage_error": float(metrics.mean_absolute_percentage_error(truth, predicted)),
        "r2_score": float(metrics.r2_score(truth, predicted)),
    }
    return {k: round(v, 9) for k, v in out.items() if math.isfinite(v)}


def calibrate(truth: Any, proba: Any, classes: Sequence[Any], n_bins: int) -> dict[str, Calibration]:
    """Per class: quantile bins of the holdout's probability for it, and the observed share of
    the class in each, isotonic (non-decreasing) by pooling adjacent violators."""
    import numpy as np

    out: dict[str, Calibration] = {}
    probabilities = [round(i / n_bins, 6) for i in range(1, n_bins)]
    for index, cls in enumerate(classes):
        p = proba[:, index]
        hits = (truth == cls).astype(float)
        edges = sorted({float(f"{e:.12g}") for e in np.quantile(p, probabilities)})
        # bin i is [edges[i-1], edges[i]): the number of edges <= p, as count_if(p < edge) counts
        which = np.searchsorted(np.asarray(edges), p, side="right")
        counts = np.bincount(which, minlength=len(edges) + 1)
        positives = np.bincount(which, weights=hits, minlength=len(edges) + 1)
        out[str(norm(_python(cls)))] = Calibration(
            edges, [round(f, 9) for f in isotonic(positives.tolist(), counts.tolist())], [int(c) for c in counts]
        )
    return out


def isotonic(positives: Sequence[float], counts: Sequence[float]) -> list[float]:
    """Pool adjacent violators: the non-decreasing frequencies closest (count-weighted) to
    positives/counts; an empty bin takes its neighbours' pooled value."""
    blocks: list[list[float]] = []  # [positives, count, bins]
    for pos, n in zip(positives, counts, strict=True):
        blocks.append([float(pos), float(n), 1.0])
        while len(blocks) > 1 and _rate(blocks[-2]) > _rate(blocks[-1]):
            last = blocks.pop()
            blocks[-1] = [blocks[-1][0] + last[0], blocks[-1][1] + last[1], blocks[-1][2] + last[2]]
    out: list[float] = []
    for pos, n, width in blocks:
        out += [pos / n if n else math.nan] * int(width)
    # Empty blocks (no holdout row) take the next non-empty value, else the previous one.
    known = [v for v in out if not math.isnan(v)]
    if not known:
        return [0.0 for _ in out]
    filled, following = list(out), None
    for i in range(len(filled) - 1, -1, -1):
        if math.isnan(filled[i]):
            filled[i] = following if following is not None else math.nan
        else:
            following = filled[i]
    previous = None
    for i, v in enumerate(filled):
        if math.isnan(v):
            filled[i] = previous if previous is not None else known[0]
        previous = filled[i]
    return filled


def _rate(block: Sequence[float]) -> float:
    # An empty block never violates: it is merged with whatever surrounds it.
    return block[0] / block[1] if block[1] else -math.inf


# ---------------------------------------------------------------- MLflow


def log_baseline(client: MlflowClient, run_id: str, baseline: Baseline) -> None:
    """Log the baseline on the run as monitor/baseline.json."""
    folder, _, name = BASELINE_ARTIFACT.rpartition("/")
    with tempfile.TemporaryDirectory(prefix="mlci-baseline-") as scratch:
        path = Path(scratch) / name
        path.write_text(baseline.to_text(), encoding="utf-8")
        client.log_artifact(run_id, str(path), artifact_path=folder)


def load_for_version(client: MlflowClient, model_name: str, version: str) -> Baseline | None:
    """The baseline a registered version was tagged with; None for a version without the tag
    (registered before mlci had monitoring)."""
    from mlflow.exceptions import MlflowException

    where = f"models:/{model_name}/{version}"
    try:
        found = client.get_model_version(model_name, str(version))
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            # A version deleted since it served (or a registry that no longer holds it): its
            # logged rows are still profiled, only without a reference to drift from.
            print(
                f"monitor: {where} is not in the registry (deleted?); its rows are profiled without a baseline",
                file=sys.stderr,
                flush=True,
            )
            return None
        raise InfraError(f"cannot read {where} from the registry: {first_line(exc)}") from None
    artifact = (found.tags or {}).get(BASELINE_TAG)
    if not artifact:
        return None
    if not found.run_id:
        raise ConfigError(where, None, f"is tagged {BASELINE_TAG}={artifact} but has no run; {_REGENERATE}")
    with tempfile.TemporaryDirectory(prefix="mlci-baseline-") as scratch:
        try:
            local = client.download_artifacts(found.run_id, artifact, scratch)
        except MlflowException as exc:
            raise InfraError(f"cannot download {artifact} of run {found.run_id} ({where}): {first_line(exc)}") from None
        except OSError as exc:
            raise ConfigError(
                f"{where} {artifact}", None, f"the baseline artifact is missing ({first_line(exc)}); {_REGENERATE}"
            ) from None
        text = Path(local).read_text(encoding="utf-8")
    return Baseline.from_text(text, f"{where} {artifact} (run {found.run_id})")
