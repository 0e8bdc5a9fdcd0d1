"""The embedded default: DuckDB reads CSV and Parquet directly, Delta through `deltalake`."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import duckdb

from mlci import sql_types
from mlci.contracts.engines import QueryError, Source, SourceKind
from mlci.contracts.sql import SOURCE_VIEW, Dialect, FooterStats
from mlci.errors import UsageError, first_line

# What an expectation may be built from (json_serialize_sql's expression classes): columns,
# constants, operators, CASE, CAST and function calls. Anything else (a SUBQUERY above all,
# which can hold a FROM over read_text('/proc/self/environ'), a WINDOW, a PARAMETER, a STAR)
# is refused, so a class a future DuckDB adds is refused until it is looked at.
_EXPRESSION_CLASSES = frozenset(
    {
        "COLUMN_REF",
        "CONSTANT",
        "COMPARISON",
        "CONJUNCTION",
        "OPERATOR",
        "BETWEEN",
        "CASE",
        "CAST",
        "TYPE",  # the target type of a CAST
        "COLLATE",
        "FUNCTION",
        "LAMBDA",  # list_transform(xs, x -> ...): its body is checked like the rest
        "LAMBDA_REF",
    }
)
_REFUSED_CLASSES = {
    "SUBQUERY": "a subquery is not allowed (an expectation reads only the dataset's columns)",
    "WINDOW": "a window function is not allowed",
    "PARAMETER": "a query parameter is not allowed",
    "STAR": "'*' is not an expression",
}
# Scalar functions that read the environment, the engine's settings or the session (table
# functions such as read_text or glob are refused by name too, see _reader_names).
_READERS = frozenset(
    {
        "getenv",
        "current_setting",
        "current_query",
        "which_secret",
        "version",
        "query",
        "query_table",
        "sniff_csv",
        "glob",
        "sleep_ms",
        "pg_sleep",
    }
)
_READER_PREFIXES = ("read_", "duckdb_", "pragma_", "parquet_", "iceberg_", "delta_")


_SQL_TYPES = {
    "integer": "BIGINT",
    "float": "DOUBLE",
    "string": "VARCHAR",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}


# DuckDB's memory budget for a contract's queries (MLCI_DUCKDB_MEMORY_LIMIT, DuckDB's syntax:
# 512MB, 2GB): aggregates that outgrow it (the key counts' hash tables) spill to a temporary
# directory, so memory does not grow with the rows.
DEFAULT_MEMORY_LIMIT = "512MB"
# Integer types a bitmap of the key span can count (bitstring_agg takes them; HUGEINT and
# UBIGINT may not fit the BIGINT bounds).
# DuckDB's bitstring_agg refuses a range of more values than this ("too large for bitstring
# aggregation"), whatever memory it may use.
_BITSTRING_AGG_MAX_SPAN = 1_000_000_000
_BITMAP_TYPES = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"})


class DuckDBDialect(Dialect):
    name = "duckdb"

    def __init__(self, distinct_inline: bool = True) -> None:
        # DuckDBEngine's dialect says False: count(DISTINCT k) keeps every key in an in-memory
        # hash table (4.2 GB at 100M ids), so the engine counts keys itself (distinct_count).
        # Callers that group the contract's aggregates (mlci monitor, per window) keep them inline.
        self.distinct_inline = distinct_inline

    def count_if(self, condition: str) -> str:
        # DuckDB's count_if is NULL, not 0, when no row gives a non-null condition (no rows, or
        # a column of nulls); Spark's is 0.
        return f"coalesce(count_if({condition}), 0)"

    def outside(self, column_sql: str, values: Sequence[Any], column_type: str) -> str:
        if column_type == "string" and values and all(isinstance(v, str) for v in values):
            # A cast to an ENUM of the allowed strings is one hash lookup per row (NULL when the
            # value is not a member), several times faster than a NOT IN list of strings.
            members = ", ".join(self.string(v) for v in dict.fromkeys(values))
            return f"{column_sql} IS NOT NULL AND TRY_CAST({column_sql} AS ENUM({members})) IS NULL"
        return super().outside(column_sql, values, column_type)


class DuckDBEngine:
    name = "duckdb"
    dialect: Dialect = DuckDBDialect(distinct_inline=False)
    supports_tables: ClassVar[bool] = False  # reads files only: a table name needs the Spark engine

    @staticmethod
    def source_for(path: Path, fmt: SourceKind) -> Source:
        # A directory of Parquet files is read through a glob of its files (and only that
        # directory is then readable, see open).
        if fmt == "parquet" and path.is_dir():
            return Source("parquet", str(path / "**" / "*.parquet"))
        return Source(fmt, str(path))

    def __init__(self, bounded: bool = True) -> None:
        """`bounded`: under MLCI_DUCKDB_MEMORY_LIMIT (data-test); else DuckDB's own limit (80%
        of RAM), for `mlci data profile`, whose exact quantiles hold a column's values."""
        # Spilled partitions go to a directory of our own, removed on close; set before the
        # lock-down (no SET works after it).
        self._spill = tempfile.mkdtemp(prefix="mlci-duckdb-")
        config: dict[str, str | bool | int | float | list[str]] = {
            "temp_directory": self._spill,
            # Aggregates need no row order; keeping it costs memory on the way.
            "preserve_insertion_order": False,
        }
        if bounded:
            config["memory_limit"] = os.environ.get("MLCI_DUCKDB_MEMORY_LIMIT") or DEFAULT_MEMORY_LIMIT
        try:
            self.con = duckdb.connect(":memory:", config=config)
        except duckdb.Error as exc:
            shutil.rmtree(self._spill, ignore_errors=True)
            raise UsageError(
                f"MLCI_DUCKDB_MEMORY_LIMIT={config.get('memory_limit')!r} is not a DuckDB memory size"
                f" ({first_line(exc)}); set it like 512MB or 2GB, or unset it"
            ) from None
        # query_progress() (polled by runner.watch_progress) reports nothing unless the progress
        # bar is on; it never prints here.
        self.con.execute("SET enable_progress_bar = true")
        self.con.execute("SET enable_progress_bar_print = false")
        self._arrow: Any = None  # keeps a registered Arrow dataset alive
        self._footers: dict[str, FooterStats] = {}
        self._relation = ""
        self._table_functions: frozenset[str] | None = None

    def open(self, source: Source) -> None:
        d = self.dialect
        if source.kind == "csv":
            relation = f"read_csv({d.string(source.location)}, header = true)"
            allowed = {"allowed_paths": source.location}
        elif source.kind == "parquet":
            # Writers leave NaN out of Parquet min/max statistics (as the format says); without
            # can_have_nan DuckDB trusts them and folds `x > max` or isnan(x) to false on a column
            # that holds NaN (duckdb#25521), so NaN would pass the `min`/`max` checks.
            relation = f"read_parquet({d.string(source.location)}, can_have_nan = true)"
            where = Path(source.location)
            # A directory of Parquet files is read as <dir>/**/*.parquet (source_for).
            directory = where.parent.parent if where.parent.name == "**" else None
            allowed = {"allowed_directories": str(directory)} if directory else {"allowed_paths": source.location}
        elif source.kind == "delta":
            try:
                from deltalake import DeltaTable
            except ImportError:
                raise QueryError(
                    "reading Delta tables on DuckDB needs the deltalake package: pip install 'mlci[delta]'"
                ) from None
            try:
                self._arrow = DeltaTable(source.location).to_pyarrow_dataset()
            except Exception as exc:  # deltalake raises its own TableNotFoundError, OSError, ...
                raise QueryError(f"cannot open Delta table {source.location}: {first_line(exc)}") from None
            self.con.register("__mlci_arrow", self._arrow)
            relation = "__mlci_arrow"
            allowed = {}  # pyarrow reads the files, not DuckDB
        else:
            raise QueryError("a table name needs the Spark engine: pass --engine spark")
        self._relation = relation
        self._execute(f"CREATE OR REPLACE TEMP VIEW {SOURCE_VIEW} AS SELECT * FROM {relation}")
        if source.kind == "parquet":
            self._footers = self._read_footers(source.location)
        self._lock_down(allowed)

    def _lock_down(self, allowed: Mapping[str, str]) -> None:
        # The contract's SQL runs next, and a pull request can edit it: from here on DuckDB
        # opens no file but the source itself (the view reads it lazily, so its path stays
        # allowed), no network, no extension, and no SET can undo that. A check that slips
        # past check_expression still cannot read /proc/self/environ.
        d = self.dialect
        self._table_functions = self._reader_names()
        for setting, path in allowed.items():
            self._execute(f"SET {setting} = [{d.string(path)}]")
        self._execute("SET enable_external_access = false")
        self._execute("SET lock_configuration = true")

    def cast_columns(self, types: Mapping[str, str]) -> None:
        d = self.dialect
        casts = ", ".join(f"CAST({d.ident(name)} AS {_SQL_TYPES[t]}) AS {d.ident(name)}" for name, t in types.items())
        self._execute(f"CREATE OR REPLACE TEMP VIEW {SOURCE_VIEW} AS SELECT * REPLACE ({casts}) FROM {self._relation}")

    def schema(self) -> dict[str, str]:
        rows = self._execute(f"DESCRIBE SELECT * FROM {SOURCE_VIEW}").fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    def fetch_one(self, sql: str) -> dict[str, Any]:
        cursor = self._execute(sql)
        row = cursor.fetchone()
        names = [col[0] for col in cursor.description or []]
        return dict(zip(names, row or (), strict=True))

    def fetch_all(self, sql: str) -> list[tuple[Any, ...]]:
        return list(self._execute(sql).fetchall())

    def footer_stats(self) -> Mapping[str, FooterStats]:
        """What the Parquet footers prove of the integer and DOUBLE columns (empty for CSV, Delta)."""
        return self._footers

    def _read_footers(self, location: str) -> dict[str, FooterStats]:
        # Only where the figure is exact: every row group states its null count (else no null
        # count) and, when it holds a value, its min and max (else no extremes). FLOAT columns are
        # left out (their footer text is the float's, not the double the scan reports), and so is
        # any text that does not parse or parses as NaN. Writers leave NaN out of min/max, so
        # the extremes are those of the non-NaN values: the compiler keeps the NaN count a scan.
        types = {name: engine_type.upper() for name, engine_type in self.schema().items()}
        numeric = {
            name: int if sql_types.family(t) == "integer" else float
            for name, t in types.items()
            if sql_types.family(t) == "integer" or t == "DOUBLE"
        }
        try:
            groups = self.con.execute(
                "SELECT path_in_schema, row_group_num_rows, stats_null_count, stats_min_value, stats_max_value"
                " FROM parquet_metadata(?)",
                [location],
            ).fetchall()
        except duckdb.Error:
            return {}  # the scan then gives every figure
        figures: dict[str, list[tuple[int, int | None, str | None, str | None]]] = {}
        for name, rows, nulls, low, high in groups:
            if name in numeric:
                figures.setdefault(str(name), []).append((int(rows), nulls, low, high))
        return {name: _footer(numeric[name], parts) for name, parts in figures.items()}

    def distinct_count(self, columns: Sequence[str]) -> tuple[int, str]:
        """Exact, in bounded memory, by the fastest form that stays bounded.

        A single integer key whose span (max - min + 1) fits the bitmap budget is counted as the
        set bits of one bitmap over the span (bitstring_agg: span / 8 bytes per thread, whatever
        the rows); any other key (strings, tuples, integers spread over 2^40) by a hash
        aggregate of the distinct keys, which DuckDB partitions and spills to the temporary
        directory once it outgrows memory_limit.
        """
        d = self.dialect
        cols = [d.ident(c) for c in columns]
        complete = " AND ".join(f"{c} IS NOT NULL" for c in cols)
        span = self._bitmap_span(columns[0]) if len(columns) == 1 else None
        if span is not None:
            lo, hi = span
            sql = (
                f"SELECT coalesce(bit_count(bitstring_agg({cols[0]}, {lo}, {hi})), 0) AS n"
                f" FROM {SOURCE_VIEW} WHERE {complete}"
            )
        else:
            sql = f"SELECT count(*) AS n FROM (SELECT DISTINCT {', '.join(cols)} FROM {SOURCE_VIEW} WHERE {complete})"
        return int(self.fetch_one(sql)["n"] or 0), sql

    def _bitmap_span(self, column: str) -> tuple[int, int] | None:
        """(min, max) of an integer column whose bitmap fits the budget, else None."""
        engine_type = self.schema().get(column, "").upper()
        if engine_type not in _BITMAP_TYPES:
            return None
        footer = self._footers.get(column)
        if footer is not None and footer.low is not None and footer.high is not None:
            low, high = footer.low, footer.high  # Parquet: exact for integers, no scan
        else:  # CSV, Delta, a row group without statistics: DuckDB's own min/max
            c = self.dialect.ident(column)
            low, high = self._execute(f"SELECT min({c}), max({c}) FROM {SOURCE_VIEW}").fetchone() or (None, None)
        if low is None or high is None:
            return None  # no non-null value: the distinct form counts 0 at once
        limit_bytes, threads = self._execute(
            "SELECT current_setting('memory_limit'), current_setting('threads')"
        ).fetchone() or ("", 1)
        # A quarter of the memory budget for the bitmaps of all threads together, and never
        # more than bitstring_agg takes (it refuses a span past 10^9 values).
        budget_bits = min(_bytes(str(limit_bytes)) * 8 // 4 // max(int(threads), 1), _BITSTRING_AGG_MAX_SPAN)
        return (int(low), int(high)) if int(high) - int(low) + 1 <= budget_bits else None

    def check_expression(self, sql: str) -> str | None:
        # DuckDB's own parser, as JSON: `SELECT <sql>` must be a bare SELECT (no FROM, WHERE,
        # DISTINCT, ...: the same tree as `SELECT 1`) whose select list is one unaliased item.
        tree = self._parse_select(sql)
        if "error" in tree:
            return str(tree["error"])
        items = tree.pop("select_list")
        bare = self._parse_select("1")
        bare.pop("select_list")
        if len(items) != 1:
            return f"it is {len(items)} expressions, not one"
        if items[0].get("class") == "STAR":
            return "'*' is not an expression"
        if items[0].get("alias"):
            return f"it names its result ('AS {items[0]['alias']}')"
        if tree != bare:
            return "it is more than an expression (a FROM, WHERE or other clause follows it)"
        return self._outside_the_columns(items[0])

    def _outside_the_columns(self, node: Any) -> str | None:
        """Why the parsed expression reaches past the dataset's columns (files, settings), or None."""
        if isinstance(node, list):
            return next((p for p in map(self._outside_the_columns, node) if p), None)
        if not isinstance(node, dict):
            return None
        kind = node.get("class")
        if kind is not None:
            if kind in _REFUSED_CLASSES:
                return _REFUSED_CLASSES[kind]
            if kind not in _EXPRESSION_CLASSES:
                return f"a {str(kind).lower()} expression is not allowed"
            if kind == "FUNCTION":
                problem = self._refused_function(node)
                if problem:
                    return problem
        return next((p for p in map(self._outside_the_columns, node.values()) if p), None)

    def _refused_function(self, node: Mapping[str, Any]) -> str | None:
        name = str(node.get("function_name", "")).lower()
        if node.get("schema") or node.get("catalog"):
            # system.main.getenv(...) would be a way around the names below.
            qualified = ".".join(str(part) for part in (node.get("catalog"), node.get("schema"), name) if part)
            return f"the qualified function name '{qualified}' is not allowed"
        if name in _READERS or name.startswith(_READER_PREFIXES) or name in self._reader_names():
            return f"{name}() reaches outside the dataset (files, environment, settings) and is not allowed"
        return None

    def _reader_names(self) -> frozenset[str]:
        """Functions that exist only as table functions (read_text, glob, query ...): never an expression."""
        if self._table_functions is None:
            rows = self.con.execute(
                "SELECT function_name FROM duckdb_functions() GROUP BY function_name"
                " HAVING bool_and(function_type IN ('table', 'table_macro'))"
            ).fetchall()
            self._table_functions = frozenset(str(r[0]).lower() for r in rows)
        return self._table_functions

    def _parse_select(self, sql: str) -> dict[str, Any]:
        row = self.con.execute("SELECT json_serialize_sql(?)", ["SELECT " + sql]).fetchone()
        parsed: dict[str, Any] = json.loads(row[0]) if row else {"error": True}
        if parsed.get("error"):
            return {"error": parsed.get("error_message") or "DuckDB cannot parse it"}
        statements = parsed.get("statements") or []
        if len(statements) != 1:
            return {"error": f"it is {len(statements)} statements, not one expression"}
        node: dict[str, Any] = statements[0]["node"]
        return node

    def close(self) -> None:
        self.con.close()
        shutil.rmtree(self._spill, ignore_errors=True)

    def interrupt(self) -> None:
        """End the running query at once (from another thread): it raises there."""
        self.con.interrupt()

    def progress(self) -> float | None:
        """The running query's progress in percent (from another thread), None if unknown."""
        try:
            value = float(self.con.query_progress())
        except (duckdb.Error, RuntimeError, TypeError, ValueError):
            return None
        return value if value >= 0 else None

    def _execute(self, sql: str) -> duckdb.DuckDBPyConnection:
        try:
            return self.con.execute(sql)
        except duckdb.Error as exc:
            raise QueryError(first_line(exc)) from None


_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4}
_UNITS.update({"KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4})


def _bytes(setting: str) -> int:
    """DuckDB's rendering of a memory setting ('476.8 MiB', '512.0MB') in bytes."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([A-Za-z]*)\s*", setting)
    if not match or match.group(2).upper() not in _UNITS:
        return 0  # unknown: no bitmap, the spilling form is always bounded
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def _footer(
    kind: type[int] | type[float], groups: Sequence[tuple[int, int | None, str | None, str | None]]
) -> FooterStats:
    """One column's FooterStats from its row groups' (rows, null count, min text, max text)."""
    rows = sum(g[0] for g in groups)
    if any(g[1] is None for g in groups):
        return FooterStats(rows, None, None, None)
    nulls = sum(int(g[1] or 0) for g in groups)
    lows: list[int | float] = []
    highs: list[int | float] = []
    for group_rows, group_nulls, low, high in groups:
        if group_rows == group_nulls:
            continue  # only nulls: nothing to bound
        if low is None or high is None:
            return FooterStats(rows, nulls, None, None)
        try:
            parsed = kind(low), kind(high)
        except ValueError:
            return FooterStats(rows, nulls, None, None)
        if any(isinstance(v, float) and not math.isfinite(v) for v in parsed):
            return FooterStats(rows, nulls, None, None)  # NaN, or an infinity: the scan tells
        lows.append(parsed[0])
        highs.append(parsed[1])
    if not lows:
        return FooterStats(rows, nulls, None, None)
    return FooterStats(rows, nulls, min(lows), max(highs))
