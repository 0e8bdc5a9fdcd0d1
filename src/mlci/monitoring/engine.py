"""`mlci monitor run`: the metric tables of the inference table, per window, slice and model version.

The inference table (Parquet files, one folder per day, monitoring/inference_log.py writes them)
is joined with the labels that arrived since (the last label of a request id wins), cut into
windows of `monitor.granularity` (date_trunc on the request's UTC timestamp) and, besides the
whole table, into the slices of `monitor.slices`. Per window, slice and `model_id` one grouped
query (DuckDB, or the same SQL on Spark) gives every figure: the profile of each feature and of
the prediction (counts, nulls, moments, sketched quantiles and distinct values), the counts in
the bins of the model version's baseline (monitoring/baseline.py), the realised quality on the
labelled rows (confusion counts), the data contract's column checks, and the expected hits of
confidence-based performance estimation (CBPE: each row's calibrated probability of its
predicted class); two more give the frequent items and ROC AUC (exactly, from the counts per
distinct score). Memory stays bounded: sketches, not every value, per group, and DuckDB's
memory_limit with a spill folder for what grows with the rows. Only those aggregates reach
Python, which turns them into the three tables:

- `profile_metrics.parquet` and `drift_metrics.parquet`, with the column names of Databricks
  Lakehouse Monitoring's profile and drift metric tables (so one retrain rule reads either);
- `performance_metrics.parquet`: label coverage, estimated performance, the estimation gap
  (estimated minus realised accuracy on the same labelled rows: concept drift, which no
  estimate from the inputs can see), the share of drifted columns, prediction drift;

plus `state.json`, which makes a run incremental: a closed window already computed is skipped
unless its rows, its labels or its baseline changed. The open (current) window is never
written: its figures would change as requests keep arriving.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from mlci import fs, sql_types
from mlci.config import Project
from mlci.contracts import drift
from mlci.contracts.format import Contract
from mlci.contracts.sql import Dialect
from mlci.errors import ConfigError, UsageError, first_line
from mlci.monitoring import sql
from mlci.monitoring.baseline import PREDICTION, Baseline
from mlci.paths import check_no_symlink

STATE_VERSION = 1
PROFILE_TABLE = "profile_metrics.parquet"
DRIFT_TABLE = "drift_metrics.parquet"
PERFORMANCE_TABLE = "performance_metrics.parquet"
STATE_FILE = "state.json"
TABLE_COLUMN = ":table"
UNITS = {"1 hour": "hour", "1 day": "day", "1 week": "week", "1 month": "month"}
# Columns of the inference table that are not features (monitoring/inference_log.py's layout).
RESERVED = frozenset({"request_id", "timestamp", "model_id", PREDICTION, "date"})
PROBABILITY_PREFIX = "probability_"
LOG_LOSS_EPSILON = 1e-15
MAPE_EPSILON = 2.220446049250313e-16  # sklearn's mean_absolute_percentage_error floor
# DuckDB's memory for one `mlci monitor run` (its default is 80 % of the machine's): with the
# profile's sketches and the spilling AUC, the queries' state is bounded, and what a grouped
# count or join holds past this goes to TEMP_DIR (a folder per run, deleted after). The process
# peaks at about this plus 350 MB (Python, MLflow, pyarrow, the engine's untracked buffers):
# 564 MB at 1M rows, 767 MB at 3M (benchmarks/monitor_vs_evidently.py).
DUCKDB_MEMORY_LIMIT = "384MB"
TEMP_DIR = ".mlci/tmp"


@dataclass(frozen=True)
class ComputeSummary:
    windows_computed: int
    windows_skipped: int
    rows: int
    model_ids: tuple[str, ...]
    output: Path


# ---------------------------------------------------------------- windows


def window_floor(moment: datetime, granularity: str) -> datetime:
    """The start (naive UTC) of the window holding `moment`: date_trunc's, weeks from Monday."""
    utc = moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment
    unit = UNITS[granularity]
    if unit == "hour":
        return utc.replace(minute=0, second=0, microsecond=0)
    day = utc.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "day":
        return day
    if unit == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def window_end(start: datetime, granularity: str) -> datetime:
    unit = UNITS[granularity]
    if unit == "hour":
        return start + timedelta(hours=1)
    if unit == "day":
        return start + timedelta(days=1)
    if unit == "week":
        return start + timedelta(weeks=1)
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


def window_before(start: datetime, granularity: str) -> datetime:
    return window_floor(start - timedelta(microseconds=1), granularity)


def _parse_window(text: Any) -> datetime:
    """A window start as the engines render it (text, naive UTC)."""
    return datetime.fromisoformat(str(text).strip().replace("T", " ")[:19])


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc)


# ---------------------------------------------------------------- engines


class _Connection:
    """One engine's connection: run a query, list a view's columns."""

    dialect: Dialect
    name: str

    def query(self, text: str) -> list[dict[str, Any]]:
        raise NotImplementedError

    def schema(self, view: str) -> dict[str, str]:
        raise NotImplementedError

    def register_files(self, view: str, kind: str, files: Sequence[Path], base: Path | None) -> None:
        raise NotImplementedError

    def close(self) -> None: ...


