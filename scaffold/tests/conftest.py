"""Shared fixtures: the demo data (as mlci.yaml's `data` section names it) and its label."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# What `mlci train` and `python -m <package>.train` use too: editing mlci.yaml is enough.
DATA = yaml.safe_load((ROOT / "mlci.yaml").read_text(encoding="utf-8"))["data"]
TARGET: str = DATA["target"]


@pytest.fixture(scope="session")
def train_frame() -> pd.DataFrame:
    return pd.read_csv(ROOT / DATA["train"])


@pytest.fixture(scope="session")
def holdout_frame() -> pd.DataFrame:
    return pd.read_csv(ROOT / DATA["holdout"])
