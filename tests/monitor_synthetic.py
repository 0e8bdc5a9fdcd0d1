"""A synthetic served model with known covariate shift, concept drift and label delay.

The world: features x1, x2 (normal), cat (a/b/c), code (0..4); the label is 1 with probability
sigmoid(1.5 x1 - x2 + 0.8 [cat = a] - 0.4) and the model is a logistic regression fitted on it,
so its probabilities are calibrated. Each day of requests is drawn from that world, with, from
a chosen day on:

- covariate shift: x1's mean moves and cat's mix changes, P(y|x) unchanged (the model stays
  calibrated: its confidence, and so CBPE, follows its accuracy);
- concept drift: a share of labels flips, P(x) unchanged (the inputs, the predictions and the
  model's confidence look exactly as before; only the labels show it).

Labels arrive with a delay: a day's labels are all there after `full_after` days, a share
`partial` of them after `partial_after` days, none before. Files follow SPEC14's layouts:
`<inference>/date=YYYY-MM-DD/part-*.parquet` and label CSV files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FEATURES = ["x1", "x2", "cat", "code"]
MODEL_ID = "synthetic@1"
DAY0 = datetime(2026, 3, 2, tzinfo=timezone.utc)  # a Monday


def draw(
    rng: np.random.Generator, n: int, *, x1_shift: float = 0.0, cat_mix: tuple[float, ...] = (0.3, 0.4, 0.3)
) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "x1": rng.normal(x1_shift, 1.0, n),
            "x2": rng.normal(0.0, 1.0, n),
            "cat": rng.choice(["a", "b", "c"], n, p=list(cat_mix)),
            "code": rng.integers(0, 5, n),
        }
    )
    return frame


def truth(rng: np.random.Generator, frame: pd.DataFrame) -> np.ndarray:
    logit = 1.5 * frame["x1"] - frame["x2"] + 0.8 * (frame["cat"] == "a") - 0.4
    return (rng.random(len(frame)) < 1 / (1 + np.exp(-logit))).astype(int)


def fit_model(rng: np.random.Generator, n: int = 4000) -> tuple[Any, pd.DataFrame, pd.DataFrame, pd.Series]:
    """The model, its training frame (features + label) and its holdout."""
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = draw(rng, n)
    labels = truth(rng, frame)
    cut = n * 3 // 4
    model = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["cat"]), remainder="passthrough"), LogisticRegression()
    ).fit(frame[:cut], labels[:cut])
    train = frame[:cut].assign(label=labels[:cut])
    return model, train, frame[cut:].reset_index(drop=True), pd.Series(labels[cut:])


@dataclass
class Scenario:
    days: int = 6
    rows_per_day: int = 400
    covariate_from: int | None = None  # first day of covariate shift
    concept_from: int | None = None  # first day of concept drift
    flip_share: float = 0.3
    full_after: int = 2  # a day's labels are complete this many days later
    partial_after: int = 1
    partial: float = 0.2
    seed: int = 7
    model_id: str = MODEL_ID
    frames: list[pd.DataFrame] = field(default_factory=list)


def requests(model: Any, scenario: Scenario) -> pd.DataFrame:
    """Every request of the scenario with its true label (column `_label`)."""
    rng = np.random.default_rng(scenario.seed)
    days = []
    for day in range(scenario.days):
        shifted = scenario.covariate_from is not None and day >= scenario.covariate_from
        frame = draw(
            rng,
            scenario.rows_per_day,
            x1_shift=1.2 if shifted else 0.0,
            cat_mix=(0.7, 0.2, 0.1) if shifted else (0.3, 0.4, 0.3),
        )
        labels = truth(rng, frame)
        if scenario.concept_from is not None and day >= scenario.concept_from:
            flip = rng.random(len(frame)) < scenario.flip_share
            labels = np.where(flip, 1 - labels, labels)
        proba = model.predict_proba(frame[FEATURES])
        seconds = np.sort(rng.integers(0, 86400, len(frame)))
        frame.insert(0, "request_id", [f"d{day}-r{i}" for i in range(len(frame))])
        frame.insert(1, "timestamp", [DAY0 + timedelta(days=day, seconds=int(s)) for s in seconds])
        frame.insert(2, "model_id", scenario.model_id)
        frame["prediction"] = model.predict(frame[FEATURES]).astype("int64")
        frame["probability_0"] = proba[:, 0]
        frame["probability_1"] = proba[:, 1]
        frame["_label"] = labels
        frame["_day"] = day
        days.append(frame)
    return pd.concat(days, ignore_index=True)


def write_inference(frame: pd.DataFrame, folder: Path) -> None:
    """One Parquet file per day, in <folder>/date=YYYY-MM-DD/ (the inference logger's layout)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for day, part in frame.groupby("_day"):
        stamp = DAY0 + timedelta(days=int(day))
        target = folder / f"date={stamp:%Y-%m-%d}"
        target.mkdir(parents=True, exist_ok=True)
        columns = part.drop(columns=["_label", "_day"]).reset_index(drop=True)
        table = pa.Table.from_pandas(columns, preserve_index=False)
        table = table.set_column(
            table.schema.get_field_index("timestamp"),
            "timestamp",
            pa.array(columns["timestamp"].tolist(), type=pa.timestamp("us", tz="UTC")),
        )
        pq.write_table(table, target / f"part-{stamp:%Y%m%dT%H%M%S}000000-1-{int(day)}.parquet")


def labels_known(frame: pd.DataFrame, scenario: Scenario, today: int) -> pd.DataFrame:
    """The labels that have arrived by the start of day `today`."""
    rng = np.random.default_rng(scenario.seed + 1)
    keep = []
    for day, part in frame.groupby("_day"):
        age = today - int(day)
        if age >= scenario.full_after:
            keep.append(part)
        elif age >= scenario.partial_after:
            keep.append(part[rng.random(len(part)) < scenario.partial])
    if not keep:
        return pd.DataFrame(columns=["request_id", "label", "label_timestamp"])
    known = pd.concat(keep)
    arrived = [DAY0 + timedelta(days=today) - timedelta(minutes=5)] * len(known)
    return pd.DataFrame(
        {
            "request_id": known["request_id"],
            "label": known["_label"],
            "label_timestamp": [a.isoformat() for a in arrived],
        }
    )


MONITOR_CONFIG = """\
schema: 1
project:
  name: synthetic-model
  package: synthetic_model
data:
  train: data/train.csv
  holdout: data/holdout.csv
  target: label
train:
  entrypoint: synthetic_model.train:train
monitor:
  inference: inference
  labels: labels
  output: monitor
  granularity: 1 day
  min_label_coverage: 0.3
{extra}
"""


def write_project(root: Path, extra: str = "") -> Any:
    from mlci.config import load_project

    root.mkdir(parents=True, exist_ok=True)
    (root / "mlci.yaml").write_text(MONITOR_CONFIG.format(extra=extra))
    return load_project(root)


def same(a: Any, b: Any, where: str = "") -> None:
    """Equal, floats to 1e-9 relative (engines and threads sum in different orders)."""
    import math

    if isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b)), (where, a, b)
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
        assert len(a) == len(b), (where, a, b)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)