class _DuckDB(_Connection):
    name = "duckdb"

    def __init__(self, memory_limit: str, temp_root: Path) -> None:
        import tempfile

        import duckdb

        from mlci.contracts.engines.duckdb import DuckDBDialect

        self.dialect = DuckDBDialect()
        self._duckdb = duckdb
        temp_root.mkdir(parents=True, exist_ok=True)
        self._temp = Path(tempfile.mkdtemp(prefix="monitor-", dir=temp_root))
        # Bounded memory: what does not fit the limit (the label join, the grouped score counts
        # behind ROC AUC, frequent items of a wide column) spills to the temporary folder;
        # insertion order is not needed (every result is grouped) and costs memory.
        self.con = duckdb.connect(
            ":memory:",
            config={
                "memory_limit": memory_limit,
                "temp_directory": str(self._temp),
                "preserve_insertion_order": False,
            },
        )

    def register_files(self, view: str, kind: str, files: Sequence[Path], base: Path | None) -> None:
        listed = "[" + ", ".join(self.dialect.string(str(f)) for f in files) + "]"
        if kind == "parquet":
            hive = ", hive_partitioning = true" if base is not None else ""
            source = f"read_parquet({listed}, union_by_name = true{hive}, can_have_nan = true)"
        else:
            source = f"read_csv({listed}, header = true, union_by_name = true, all_varchar = true)"
        self.query(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT * FROM {source}")

    def query(self, text: str) -> list[dict[str, Any]]:
        try:
            cursor = self.con.execute(text)
            if cursor.description is None:
                return []
            names = [c[0] for c in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        except self._duckdb.Error as exc:
            raise QueryFailed(first_line(exc)) from None

    def schema(self, view: str) -> dict[str, str]:
        return {str(r["column_name"]): str(r["column_type"]) for r in self.query(f"DESCRIBE SELECT * FROM {view}")}

    def close(self) -> None:
        import shutil

        self.con.close()
        shutil.rmtree(self._temp, ignore_errors=True)


class _Spark(_Connection):
    name = "spark"

    def __init__(self) -> None:
        from mlci.contracts.engines.spark import SparkDialect, session

        self.dialect = SparkDialect()
        self.spark = session()
        self._views: list[str] = []
        # Windows are cut in UTC whatever the session's zone; restored on close.
        self._zone = self.spark.conf.get("spark.sql.session.timeZone", None)
        self.spark.conf.set("spark.sql.session.timeZone", "UTC")

    def register_files(self, view: str, kind: str, files: Sequence[Path], base: Path | None) -> None:
        reader = self.spark.read
        try:
            if kind == "parquet":
                reader = reader.option("mergeSchema", "true")
                if base is not None:
                    reader = reader.option("basePath", str(base))  # keeps the date=... partition column
                frame = reader.parquet(*[str(f) for f in files])
            else:
                frame = reader.option("header", True).csv([str(f) for f in files])
        except Exception as exc:  # AnalysisException and friends
            raise QueryFailed(first_line(exc)) from None
        frame.createOrReplaceTempView(view)
        self._views.append(view)

    def query(self, text: str) -> list[dict[str, Any]]:
        try:
            words = text.split(maxsplit=7)
            if words[:5] == ["CREATE", "OR", "REPLACE", "TEMP", "VIEW"] and words[6] == "AS":
                # Through the DataFrame API: DDL would start the session's catalog (and its
                # spark-warehouse folder in the working directory) for a temporary view.
                self.spark.sql(words[7]).createOrReplaceTempView(words[5])
                self._views.append(words[5])
                return []
            return [row.asDict(recursive=True) for row in self.spark.sql(text).collect()]
        except QueryFailed:
            raise
        except Exception as exc:  # ParseException, AnalysisException, Py4JJavaError, ...
            raise QueryFailed(first_line(exc)) from None

    def schema(self, view: str) -> dict[str, str]:
        return {f.name: f.dataType.simpleString() for f in self.spark.table(view).schema.fields}

    def close(self) -> None:
        for view in self._views:
            self.spark.catalog.dropTempView(view)
        if self._zone is None:
            self.spark.conf.unset("spark.sql.session.timeZone")
        else:
            self.spark.conf.set("spark.sql.session.timeZone", self._zone)


class QueryFailed(Exception):
    """The engine rejected or failed one of the monitor's queries (its first line)."""


def _connect(engine: str, memory_limit: str, temp_root: Path) -> _Connection:
    if engine == "duckdb":
        return _DuckDB(memory_limit, temp_root)
    if engine == "spark":
        try:
            return _Spark()
        except ImportError as exc:
            raise UsageError(f"the spark engine needs {exc.name or 'pyspark'}: pip install 'mlci[spark]'") from None
    raise UsageError(f"unknown engine '{engine}'; engines: duckdb, spark")


# ---------------------------------------------------------------- inputs


def _data_files(folder: Path, suffixes: Iterable[str]) -> list[Path]:
    """The data files under `folder`, skipping hidden names (a writer's temporary files)."""
    if not folder.is_dir():
        return []
    out = []
    for suffix in suffixes:
        for path in folder.rglob(f"*{suffix}"):
            rel = path.relative_to(folder)
            if any(part.startswith((".", "_")) for part in rel.parts) or not path.is_file():
                continue
            out.append(path)
    return sorted(out)


def _fingerprints(folder: Path, files: Sequence[Path]) -> list[list[Any]]:
    out = []
    for path in files:
        stat = path.stat()
        out.append([path.relative_to(folder).as_posix(), stat.st_size, stat.st_mtime_ns])
    return out


@dataclass
class _Inputs:
    inference: Path
    labels: Path
    inference_files: list[Path]
    label_csv: list[Path]
    label_parquet: list[Path]

    def fingerprint(self) -> dict[str, Any]:
        return {
            "inference": _fingerprints(self.inference, self.inference_files),
            "labels": _fingerprints(self.labels, [*self.label_csv, *self.label_parquet]),
        }


def _inputs(project: Project) -> _Inputs:
    cfg = project.config.monitor
    inference = project.root / cfg.inference
    labels = project.root / cfg.labels
    return _Inputs(
        inference,
        labels,
        _data_files(inference, (".parquet",)),
        _data_files(labels, (".csv",)),
        _data_files(labels, (".parquet",)),
    )


# ---------------------------------------------------------------- the views


@dataclass
class _Views:
    conn: _Connection
    schema: dict[str, str]  # the inference table's columns

    @property
    def d(self) -> Dialect:
        return self.conn.dialect


def _open_views(conn: _Connection, inputs: _Inputs, granularity: str) -> _Views:
    d = conn.dialect
    try:
        conn.register_files("__mlci_inference", "parquet", inputs.inference_files, inputs.inference)
        schema = conn.schema("__mlci_inference")
    except QueryFailed as exc:
        raise ConfigError(str(inputs.inference), None, f"cannot read the inference table: {exc}") from None
    missing = [c for c in ("request_id", "timestamp", "model_id", PREDICTION) if c not in schema]
    if missing:
        raise ConfigError(
            str(inputs.inference),
            None,
            f"the inference table has no column {', '.join(repr(m) for m in missing)} "
            "(mlci serve logs request_id, timestamp, model_id, the features and prediction)",
        )
    ts_type = schema["timestamp"].upper()
    ts = d.ident("timestamp")
    if conn.name == "duckdb" and "TIME ZONE" in ts_type:
        utc = f"timezone('UTC', {ts})"
    elif conn.name == "duckdb":
        utc = f"CAST({ts} AS TIMESTAMP)"
    else:
        utc = ts
    unit = UNITS[granularity]
    text = d.text_type
    parts = []
    for view, files in (("__mlci_labels_csv", inputs.label_csv), ("__mlci_labels_parquet", inputs.label_parquet)):
        if not files:
            continue
        try:
            conn.register_files(view, "csv" if view.endswith("csv") else "parquet", files, None)
            columns = conn.schema(view)
        except QueryFailed as exc:
            raise ConfigError(str(inputs.labels), None, f"cannot read the label files: {exc}") from None
        lacking = [c for c in ("request_id", "label") if c not in columns]
        if lacking:
            raise ConfigError(
                str(files[0]),
                None,
                f"label files need the columns request_id, label (and label_timestamp); missing {', '.join(lacking)}",
            )
        stamp_type = "TIMESTAMPTZ" if conn.name == "duckdb" else "TIMESTAMP"
        stamp = (
            f"TRY_CAST({d.ident('label_timestamp')} AS {stamp_type})"
            if "label_timestamp" in columns
            else f"CAST(NULL AS {stamp_type})"
        )
        parts.append(
            f"SELECT CAST({d.ident('request_id')} AS {text}) AS request_id, "
            f"CAST({d.ident('label')} AS {text}) AS __label_text, {stamp} AS __label_timestamp FROM {view}"
        )
    if not parts:
        parts.append(
            f"SELECT CAST(NULL AS {text}) AS request_id, CAST(NULL AS {text}) AS __label_text, "
            f"CAST(NULL AS TIMESTAMP) AS __label_timestamp FROM __mlci_inference WHERE 1 = 0"
        )
    union = "\nUNION ALL\n".join(parts)
    # The last label of a request id wins (ties: the greater label, so both engines agree).
    conn.query(
        "CREATE OR REPLACE TEMP VIEW __mlci_labels AS SELECT request_id, __label_text FROM ("
        "SELECT request_id, __label_text, row_number() OVER (PARTITION BY request_id "
        "ORDER BY __label_timestamp DESC NULLS LAST, __label_text DESC NULLS LAST) AS __n "
        f"FROM ({union}) __raw WHERE request_id IS NOT NULL AND __label_text IS NOT NULL) __ranked WHERE __n = 1"
    )
    conn.query(
        "CREATE OR REPLACE TEMP VIEW __mlci_scored AS SELECT __i.*, "
        f"CAST(date_trunc('{unit}', {utc.replace(ts, '__i.' + ts)}) AS TIMESTAMP) AS __window, "
        "__l.__label_text AS __label_text "
        "FROM __mlci_inference __i LEFT JOIN __mlci_labels __l "
        f"ON CAST(__i.{d.ident('request_id')} AS {text}) = __l.request_id"
    )
    return _Views(conn, schema)


# ---------------------------------------------------------------- one model's query


@dataclass
class _ModelPlan:
    """The grouped query of one model_id: aliases of every figure it reads back."""

    model_id: str
    baseline: Baseline | None
    columns: list[sql.ColumnSpec]
    agg: sql.Aggregates = field(default_factory=sql.Aggregates)
    column_aliases: dict[str, sql.ColumnAliases] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)  # table-level figure -> alias
    classes: list[str] = field(default_factory=list)
    confusion: dict[tuple[str, str], str] = field(default_factory=dict)
    probability: dict[str, str] = field(default_factory=dict)  # class -> column
    estimated: dict[str, tuple[str, str, str]] = field(
        default_factory=dict
    )  # class -> (exp. hits, predicted, exp. support)


def _class_text(d: Dialect, expr: str, integer_classes: bool) -> str:
    """A label or prediction as its class's text: `1.0` reads as class `1` when classes are integers."""
    text = d.text_type
    if not integer_classes:
        return f"CAST({expr} AS {text})"
    number = f"TRY_CAST(CAST({expr} AS {text}) AS DOUBLE)"
    return (
        f"CASE WHEN {number} IS NOT NULL AND {number} = floor({number}) "
        f"THEN CAST(CAST({number} AS BIGINT) AS {text}) ELSE CAST({expr} AS {text}) END"
    )


def _calibrated(d: Dialect, column: str, cal: Any) -> str:
    """The calibration map of one class as a CASE over the probability's bins."""
    c = d.ident(column)
    cases = " ".join(
        f"WHEN {c} < {sql_double(edge)} THEN {sql_double(freq)}"
        for edge, freq in zip(cal.edges, cal.frequency, strict=False)
    )
    return f"CASE WHEN {c} IS NULL THEN NULL {cases} ELSE {sql_double(cal.frequency[-1])} END"


def sql_double(value: float) -> str:
    from mlci.contracts.sql import double_literal

    return double_literal(float(value))


@dataclass(frozen=True)
class _Queries:
    """One model's SQL: its grouped figures (with the contract's column checks), its frequent
    items (and categorical distinct counts), and the score counts behind ROC AUC."""

    main: str
    frequent: str | None
    auc: str | None


def _model_query(
    views: _Views,
    plan: _ModelPlan,
    windows: Sequence[datetime],
    slices: Sequence[str],
    task: str,
    checks: _ContractChecks | None = None,
) -> _Queries:
    """The SQL of one model's windows (see _Queries)."""
    d = views.d
    text = d.text_type
    baseline = plan.baseline
    integer_classes = bool(plan.classes) and all(_is_integer_text(c) for c in plan.classes)
    in_windows = ", ".join(sql.timestamp_literal(w) for w in windows)
    extra = []
    if task == "classification":
        extra.append(f"{_class_text(d, d.ident(PREDICTION), integer_classes)} AS __pred")
        extra.append(
            "CASE WHEN __label_text IS NULL THEN NULL "
            f"ELSE {_class_text(d, '__label_text', integer_classes)} END AS __label"
        )
    else:
        extra.append(f"{sql.double(d.ident(PREDICTION))} AS __pred")
        extra.append("TRY_CAST(__label_text AS DOUBLE) AS __label")
    base = (
        f"SELECT *, {', '.join(extra)} FROM __mlci_scored "
        f"WHERE {d.ident('model_id')} = {d.string(plan.model_id)} AND __window IN ({in_windows})"
    )
    # CBPE: each class's calibrated probability, then that of the predicted class.
    calibrated = []
    cal = baseline.calibration if baseline else None
    if task == "classification" and cal and plan.probability and all(c in cal for c in plan.classes):
        if len(plan.classes) == 2:
            positive = plan.classes[1]
            q1 = _calibrated(d, plan.probability[positive], cal[positive])
            calibrated = [f"1 - ({q1}) AS __q0", f"{q1} AS __q1"]
        else:
            raw = [_calibrated(d, plan.probability[c], cal[c]) for c in plan.classes]
            total = " + ".join(f"({r})" for r in raw)
            calibrated = [f"{sql.divide(r, total)} AS __q{i}" for i, r in enumerate(raw)]
    layers = [f"__base AS ({base})"]
    if calibrated:
        layers.append(f"__cal AS (SELECT *, {', '.join(calibrated)} FROM __base)")
        pick = " ".join(f"WHEN {d.string(c)} THEN __q{i}" for i, c in enumerate(plan.classes))
        layers.append(f"__est AS (SELECT *, CASE __pred {pick} END AS __qp FROM __cal)")
        source = "__est"
    else:
        source = "__base"
    sliced = [f"SELECT CAST(NULL AS {text}) AS __slice_key, CAST(NULL AS {text}) AS __slice_value, * FROM {source}"]
    for column in slices:
        sliced.append(
            f"SELECT {d.string(column)} AS __slice_key, CAST({d.ident(column)} AS {text}) AS __slice_value, * "
            f"FROM {source}"
        )
    layers.append("__sliced AS (" + "\nUNION ALL\n".join(sliced) + ")")
    keys = "__window, __slice_key, __slice_value"
    categorical = [c.name for c in plan.columns if c.kind == "categorical"]
    _add_aggregates(d, plan, task, bool(calibrated), set(categorical))
    sliced_prefix = "WITH " + ",\n".join(layers)
    main = (
        sliced_prefix
        + f"\nSELECT CAST(__window AS {text}) AS __w, __slice_key, __slice_value,\n  "
        + plan.agg.select_list()
        + (f",\n  {checks.items}" if checks is not None and checks.items.strip() else "")
        + f"\nFROM __sliced GROUP BY {keys}"
    )
    auc = _auc_query(d, plan, sliced_prefix) if task == "classification" else None
    if not categorical:
        return _Queries(main, None, auc)
    items = "\nUNION ALL\n".join(
        f"SELECT __window, __slice_key, __slice_value, {d.string(name)} AS __column, "
        f"CAST({d.ident(name)} AS {text}) AS __item, count(*) AS __n FROM __sliced "
        f"WHERE {d.ident(name)} IS NOT NULL "
        f"GROUP BY __window, __slice_key, __slice_value, CAST({d.ident(name)} AS {text})"
        for name in categorical
    )
    # The distinct count of a categorical column is its number of items, exact: the grouped
    # counts spill where a count(DISTINCT) per group would hold every value in memory.
    partition = "PARTITION BY __window, __slice_key, __slice_value, __column"
    frequent = (
        sliced_prefix + f"\nSELECT CAST(__window AS {text}) AS __w, __slice_key, __slice_value, __column, __item, __n, "
        "__distinct FROM ("
        f"SELECT *, row_number() OVER ({partition} ORDER BY __n DESC, __item) AS __rank, "
        f"count(*) OVER ({partition}) AS __distinct "
        f"FROM ({items}) __counted) __top WHERE __rank <= {sql.FREQUENT_ITEMS}"
    )
    return _Queries(main, frequent, auc)


def _auc_query(d: Dialect, plan: _ModelPlan, sliced_prefix: str) -> str | None:
    """One-vs-rest ROC AUC of each class with a probability column, exactly, in bounded memory:
    the labelled rows' counts of positives and negatives per distinct score (a grouped count,
    which spills), then per score the negatives below it (a running sum over the few columns
    left). AUC = sum(pos * (neg below + neg tied / 2)) / (P * N), the Mann-Whitney statistic with
    ties counted half, as scikit-learn's roc_auc_score. NULL scores sort last (one tie group)."""
    parts = []
    for cls in plan.classes:
        if cls not in plan.probability:
            continue
        score = sql.double(d.ident(plan.probability[cls]))
        parts.append(
            f"SELECT __window, __slice_key, __slice_value, {d.string(cls)} AS __class, {score} AS __s, "
            f"{d.count_if(f'__label = {d.string(cls)}')} AS __pos, "
            f"{d.count_if(f'__label <> {d.string(cls)}')} AS __neg "
            f"FROM __sliced WHERE __label IS NOT NULL GROUP BY __window, __slice_key, __slice_value, {score}"
        )
    if not parts:
        return None
    keys = "__window, __slice_key, __slice_value, __class"
    below = (
        f"sum(__neg) OVER (PARTITION BY {keys} ORDER BY __s NULLS LAST "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)"
    )
    pos, neg = sql.double("__pos"), sql.double("__neg")
    return (
        sliced_prefix
        + ",\n__scores AS ("
        + "\nUNION ALL\n".join(parts)
        + "),\n"
        + f"__below AS (SELECT *, coalesce({sql.double(below)}, 0.0) AS __b FROM __scores)\n"
        + f"SELECT CAST(__window AS {d.text_type}) AS __w, __slice_key, __slice_value, __class, "
        + f"sum({pos} * (__b + {neg} / 2)) AS __u, sum(__pos) AS __p, sum(__neg) AS __n "
        + f"FROM __below GROUP BY {keys}"
    )


