"""Distribution drift against a reference profile: the profile, PSI and binned KS, in Python.

The reference profile holds, per column, either quantile bin edges (numeric) or the most
frequent values (categorical) with the reference's count in each bin. The current data's
counts in the same bins come from aggregates in the contract's one query (`count_if(x < e)`
per edge, `count_if(x = v)` per value; the SQL is compiler.bin_count_sql), so no row ever
reaches Python; the statistics below work on those few integers, which is why both engines
report identical figures.

PSI = sum over bins of (q - p) * ln(q / p), with p the reference fraction, q the current one,
both floored at 1e-4 so an empty bin does not divide by zero. The KS figure is the largest
gap between the two cumulative distributions at the bin edges: a lower bound of the exact
two-sample KS statistic, exact when every distinct value is an edge.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mlci.errors import ConfigError

PROFILE_VERSION = 1
EPSILON = 1e-4


@dataclass(frozen=True)
class ColumnProfile:
    kind: Literal["numeric", "categorical"]
    type: str
    nulls: int
    counts: list[int]  # numeric: len(edges) + 1 bins; categorical: one per value, then 'other'
    edges: list[Any] = field(default_factory=list)  # bin i is [edges[i-1], edges[i])
    values: list[Any] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "type": self.type, "nulls": self.nulls}
        if self.kind == "numeric":
            out["edges"] = self.edges
        else:
            out["values"] = self.values
        out["counts"] = self.counts
        return out


@dataclass(frozen=True)
class Profile:
    source: str
    rows: int
    columns: dict[str, ColumnProfile]

    def to_text(self) -> str:
        """Compact, stable JSON: one line per column, so diffs show which column changed."""
        lines = [
            "{",
            f'  "mlci_profile": {PROFILE_VERSION},',
            f'  "source": {json.dumps(self.source)},',
            f'  "rows": {self.rows},',
            '  "columns": {',
        ]
        items = [f"    {json.dumps(name)}: {json.dumps(col.to_json())}" for name, col in self.columns.items()]
        lines.append(",\n".join(items))
        lines += ["  }", "}"]
        return "\n".join(lines) + "\n"


def write_profile(profile: Profile, path: Path) -> None:
    """Write atomically and never through a symlink (mlci.fs.write_atomic)."""
    from mlci import fs

    fs.write_atomic(path, profile.to_text().encode("utf-8"))


def load_profile(path: Path, line: int | None = None, contract_path: str = "") -> Profile:
    """Read a reference profile; a missing or malformed file is a configuration error (exit 2)."""
    if not path.is_file():
        raise ConfigError(
            contract_path or str(path), line, f"reference profile {path} not found; create it with 'mlci data profile'"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("mlci_profile") != PROFILE_VERSION:
            raise ValueError(f"'mlci_profile' is {data.get('mlci_profile')!r}, expected {PROFILE_VERSION}")
        columns = {}
        for name, col in data["columns"].items():
            kind = col["kind"]
            if kind not in ("numeric", "categorical"):
                raise ValueError(f"column {name!r} has kind {kind!r}")
            counts = [int(c) for c in col["counts"]]
            edges, values = list(col.get("edges", [])), list(col.get("values", []))
            expected_bins = len(edges) + 1 if kind == "numeric" else len(values) + 1
            if len(counts) != expected_bins:
                raise ValueError(f"column {name!r} has {len(counts)} counts for {expected_bins} bins")
            columns[name] = ColumnProfile(kind, str(col["type"]), int(col["nulls"]), counts, edges, values)
        return Profile(str(data["source"]), int(data["rows"]), columns)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            str(path), None, f"not a valid mlci reference profile ({exc}); regenerate it with 'mlci data profile'"
        ) from None


# ---------------------------------------------------------------- bins


def bin_counts(ref: ColumnProfile, figures: Sequence[int]) -> list[int]:
    """Counts per bin from compiler.bin_count_sql's figures: non-null count, then one per edge or value."""
    non_null, rest = figures[0], list(figures[1:])
    if ref.kind == "numeric":  # rest are cumulative counts below each edge
        cumulative = [*rest, non_null]
        return [cumulative[0]] + [cumulative[i] - cumulative[i - 1] for i in range(1, len(cumulative))]
    return [*rest, non_null - sum(rest)]


# ---------------------------------------------------------------- statistics


