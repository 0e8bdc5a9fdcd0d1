"""Compile a contract into one SQL query per dataset, in DuckDB's or Spark's dialect.

Every check becomes one or a few aggregate expressions in a single SELECT over the source
view, so the data is scanned once however many checks there are; each check also carries a
`verdict` that turns the query's row into a CheckResult. All dialect differences live in the
`Dialect` classes (the base in sql.py, one subclass beside each engine in engines/): identifier
and string quoting, regex matching, multi-column distinct counts, quantiles, casts to text.

Observed figures are normalised the same way for both engines (see `norm`), so the same
contract over the same data gives identical results on DuckDB and on Spark.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal

from mlci.contracts import drift
from mlci.contracts.format import Column, Contract
from mlci.contracts.sql import Dialect, FooterStats, Plan, double_literal

Status = Literal["pass", "fail", "skip"]


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class CheckResult:
    check: str  # type, not_null, max_null_fraction, min, max, allowed, regex, unique, row_count, ...
    column: str | None  # None for a table-level check
    observed: Any  # a JSON value, identical on every engine
    expected: str
    status: Status
    violations: int | None = None  # rows (or values) breaking the check, where countable
    line: int | None = None  # line in the contract that declares the check
    message: str = ""

    @property
    def name(self) -> str:
        """The test-case name: check[column] or check[name]."""
        return f"{self.check}[{self.column}]" if self.column else self.check

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "column": self.column,
            "observed": self.observed,
            "expected": self.expected,
            "status": self.status,
            "violations": self.violations,
            "line": self.line,
            "message": self.message,
        }


def norm(value: Any) -> Any:
    """An observed figure as JSON, the same whichever engine produced it.

    Integers stay integers; floats keep 12 significant digits (engines agree far beyond that on
    min/max, and every other figure is derived from integer counts); NaN becomes "NaN".
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return float(f"{value:.12g}")
    if isinstance(value, datetime | date):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    return str(value)