def _is_integer_text(value: str) -> bool:
    try:
        return float(value).is_integer() and "." not in value and "e" not in value.lower()
    except ValueError:
        return False


def _add_aggregates(d: Dialect, plan: _ModelPlan, task: str, calibrated: bool, itemised: set[str]) -> None:
    agg = plan.agg
    for col in plan.columns:
        plan.column_aliases[col.name] = sql.column_aggregates(
            d, agg, col, approximate=True, distinct=col.name not in itemised
        )
    f = plan.figures
    f["rows"] = agg.add("count(*)")
    f["labelled"] = agg.add("count(__label)")
    labelled = "__label IS NOT NULL"
    if task == "classification":
        f["correct"] = agg.add(d.count_if(f"{labelled} AND __pred = __label"))
        for p in plan.classes:
            for t in plan.classes:
                plan.confusion[(p, t)] = agg.add(
                    d.count_if(f"{labelled} AND __pred = {d.string(p)} AND __label = {d.string(t)}")
                )
        for cls in plan.classes:
            f[f"predicted:{cls}"] = agg.add(d.count_if(f"{labelled} AND __pred = {d.string(cls)}"))
            f[f"true:{cls}"] = agg.add(d.count_if(f"__label = {d.string(cls)}"))
        if plan.probability and all(c in plan.probability for c in plan.classes):
            truth = " ".join(f"WHEN {d.string(c)} THEN {d.ident(plan.probability[c])}" for c in plan.classes)
            clipped = f"least(greatest(CASE __label {truth} END, {LOG_LOSS_EPSILON!r}), {1 - LOG_LOSS_EPSILON!r})"
            f["log_loss"] = agg.add(f"avg(CASE WHEN {labelled} THEN -ln({clipped}) END)")
        if calibrated:
            f["expected_correct"] = agg.add("sum(__qp)")
            f["expected_correct_labelled"] = agg.add(f"sum(CASE WHEN {labelled} THEN __qp END)")
            for i, cls in enumerate(plan.classes):
                plan.estimated[cls] = (
                    agg.add(f"sum(CASE WHEN __pred = {d.string(cls)} THEN __q{i} END)"),
                    agg.add(d.count_if(f"__pred = {d.string(cls)}")),
                    agg.add(f"sum(__q{i})"),
                )
    else:
        error = "(__pred - __label)"
        f["sse"] = agg.add(f"sum(CASE WHEN {labelled} THEN {error} * {error} END)")
        f["sae"] = agg.add(f"sum(CASE WHEN {labelled} THEN abs({error}) END)")
        f["sape"] = agg.add(
            f"sum(CASE WHEN {labelled} THEN abs({error}) / greatest(abs(__label), {MAPE_EPSILON!r}) END)"
        )
        f["label_var"] = agg.add(f"var_pop(CASE WHEN {labelled} THEN __label END)")


