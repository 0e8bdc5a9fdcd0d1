"""Feature engineering shared by training, tests and serving."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

_MEASURES: tuple[str, ...] = (
    "radius",
    "texture",
    "perimeter",
    "area",
    "smoothness",
    "compactness",
    "concavity",
    "concave_points",
    "symmetry",
    "fractal_dimension",
)

# Raw input columns in the order of data/train.csv (the label column excluded).
FEATURE_COLUMNS: list[str] = [
    *(f"mean_{m}" for m in _MEASURES),
    *(f"{m}_error" for m in _MEASURES),
    *(f"worst_{m}" for m in _MEASURES),
]

# Derived column -> (numerator, denominator).
RATIOS: dict[str, tuple[str, str]] = {
    "area_to_perimeter": ("mean_area", "mean_perimeter"),
    "worst_to_mean_radius": ("worst_radius", "mean_radius"),
    "worst_to_mean_concavity": ("worst_concavity", "mean_concavity"),
}


def add_ratio_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of ``frame`` with the ``RATIOS`` columns appended.

    A ratio with a zero (or missing) denominator is set to 0.0: such rows occur in
    the real data (e.g. ``mean_concavity == 0``) and the scaler cannot take inf/NaN.
    """
    out = frame.copy()
    for column, (numerator, denominator) in RATIOS.items():
        denom = out[denominator].astype("float64").replace(0.0, np.nan)
        out[column] = (out[numerator].astype("float64") / denom).fillna(0.0)
    return out


def select_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep ``FEATURE_COLUMNS`` in canonical order and add the ratio features.

    Selecting by name makes the model independent of the caller's column order and
    fails loudly (``KeyError``) if an input column is missing.
    """
    return add_ratio_features(frame.loc[:, FEATURE_COLUMNS])


def build_preprocessor() -> Pipeline:
    """Return the unfitted transformer turning raw feature frames into model input."""
    # Module-level function (not a lambda) so the fitted pipeline can be pickled.
    return make_pipeline(
        FunctionTransformer(select_features, validate=False),
        StandardScaler(),
    )