def show(value: Any) -> str:
    """A figure for the result table."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def fraction(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


# ---------------------------------------------------------------- the plan


Row = Mapping[str, Any]
Verdict = Callable[[Row], CheckResult]


@dataclass(frozen=True)
class Compiled:
    sql: str
    verdicts: list[Verdict]
    expectation_sql: dict[str, str]  # name -> the expectation's aggregate, to probe one alone
    # alias -> key columns whose distinct count the engine adds to the row (Engine.distinct_count)
    distinct: dict[str, tuple[str, ...]] = field(default_factory=dict)


def compile_contract(
    contract: Contract,
    usable: Mapping[str, str],
    dialect: Dialect,
    profile: drift.Profile | None = None,
    now: datetime | None = None,
    skip_expectations: Mapping[str, str] | None = None,
    footers: Mapping[str, FooterStats] | None = None,
) -> Compiled:
    """The one query of a contract's value, table and drift checks.

    `usable` maps each declared column present in the data with a compatible type to its
    contract type; checks on other columns are reported as skipped by the caller's schema step.
    `footers` holds what Parquet footers prove about numeric columns: those figures enter the
    query as constants instead of aggregates, so the verdicts read the same row either way.
    """
    plan = Plan(dialect)
    verdicts: list[Verdict] = []
    rows = plan.add("count(*)")
    spec = contract.spec
    for index, col in enumerate(spec.columns):
        if col.name in usable:
            verdicts.extend(_column_checks(plan, contract, index, col, (footers or {}).get(col.name)))
    verdicts.extend(_table_checks(plan, contract, usable, rows, now or datetime.now(timezone.utc)))
    expectation_sql: dict[str, str] = {}
    skip_expectations = skip_expectations or {}
    for index, exp in enumerate(spec.table.expectations):
        if exp.name in skip_expectations:
            verdicts.append(
                _skipped(
                    "expectation",
                    exp.name,
                    "-",
                    contract.line_of(f"table.expectations[{index}]"),
                    skip_expectations[exp.name],
                )
            )
            continue
        # Each expectation is parsed as one expression before this (expression.py); it also
        # stands on lines of its own inside its own parentheses, so nothing it holds can reach
        # the SQL of another check.
        expression = dialect.count_if(f"NOT coalesce((\n{exp.sql}\n), FALSE)")
        expectation_sql[exp.name] = expression
        verdicts.append(
            _expectation(
                plan.add(expression),
                exp.name,
                exp.sql,
                exp.max_failures,
                contract.line_of(f"table.expectations[{index}]"),
            )
        )
    if spec.drift is not None and profile is not None:
        for index, name in enumerate(spec.drift.columns):
            if name in usable:
                verdicts.extend(_drift_checks(plan, contract, index, name, profile))
    return Compiled(plan.sql(), verdicts, expectation_sql, dict(plan.distinct))


def _column_checks(
    plan: Plan, contract: Contract, index: int, col: Column, footer: FooterStats | None = None
) -> list[Verdict]:
    d = plan.dialect
    c = d.ident(col.name)
    key = f"columns[{index}]"
    line = contract.line_of
    out: list[Verdict] = []
    rows = plan.add("count(*)")
    if footer is not None and footer.nulls is not None:
        non_null = plan.add(str(footer.rows - footer.nulls))  # exact: every row group counts its nulls
    else:
        non_null = plan.add(f"count({c})")

    def nulls(r: Row) -> int:
        return int(r[rows]) - int(r[non_null])

    if not col.nullable:

        def not_null(r: Row, _line: int | None = line(f"{key}.nullable")) -> CheckResult:
            n = nulls(r)
            return CheckResult("not_null", col.name, n, "0 nulls", "pass" if n == 0 else "fail", n, _line)

        out.append(not_null)
    if col.max_null_fraction is not None:
        limit = col.max_null_fraction

        def null_fraction(r: Row, _line: int | None = line(f"{key}.max_null_fraction")) -> CheckResult:
            frac = fraction(nulls(r), int(r[rows]))
            return CheckResult(
                "max_null_fraction",
                col.name,
                frac,
                f"<= {limit:g}",
                "pass" if frac <= limit else "fail",
                nulls(r),
                _line,
            )

        out.append(null_fraction)
    # A NaN is outside every range: it breaks `min` and `max` alike (the engines order NaN above
    # every number, so `x < min` alone would miss it), and the observed extreme is then NaN.
    is_nan = d.is_nan(c) if col.type == "float" else None
    nans = plan.add(d.count_if(is_nan)) if is_nan and (col.min is not None or col.max is not None) else None
    for bound, agg, op, word in (("min", "min", "<", ">="), ("max", "max", ">", "<=")):
        value = getattr(col, bound)
        if value is None:
            continue
        known = None if footer is None else footer.low if bound == "min" else footer.high
        # -0.0 and 0.0 are equal, and footers may hold either sign where the rows hold the
        # other: a zero extreme comes from the scan, so the figure is the engine's own.
        extreme = plan.add(_constant(known) if known is not None and known != 0 else f"{agg}({c})")
        outside = f"{c} {op} {d.literal(value, col.type)}"
        if known is not None and not (known < value if bound == "min" else known > value):
            # The footers prove every non-NaN value inside the bound: only NaN can break it.
            beyond = nans if nans else plan.add("0")
        else:
            beyond = plan.add(d.count_if(f"{outside} OR {is_nan}" if is_nan else outside))
        shown = show(int(value) if float(value).is_integer() else value)

        def bound_check(
            r: Row,
            _b: str = bound,
            _x: str = extreme,
            _n: str = beyond,
            _w: str = word,
            _s: str = shown,
            _line: int | None = line(f"{key}.{bound}"),
        ) -> CheckResult:
            n = int(r[_n])
            nan_count = int(r[nans]) if nans else 0
            observed = "NaN" if nan_count else norm(r[_x])
            message = f"{n} value{'s' if n != 1 else ''} out of range ({nan_count} NaN)" if nan_count else ""
            return CheckResult(_b, col.name, observed, f"{_w} {_s}", "pass" if n == 0 else "fail", n, _line, message)

        out.append(bound_check)
    if col.allowed is not None:
        bad = plan.add(d.count_if(d.outside(c, col.allowed, col.type)))
        listed = ", ".join(show(v) if not isinstance(v, bool) else str(v).lower() for v in col.allowed)
        expected = f"in {{{listed}}}" if len(listed) <= 60 else f"in {{{listed[:57]}...}}"

        def allowed(r: Row, _line: int | None = line(f"{key}.allowed")) -> CheckResult:
            n = int(r[bad])
            return CheckResult(
                "allowed",
                col.name,
                n,
                expected,
                "pass" if n == 0 else "fail",
                n,
                _line,
                "" if n == 0 else f"{n} values outside the allowed set",
            )

        out.append(allowed)
    if col.regex is not None:
        mismatches = plan.add(d.count_if(d.regex_mismatch(c, col.regex)))
        pattern = col.regex

        def regex(r: Row, _line: int | None = line(f"{key}.regex")) -> CheckResult:
            n = int(r[mismatches])
            return CheckResult(
                "regex",
                col.name,
                n,
                f"matches {pattern}",
                "pass" if n == 0 else "fail",
                n,
                _line,
                "" if n == 0 else f"{n} values do not match",
            )

        out.append(regex)
    if col.unique:
        distinct = plan.add_distinct([col.name])

        def unique(r: Row, _line: int | None = line(f"{key}.unique")) -> CheckResult:
            dup = int(r[non_null]) - int(r[distinct])
            return CheckResult("unique", col.name, dup, "0 duplicates", "pass" if dup == 0 else "fail", dup, _line)

        out.append(unique)
    return out


def _constant(value: int | float) -> str:
    return str(value) if isinstance(value, int) else double_literal(value)


def _table_checks(plan: Plan, contract: Contract, usable: Mapping[str, str], rows: str, now: datetime) -> list[Verdict]:
    d = plan.dialect
    table = contract.spec.table
    out: list[Verdict] = []
    if table.row_count is not None and (table.row_count.min is not None or table.row_count.max is not None):
        lo, hi = table.row_count.min, table.row_count.max
        expected = (
            f"between {lo} and {hi}"
            if lo is not None and hi is not None
            else f">= {lo}"
            if lo is not None
            else f"<= {hi}"
        )

        def row_count(r: Row, _line: int | None = contract.line_of("table.row_count")) -> CheckResult:
            n = int(r[rows])
            ok = (lo is None or n >= lo) and (hi is None or n <= hi)
            return CheckResult("row_count", None, n, expected, "pass" if ok else "fail", None, _line)

        out.append(row_count)
    for index, key_columns in enumerate(table.unique_keys):
        name = "+".join(key_columns)
        line = contract.line_of(f"table.unique_keys[{index}]")
        if not all(k in usable for k in key_columns):
            out.append(_skipped("unique_key", name, "0 duplicates", line, "a key column is missing or mistyped"))
            continue
        cols = [d.ident(k) for k in key_columns]
        complete = plan.add(d.count_if(" AND ".join(f"{c} IS NOT NULL" for c in cols)))
        distinct = plan.add_distinct(key_columns)

        def unique_key(
            r: Row, _n: str = name, _c: str = complete, _d: str = distinct, _line: int | None = line
        ) -> CheckResult:
            dup = int(r[_c]) - int(r[_d])
            return CheckResult("unique_key", _n, dup, "0 duplicates", "pass" if dup == 0 else "fail", dup, _line)

        out.append(unique_key)
    fresh = table.freshness
    if fresh is not None:
        line = contract.line_of("table.freshness")
        cutoff = now - timedelta(hours=fresh.max_age_hours)
        expected = f">= {cutoff.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC ({fresh.max_age_hours:g}h)"
        if fresh.column not in usable:
            out.append(_skipped("freshness", fresh.column, expected, line, "column is missing or mistyped"))
        else:
            latest = plan.add(d.to_text(f"max({d.ident(fresh.column)})"))

            def freshness(r: Row) -> CheckResult:
                text = r[latest]
                if text is None:
                    return CheckResult("freshness", fresh.column, None, expected, "fail", None, line, "no values")
                stamp = _parse_stamp(str(text))
                ok = stamp >= cutoff
                age_h = round((now - stamp).total_seconds() / 3600, 2)
                return CheckResult(
                    "freshness",
                    fresh.column,
                    norm(stamp.replace(tzinfo=None)),
                    expected,
                    "pass" if ok else "fail",
                    None,
                    line,
                    f"newest value is {age_h:g}h old",
                )

            out.append(freshness)
    return out


def _skipped(check: str, column: str, expected: str, line: int | None, why: str) -> Verdict:
    def verdict(r: Row) -> CheckResult:
        return CheckResult(check, column, None, expected, "skip", None, line, why)

    return verdict


def _parse_stamp(text: str) -> datetime:
    """A date or timestamp rendered by either engine, as an aware UTC datetime."""
    text = text.strip()
    if len(text) >= 3 and text[-3] in "+-" and ":" not in text[-3:] and " " not in text[-3:]:
        text += ":00"  # DuckDB renders TIMESTAMPTZ offsets as +00
    stamp = datetime.fromisoformat(text)
    return stamp.replace(tzinfo=timezone.utc) if stamp.tzinfo is None else stamp.astimezone(timezone.utc)


def _expectation(alias: str, name: str, sql: str, max_failures: int, line: int | None) -> Verdict:
    def verdict(r: Row) -> CheckResult:
        n = int(r[alias])
        expected = "0 violating rows" if max_failures == 0 else f"<= {max_failures} violating rows"
        return CheckResult(
            "expectation",
            name,
            n,
            expected,
            "pass" if n <= max_failures else "fail",
            n,
            line,
            "" if n <= max_failures else f"{n} rows where not ({sql})",
        )

    return verdict


def _drift_checks(plan: Plan, contract: Contract, index: int, name: str, profile: drift.Profile) -> list[Verdict]:
    settings = contract.spec.drift
    assert settings is not None
    ref = profile.columns[name]
    col = contract.column(name)
    aliases = [plan.add(expr) for expr in bin_count_sql(plan.dialect, name, col.type, ref)]
    line = contract.line_of(f"drift.columns[{index}]")

    def statistic(check: str, measure: Callable[[list[int], list[int]], float], limit: float) -> Verdict:
        def verdict(r: Row) -> CheckResult:
            counts = drift.bin_counts(ref, [int(r[a]) for a in aliases])
            if sum(counts) == 0:
                return CheckResult(check, name, None, f"<= {limit:g}", "fail", None, line, "no non-null values")
            value = measure(ref.counts, counts)
            return CheckResult(check, name, value, f"<= {limit:g}", "pass" if value <= limit else "fail", None, line)

        return verdict

    out = [statistic("psi", drift.psi, settings.threshold)]
    if settings.method == "psi+ks" and ref.kind == "numeric":
        out.append(statistic("ks", drift.ks_binned, settings.ks_threshold))
    return out


def bin_count_sql(dialect: Dialect, column: str, column_type: str, ref: drift.ColumnProfile) -> list[str]:
    """Aggregates whose values drift.bin_counts turns into the current counts per reference bin
    (the same SQL for `mlci data profile` and `mlci data-test`, so a dataset against its own
    profile has a PSI of exactly 0)."""
    c = dialect.ident(column)
    exprs = [f"count({c})"]
    if ref.kind == "numeric":
        exprs += [dialect.count_if(f"{c} < {dialect.literal(edge, column_type)}") for edge in ref.edges]
    else:
        exprs += [dialect.count_if(f"{c} = {dialect.literal(value, column_type)}") for value in ref.values]
    return exprs
