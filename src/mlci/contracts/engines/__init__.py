"""The engines a contract's SQL runs on, behind one small Protocol and a registry.

An engine exposes the dataset as the view `__mlci_source`, reports its columns, and runs a
query; its module also holds its SQL dialect (a `mlci.contracts.sql.Dialect`) and says how it
reads a source. Engine modules are imported only when chosen, so `mlci --help` never loads
DuckDB or Spark.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from mlci.contracts.sql import Dialect, FooterStats
from mlci.errors import UsageError

SourceKind = Literal["csv", "parquet", "delta", "table"]

# name -> "module:class"; adding an engine means adding a module and a line here.
ENGINES: dict[str, str] = {
    "duckdb": "mlci.contracts.engines.duckdb:DuckDBEngine",
    "spark": "mlci.contracts.engines.spark:SparkEngine",
}


@dataclass(frozen=True)
class Source:
    kind: SourceKind
    location: str  # a file or directory path, or a table name


class QueryError(Exception):
    """The engine rejected or failed a query; the message is the engine's first line."""


class Engine(Protocol):
    name: str
    dialect: Dialect
    # Whether a contract's `dataset.table` (a table name, not a path) can be read.
    supports_tables: ClassVar[bool]

    @staticmethod
    def source_for(path: Path, fmt: SourceKind) -> Source:
        """How this engine reads the file or directory `path` of format `fmt` (csv, parquet, delta)."""

    def open(self, source: Source) -> None:
        """Expose the source as the view __mlci_source (reading nothing yet where possible)."""

    def schema(self) -> dict[str, str]:
        """Column name -> the engine's type name, in the data's order."""

    def cast_columns(self, types: Mapping[str, str]) -> None:
        """Re-expose __mlci_source with these columns cast to contract types (integer, float, ...)."""

    def fetch_one(self, sql: str) -> dict[str, Any]:
        """The single row of an aggregate query, keyed by column alias."""

    def fetch_all(self, sql: str) -> list[tuple[Any, ...]]:
        """Every row of a (small) query."""

    def footer_stats(self) -> Mapping[str, FooterStats]:
        """Per numeric column, what the source's file footers prove (null count, min, max)."""

    def distinct_count(self, columns: Sequence[str]) -> tuple[int, str]:
        """The number of distinct tuples of `columns` with no null part, exact, in bounded
        memory; and the SQL that counted it (for the report)."""

    def check_expression(self, sql: str) -> str | None:
        """Why the engine's parser does not read `sql` as exactly one expression, or None."""

    def close(self) -> None: ...


def engine_class(name: str) -> type[Engine]:
    """The engine class registered as `name` (importing its module, not connecting)."""
    if name not in ENGINES:
        raise UsageError(f"unknown engine '{name}'; engines: {', '.join(ENGINES)}")
    module_name, _, class_name = ENGINES[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        from mlci.extras import not_installed

        # The extra that installs the engine (pyproject.toml): DuckDB is the data checks' own.
        extra = "data" if name == "duckdb" else name
        raise not_installed(f"data-test --engine {name}", (extra,), [exc.name or name]) from None
    engine: type[Engine] = getattr(module, class_name)
    return engine


def create_engine(name: str) -> Engine:
    return engine_class(name)()
