"""Run a contract on an engine: resolve the source, check the schema, run the one query."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mlci import sql_types
from mlci.contracts import drift
from mlci.contracts.compiler import CheckResult, Compiled, compile_contract
from mlci.contracts.engines import Engine, QueryError, Source, create_engine, engine_class
from mlci.contracts.expression import FIX
from mlci.contracts.format import Contract, Dataset
from mlci.contracts.sql import SOURCE_VIEW
from mlci.errors import CheckFailed, ConfigError


@dataclass(frozen=True)
class Report:
    engine: str
    source: str
    results: list[CheckResult]
    seconds: float
    sql: str

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "fail"]

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for r in self.results if r.status == s) for s in ("pass", "fail", "skip")}

    def worst_drift(self, n: int = 3) -> list[CheckResult]:
        psi = [r for r in self.results if r.check == "psi" and isinstance(r.observed, float)]
        return sorted(psi, key=lambda r: -float(r.observed))[:n]

    def to_json(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "source": self.source,
            "seconds": self.seconds,
            **self.counts(),
            "checks": [r.to_json() for r in self.results],
            "sql": self.sql,
        }


def resolve_source(
    contract: Contract, engine: str, override: str | None = None, dataset: Dataset | None = None, key: str = "dataset"
) -> Source:
    """Where the data is and how to read it on `engine` (a registry name); a missing file is a
    configuration error (exit 2).

    `dataset` (declared at contract key `key`) replaces the contract's own `dataset`. The
    engine's class is imported only once the path is known to exist, so a missing file is
    reported before a missing engine package.
    """
    ds = dataset or contract.spec.dataset
    if override is None and ds.table is not None:
        if not engine_class(engine).supports_tables:
            raise contract.error(
                f"{key}.table",
                f"{key}.table '{ds.table}' needs the Spark engine; pass --engine spark or use {key}.path",
            )
        return Source("table", ds.table)
    relative = override if override is not None else ds.path
    assert relative is not None
    where = "--source" if override is not None else f"{key}.path"
    path = contract.resolve(relative)
    if not path.exists():
        if override is not None:
            raise ConfigError(relative, None, "data file not found; check --source")
        raise contract.error(f"{key}.path", f"{where}: data file '{relative}' not found (relative to {contract.root})")
    fmt: str | None = ds.format if override is None else "auto"
    if fmt == "auto":
        fmt = guess_format(path)
        if fmt is None:
            problem = f"cannot tell the format of '{relative}'; set {key}.format to csv, parquet or delta"
            if override is not None:
                raise ConfigError(relative, None, problem)
            raise contract.error(f"{key}.path", problem)
    return engine_class(engine).source_for(path, fmt)  # type: ignore[arg-type]


def guess_format(path: Path) -> str | None:
    if path.is_dir():
        if (path / "_delta_log").is_dir():
            return "delta"
        return "parquet" if any(path.rglob("*.parquet")) else None
    suffixes = [s.lower() for s in path.suffixes]
    if ".csv" in suffixes or ".tsv" in suffixes:
        return "csv"
    if suffixes and suffixes[-1] in (".parquet", ".pq"):
        return "parquet"
    return None


def open_source(engine: Engine, contract: Contract, source: Source, prefix: str = "dataset") -> None:
    try:
        engine.open(source)
    except QueryError as exc:
        key = f"{prefix}.table" if source.kind == "table" else f"{prefix}.path"
        raise CheckFailed(
            f"{contract.display_path}:{contract.line_of(key)}: cannot read {source.location}: {exc}"
        ) from None


def compatible(declared: str, actual: str | None) -> bool:
    # A float column may hold integers (a safe widening); everything else must match exactly.
    return actual == declared or (declared == "float" and actual == "integer")


def schema_checks(
    contract: Contract, engine: Engine, columns: dict[str, str]
) -> tuple[list[CheckResult], dict[str, str]]:
    """One 'type' check per declared column; returns the results and the usable columns.

    A text column without a single non-null value has no type to observe (CSV readers infer
    text for it, and for every column of a header-only file): it is compatible with any declared
    type, and the engine re-exposes it cast to that type so its checks run like any other's.
    Only text qualifies: a typed source (Parquet, Delta, a table) states its types, and a text
    cast binds to every contract type on both engines, so both give the same verdict.
    """
    results: list[CheckResult] = []
    usable: dict[str, str] = {}
    lower = {name.lower(): name for name in columns}
    mismatched = [
        col.name
        for col in contract.spec.columns
        if col.name in columns
        and sql_types.family(columns[col.name]) == "string"
        and not compatible(col.type, "string")
    ]
    empty = _empty_columns(engine, mismatched)
    if empty:
        try:
            engine.cast_columns({name: contract.column(name).type for name in empty})
        except QueryError:
            empty = set()  # not expected from text; the type checks then fail as before
    for index, col in enumerate(contract.spec.columns):
        line = contract.line_of(f"columns[{index}].type") or contract.line_of(f"columns[{index}]")
        if col.name not in columns:
            other = lower.get(col.name.lower())
            hint = f"; the data has '{other}'" if other else ""
            results.append(
                CheckResult("type", col.name, "missing", col.type, "fail", None, line, f"column is missing{hint}")
            )
            continue
        family = sql_types.family(columns[col.name])
        if col.name in empty:
            usable[col.name] = col.type
            results.append(
                CheckResult(
                    "type", col.name, col.type, col.type, "pass", None, line, "no non-null values: read as declared"
                )
            )
        elif compatible(col.type, family):
            usable[col.name] = col.type
            results.append(CheckResult("type", col.name, family, col.type, "pass", None, line))
        else:
            results.append(
                CheckResult(
                    "type",
                    col.name,
                    family or columns[col.name],
                    col.type,
                    "fail",
                    None,
                    line,
                    f"engine type {columns[col.name]}",
                )
            )
    return results, usable


def strict_check(contract: Contract, columns: dict[str, str]) -> list[CheckResult]:
    """With `strict: true`, one check that the data has no column the contract does not declare."""
    if not contract.spec.strict:
        return []
    declared = {col.name for col in contract.spec.columns}
    extra = [name for name in columns if name not in declared]
    line = contract.line_of("strict")
    if not extra:
        return [CheckResult("strict", None, "none", "no undeclared columns", "pass", 0, line)]
    names = ", ".join(extra)
    return [
        CheckResult(
            "strict",
            None,
            names,
            "no undeclared columns",
            "fail",
            len(extra),
            line,
            f"undeclared column{'s' if len(extra) > 1 else ''} {names}: declare under 'columns' or set strict: false",
        )
    ]


def _empty_columns(engine: Engine, names: list[str]) -> set[str]:
    """Those of `names` without a non-null value (one extra scan, only when a type mismatches)."""
    if not names:
        return set()
    d = engine.dialect
    counts = ", ".join(f"count({d.ident(name)}) AS a{i}" for i, name in enumerate(names))
    try:
        row = engine.fetch_one(f"SELECT {counts} FROM {SOURCE_VIEW}")
    except QueryError as exc:
        raise CheckFailed(f"cannot read the data: {exc}") from None
    return {name for i, name in enumerate(names) if int(row[f"a{i}"]) == 0}


def _drift_skipped(contract: Contract, reason: str) -> list[CheckResult]:
    """The drift checks of a dataset drift is not measured on: reported, not run."""
    settings = contract.spec.drift
    if settings is None:
        return []
    checks = ("psi", "ks") if settings.method == "psi+ks" else ("psi",)
    return [
        CheckResult(check, name, None, "-", "skip", None, contract.line_of(f"drift.columns[{index}]"), reason)
        for index, name in enumerate(settings.columns)
        for check in checks
    ]


def _skipped(contract: Contract, usable: dict[str, str]) -> list[CheckResult]:
    """Value checks on columns that are missing or mistyped: reported, not run."""
    out: list[CheckResult] = []
    for index, col in enumerate(contract.spec.columns):
        if col.name in usable:
            continue
        key = f"columns[{index}]"
        named = [
            ("not_null", not col.nullable),
            ("max_null_fraction", col.max_null_fraction is not None),
            ("min", col.min is not None),
            ("max", col.max is not None),
            ("allowed", col.allowed is not None),
            ("regex", col.regex is not None),
            ("unique", col.unique),
        ]
        for check, present in named:
            if present:
                attr = "nullable" if check == "not_null" else check
                out.append(
                    CheckResult(
                        check,
                        col.name,
                        None,
                        "-",
                        "skip",
                        None,
                        contract.line_of(f"{key}.{attr}"),
                        "not run: the type check failed",
                    )
                )
    if contract.spec.drift is not None:
        for index, name in enumerate(contract.spec.drift.columns):
            if name not in usable:
                out.append(
                    CheckResult(
                        "psi",
                        name,
                        None,
                        "-",
                        "skip",
                        None,
                        contract.line_of(f"drift.columns[{index}]"),
                        "not run: the type check failed",
                    )
                )
    return out


def load_reference(contract: Contract) -> drift.Profile | None:
    settings = contract.spec.drift
    if settings is None or not settings.columns:
        return None
    profile = drift.load_profile(
        contract.resolve(settings.reference), contract.line_of("drift.reference"), str(contract.path)
    )
    for index, name in enumerate(settings.columns):
        if name not in profile.columns:
            raise contract.error(
                f"drift.columns[{index}]",
                f"drift.columns[{index}]: column '{name}' is not in the "
                f"reference profile {settings.reference}; re-run 'mlci data profile'",
            )
    return profile


def run_contract(
    contract: Contract,
    engine_name: str = "duckdb",
    source_override: str | None = None,
    now: datetime | None = None,
    engine: Engine | None = None,
    dataset: Dataset | None = None,
    dataset_key: str = "dataset",
    drift_skip_reason: str | None = None,
    progress: Callable[[str], None] | None = None,
    on_stop: Callable[[Callable[[], object]], Callable[[], None]] | None = None,
) -> Report:
    """Check one dataset: the contract's own, `source_override` (a path) or `dataset` (at `dataset_key`).

    With `drift_skip_reason` the drift checks are reported as skipped for that reason. On a
    long scan `progress` gets a line every few seconds (watch_progress), from another thread:
    bind it to where the caller writes (console.bound). `on_stop` registers how to interrupt the
    engine's query from another thread (console.on_stop) and returns how to unregister it.
    """
    source = resolve_source(contract, engine_name, source_override, dataset, dataset_key)
    profile = load_reference(contract) if drift_skip_reason is None else None
    clock = time.perf_counter()
    engine = engine or create_engine(engine_name)
    interrupt: Callable[[], object] | None = getattr(engine, "interrupt", None)
    unhook = on_stop(interrupt) if on_stop is not None and interrupt is not None else None
    try:
        open_source(engine, contract, source, dataset_key)
        try:
            columns = engine.schema()
        except QueryError as exc:
            raise CheckFailed(f"cannot read {source.location}: {exc}") from None
        check_expectations(contract, engine)
        results, usable = schema_checks(contract, engine, columns)
        results += strict_check(contract, columns)
        footers = engine.footer_stats()
        compiled = compile_contract(contract, usable, engine.dialect, profile, now, footers=footers)
        with watch_progress(engine, progress, f"data-test: reading {source.location}"):
            try:
                row = engine.fetch_one(compiled.sql)
            except QueryError as exc:
                broken = _blame_expectations(contract, engine, compiled.expectation_sql, usable)
                if not broken:
                    raise CheckFailed(f"the contract's query failed on {engine_name}: {exc}") from None
                compiled = compile_contract(contract, usable, engine.dialect, profile, now, broken, footers)
                try:
                    row = engine.fetch_one(compiled.sql)
                except QueryError as again:
                    raise CheckFailed(f"the contract's query failed on {engine_name}: {again}") from None
            queries = [compiled.sql, *count_keys(engine, compiled, row)]
        results += [verdict(row) for verdict in compiled.verdicts]
        skipped = _skipped(contract, usable)
        if drift_skip_reason is not None:  # every drift check is reported once, for that reason
            skipped = [r for r in skipped if r.check not in ("psi", "ks")]
        results += skipped
        if drift_skip_reason is not None:
            results += _drift_skipped(contract, drift_skip_reason)
    finally:
        if unhook is not None:
            unhook()
        engine.close()
    return Report(engine_name, source.location, results, round(time.perf_counter() - clock, 3), ";\n".join(queries))


# A scan shorter than this prints nothing; a longer one prints a line this often.
PROGRESS_AFTER_SECONDS = 5.0


@contextmanager
def watch_progress(
    engine: Engine, report: Callable[[str], None] | None, what: str, every: float = PROGRESS_AFTER_SECONDS
) -> Iterator[None]:
    """While the body runs, call `report` with a line every `every` seconds, the first after
    `every` seconds (nothing on a short run), with the engine's progress where it has one
    (DuckDB's query_progress, polled from this thread; Spark has no such figure). `report`
    is called from a thread of its own: one that writes where the caller does (console.bound)
    keeps the lines in the caller's block under `mlci run --jobs`."""
    if report is None:
        yield
        return
    poll: Callable[[], float | None] | None = getattr(engine, "progress", None)
    stop = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        while not stop.wait(every):
            elapsed = time.monotonic() - started
            percent = poll() if poll is not None else None
            done = f"{percent:.0f}% of the current query, " if percent is not None else ""
            report(f"{what}: {done}{elapsed:.0f}s so far")

    watcher = threading.Thread(target=tick, name="mlci-data-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()


def count_keys(engine: Engine, compiled: Compiled, row: dict[str, Any]) -> list[str]:
    """Add the distinct key counts the one query leaves to the engine to `row`; their SQL."""
    queries = []
    for alias, key in compiled.distinct.items():
        try:
            row[alias], sql = engine.distinct_count(key)
        except QueryError as exc:
            raise CheckFailed(f"counting the distinct {'+'.join(key)} failed on {engine.name}: {exc}") from None
        queries.append(sql)
    return queries


def check_expectations(contract: Contract, engine: Engine) -> None:
    """Every expectation is exactly one expression to the engine's own parser (exit 2 if not)."""
    for index, exp in enumerate(contract.spec.table.expectations):
        problem = engine.check_expression(exp.sql)
        if problem:
            key = f"table.expectations[{index}].sql"
            raise contract.error(
                key, f"{key}: expectation '{exp.name}' is not one SQL expression on {engine.name}: {problem}; {FIX}"
            )


def _blame_expectations(
    contract: Contract, engine: Engine, expectations: dict[str, str], usable: dict[str, str]
) -> dict[str, str]:
    """The one query failed: find the SQL expectations that fail alone.

    With a complete schema a failing expectation is a contract error naming its line (exit 2);
    after a failed type check it is reported as skipped (the data, not the SQL, is at fault).
    """
    broken: dict[str, str] = {}
    for index, exp in enumerate(contract.spec.table.expectations):
        probe = f"SELECT {expectations[exp.name]} AS a0 FROM (SELECT * FROM {SOURCE_VIEW} LIMIT 0) AS t"
        try:
            engine.fetch_one(probe)
        except QueryError as exc:
            if len(usable) == len(contract.spec.columns):
                key = f"table.expectations[{index}].sql"
                raise contract.error(key, f"expectation '{exp.name}': invalid SQL on {engine.name}: {exc}") from None
            broken[exp.name] = f"not run: the type check failed ({exc})"
    return broken
