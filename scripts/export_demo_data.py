"""Export scikit-learn's bundled breast cancer dataset as the scaffold's demo data.

Writes ``scaffold/data/train.csv`` and ``scaffold/data/holdout.csv``. The output is
byte-for-byte reproducible: the split is seeded and floats use a fixed format.

Usage: ``python scripts/export_demo_data.py``
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

DATA_DIR = Path(__file__).resolve().parents[1] / "scaffold" / "data"
TARGET = "malignant"
RANDOM_STATE = 42
HOLDOUT_FRACTION = 0.2
# Enough significant digits to round-trip every value in the source data exactly.
FLOAT_FORMAT = "%.10g"


def snake_case(name: str) -> str:
    """Turn a feature name like ``"mean radius"`` into ``"mean_radius"``."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def load_frame() -> pd.DataFrame:
    """Return the dataset with snake_case features and a ``malignant`` 0/1 label."""
    bunch = load_breast_cancer(as_frame=False)
    frame = pd.DataFrame(bunch.data, columns=[snake_case(c) for c in bunch.feature_names])
    # sklearn encodes 0 = malignant, 1 = benign; the positive class should be malignant.
    frame[TARGET] = (bunch.target == 0).astype("int64")
    return frame


def main() -> None:
    """Split the data and write both CSV files."""
    frame = load_frame()
    train, holdout = train_test_split(
        frame,
        test_size=HOLDOUT_FRACTION,
        random_state=RANDOM_STATE,
        stratify=frame[TARGET],
    )
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    for split_name, split in (("train", train), ("holdout", holdout)):
        path = DATA_DIR / f"{split_name}.csv"
        split.to_csv(path, index=False, float_format=FLOAT_FORMAT, lineterminator="\n")
        print(f"wrote {path} ({len(split)} rows, {int(split[TARGET].sum())} malignant)")


if __name__ == "__main__":
    main()
