"""`mlci data profile`: a compact reference profile of a dataset, for drift checks.

Numeric columns get quantile bin edges (continuous quantiles, the same definition in DuckDB's
quantile_cont and Spark's percentile); string and boolean columns, and integer columns with
at most CATEGORICAL_MAX_DISTINCT values (labels, codes), get their most frequent values.
The reference counts per bin are then taken with exactly the SQL that `mlci data-test` uses,
so checking the profiled data against its own profile gives a PSI of exactly 0.
"""

from __future__ import annotations

from typing import Any

from mlci.contracts import drift
from mlci.contracts.compiler import bin_count_sql, norm
from mlci.contracts.engines import Engine, QueryError, create_engine
from mlci.contracts.format import Contract
from mlci.contracts.runner import open_source, resolve_source, schema_checks
from mlci.contracts.sql import SOURCE_VIEW, Plan
from mlci.errors import CheckFailed

CATEGORICAL_MAX_DISTINCT = 20


def build_profile(
    contract: Contract, engine_name: str = "duckdb", source_override: str | None = None, engine: Engine | None = None
) -> drift.Profile:
    settings = contract.spec.drift
    bins = settings.bins if settings else 10
    max_categories = settings.max_categories if settings else 50
    source = resolve_source(contract, engine_name, source_override)
    engine = engine or _profiling_engine(engine_name)
    try:
        open_source(engine, contract, source)
        results, usable = schema_checks(contract, engine, engine.schema())
        wanted = settings.columns if settings and settings.columns else [c.name for c in contract.spec.columns]
        broken = [r for r in results if r.status == "fail" and r.column in wanted]
        if broken:
            first = broken[0]
            raise CheckFailed(
                f"cannot profile column '{first.column}': expected {first.expected}, found {first.observed}"
            )
        eligible = [
            c for c in contract.spec.columns if c.name in usable and c.type in ("integer", "float", "string", "boolean")
        ]
        d = engine.dialect
        first_pass = Plan(d)
        first_pass.add("count(*)")
        quantile_alias: dict[str, str] = {}
        distinct_alias: dict[str, str] = {}
        probabilities = [round(i / bins, 6) for i in range(1, bins)]
        for col in eligible:
            c = d.ident(col.name)
            if col.type in ("integer", "float"):
                quantile_alias[col.name] = first_pass.add(d.quantiles(c, probabilities))
            if col.type == "integer":
                distinct_alias[col.name] = first_pass.add(f"count(DISTINCT {c})")
        figures = _fetch(engine, first_pass.sql())
        shells: dict[str, drift.ColumnProfile] = {}
        for col in eligible:
            c = d.ident(col.name)
            few = col.type == "integer" and int(figures[distinct_alias[col.name]]) <= CATEGORICAL_MAX_DISTINCT
            if col.type in ("string", "boolean") or few:
                top = engine.fetch_all(
                    f"SELECT {c}, count(*) AS n FROM {SOURCE_VIEW} WHERE {c} IS NOT NULL "
                    f"GROUP BY {c} ORDER BY n DESC, {c} LIMIT {int(max_categories)}"
                )
                values = sorted((norm(v) for v, _ in top), key=lambda v: (str(type(v)), v))
                shells[col.name] = drift.ColumnProfile("categorical", col.type, 0, [], values=values)
            else:
                raw = figures[quantile_alias[col.name]] or []
                edges = sorted({norm(e) for e in raw if e is not None})
                if col.type == "integer":
                    edges = [int(e) if float(e).is_integer() else e for e in edges]
                shells[col.name] = drift.ColumnProfile("numeric", col.type, 0, [], edges=edges)
        second_pass = Plan(d)
        aliases = {
            name: [second_pass.add(e) for e in bin_count_sql(d, name, shell.type, shell)]
            for name, shell in shells.items()
        }
        total = second_pass.add("count(*)")
        counted = _fetch(engine, second_pass.sql())
    finally:
        engine.close()
    columns: dict[str, drift.ColumnProfile] = {}
    n_rows = int(counted[total])
    for name, shell in shells.items():
        figures_ = [int(counted[a]) for a in aliases[name]]
        columns[name] = drift.ColumnProfile(
            shell.kind, shell.type, n_rows - figures_[0], drift.bin_counts(shell, figures_), shell.edges, shell.values
        )
    label = source_override or contract.spec.dataset.path or contract.spec.dataset.table or ""
    return drift.Profile(label, n_rows, columns)


def _fetch(engine: Engine, sql: str) -> dict[str, Any]:
    try:
        return engine.fetch_one(sql)
    except QueryError as exc:
        raise CheckFailed(f"profiling failed on {engine.name}: {exc}") from None


def _profiling_engine(name: str) -> Engine:
    """The engine to profile on: DuckDB with its own memory limit, not data-test's bound
    (exact quantiles sort a column's values in memory: 800 MB for 100M doubles)."""
    if name == "duckdb":
        from mlci.contracts.engines.duckdb import DuckDBEngine

        return DuckDBEngine(bounded=False)
    return create_engine(name)