def _fractions(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    return [c / total for c in counts] if total else [0.0 for _ in counts]


def psi(reference: Sequence[int], current: Sequence[int]) -> float:
    """Population stability index of `current` against `reference` (same bins), rounded to 6 places."""
    total = 0.0
    for p, q in zip(_fractions(reference), _fractions(current), strict=True):
        p, q = max(p, EPSILON), max(q, EPSILON)
        total += (q - p) * math.log(q / p)
    return round(total, 6)


def ks_binned(reference: Sequence[int], current: Sequence[int]) -> float:
    """Largest gap between the cumulative distributions at the bin edges, rounded to 6 places."""
    gap, cum_p, cum_q = 0.0, 0.0, 0.0
    for p, q in zip(_fractions(reference), _fractions(current), strict=True):
        cum_p += p
        cum_q += q
        gap = max(gap, abs(cum_p - cum_q))
    return round(gap, 6)


# The other distances Databricks Lakehouse Monitoring reports in its drift metric tables, under
# the same names, on the same bins: one retrain rule can read mlci's tables or Databricks'.


def js_distance(reference: Sequence[int], current: Sequence[int]) -> float:
    """Jensen-Shannon distance (the square root of the divergence, base 2: 0 same, 1 disjoint)."""
    p, q = _fractions(reference), _fractions(current)
    divergence = 0.0
    for a, b in zip(p, q, strict=True):
        m = (a + b) / 2
        if a:
            divergence += a / 2 * math.log2(a / m)
        if b:
            divergence += b / 2 * math.log2(b / m)
    return round(math.sqrt(max(divergence, 0.0)), 6)


def tv_distance(reference: Sequence[int], current: Sequence[int]) -> float:
    """Total variation distance: half the sum of the fractions' absolute differences."""
    return round(sum(abs(a - b) for a, b in zip(_fractions(reference), _fractions(current), strict=True)) / 2, 6)


def l_infinity_distance(reference: Sequence[int], current: Sequence[int]) -> float:
    """The largest absolute difference of one bin's fractions."""
    pairs = zip(_fractions(reference), _fractions(current), strict=True)
    return round(max((abs(a - b) for a, b in pairs), default=0.0), 6)


def chi_squared_test(reference: Sequence[int], current: Sequence[int]) -> tuple[float, float]:
    """Pearson's chi-squared test that both samples come from one distribution over the bins
    (a 2 x k contingency table; bins empty in both are left out): (statistic, p-value)."""
    columns = [(r, c) for r, c in zip(reference, current, strict=True) if r or c]
    n_ref, n_cur = sum(r for r, _ in columns), sum(c for _, c in columns)
    if len(columns) < 2 or not n_ref or not n_cur:
        return 0.0, 1.0  # one bin, or an empty sample: nothing to tell apart
    total = n_ref + n_cur
    statistic = 0.0
    for r, c in columns:
        for observed, row_total in ((r, n_ref), (c, n_cur)):
            expected = row_total * (r + c) / total
            statistic += (observed - expected) ** 2 / expected
    return round(statistic, 6), round(chi2_sf(statistic, len(columns) - 1), 6)


# ---------------------------------------------------------------- the chi-squared tail


def chi2_sf(statistic: float, degrees: int) -> float:
    """P(X >= statistic) for X chi-squared with `degrees` degrees of freedom.

    Written here so the data path needs no scipy: the survival function is the regularised
    upper incomplete gamma Q(degrees / 2, statistic / 2), from its power series below the
    mode and its continued fraction above it (Numerical Recipes, 6.2), each to ~1e-15.
    """
    if degrees < 1:
        raise ValueError(f"degrees of freedom must be >= 1, not {degrees}")
    if math.isnan(statistic):
        return math.nan
    if statistic <= 0:
        return 1.0
    if math.isinf(statistic):
        return 0.0
    if statistic / 2 == 0:  # a subnormal statistic halves to 0: Q(a, 0) = 1
        return 1.0
    return _upper_gamma_regularised(degrees / 2, statistic / 2)


def _upper_gamma_regularised(a: float, x: float) -> float:
    """Q(a, x) = Gamma(a, x) / Gamma(a) for a > 0, x > 0."""
    log_prefix = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:
        # P(a, x) = x^a e^-x / Gamma(a + 1) * sum_n x^n / ((a + 1) ... (a + n)); Q = 1 - P.
        term = total = 1.0 / a
        denominator = a
        for _ in range(10_000):
            denominator += 1
            term *= x / denominator
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    # Q(a, x) = x^a e^-x / Gamma(a) * 1 / (x + 1 - a - 1(1 - a) / (x + 3 - a - ...)), by the
    # modified Lentz method.
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    fraction = d
    for n in range(1, 10_000):
        an = -n * (n - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        step = d * c
        fraction *= step
        if abs(step - 1) < 1e-16:
            break
    return min(1.0, math.exp(log_prefix) * fraction)
