"""Metric tables as `mlci monitor run` writes them (SPEC14 "Metric tables"), built by hand.

The check and the report are tested on these, independent of the engine: one row per window
of each table, with the Databricks column names and pyarrow types (struct windows, struct
metrics, UTC timestamps), so what the tests read back is what a Parquet reader hands over.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

DAY = timedelta(days=1)
TS = pa.timestamp("us", tz="UTC")
WINDOW = pa.struct([("start", TS), ("end", TS)])
AVERAGED = pa.struct(
    [("one_vs_all", pa.map_(pa.string(), pa.float64())), ("macro", pa.float64()), ("weighted", pa.float64())]
)
TEST = pa.struct([("statistic", pa.float64()), ("pvalue", pa.float64())])
KEYS = [
    ("window", WINDOW),
    ("granularity", pa.string()),
    ("model_id", pa.string()),
    ("slice_key", pa.string()),
    ("slice_value", pa.string()),
]
PROFILE = pa.schema(
    [
        *KEYS,
        ("column_name", pa.string()),
        ("log_type", pa.string()),
        ("data_type", pa.string()),
        ("count", pa.int64()),
        ("num_nulls", pa.int64()),
        ("accuracy_score", pa.float64()),
        ("precision", AVERAGED),
        ("recall", AVERAGED),
        ("f1_score", AVERAGED),
        ("roc_auc", pa.float64()),
        ("log_loss", pa.float64()),
        ("root_mean_squared_error", pa.float64()),
        ("r2_score", pa.float64()),
    ]
)
DRIFT = pa.schema(
    [
        *KEYS,
        ("column_name", pa.string()),
        ("drift_type", pa.string()),
        ("window_cmp", WINDOW),
        ("data_type", pa.string()),
        ("js_distance", pa.float64()),
        ("ks_test", TEST),
        ("population_stability_index", pa.float64()),
        ("chi_squared_test", TEST),
        ("tv_distance", pa.float64()),
    ]
)
PERFORMANCE = pa.schema(
    [
        *KEYS,
        ("count", pa.int64()),
        ("label_count", pa.int64()),
        ("label_coverage", pa.float64()),
        ("estimated_accuracy_score", pa.float64()),
        ("estimated_precision", pa.float64()),
        ("estimated_recall", pa.float64()),
        ("estimated_f1_score", pa.float64()),
        ("estimation_gap", pa.float64()),
        ("drifted_columns_share", pa.float64()),
        ("prediction_drift", pa.float64()),
        ("contract_failures", pa.int64()),
    ]
)


def window(start: datetime) -> dict[str, datetime]:
    return {"start": start, "end": start + DAY}


def keys(start: datetime, model_id: str, **extra: Any) -> dict[str, Any]:
    return {"window": window(start), "granularity": "1 day", "model_id": model_id, "slice_key": None, **extra}


def averaged(weighted: float | None) -> dict[str, Any] | None:
    return (
        None
        if weighted is None
        else {"one_vs_all": {"0": weighted, "1": weighted}, "macro": weighted, "weighted": weighted}
    )


class Tables:
    """Rows of the three tables, added window by window, then written as Parquet."""

    def __init__(self, model_id: str = "demo@1") -> None:
        self.model_id = model_id
        self.profile: list[dict[str, Any]] = []
        self.drift: list[dict[str, Any]] = []
        self.performance: list[dict[str, Any]] = []

    def window(
        self,
        start: datetime,
        *,
        rows: int = 1000,
        labels: int | None = None,
        accuracy: float | None = 0.9,
        estimated: float | None = 0.9,
        gap: float | None = 0.0,
        share: float | None = 0.0,
        psi: dict[str, float] | None = None,  # numeric column -> PSI (BASELINE)
        model_id: str | None = None,
        **table_metrics: Any,
    ) -> Tables:
        model = model_id or self.model_id
        labelled = rows if labels is None else labels
        table = {
            **keys(start, model),
            "column_name": ":table",
            "log_type": "INPUT",
            "count": rows,
            "accuracy_score": accuracy,
            "precision": averaged(accuracy),
            "f1_score": averaged(accuracy),
        }
        table.update({k: averaged(v) if k in ("recall",) else v for k, v in table_metrics.items()})
        self.profile.append(table)
        self.performance.append(
            {
                **keys(start, model),
                "count": rows,
                "label_count": labelled,
                "label_coverage": labelled / rows if rows else None,
                "estimated_accuracy_score": estimated,
                "estimation_gap": gap,
                "drifted_columns_share": share,
                "prediction_drift": 0.01,
                "contract_failures": 0,
            }
        )
        for column, value in (psi or {}).items():
            self.drift.append(
                {
                    **keys(start, model, column_name=column, drift_type="BASELINE", data_type="double"),
                    "population_stability_index": value,
                    "ks_test": {"statistic": value / 2, "pvalue": 0.5},
                    "js_distance": value / 3,
                }
            )
        return self

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name, schema, rows in (
            ("profile_metrics", PROFILE, self.profile),
            ("drift_metrics", DRIFT, self.drift),
            ("performance_metrics", PERFORMANCE, self.performance),
        ):
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / f"{name}.parquet")
        return folder


def days(first: datetime, count: int) -> Sequence[datetime]:
    return [first + i * DAY for i in range(count)]


T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
