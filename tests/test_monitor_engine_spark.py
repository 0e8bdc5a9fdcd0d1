"""The monitor's SQL on Spark (local mode): the same three tables as on DuckDB (the sketched
figures, which each engine estimates its own way, each within its tolerance of the exact ones).
Marked `spark`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import monitor_synthetic as ms
import numpy as np
import pyarrow.parquet as pq
import pytest
from test_monitor_engine import DISTINCT_TOLERANCE, QUANTILE_RANK_TOLERANCE, rank_error

from mlci.monitoring import baseline as bl
from mlci.monitoring import engine

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    pyspark_sql = pytest.importorskip("pyspark.sql")
    os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)  # type: ignore[attr-defined]
    session = (
        pyspark_sql.SparkSession.builder.master("local[1]")
        .appName("mlci-tests")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.default.parallelism", "1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session


def test_spark_and_duckdb_give_the_same_tables(spark: Any, tmp_path: Path) -> None:
    model, train, holdout_x, holdout_y = ms.fit_model(np.random.default_rng(2), n=2000)
    scenario = ms.Scenario(days=4, rows_per_day=150, covariate_from=2, concept_from=3, seed=11)
    frame = ms.requests(model, scenario)
    outputs = {}
    for name in ("duckdb", "spark"):
        root = tmp_path / name
        project = ms.write_project(root, "  slices: [cat]")
        baseline = bl.build_baseline(project, model, train, holdout_x, holdout_y, "run-1")
        ms.write_inference(frame, root / "inference")
        (root / "labels").mkdir()
        ms.labels_known(frame, scenario, 4).to_csv(root / "labels" / "labels.csv", index=False)
        summary = engine.compute(project, lambda m, b=baseline: b, engine=name, now=ms.DAY0 + timedelta(days=4))
        assert summary.windows_computed == 4
        outputs[name] = {t: pq.read_table(root / "monitor" / t).to_pylist() for t in engine._schemas()}
    for table in engine._schemas():
        duck, sparkish = outputs["duckdb"][table], outputs["spark"][table]
        assert len(duck) == len(sparkish) > 0, table
        for i, (a, b) in enumerate(zip(duck, sparkish, strict=True)):
            if table == engine.PROFILE_TABLE and a["quantiles"] is not None:
                rows = frame[frame["_day"] == (a["window"]["start"] - ms.DAY0).days]
                if a["slice_key"] is not None:
                    rows = rows[rows[a["slice_key"]].astype(str) == a["slice_value"]]
                values = rows[a["column_name"]]
                for estimated in (a, b):
                    for q, value in zip(engine.sql.QUANTILES, estimated.pop("quantiles"), strict=True):
                        assert rank_error(values, value, q) <= QUANTILE_RANK_TOLERANCE, (table, i, q)
                    assert rank_error(values, estimated.pop("median"), 0.5) <= QUANTILE_RANK_TOLERANCE
                    exact = values.nunique()
                    assert estimated.pop("distinct_count") == pytest.approx(exact, rel=DISTINCT_TOLERANCE)
                    assert estimated.pop("percent_distinct") == pytest.approx(
                        100 * exact / len(values), rel=DISTINCT_TOLERANCE
                    )
            if table == engine.DRIFT_TABLE:  # the difference of two sketched distinct shares
                assert a.pop("percent_distinct_delta") == pytest.approx(
                    b.pop("percent_distinct_delta"), abs=2 * DISTINCT_TOLERANCE * 100
                )
            ms.same(a, b, f"{table}[{i}]")
    # The tables hold what the proofs read: drift, a gap once labels are in.
    assert any(r["estimation_gap"] is not None for r in outputs["spark"][engine.PERFORMANCE_TABLE])
