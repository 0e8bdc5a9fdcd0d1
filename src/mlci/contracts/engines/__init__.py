"""The engines a contract's SQL runs on, behind one small Protocol and a registry.

An engine exposes the dataset as the view `__mlci_source`, reports its columns, and runs a
query. Engine modules are imported only when chosen, so `mlci --help` never loads DuckDB or
Spark.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from mlci.contracts.compiler import Dialect
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

    def open(self, source: Source) -> None:
        """Expose the source as the view __mlci_source (reading nothing yet where possible)."""

    def schema(self) -> dict[str, str]:
        """Column name -> the engine's type name, in the data's order."""

    def cast_columns(self, types: Mapping[str, str]) -> None:
        """Re-expose __mlci_source with these columns cast to contract types (integer, float, ...)."""

    def family(self, engine_type: str) -> str | None:
        """The contract type family of an engine type (integer, float, ...), None if none fits."""

    def fetch_one(self, sql: str) -> dict[str, Any]:
        """The single row of an aggregate query, keyed by column alias."""

    def fetch_all(self, sql: str) -> list[tuple[Any, ...]]:
        """Every row of a (small) query."""

    def check_expression(self, sql: str) -> str | None:
        """Why the engine's parser does not read `sql` as exactly one expression, or None."""

    def close(self) -> None: ...


def create_engine(name: str) -> Engine:
    if name not in ENGINES:
        raise UsageError(f"unknown engine '{name}'; engines: {', '.join(ENGINES)}")
    module_name, _, class_name = ENGINES[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = "spark" if name == "spark" else name
        raise UsageError(
            f"the {name} engine needs {exc.name or 'a missing package'}: pip install 'mlci[{extra}]'"
        ) from None
    engine: Engine = getattr(module, class_name)()
    return engine


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
