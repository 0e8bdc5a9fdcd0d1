"""The SQL the monitor shares between DuckDB and Spark: column summaries and bin counts per group.

Both the baseline (mlci register, over the training frame) and every window of the inference
table (mlci monitor run) are summarised by the same aggregates, spelled through the contracts'
`Dialect` (identifier quoting, count_if, quantiles) plus the few things the monitor adds here
(median, timestamps, a label hash). So a dataset compared with its own baseline drifts by
exactly 0, and DuckDB and Spark give the same figures: every statistic is an aggregate the two
engines define alike (counts, sums, continuous quantiles), and no row ever reaches Python.

The baseline's figures are exact. A window's (`approximate=True`) take the profile's median,
quantiles and distinct counts from sketches (DuckDB's t-digest `approx_quantile` and HyperLogLog
`approx_count_distinct`, Spark's `percentile_approx` and `approx_count_distinct`, as Databricks
Lakehouse Monitoring does): an exact quantile or `count(DISTINCT)` holds every value of its group
in memory, which 10M rows of 30 columns do not fit. The 0 and 100 % quantiles are the exact min and
max; everything drift reads (the bin counts) stays exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from mlci import sql_types
from mlci.contracts import drift
from mlci.contracts.compiler import bin_count_sql
from mlci.contracts.sql import Dialect

Kind = Literal["numeric", "categorical"]
# Quantiles reported per numeric column (the profile table's `quantiles`): 0, 5%, ..., 100%.
QUANTILES = [round(i / 20, 2) for i in range(21)]
FREQUENT_ITEMS = 10
# Integer columns with at most this many distinct values are categorical (codes, labels), as
# in `mlci data profile` (contracts/profile.py).
CATEGORICAL_MAX_DISTINCT = 20
MAX_CATEGORIES = 50

# The data_type a column gets in the metric tables: Spark's simpleString names, as Databricks writes.
_DATA_TYPES = {
    "TINYINT": "tinyint",
    "SMALLINT": "smallint",
    "INTEGER": "int",
    "INT": "int",
    "BIGINT": "bigint",
    "HUGEINT": "decimal(38,0)",
    "UTINYINT": "smallint",
    "USMALLINT": "int",
    "UINTEGER": "bigint",
    "UBIGINT": "decimal(20,0)",
    "FLOAT": "float",
    "REAL": "float",
    "DOUBLE": "double",
    "VARCHAR": "string",
    "BOOLEAN": "boolean",
    "DATE": "date",
    "TIMESTAMP": "timestamp_ntz",
    "TIMESTAMP WITH TIME ZONE": "timestamp",
}


def data_type(engine_type: str) -> str:
    """A DuckDB or Spark type as Spark's simpleString (what Databricks' tables hold)."""
    upper = engine_type.upper()
    if upper in _DATA_TYPES:
        return _DATA_TYPES[upper]
    return engine_type.lower()


# percentile_approx's accuracy (Spark's default, 10000): rank error at most 1/accuracy of the rows.
SPARK_PERCENTILE_ACCURACY = 10000


def median(d: Dialect, expr: str) -> str:
    if d.name == "spark":
        return f"percentile({expr}, 0.5)"
    return f"quantile_cont({expr}, 0.5)"


def approx_quantiles(d: Dialect, expr: str, probabilities: list[float]) -> str:
    """The list of quantiles from a bounded-memory sketch."""
    listed = ", ".join(repr(p) for p in probabilities)
    if d.name == "spark":
        return f"percentile_approx({expr}, array({listed}), {SPARK_PERCENTILE_ACCURACY})"
    return f"approx_quantile({expr}, [{listed}])"


def double(expr: str) -> str:
    return f"CAST({expr} AS DOUBLE)"


def timestamp_literal(moment: datetime) -> str:
    """A naive UTC timestamp literal (both engines)."""
    return f"TIMESTAMP '{moment:%Y-%m-%d %H:%M:%S}'"


def divide(numerator: str, denominator: str) -> str:
    """Division that is NULL, not an error (Spark's ANSI mode), when the denominator is 0."""
    return f"({numerator}) / NULLIF({denominator}, 0)"


@dataclass
class Aggregates:
    """Aggregate expressions of one grouped query, each under an alias (deduplicated)."""

    expressions: list[str] = field(default_factory=list)

    def add(self, expression: str) -> str:
        if expression in self.expressions:
            return f"m{self.expressions.index(expression)}"
        self.expressions.append(expression)
        return f"m{len(self.expressions) - 1}"

    def select_list(self) -> str:
        return ",\n  ".join(f"{expr} AS m{i}" for i, expr in enumerate(self.expressions))


@dataclass(frozen=True)
class ColumnSpec:
    """What the monitor knows of a column: its name, kind and contract type, and (with a
    baseline) the reference bins its current counts are taken in."""

    name: str
    kind: Kind
    type: str  # contract type: integer, float, string, boolean
    bins: drift.ColumnProfile | None = None


@dataclass(frozen=True)
class ColumnAliases:
    rows: str
    non_null: str
    avg: str | None = None
    stddev: str | None = None
    min: str | None = None
    max: str | None = None
    median: str | None = None
    quantiles: str | None = None
    distinct: str | None = None
    zeros: str | None = None
    nan: str | None = None
    bins: list[str] = field(default_factory=list)
    approximate: bool = False  # median, quantiles and distinct from sketches


def column_aggregates(
    d: Dialect, agg: Aggregates, col: ColumnSpec, approximate: bool = False, distinct: bool = True
) -> ColumnAliases:
    """The aggregates of one column's profile row, and its counts in the reference bins when it
    has them (compiler.bin_count_sql: the SQL `mlci data-test` counts drift with). With
    `approximate`, the median, quantiles and distinct count come from sketches (bounded memory);
    without `distinct`, the caller counts the distinct values elsewhere (the monitor: a
    categorical column's from its frequent items' grouped counts, exactly)."""
    c = d.ident(col.name)
    out: dict[str, Any] = {
        "rows": agg.add("count(*)"),
        "non_null": agg.add(f"count({c})"),
        "approximate": approximate,
    }
    if col.type in ("integer", "float"):
        number = double(c)
        out.update(
            avg=agg.add(f"avg({number})"),
            stddev=agg.add(f"stddev_samp({number})"),
            min=agg.add(f"min({number})"),
            max=agg.add(f"max({number})"),
            # A sketch's median is its 0.5 quantile (one sketch per column, not two).
            median=None if approximate else agg.add(median(d, number)),
            quantiles=agg.add(
                approx_quantiles(d, number, QUANTILES) if approximate else d.quantiles(number, QUANTILES)
            ),
            zeros=agg.add(d.count_if(f"{number} = 0")),
        )
        if col.type == "float":
            out["nan"] = agg.add(d.count_if(f"isnan({number})"))
    if distinct:
        out["distinct"] = agg.add(f"approx_count_distinct({c})" if approximate else f"count(DISTINCT {c})")
    if col.bins is not None:
        out["bins"] = [agg.add(e) for e in bin_count_sql(d, col.name, col.bins.type, col.bins)]
    return ColumnAliases(**out)


def column_figures(row: Mapping[str, Any], aliases: ColumnAliases) -> dict[str, Any]:
    """One column's profile figures from a query row: the profile table's own names."""
    rows = int(row[aliases.rows] or 0)
    non_null = int(row[aliases.non_null] or 0)

    def number(alias: str | None) -> float | None:
        if alias is None or row[alias] is None:
            return None
        return significant(float(row[alias]))

    def count(alias: str | None) -> int | None:
        return None if alias is None else int(row[alias] or 0)

    quantiles = row[aliases.quantiles] if aliases.quantiles else None
    median_value = number(aliases.median)
    if aliases.approximate and quantiles is not None and aliases.min and aliases.max:
        # The sketch's median is its 0.5 quantile; its ends are estimates where the exact min
        # and max are at hand.
        quantiles = [row[aliases.min], *list(quantiles)[1:-1], row[aliases.max]]
        median_value = significant(float(quantiles[QUANTILES.index(0.5)]))
    figures: dict[str, Any] = {
        "count": rows,
        "num_nulls": rows - non_null,
        "avg": number(aliases.avg),
        "stddev": number(aliases.stddev),
        "min": number(aliases.min),
        "max": number(aliases.max),
        "median": median_value,
        "quantiles": [significant(float(q)) for q in quantiles] if quantiles is not None else None,
        "distinct_count": count(aliases.distinct),
        "num_zeros": count(aliases.zeros),
        "num_nan": count(aliases.nan),
    }
    if aliases.bins:
        figures["bin_figures"] = [int(row[a] or 0) for a in aliases.bins]
    return figures


def significant(value: float) -> float:
    """12 significant digits: a sum over threads (DuckDB) or partitions (Spark) differs from run
    to run in the last bits; what is written does not (NaN and infinities stay as they are)."""
    return float(f"{value:.12g}") if math.isfinite(value) else value


def percentages(figures: Mapping[str, Any]) -> dict[str, float | None]:
    """percent_null, percent_zeros, percent_distinct, percent_nan (0 to 100) of a column's figures."""
    rows = figures["count"]

    def pct(part: int | None, whole: int) -> float | None:
        if part is None or not whole:
            return None
        return round(100.0 * part / whole, 6)

    non_null = rows - figures["num_nulls"]
    return {
        "percent_null": pct(figures["num_nulls"], rows),
        "percent_zeros": pct(figures["num_zeros"], non_null),
        "percent_distinct": pct(figures["distinct_count"], non_null),
        "percent_nan": pct(figures["num_nan"], non_null),
    }


def kinds_of(schema: Mapping[str, str], distinct: Mapping[str, int]) -> dict[str, tuple[Kind, str]]:
    """Kind and contract type of each profiled column from its engine type (and, for integers,
    its number of distinct values: few is categorical)."""
    out: dict[str, tuple[Kind, str]] = {}
    for name, engine_type in schema.items():
        fam = sql_types.family(engine_type)
        if fam in ("string", "boolean"):
            out[name] = ("categorical", fam)
        elif fam == "integer":
            few = distinct.get(name, CATEGORICAL_MAX_DISTINCT + 1) <= CATEGORICAL_MAX_DISTINCT
            out[name] = ("categorical" if few else "numeric", "integer")
        elif fam == "float":
            out[name] = ("numeric", "float")
    return out
