"""Shared fixtures: the demo data and one model trained on it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

DATA_DIR = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="session")
def train_frame() -> pd.DataFrame:
    return pd.read_csv(DATA_DIR / "train.csv")


@pytest.fixture(scope="session")
def holdout_frame() -> pd.DataFrame:
    return pd.read_csv(DATA_DIR / "holdout.csv")
