"""The SQL layer every contract engine shares: the `Dialect` base and the aggregate `Plan`.

A contract compiles (compiler.py) to one SELECT of aggregates over the view SOURCE_VIEW, which
each engine exposes its dataset as. A `Dialect` spells that SQL for one engine (identifier and
string quoting, regex matching, multi-column distinct counts, quantiles, casts to text); the
base class holds what DuckDB and Spark share, and each engine module (engines/duckdb.py,
engines/spark.py) holds its own subclass. This module imports nothing of mlci's, so the
compiler, the profiler and the engines all build on it without importing each other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

SOURCE_VIEW = "__mlci_source"


@dataclass(frozen=True)
class FooterStats:
    """A numeric column's figures read from Parquet footers, not from its rows; each is None
    where the footers do not prove it (a row group without statistics, a value that may be NaN)."""

    rows: int
    nulls: int | None
    low: int | float | None  # the smallest non-null value that is not NaN (footers leave NaN out)
    high: int | float | None


class Dialect:
    """SQL shared by DuckDB and Spark; subclasses override what differs."""

    name = "ansi"
    text_type = "VARCHAR"
    # Whether distinct key counts (the uniqueness checks) are aggregates of the one query. An
    # engine whose count(DISTINCT) holds every key in memory (DuckDB's) counts them with its own
    # bounded-memory queries instead (the engine's distinct_count); Spark's spills, so it stays.
    distinct_inline = True

    def ident(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def string(self, value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    def count_if(self, condition: str) -> str:
        return f"count_if({condition})"

    def regex_mismatch(self, column_sql: str, pattern: str) -> str:
        """Condition: a non-null value with no match of `pattern` anywhere in it."""
        return f"NOT regexp_matches({column_sql}, {self.string(pattern)})"

    def distinct_keys(self, columns_sql: Sequence[str]) -> str:
        """Distinct count of the tuples whose parts are all non-null."""
        if len(columns_sql) == 1:
            return f"count(DISTINCT {columns_sql[0]})"
        all_set = " AND ".join(f"{c} IS NOT NULL" for c in columns_sql)
        return f"count(DISTINCT CASE WHEN {all_set} THEN ({', '.join(columns_sql)}) END)"

    def outside(self, column_sql: str, values: Sequence[Any], column_type: str) -> str:
        """Condition: a non-null value not in `values` (the `allowed` check).

        Integer sets that fill a range become one BETWEEN (a NOT IN list is evaluated value by
        value, and a range lets the engine use the column's min/max statistics).
        """
        if (
            column_type == "integer"
            and values
            and all(isinstance(v, int) and not isinstance(v, bool) for v in values)
            and len(set(values)) == max(values) - min(values) + 1
        ):
            return f"{column_sql} IS NOT NULL AND {column_sql} NOT BETWEEN {min(values)} AND {max(values)}"
        listed = ", ".join(self.literal(v, column_type) for v in values)
        return f"{column_sql} IS NOT NULL AND {column_sql} NOT IN ({listed})"

    def quantiles(self, column_sql: str, probabilities: Sequence[float]) -> str:
        """One expression giving the list of continuous (linearly interpolated) quantiles."""
        return f"quantile_cont({column_sql}, [{', '.join(repr(p) for p in probabilities)}])"

    def to_text(self, expression: str) -> str:
        return f"CAST({expression} AS {self.text_type})"

    def is_nan(self, column_sql: str) -> str:
        """Condition: a NaN (the cast lets a float column hold integers or decimals)."""
        return f"isnan(CAST({column_sql} AS DOUBLE))"

    def literal(self, value: Any, column_type: str) -> str:
        """A contract value as a SQL literal of the column's type (always escaped)."""
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if column_type == "integer" and isinstance(value, int | float) and float(value).is_integer():
            return str(int(value))
        if isinstance(value, int | float):
            return double_literal(float(value))
        text = self.string(str(value))
        if column_type == "date":
            return f"CAST({text} AS DATE)"
        if column_type == "timestamp":
            return f"CAST({text} AS TIMESTAMP)"
        return text


def double_literal(value: float) -> str:
    """A DOUBLE literal in both dialects: the shortest round-tripping repr with an exponent."""
    if not math.isfinite(value):
        raise ValueError(f"{value} has no SQL literal")
    text = repr(value)
    return text if "e" in text else text + "E0"


@dataclass
class Plan:
    """The aggregates of one query, each under an alias (a0, a1, ...) of the result row."""

    dialect: Dialect
    expressions: list[str] = field(default_factory=list)
    # alias (k0, k1, ...) -> key column names, counted apart when not dialect.distinct_inline
    distinct: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def add_distinct(self, columns: Sequence[str]) -> str:
        """The number of distinct tuples of `columns` whose parts are all non-null, as an alias."""
        if self.dialect.distinct_inline:
            return self.add(self.dialect.distinct_keys([self.dialect.ident(c) for c in columns]))
        key = tuple(columns)
        for alias, known in self.distinct.items():
            if known == key:
                return alias
        alias = f"k{len(self.distinct)}"
        self.distinct[alias] = key
        return alias

    def add(self, expression: str) -> str:
        """Add an aggregate (deduplicated) and return its alias in the result row."""
        if expression in self.expressions:
            return f"a{self.expressions.index(expression)}"
        self.expressions.append(expression)
        return f"a{len(self.expressions) - 1}"

    def sql(self, source: str = SOURCE_VIEW) -> str:
        items = ",\n  ".join(f"{expr} AS a{i}" for i, expr in enumerate(self.expressions))
        return f"SELECT\n  {items}\nFROM {source}"