# ---------------------------------------------------------------- figures to rows


def _ratio(part: float | None, whole: float | None) -> float | None:
    if part is None or not whole:
        return None
    return part / whole


def _averages(per_class: Mapping[str, float | None], weights: Mapping[str, float]) -> dict[str, Any]:
    """one_vs_all, macro and (support-)weighted of a per-class metric (sklearn's zero_division=0)."""
    values = {c: (v if v is not None else 0.0) for c, v in per_class.items()}
    total = sum(weights.values())
    return {
        "one_vs_all": {c: _round(v) for c, v in values.items()},
        "macro": _round(sum(values.values()) / len(values)) if values else None,
        "weighted": _round(sum(values[c] * weights[c] for c in values) / total) if total else None,
    }


def _f1(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None:
        return None
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _round(value: float | None, digits: int = 12) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def _quality(
    plan: _ModelPlan, row: Mapping[str, Any], task: str, auc: Mapping[str, tuple[float, int, int]]
) -> dict[str, Any]:
    """Realised quality on the window's labelled rows, under the profile table's names."""
    f = plan.figures
    labelled = int(row[f["labelled"]] or 0)
    if not labelled:
        return {}
    if task == "regression":
        sse = float(row[f["sse"]] or 0.0)
        mse = sse / labelled
        variance = row[f["label_var"]]
        r2 = 1 - sse / (labelled * float(variance)) if variance else None
        return {
            "mean_squared_error": _round(mse),
            "root_mean_squared_error": _round(math.sqrt(mse)),
            "mean_average_error": _round(float(row[f["sae"]] or 0.0) / labelled),
            "mean_absolute_percentage_error": _round(float(row[f["sape"]] or 0.0) / labelled),
            "r2_score": _round(r2),
        }
    out: dict[str, Any] = {"accuracy_score": _round(int(row[f["correct"]] or 0) / labelled)}
    if plan.classes:
        tp = {c: int(row[plan.confusion[(c, c)]] or 0) for c in plan.classes}
        predicted = {c: int(row[f[f"predicted:{c}"]] or 0) for c in plan.classes}
        support = {c: float(row[f[f"true:{c}"]] or 0) for c in plan.classes}
        precision = {c: _ratio(tp[c], predicted[c]) for c in plan.classes}
        recall = {c: _ratio(tp[c], support[c]) for c in plan.classes}
        f1 = {c: _f1(precision[c] or 0.0, recall[c] or 0.0) for c in plan.classes}
        out["precision"] = _averages(precision, support)
        out["recall"] = _averages(recall, support)
        out["f1_score"] = _averages(f1, support)
        out["confusion_matrix"] = [
            {"prediction": p, "label": t, "count": int(row[alias] or 0)}
            for (p, t), alias in plan.confusion.items()
            if row[alias]
        ]
    # One-vs-rest AUC per class (Mann-Whitney: the positives' average ranks); binary reads the
    # positive class's (classes[1], scikit-learn's), multiclass the macro mean when every class
    # has positives and negatives in the window (scikit-learn refuses otherwise).
    aucs: dict[str, float] = {}
    for cls, (wins, n_pos, n_neg) in auc.items():
        if n_pos and n_neg:
            aucs[cls] = wins / (n_pos * n_neg)
    if len(plan.classes) == 2 and plan.classes[1] in aucs:
        out["roc_auc"] = _round(aucs[plan.classes[1]])
    elif len(plan.classes) > 2 and aucs and len(aucs) == len(plan.probability) == len(plan.classes):
        out["roc_auc"] = _round(sum(aucs.values()) / len(aucs))
    if "log_loss" in f and row[f["log_loss"]] is not None:
        out["log_loss"] = _round(float(row[f["log_loss"]]))
    return out


def _estimated(plan: _ModelPlan, row: Mapping[str, Any]) -> dict[str, Any]:
    """CBPE: the expected confusion counts from the calibrated probabilities."""
    f = plan.figures
    if "expected_correct" not in f:
        return {}
    rows = int(row[f["rows"]] or 0)
    if not rows:
        return {}
    hits = {c: float(row[a] or 0.0) for c, (a, _, _) in plan.estimated.items()}
    predicted = {c: int(row[b] or 0) for c, (_, b, _) in plan.estimated.items()}
    support = {c: float(row[s] or 0.0) for c, (_, _, s) in plan.estimated.items()}
    precision = {c: _ratio(hits[c], predicted[c]) for c in plan.classes}
    recall = {c: _ratio(hits[c], support[c]) for c in plan.classes}
    f1 = {c: _f1(precision[c] or 0.0, recall[c] or 0.0) for c in plan.classes}
    return {
        "estimated_accuracy_score": _round(float(row[f["expected_correct"]] or 0.0) / rows),
        "estimated_precision": _averages(precision, support)["weighted"],
        "estimated_recall": _averages(recall, support)["weighted"],
        "estimated_f1_score": _averages(f1, support)["weighted"],
    }


def _distances(reference: Sequence[int], current: Sequence[int]) -> dict[str, Any]:
    """The drift table's statistics of two count vectors over the same bins."""
    from scipy.stats import kstwobign

    if not sum(reference) or not sum(current):
        return {}
    statistic = drift.ks_binned(reference, current)
    n, m = sum(reference), sum(current)
    effective = math.sqrt(n * m / (n + m))
    # The asymptotic two-sample KS p-value with Stephens' small-sample correction.
    pvalue = float(kstwobign.sf((effective + 0.12 + 0.11 / effective) * statistic))
    chi_statistic, chi_pvalue = drift.chi_squared_test(reference, current)
    return {
        "js_distance": drift.js_distance(reference, current),
        "ks_test": {"statistic": statistic, "pvalue": round(min(max(pvalue, 0.0), 1.0), 6)},
        "population_stability_index": drift.psi(reference, current),
        "chi_squared_test": {"statistic": chi_statistic, "pvalue": chi_pvalue},
        "tv_distance": drift.tv_distance(reference, current),
        "l_infinity_distance": drift.l_infinity_distance(reference, current),
    }


def wasserstein_binned(
    edges: Sequence[float], reference: Sequence[int], current: Sequence[int], low: float, high: float
) -> float | None:
    """The area between the two CDFs, each linear within a bin; the outer bins end at the
    smallest and largest value either side has (an estimate from the bins, not the exact W1)."""
    if not sum(reference) or not sum(current):
        return None
    points = [low, *[float(e) for e in edges], high]
    if any(b < a for a, b in itertools.pairwise(points)):
        points = sorted(points)
    cdf_p, cdf_q, acc_p, acc_q = [0.0], [0.0], 0.0, 0.0
    n, m = sum(reference), sum(current)
    for p, q in zip(reference, current, strict=True):
        acc_p += p / n
        acc_q += q / m
        cdf_p.append(acc_p)
        cdf_q.append(acc_q)
    area = 0.0
    for i, (left, right) in enumerate(itertools.pairwise(points)):
        width = right - left
        a, b = cdf_p[i] - cdf_q[i], cdf_p[i + 1] - cdf_q[i + 1]
        if a * b >= 0:
            area += width * (abs(a) + abs(b)) / 2
        else:  # the difference crosses zero inside the bin
            area += width * (a * a + b * b) / (2 * (abs(a) + abs(b)))
    return round(area, 9)


def _judged(stats: Mapping[str, Any], method: str) -> float | None:
    """The figure a drift method judges a column by (ks_test: statistic; chi-squared: p-value)."""
    value = stats.get(method)
    if isinstance(value, Mapping):
        value = value.get("pvalue" if method == "chi_squared_test" else "statistic")
    return None if value is None else float(value)


def _drifted(value: float, method: str, threshold: float) -> bool:
    return value < threshold if method == "chi_squared_test" else value > threshold


# ---------------------------------------------------------------- table schemas


def _schemas() -> dict[str, Any]:
    import pyarrow as pa

    stamp = pa.timestamp("us", tz="UTC")
    window = pa.struct([("start", stamp), ("end", stamp)])
    averaged = pa.struct(
        [("one_vs_all", pa.map_(pa.string(), pa.float64())), ("macro", pa.float64()), ("weighted", pa.float64())]
    )
    test = pa.struct([("statistic", pa.float64()), ("pvalue", pa.float64())])
    keys = [
        ("window", window),
        ("granularity", pa.string()),
        ("model_id", pa.string()),
        ("slice_key", pa.string()),
        ("slice_value", pa.string()),
        ("column_name", pa.string()),
    ]
    profile = pa.schema(
        [
            *keys,
            ("log_type", pa.string()),
            ("data_type", pa.string()),
            ("count", pa.int64()),
            ("num_nulls", pa.int64()),
            ("percent_null", pa.float64()),
            ("avg", pa.float64()),
            ("min", pa.float64()),
            ("max", pa.float64()),
            ("stddev", pa.float64()),
            ("median", pa.float64()),
            ("quantiles", pa.list_(pa.float64())),
            ("distinct_count", pa.int64()),
            ("percent_distinct", pa.float64()),
            ("num_zeros", pa.int64()),
            ("percent_zeros", pa.float64()),
            ("num_nan", pa.int64()),
            ("percent_nan", pa.float64()),
            ("frequent_items", pa.list_(pa.struct([("item", pa.string()), ("count", pa.int64())]))),
            ("accuracy_score", pa.float64()),
            ("precision", averaged),
            ("recall", averaged),
            ("f1_score", averaged),
            ("roc_auc", pa.float64()),
            ("log_loss", pa.float64()),
            (
                "confusion_matrix",
                pa.list_(pa.struct([("prediction", pa.string()), ("label", pa.string()), ("count", pa.int64())])),
            ),
            ("mean_squared_error", pa.float64()),
            ("root_mean_squared_error", pa.float64()),
            ("mean_average_error", pa.float64()),
            ("mean_absolute_percentage_error", pa.float64()),
            ("r2_score", pa.float64()),
        ]
    )
    drift_schema = pa.schema(
        [
            *keys,
            ("drift_type", pa.string()),
            ("window_cmp", window),
            ("data_type", pa.string()),
            ("count_delta", pa.float64()),
            ("avg_delta", pa.float64()),
            ("percent_null_delta", pa.float64()),
            ("percent_zeros_delta", pa.float64()),
            ("percent_distinct_delta", pa.float64()),
            ("js_distance", pa.float64()),
            ("ks_test", test),
            ("wasserstein_distance", pa.float64()),
            ("population_stability_index", pa.float64()),
            ("chi_squared_test", test),
            ("tv_distance", pa.float64()),
            ("l_infinity_distance", pa.float64()),
        ]
    )
    performance = pa.schema(
        [
            *keys[:5],
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
    return {PROFILE_TABLE: profile, DRIFT_TABLE: drift_schema, PERFORMANCE_TABLE: performance}


# ---------------------------------------------------------------- compute


@dataclass
class _Window:
    """The figures of one (window, model, slice) group."""

    start: datetime
    slice_key: str | None
    slice_value: str | None
    row: dict[str, Any]
    items: dict[str, list[dict[str, Any]]]
    contract_failures: int = 0
    distinct: dict[str, int] = field(default_factory=dict)  # categorical column -> its number of items
    auc: dict[str, tuple[float, int, int]] = field(default_factory=dict)  # class -> (wins, positives, negatives)


def compute(
    project: Project,
    baseline_for: Callable[[str], Baseline | None],
    *,
    engine: str = "duckdb",
    since: timedelta | None = None,
    now: datetime,
    memory_limit: str = DUCKDB_MEMORY_LIMIT,
) -> ComputeSummary:
    """Compute the closed windows that changed since the last run and rewrite the three tables
    and state.json under monitor.output (each written whole to a temporary file, then renamed).
    On DuckDB, `memory_limit` bounds the engine's memory; past it, work spills under .mlci/tmp."""
    cfg = project.config.monitor
    output = project.root / cfg.output
    granularity = cfg.granularity
    open_start = window_floor(now, granularity)
    first = window_floor(now - since, granularity) if since is not None else None
    inputs = _inputs(project)
    settings = {
        "granularity": granularity,
        "slices": list(cfg.slices),
        "min_label_coverage": cfg.min_label_coverage,
        "drift": {
            "numeric": [cfg.drift.numeric.method, cfg.drift.numeric.threshold],
            "categorical": [cfg.drift.categorical.method, cfg.drift.categorical.threshold],
            "columns": cfg.drift.columns,
        },
        "task": project.config.train.task,
        "engine": engine,
        "contract": _contract_fingerprint(project),
    }
    state = _read_state(output / STATE_FILE)
    same_settings = state.get("settings") == settings
    fingerprint = inputs.fingerprint()
    # The rows already computed; unusable (settings changed, a table deleted or damaged): none,
    # and then no window counts as computed either.
    old_rows = _old_rows(output) if same_settings else None
    previous = {(w["start"], w["model_id"]): w for w in state.get("windows", [])} if old_rows is not None else {}
    cache: dict[str, Baseline | None] = {}

    def baseline_of(model_id: str) -> Baseline | None:
        if model_id not in cache:
            cache[model_id] = baseline_for(model_id)
        return cache[model_id]

    def run_id_of(model_id: str) -> str | None:
        found = baseline_of(model_id)
        return found.run_id if found else None

    if (
        old_rows is not None
        and state.get("inputs") == fingerprint
        and all(w.get("baseline_run_id") == run_id_of(w["model_id"]) for w in state.get("windows", []))
        and state.get("open_start") == open_start.isoformat()
        and state.get("since") == (first.isoformat() if first else None)
    ):
        # Nothing new arrived and no window closed since the last run.
        windows = state.get("windows", [])
        return ComputeSummary(
            0,
            len({w["start"] for w in windows}),
            sum(int(w["rows"]) for w in windows),
            tuple(sorted({w["model_id"] for w in windows})),
            output,
        )
    task = project.config.train.task
    new_rows: dict[str, list[dict[str, Any]]] = {t: [] for t in _schemas()}
    recomputed: set[tuple[str, str]] = set()
    seen: list[dict[str, Any]] = []
    total_rows = 0
    contract = _column_contract(project)
    if inputs.inference_files:
        check_no_symlink(project.root, TEMP_DIR)  # the spill folder is created, then deleted
        conn = _connect(engine, memory_limit, project.root / TEMP_DIR)
        try:
            views = _open_views(conn, inputs, granularity)
            d = conn.dialect
            lower = f" AND __window >= {sql.timestamp_literal(first)}" if first else ""
            summary = conn.query(
                f"SELECT CAST(__window AS {d.text_type}) AS __w, {d.ident('model_id')} AS __model, count(*) AS __rows, "
                "count(__label_text) AS __labelled, "
                # A sum, not an xor, of the labelled rows' hashes: every row of a several-row
                # request shares one id and label, and an even number of equal terms xor to 0, so
                # a corrected label on a two-row request would leave the window looking unchanged.
                "CAST(sum(CASE WHEN __label_text IS NOT NULL "
                f"THEN hash({d.ident('request_id')}, __label_text) END) "
                f"AS {d.text_type}) AS __labels FROM __mlci_scored "
                f"WHERE __window < {sql.timestamp_literal(open_start)}{lower} AND {d.ident('model_id')} IS NOT NULL "
                "GROUP BY __window, model_id"
            )
            by_model: dict[str, dict[datetime, dict[str, Any]]] = {}
            for r in summary:
                by_model.setdefault(str(r["__model"]), {})[_parse_window(r["__w"])] = r
            for model_id, found in sorted(by_model.items()):
                baseline = baseline_of(model_id)
                run_id = baseline.run_id if baseline else None
                todo: set[datetime] = set()
                for start, r in found.items():
                    old = previous.get((_utc(start).isoformat(), model_id))
                    entry: dict[str, Any] = {
                        "start": _utc(start).isoformat(),
                        "end": _utc(window_end(start, granularity)).isoformat(),
                        "model_id": model_id,
                        "rows": int(r["__rows"]),
                        "label_count": int(r["__labelled"]),
                        "labels": str(r["__labels"]),
                        "baseline_run_id": run_id,
                    }
                    seen.append(entry)
                    total_rows += entry["rows"]
                    if old != entry:
                        todo.add(start)
                        following = window_end(start, granularity)
                        if (old is None or old["rows"] != entry["rows"]) and following in found:
                            todo.add(following)  # its CONSECUTIVE drift compares with this window
                if not todo:
                    continue
                context = {window_before(w, granularity) for w in todo} & set(found)
                plan, groups = _run_model(
                    views, model_id, baseline, sorted(todo | context), cfg.slices, task, contract, now
                )
                for start in sorted(todo):
                    recomputed.add((_utc(start).isoformat(), model_id))
                data_types = {name: sql.data_type(t) for name, t in views.schema.items()}
                _rows_of(project, plan, groups, todo, data_types, new_rows)
        except QueryFailed as exc:
            raise ConfigError(str(inputs.inference), None, f"the monitor's query failed on {engine}: {exc}") from None
        finally:
            conn.close()
    kept = {
        table: [r for r in rows if (r["window"]["start"].isoformat(), r["model_id"]) not in recomputed]
        for table, rows in (old_rows or {}).items()
    }
    for table, rows in new_rows.items():
        kept[table] = [*kept.get(table, []), *rows]
    _write_tables(output, kept)
    windows_seen = sorted(seen, key=lambda w: (w["start"], w["model_id"]))
    computed_windows = {start for start, _ in recomputed}
    _write_state(
        output / STATE_FILE,
        {
            "mlci_monitor_state": STATE_VERSION,
            "computed_at": _utc(now.astimezone(timezone.utc).replace(tzinfo=None) if now.tzinfo else now).isoformat(),
            "open_start": open_start.isoformat(),
            "since": first.isoformat() if first else None,
            "settings": settings,
            "inputs": fingerprint,
            "windows": windows_seen,
        },
    )
    return ComputeSummary(
        len(computed_windows),
        len({w["start"] for w in windows_seen} - computed_windows),
        total_rows,
        tuple(sorted({w["model_id"] for w in windows_seen})),
        output,
    )


def _column_contract(project: Project) -> Contract | None:
    """The data contract with its column checks only: its table checks (row counts, freshness,
    keys) are written for the training table, its expectations are SQL a pull request edits,
    which only the contracts engine runs (in its locked-down connection)."""
    from mlci.contracts.format import TableChecks, load_contract

    path = project.root / project.config.data_test.contract
    if not path.is_file():
        return None
    contract = load_contract(path, project.root)
    return dataclasses.replace(contract, spec=dataclasses.replace(contract.spec, table=TableChecks(), drift=None))


@dataclass(frozen=True)
class _ContractChecks:
    """The contract's column checks as aggregates of the model's grouped query (their own
    aliases, from contracts/compiler.py) and the verdicts that read them back."""

    items: str
    verdicts: Sequence[Callable[[Mapping[str, Any]], Any]]
    mistyped: int

    def failures(self, row: Mapping[str, Any]) -> int:
        """How many checks fail on one group's row; a declared column of the wrong type counts
        as one failure, one the table lacks (the label) is not checked."""
        return self.mistyped + sum(1 for verdict in self.verdicts if verdict(row).status == "fail")


def _contract_checks(views: _Views, contract: Contract, now: datetime | None) -> _ContractChecks:
    """The contract's column checks, compiled for the inference table's columns, per window and
    slice: in the model's one grouped query, so the rows are read once for both."""
    from mlci.contracts.compiler import compile_contract
    from mlci.contracts.runner import compatible
    from mlci.contracts.sql import SOURCE_VIEW

    usable: dict[str, str] = {}
    mistyped = 0
    for col in contract.spec.columns:
        if col.name not in views.schema:
            continue
        if compatible(col.type, sql_types.family(views.schema[col.name])):
            usable[col.name] = col.type
        else:
            mistyped += 1
    compiled = compile_contract(contract, usable, views.d, now=now)
    head, tail = "SELECT\n  ", f"\nFROM {SOURCE_VIEW}"
    if not compiled.sql.startswith(head) or not compiled.sql.endswith(tail):
        raise AssertionError("the contract compiler's SQL changed shape")  # a bug, not the user's input
    return _ContractChecks(compiled.sql[len(head) : -len(tail)], compiled.verdicts, mistyped)


def _contract_fingerprint(project: Project) -> str | None:
    contract = getattr(project.config.data_test, "contract", None)
    if not contract:
        return None
    path = project.root / contract
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else None


def _columns_for(views: _Views, baseline: Baseline | None) -> list[sql.ColumnSpec]:
    """The profiled columns: the baseline's features and prediction (with their bins), or
    without a baseline every feature-like column of the table (no bins, so no drift)."""
    schema = views.schema
    out = []
    if baseline is not None:
        for name in [*baseline.features, PREDICTION]:
            if name not in schema or name not in baseline.profile.columns:
                continue
            ref = baseline.profile.columns[name]
            out.append(sql.ColumnSpec(name, ref.kind, ref.type, ref))
        return out
    for name, engine_type in schema.items():
        if name in RESERVED - {PREDICTION} or name.startswith(PROBABILITY_PREFIX):
            continue
        fam = sql_types.family(engine_type)
        if fam in ("integer", "float"):
            out.append(sql.ColumnSpec(name, "numeric", fam))
        elif fam in ("string", "boolean"):
            out.append(sql.ColumnSpec(name, "categorical", fam))
    return out


def _run_model(
    views: _Views,
    model_id: str,
    baseline: Baseline | None,
    windows: Sequence[datetime],
    slices: Sequence[str],
    task: str,
    contract: Contract | None = None,
    now: datetime | None = None,
) -> tuple[_ModelPlan, list[_Window]]:
    missing = [s for s in slices if s not in views.schema]
    if missing:
        raise UsageError(
            f"monitor.slices names {', '.join(repr(m) for m in missing)}, not a column of the inference table; "
            "fix monitor.slices in mlci.yaml"
        )
    plan = _ModelPlan(model_id, baseline, _columns_for(views, baseline))
    if task == "classification" and baseline is not None and baseline.classes:
        plan.classes = list(baseline.classes)
        for cls in plan.classes:
            column = f"{PROBABILITY_PREFIX}{cls}"
            if column in views.schema and sql_types.family(views.schema[column]) in ("float", "integer"):
                plan.probability[cls] = column
    checks = _contract_checks(views, contract, now) if contract is not None else None
    queries = _model_query(views, plan, windows, slices, task, checks)
    rows = views.conn.query(queries.main)
    items: dict[tuple[datetime, Any, Any], dict[str, list[dict[str, Any]]]] = {}
    distinct: dict[tuple[datetime, Any, Any], dict[str, int]] = {}
    if queries.frequent:
        for r in views.conn.query(queries.frequent):
            key = (_parse_window(r["__w"]), r["__slice_key"], r["__slice_value"])
            items.setdefault(key, {}).setdefault(str(r["__column"]), []).append(
                {"item": r["__item"], "count": int(r["__n"])}
            )
            distinct.setdefault(key, {})[str(r["__column"])] = int(r["__distinct"])
    auc: dict[tuple[datetime, Any, Any], dict[str, tuple[float, int, int]]] = {}
    if queries.auc:
        for r in views.conn.query(queries.auc):
            key = (_parse_window(r["__w"]), r["__slice_key"], r["__slice_value"])
            auc.setdefault(key, {})[str(r["__class"])] = (
                float(r["__u"] or 0.0),
                int(r["__p"] or 0),
                int(r["__n"] or 0),
            )
    out = []
    for r in rows:
        start = _parse_window(r["__w"])
        key = (start, r["__slice_key"], r["__slice_value"])
        for listed in items.get(key, {}).values():
            listed.sort(key=lambda i: (-i["count"], str(i["item"])))
        out.append(
            _Window(
                start,
                r["__slice_key"],
                r["__slice_value"],
                r,
                items.get(key, {}),
                checks.failures(r) if checks is not None else 0,
                distinct.get(key, {}),
                auc.get(key, {}),
            )
        )
    return plan, out


def _column_figures(plan: _ModelPlan, group: _Window, col: sql.ColumnSpec) -> dict[str, Any]:
    """One column's profile figures in one group; a categorical column's distinct count is its
    number of items (none: 0, as count(DISTINCT) of only NULLs)."""
    aliases = plan.column_aliases[col.name]
    figures = sql.column_figures(group.row, aliases)
    if aliases.distinct is None:
        figures["distinct_count"] = group.distinct.get(col.name, 0)
    return figures


def _rows_of(
    project: Project,
    plan: _ModelPlan,
    groups: list[_Window],
    todo: set[datetime],
    data_types: Mapping[str, str],
    tables: dict[str, list[dict[str, Any]]],
) -> None:
    """The three tables' rows of one model's computed windows."""
    model_id, baseline = plan.model_id, plan.baseline
    cfg = project.config.monitor
    granularity = cfg.granularity
    task = project.config.train.task
    by_key = {(g.start, g.slice_key, g.slice_value): g for g in groups}
    if cfg.drift.columns and baseline is not None:
        unknown = sorted(set(cfg.drift.columns) - set(baseline.features))
        if unknown:  # else drifted_columns_share would have no column and never fire
            raise project.error(
                "monitor.drift.columns",
                f"monitor.drift.columns names {', '.join(repr(c) for c in unknown)}, not a feature of {model_id} "
                f"({', '.join(sorted(baseline.features))}); fix the name or drop the key to monitor every feature",
            )
    monitored = set(cfg.drift.columns or (baseline.features if baseline else []))
    for group in sorted(groups, key=lambda g: (g.start, g.slice_key or "", g.slice_value or "")):
        if group.start not in todo:
            continue
        start, end = _utc(group.start), _utc(window_end(group.start, granularity))
        keys = {
            "window": {"start": start, "end": end},
            "granularity": granularity,
            "model_id": model_id,
            "slice_key": group.slice_key,
            "slice_value": group.slice_value,
        }
        quality = _quality(plan, group.row, task, group.auc)
        rows = int(group.row[plan.figures["rows"]] or 0)
        tables[PROFILE_TABLE].append(
            {**keys, "column_name": TABLE_COLUMN, "log_type": "INPUT", "data_type": None, "count": rows, **quality}
        )
        previous_key = (window_before(group.start, granularity), group.slice_key, group.slice_value)
        previous = by_key.get(previous_key)
        judged: dict[str, float] = {}
        drifted = 0
        for col in plan.columns:
            figures = _column_figures(plan, group, col)
            bin_figures = figures.pop("bin_figures", None)
            tables[PROFILE_TABLE].append(
                {
                    **keys,
                    "column_name": col.name,
                    "log_type": "INPUT",
                    "data_type": data_types.get(col.name),
                    **figures,
                    **sql.percentages(figures),
                    "frequent_items": group.items.get(col.name) if col.kind == "categorical" else None,
                }
            )
            if col.bins is None or bin_figures is None:
                continue
            counts = drift.bin_counts(col.bins, bin_figures)
            ref_summary = baseline.summary.get(col.name, {}) if baseline else {}
            stats = _drift_row(col, counts, col.bins.counts, figures, ref_summary)
            tables[DRIFT_TABLE].append(
                {
                    **keys,
                    "column_name": col.name,
                    "drift_type": "BASELINE",
                    "window_cmp": None,
                    "data_type": data_types.get(col.name),
                    **stats,
                }
            )
            method = cfg.drift.numeric if col.kind == "numeric" else cfg.drift.categorical
            value = _judged(stats, method.method)
            if value is not None:
                judged[col.name] = value
                if (
                    col.name in monitored
                    and col.name != PREDICTION
                    and _drifted(value, method.method, method.threshold)
                ):
                    drifted += 1
            if previous is not None:
                before = _column_figures(plan, previous, col)
                before_bins = before.pop("bin_figures")
                tables[DRIFT_TABLE].append(
                    {
                        **keys,
                        "column_name": col.name,
                        "drift_type": "CONSECUTIVE",
                        "window_cmp": {
                            "start": _utc(previous.start),
                            "end": _utc(window_end(previous.start, granularity)),
                        },
                        "data_type": data_types.get(col.name),
                        **_drift_row(
                            col,
                            counts,
                            drift.bin_counts(col.bins, before_bins),
                            figures,
                            {**before, **sql.percentages(before)},
                        ),
                    }
                )
        labelled = int(group.row[plan.figures["labelled"]] or 0)
        coverage = labelled / rows if rows else None
        estimated = _estimated(plan, group.row)
        gap = None
        if (
            coverage is not None
            and coverage >= cfg.min_label_coverage
            and labelled
            and "expected_correct_labelled" in plan.figures
            and quality.get("accuracy_score") is not None
        ):
            expected = float(group.row[plan.figures["expected_correct_labelled"]] or 0.0) / labelled
            gap = _round(expected - float(quality["accuracy_score"]))
        judged_monitored = [c for c in judged if c in monitored and c != PREDICTION]
        tables[PERFORMANCE_TABLE].append(
            {
                **keys,
                "count": rows,
                "label_count": labelled,
                "label_coverage": _round(coverage),
                **estimated,
                "estimation_gap": gap,
                "drifted_columns_share": _round(drifted / len(judged_monitored)) if judged_monitored else None,
                "prediction_drift": judged.get(PREDICTION),
                "contract_failures": group.contract_failures,
            }
        )


def _drift_row(
    col: sql.ColumnSpec,
    counts: Sequence[int],
    reference: Sequence[int],
    figures: Mapping[str, Any],
    ref: Mapping[str, Any],
) -> dict[str, Any]:
    stats: dict[str, Any] = dict(_distances(reference, counts))
    mine = sql.percentages(figures)
    theirs = ref if "percent_null" in ref else {**ref, **(sql.percentages(ref) if "count" in ref else {})}

    def delta(a: Any, b: Any) -> float | None:
        return None if a is None or b is None else _round(float(a) - float(b))

    stats.update(
        count_delta=delta(figures.get("count"), ref.get("count")),
        avg_delta=delta(figures.get("avg"), ref.get("avg")),
        percent_null_delta=delta(mine["percent_null"], theirs.get("percent_null")),
        percent_zeros_delta=delta(mine["percent_zeros"], theirs.get("percent_zeros")),
        percent_distinct_delta=delta(mine["percent_distinct"], theirs.get("percent_distinct")),
    )
    if col.kind == "numeric" and col.bins is not None and stats.get("js_distance") is not None:
        lows = [v for v in (figures.get("min"), ref.get("min")) if v is not None]
        highs = [v for v in (figures.get("max"), ref.get("max")) if v is not None]
        edges = [float(e) for e in col.bins.edges]
        low = min([*lows, *edges[:1]]) if lows or edges else 0.0
        high = max([*highs, *edges[-1:]]) if highs or edges else 0.0
        stats["wasserstein_distance"] = wasserstein_binned(edges, reference, counts, float(low), float(high))
    return stats


# ---------------------------------------------------------------- files


def _read_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # unreadable: compute everything again, and rewrite it
    return data if isinstance(data, dict) and data.get("mlci_monitor_state") == STATE_VERSION else {}


def _write_state(path: Path, state: Mapping[str, Any]) -> None:
    fs.write_atomic(path, (json.dumps(state, indent=1, sort_keys=True) + "\n").encode("utf-8"))


def _old_rows(output: Path) -> dict[str, list[dict[str, Any]]] | None:
    """The rows of the three tables as the last run wrote them; None when one is missing or unreadable."""
    import pyarrow.parquet as pq

    rows: dict[str, list[dict[str, Any]]] = {}
    for table in _schemas():
        try:
            rows[table] = pq.read_table(output / table).to_pylist()
        except Exception:  # missing or damaged (pyarrow raises several types): computed again in full
            return None
    return rows


def _write_tables(output: Path, tables: Mapping[str, list[dict[str, Any]]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name, schema in _schemas().items():
        rows = sorted(
            tables.get(name, []),
            key=lambda r: (
                r["window"]["start"],
                r["model_id"] or "",
                r["slice_key"] or "",
                r["slice_value"] or "",
                r.get("column_name") or "",
                r.get("drift_type") or "",
            ),
        )
        table = pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        fs.write_atomic(output / name, sink.getvalue().to_pybytes())
