"""Spark SQL: local mode on a laptop or in CI, the cluster's session on Databricks.

An active SparkSession (a Databricks job or notebook, a test fixture) is reused; otherwise a
local one is started with MLCI_SPARK_MASTER (default local[*]), the UI off and UTC as the
session time zone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from mlci.contracts.engines import QueryError, Source, SourceKind
from mlci.contracts.sql import SOURCE_VIEW, Dialect, FooterStats
from mlci.errors import first_line

# Parsed expression nodes an expectation may not hold: a subquery (which can read any table or
# file: SELECT ... FROM csv.`/etc/passwd`), a window, a query parameter or a star.
_REFUSED_NODES = {
    "ScalarSubquery": "a subquery is not allowed (an expectation reads only the dataset's columns)",
    "Exists": "a subquery is not allowed (an expectation reads only the dataset's columns)",
    "ListQuery": "a subquery is not allowed (an expectation reads only the dataset's columns)",
    "InSubquery": "a subquery is not allowed (an expectation reads only the dataset's columns)",
    "LateralSubquery": "a subquery is not allowed (an expectation reads only the dataset's columns)",
    "WindowExpression": "a window function is not allowed",
    "NamedParameter": "a query parameter is not allowed",
    "PosParameter": "a query parameter is not allowed",
    "UnresolvedStar": "'*' is not an expression",
    "UnresolvedRegex": "a column regex is not allowed",
}
# Functions that call JVM code (reflect, java_method: java.lang.System.getenv), or read the
# session, the files behind a row, or a Databricks secret scope.
_READERS = frozenset(
    {
        "reflect",
        "java_method",
        "try_reflect",
        "secret",
        "try_secret",
        "current_user",
        "user",
        "session_user",
        "current_database",
        "current_schema",
        "current_catalog",
        "current_metastore",
        "version",
        "input_file_name",
        "input_file_block_start",
        "input_file_block_length",
    }
)
# Session settings held for as long as the engine runs contract SQL, restored on close:
# no ${...} substitution (it splices Spark settings and JVM system properties such as
# ${system:user.name} into the text before it is parsed), no SQL directly on files.
_LOCKED_CONF = {"spark.sql.variable.substitute": "false", "spark.sql.runSQLOnFiles": "false"}


_SQL_TYPES = {
    "integer": "bigint",
    "float": "double",
    "string": "string",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamp",
}


def session() -> SparkSession:
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder: Any = SparkSession.builder
    return (  # type: ignore[no-any-return]
        builder.master(os.environ.get("MLCI_SPARK_MASTER", "local[*]"))
        .appName("mlci data-test")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", os.environ.get("MLCI_SPARK_SHUFFLE_PARTITIONS", "8"))
        .getOrCreate()
    )


class SparkDialect(Dialect):
    name = "spark"
    text_type = "STRING"

    def ident(self, name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def string(self, value: str) -> str:
        # Spark SQL string literals process backslash escapes (spark.sql.parser.escapedStringLiterals=false).
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    def regex_mismatch(self, column_sql: str, pattern: str) -> str:
        return f"NOT ({column_sql} RLIKE {self.string(pattern)})"

    def distinct_keys(self, columns_sql: Sequence[str]) -> str:
        # count(DISTINCT a, b) skips tuples with a null part, as the DuckDB form does.
        return f"count(DISTINCT {', '.join(columns_sql)})"

    def quantiles(self, column_sql: str, probabilities: Sequence[float]) -> str:
        return f"percentile({column_sql}, array({', '.join(repr(p) for p in probabilities)}))"


class SparkEngine:
    name = "spark"
    dialect = SparkDialect()
    supports_tables = True  # catalog.schema.table through the session's catalog

    @staticmethod
    def source_for(path: Path, fmt: SourceKind) -> Source:
        return Source(fmt, str(path))  # Spark reads a directory of Parquet files as one dataset

    def __init__(self) -> None:
        self.spark = session()
        self._frame: Any = None
        self._restore: dict[str, str | None] = {}
        conf = self.spark.conf
        for key, value in _LOCKED_CONF.items():
            self._restore[key] = conf.get(key, None)
            conf.set(key, value)

    def open(self, source: Source) -> None:
        reader = self.spark.read
        try:
            if source.kind == "csv":
                frame = reader.option("header", True).option("inferSchema", True).csv(source.location)
            elif source.kind == "parquet":
                frame = reader.parquet(source.location)
            elif source.kind == "delta":
                frame = reader.format("delta").load(source.location)
            else:
                frame = self.spark.table(source.location)
        except Exception as exc:  # AnalysisException and friends; no pyspark class is stable across versions
            raise QueryError(first_line(exc)) from None
        frame.createOrReplaceTempView(SOURCE_VIEW)
        self._frame = frame

    def cast_columns(self, types: Mapping[str, str]) -> None:
        from pyspark.sql.functions import col

        try:
            frame = self._frame.withColumns(
                {name: col(self.dialect.ident(name)).cast(_SQL_TYPES[t]) for name, t in types.items()}
            )
        except Exception as exc:  # AnalysisException: a cast Spark does not allow
            raise QueryError(first_line(exc)) from None
        frame.createOrReplaceTempView(SOURCE_VIEW)
        self._frame = frame

    def schema(self) -> dict[str, str]:
        return {f.name: f.dataType.simpleString() for f in self._frame.schema.fields}

    def fetch_one(self, sql: str) -> dict[str, Any]:
        rows = self._collect(sql)
        return rows[0].asDict() if rows else {}

    def fetch_all(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._collect(sql)]

    def footer_stats(self) -> Mapping[str, FooterStats]:
        return {}  # Spark plans its own use of Parquet statistics; every figure is the scan's

    def distinct_count(self, columns: Sequence[str]) -> tuple[int, str]:
        # Not called by the runner (Spark's count(DISTINCT) is an aggregate of the one query,
        # distinct_inline): the same figure alone, for callers that count a key by itself.
        d = self.dialect
        sql = f"SELECT {d.distinct_keys([d.ident(c) for c in columns])} AS n FROM {SOURCE_VIEW}"
        return int(self.fetch_one(sql)["n"]), sql

    def check_expression(self, sql: str) -> str | None:
        # Spark's own parseExpression: one (optionally named) expression to the end of the text.
        # Spark Connect has no JVM parser to call; the load-time lexical check and the compiler's
        # wrapping still hold there, and the query itself then rejects what is not one expression.
        jvm_session = getattr(self.spark, "_jsparkSession", None)
        if jvm_session is None:
            return None
        try:
            parsed = jvm_session.sessionState().sqlParser().parseExpression(sql)
        except Exception as exc:  # ParseException through py4j
            return first_line(exc).removeprefix("org.apache.spark.sql.catalyst.parser.ParseException: ")
        if parsed.getClass().getSimpleName() == "Alias":
            return f"it names its result ('AS {parsed.name()}')"
        if "${" in sql:
            return "'${' is not allowed (Spark would substitute a setting there)"
        return _outside_the_columns(parsed)

    def close(self) -> None:
        self.spark.catalog.dropTempView(SOURCE_VIEW)
        for key, value in self._restore.items():
            if value is None:
                self.spark.conf.unset(key)
            else:
                self.spark.conf.set(key, value)

    def _collect(self, sql: str) -> list[Any]:
        try:
            return list(self.spark.sql(sql).collect())
        except Exception as exc:  # ParseException, AnalysisException, Py4JJavaError, ...
            raise QueryError(first_line(exc)) from None


def _outside_the_columns(node: Any) -> str | None:
    """Why a parsed (JVM) expression reaches past the dataset's columns, or None."""
    kind = node.getClass().getSimpleName()
    if kind in _REFUSED_NODES:
        return _REFUSED_NODES[kind]
    if _is_plan_expression(node.getClass()):  # any other subquery form a newer Spark adds
        return "a subquery is not allowed (an expectation reads only the dataset's columns)"
    if kind == "UnresolvedFunction":
        parts = str(node.nameParts().mkString("\u0000")).split("\u0000")
        name = parts[-1].lower()
        if len(parts) > 1:  # system.builtin.reflect(...) would be a way around the names
            return f"the qualified function name '{'.'.join(parts)}' is not allowed"
        if name in _READERS:
            return f"{name}() reaches outside the dataset (JVM code, session, files) and is not allowed"
    children = node.children().iterator()
    while children.hasNext():
        problem = _outside_the_columns(children.next())
        if problem:
            return problem
    return None


def _is_plan_expression(cls: Any) -> bool:
    while cls is not None:
        if cls.getName() == "org.apache.spark.sql.catalyst.expressions.PlanExpression":
            return True
        cls = cls.getSuperclass()
    return False
