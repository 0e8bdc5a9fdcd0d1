"""The project's data splits (data.train, data.holdout) as features and labels.

Train fits on them and register scores on the holdout: a neutral home both stages read, so
no stage imports another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlci.config import Project
from mlci.errors import ConfigError


def split_path(project: Project, which: str) -> Path:
    """The file of data.train or data.holdout; exit 2 at its line in mlci.yaml when it is missing."""
    relative = getattr(project.config.data, which)
    path: Path = project.root / relative
    if not path.is_file():
        raise project.error(f"data.{which}", f"data file '{relative}' does not exist; fix data.{which} or add the file")
    return path


def read_split(project: Project, which: str) -> tuple[Any, Any, Path]:
    """Features, labels and path of data.train or data.holdout, with errors that point at mlci.yaml."""
    import pandas as pd

    cfg = project.config
    relative = getattr(cfg.data, which)
    path = split_path(project, which)
    try:
        frame = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path)
    except Exception as exc:  # pandas raises many types for unreadable files
        raise ConfigError(str(path), None, f"cannot read data file: {exc}") from None
    if cfg.data.target not in frame.columns:
        raise project.error(
            "data.target",
            f"label column '{cfg.data.target}' is not in {relative} "
            f"(columns: {', '.join(map(str, frame.columns[:10]))})",
        )
    if frame.empty:
        raise ConfigError(str(path), None, "data file has no rows")
    return frame.drop(columns=[cfg.data.target]), frame[cfg.data.target], path
