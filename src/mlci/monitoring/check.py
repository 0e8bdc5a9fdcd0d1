"""`mlci monitor check`: the retrain rule read off the metric tables, its decision and JUnit file.

The tables are read as plain rows (dicts, as pyarrow's `Table.to_pylist()` or Spark's
`Row.asDict(True)` give them), so one reader serves mlci's local Parquet tables and
Databricks Lakehouse Monitoring's profile and drift tables alike. Databricks has no
`performance_metrics` table: there, `drifted_columns_share` and `prediction_drift` are worked
out from the drift rows with the same statistic and threshold mlci's engine uses, and the
estimated signals have no value (they never fire, they only cannot vouch for a hold).

Each signal is read per closed window from the whole-table rows (slice_key NULL) of the
served model version, BASELINE drift only (SPEC14: "How a signal is read per window"). A
window counts as evidence with at least `monitor.retrain.min_rows_per_window` rows: the
`:table` row's `count`, or for the realised quality metrics and the estimation gap the
window's `label_count`, since those figures rest on the labelled rows alone. Relative bounds
(`accuracy_score >= baseline - 0.05`) take the served version's own baseline figure; a bound
that cannot be resolved is a configuration error at its mlci.yaml line, never a silent hold.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

from mlci import fs
from mlci.config import CLASSIFICATION_QUALITY, REGRESSION_QUALITY, WINDOW_SIGNALS, Project, SignalRule
from mlci.errors import ConfigError, UsageError, first_line
from mlci.monitoring import policy

DECISION_VERSION = 1
DECISION_FILE = "decision.json"
# Also in mlci.stages._result.JUNIT_REPORTS["monitor"] (a higher layer): it clears stale ones.
JUNIT_FILE = "monitor.xml"
PROFILE_TABLE = "profile_metrics.parquet"
DRIFT_TABLE = "drift_metrics.parquet"
PERFORMANCE_TABLE = "performance_metrics.parquet"
TABLE_COLUMN = ":table"  # Databricks' column_name of the table-level rows
LABEL_COLUMN = "label"  # the inference table's label column (Databricks: the monitor's label_col)

# Realised model quality, on the profile table's `:table` rows (Databricks' names).
QUALITY_SIGNALS = frozenset(CLASSIFICATION_QUALITY + REGRESSION_QUALITY)
# Figures that rest on the labelled rows: their evidence is the window's label_count.
LABELLED_SIGNALS = QUALITY_SIGNALS | {"estimation_gap"}
# Signals the baseline has no figure for: a relative bound on one is meaningless.
NO_BASELINE_FIGURE = frozenset({"estimation_gap", *WINDOW_SIGNALS})
# Columns of an inference table that are no model input (a Databricks drift table has rows for them).
_NOT_FEATURES = frozenset({TABLE_COLUMN, "prediction", "request_id", "timestamp", "model_id", "label"})
_NUMERIC_TYPE = re.compile(r"int|long|short|byte|double|float|decimal|numeric|real", re.IGNORECASE)
_DURATION = re.compile(r"^([0-9]+)([hdw])$")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
# Characters XML 1.0 forbids; user data (column names) reaches the JUnit file.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

Row = Mapping[str, Any]


class BaselineLike(Protocol):
    """What the check reads of a version's baseline (mlci.monitoring.baseline.Baseline)."""

    @property
    def run_id(self) -> str: ...

    @property
    def performance(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class MetricRows:
    """The three metric tables as rows; `performance` is empty on Databricks."""

    profile: Sequence[Row]
    drift: Sequence[Row]
    performance: Sequence[Row]


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `1w` as a timedelta (mlci.yaml's duration format); ValueError otherwise."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"'{text}' is not a duration like 30d, 12h or 1w")
    return int(match.group(1)) * _UNITS[match.group(2)]


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (a trailing Z, or no offset at all, is UTC) as an aware datetime."""
    cleaned = text.strip()
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"  # Python 3.10's fromisoformat has no Z
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(f"'{text}' is not an ISO 8601 time like 2026-11-30T06:00:00Z") from None
    return utc(moment)


def utc(moment: datetime) -> datetime:
    """`moment` in UTC; a naive one (Spark hands out naive timestamps) is taken as UTC."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def output_dir(project: Project) -> Path:
    """monitor.output as a local folder (the tables, decision.json, report.html)."""
    relative = project.config.monitor.output
    if "://" in relative:
        raise project.error(
            "monitor.output", f"monitor.output '{relative}' is a URL; the decision and report need a local folder"
        )
    return project.root / relative


def read_tables(folder: Path) -> MetricRows:
    """mlci's local metric tables as rows; exit 2 when `mlci monitor run` never wrote them."""
    profile_path = folder / PROFILE_TABLE
    if not profile_path.is_file():
        raise UsageError(f"no metric tables in {folder} (no {PROFILE_TABLE}); run 'mlci monitor run' first")
    return MetricRows(
        _read_parquet(profile_path), _read_parquet(folder / DRIFT_TABLE), _read_parquet(folder / PERFORMANCE_TABLE)
    )


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    import pyarrow.parquet as pq  # no stubs; mypy overrides list no pyarrow

    try:
        rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow's errors: ArrowInvalid, OSError, ...
        raise UsageError(f"{path}: not a readable Parquet table ({first_line(exc)}); run 'mlci monitor run'") from None
    return rows


def since(rows: Iterable[Row], cutoff: datetime) -> list[Row]:
    """The rows of windows starting at `cutoff` or later (`--since`)."""
    return [row for row in rows if (start := window_start(row)) is not None and start >= cutoff]


def window_start(row: Row) -> datetime | None:
    window = row.get("window")
    start = window.get("start") if isinstance(window, Mapping) else None
    return utc(start) if isinstance(start, datetime) else None


def number(value: Any) -> float | None:
    """A figure as a float: a struct metric (precision, recall, f1_score) by its weighted
    average, as the signal reads it; NULL and NaN (Databricks writes both) as None."""
    if isinstance(value, Mapping):
        value = value.get("weighted")
    if value is None or isinstance(value, (str, bytes)):
        return None
    try:
        figure = float(value)
    except (TypeError, ValueError):
        return None
    return figure if math.isfinite(figure) else None


# ---------------------------------------------------------------- reading the tables


@dataclass(frozen=True)
class DriftJudgement:
    """One column's BASELINE drift in one window, as monitor.drift judges it."""

    statistic: str
    value: float | None
    threshold: float
    drifted: bool


class MetricView:
    """The served version's closed whole-table windows of the three tables, keyed by start."""

    def __init__(
        self,
        rows: MetricRows,
        *,
        project: Project,
        model_id: str,
        now: datetime,
        features: Mapping[str, str] | None = None,  # column -> numeric | categorical (the baseline's)
    ) -> None:
        self.project = project
        self.model_id = model_id
        self.features = dict(features or {})
        granularity = project.config.monitor.granularity
        now = utc(now)

        def chosen(row: Row) -> bool:
            window = row.get("window")
            if not isinstance(window, Mapping) or not isinstance(window.get("start"), datetime):
                return False
            end = window.get("end")
            closed = not isinstance(end, datetime) or utc(end) <= now
            return (
                closed
                and row.get("slice_key") is None
                and row.get("model_id", model_id) == model_id
                and row.get("granularity", granularity) == granularity
            )

        self.table: dict[datetime, Row] = {}
        self.label: dict[datetime, Row] = {}  # the label column's profile rows (Databricks' tables)
        for row in rows.profile:
            if not chosen(row) or row.get("log_type", "INPUT") != "INPUT":
                continue
            if row.get("column_name") == TABLE_COLUMN:
                self.table[_start(row)] = row
            elif row.get("column_name") == LABEL_COLUMN:
                self.label[_start(row)] = row
        self.performance: dict[datetime, Row] = {_start(row): row for row in rows.performance if chosen(row)}
        self.drift: dict[datetime, dict[str, Row]] = {}
        for row in rows.drift:
            if chosen(row) and row.get("drift_type") == "BASELINE" and isinstance(row.get("column_name"), str):
                self.drift.setdefault(_start(row), {})[row["column_name"]] = row
        self.starts: list[datetime] = sorted(set(self.table) | set(self.performance) | set(self.drift))

    # ----- per window

    def rows(self, start: datetime) -> int:
        for row in (self.table.get(start), self.performance.get(start)):
            count = number(row.get("count")) if row is not None else None
            if count is not None:
                return int(count)
        return 0

    def labelled(self, start: datetime) -> int:
        """The labelled rows: the performance row's label_count, else (Databricks' tables, which
        have none) the label column's non-null count; no label column: none are known labelled."""
        row = self.performance.get(start)
        count = number(row.get("label_count")) if row is not None else None
        if count is not None:
            return int(count)
        label = self.label.get(start)
        total, nulls = (number(label.get("count")), number(label.get("num_nulls"))) if label else (None, None)
        if total is None:
            return 0
        return max(int(total) - int(nulls or 0), 0)

    def coverage(self, start: datetime) -> float | None:
        row = self.performance.get(start)
        if row is not None:
            return number(row.get("label_coverage"))
        rows = self.rows(start)
        return self.labelled(start) / rows if rows else None

    def value(self, signal: str, start: datetime) -> float | None:
        if signal in QUALITY_SIGNALS:
            coverage = self.coverage(start)
            if coverage is not None and coverage < self.project.config.monitor.min_label_coverage:
                return None  # too few of the window's rows are labelled for a realised figure
            row = self.table.get(start)
            return number(row.get(signal)) if row is not None else None
        performance = self.performance.get(start)
        if performance is not None and signal in performance:
            return number(performance.get(signal))
        if signal == "drifted_columns_share":
            return self._drifted_share(start)
        if signal == "prediction_drift":
            judged = self.column_drift("prediction", start)
            return judged.value if judged is not None else None
        return None

    def windows(self, signal: str) -> list[policy.Window]:
        labelled = signal in LABELLED_SIGNALS
        return [
            policy.Window(start, self.labelled(start) if labelled else self.rows(start), self.value(signal, start))
            for start in self.starts
        ]

    # ----- drift

    def monitored_columns(self) -> list[str]:
        """The feature columns drift is judged on: monitor.drift.columns, else the baseline's
        features, else every column the drift rows name but the inference table's own."""
        configured = self.project.config.monitor.drift.columns
        if configured:
            return list(configured)
        if self.features:
            return sorted(self.features)
        target = self.project.config.data.target
        seen = {name for columns in self.drift.values() for name in columns}
        return sorted(
            name
            for name in seen
            if name not in _NOT_FEATURES and name != target and not name.startswith("probability_")
        )

    def kind(self, column: str, row: Row | None) -> str:
        if column == "prediction":  # a classifier's labels are categories even when they are integers
            return "categorical" if self.project.config.train.task == "classification" else "numeric"
        if column in self.features:
            return self.features[column]
        data_type = str(row.get("data_type") or "") if row is not None else ""
        return "numeric" if _NUMERIC_TYPE.search(data_type) else "categorical"

    def judge(self, row: Row, kind: str) -> DriftJudgement:
        """monitor.drift's statistic of a drift row for a column of `kind`, and its verdict:
        above the threshold drifts; chi_squared_test's p-value drifts below it."""
        drift = self.project.config.monitor.drift
        method = drift.numeric if kind == "numeric" else drift.categorical
        raw = row.get(method.method)
        if isinstance(raw, Mapping):
            raw = raw.get("pvalue" if method.method == "chi_squared_test" else "statistic")
        value = number(raw)
        if value is None:
            return DriftJudgement(method.method, None, method.threshold, False)
        below = method.method == "chi_squared_test"
        drifted = value < method.threshold if below else value > method.threshold
        return DriftJudgement(method.method, value, method.threshold, drifted)

    def column_drift(self, column: str, start: datetime) -> DriftJudgement | None:
        row = self.drift.get(start, {}).get(column)
        return self.judge(row, self.kind(column, row)) if row is not None else None

    def _drifted_share(self, start: datetime) -> float | None:
        judged = [self.column_drift(column, start) for column in self.monitored_columns()]
        counted = [j for j in judged if j is not None and j.value is not None]
        return sum(j.drifted for j in counted) / len(counted) if counted else None


def _start(row: Row) -> datetime:
    start = window_start(row)
    assert start is not None  # MetricView keeps only rows with a window start
    return start


# ---------------------------------------------------------------- the rule


@dataclass(frozen=True)
class KeyedRule:
    """A retrain rule entry with the name its signal goes by in the decision and where it is written."""

    key: str  # the signal's name, or the whole rule when another rule bounds the same signal
    rule: SignalRule
    text: str
    config_key: str | None  # monitor.retrain.signals[i]; None for a default rule


def rules_of(project: Project) -> list[KeyedRule]:
    cfg = project.config
    written = cfg.monitor.retrain.signals is not None
    parsed = cfg.monitor.rules(cfg.train.task)
    names = [rule.signal for rule in parsed]
    return [
        KeyedRule(
            rule.signal if names.count(rule.signal) == 1 else str(rule),
            rule,
            str(rule),
            f"monitor.retrain.signals[{index}]" if written else None,
        )
        for index, rule in enumerate(parsed)
    ]


def retrain_rule(project: Project) -> policy.RetrainRule:
    retrain = project.config.monitor.retrain
    return policy.RetrainRule(
        evaluate_last_windows=retrain.evaluate_last_windows,
        min_violating_windows=retrain.min_violating_windows,
        require_latest_window=retrain.require_latest_window,
        min_rows_per_window=retrain.min_rows_per_window,
        cooldown=parse_duration(retrain.cooldown),
    )


def _rule_error(project: Project, keyed: KeyedRule, problem: str) -> ConfigError:
    if keyed.config_key is not None:
        return project.error(keyed.config_key, f"{keyed.config_key}: '{keyed.text}' {problem}")
    where = "monitor.retrain" if project.line_of("monitor.retrain") is not None else "monitor"
    return project.error(
        where,
        f"the default retrain rule '{keyed.text}' {problem}; set monitor.retrain.signals to bounds that apply",
    )


def thresholds(project: Project, baseline: BaselineLike | None, model_id: str) -> dict[str, policy.Threshold]:
    """Each rule's absolute bound, relative ones resolved against the served version's baseline."""
    resolved: dict[str, policy.Threshold] = {}
    for keyed in rules_of(project):
        rule = keyed.rule
        figure: float | None = None
        if rule.relative:
            if rule.signal in NO_BASELINE_FIGURE:
                raise _rule_error(
                    project, keyed, f"is relative, but a baseline has no {rule.signal} figure; give a number as bound"
                )
            if baseline is None:
                raise _rule_error(
                    project,
                    keyed,
                    f"is relative, but {model_id} has no baseline (registered before mlci monitored); "
                    "register a new version or give a number as bound",
                )
            metric = rule.signal.removeprefix("estimated_")
            figure = number(baseline.performance.get(metric))
            if figure is None:
                raise _rule_error(
                    project,
                    keyed,
                    f"is relative, but the baseline of {model_id} (run {baseline.run_id}) has no {metric} figure; "
                    "give a number as bound",
                )
        bound = rule.bound(figure)
        assert bound is not None  # absolute, or resolved above
        resolved[keyed.key] = policy.Threshold(rule.direction, bound)
    return resolved


def _features(baseline: BaselineLike | None) -> dict[str, str]:
    """The baseline's feature kinds (entries hold `kind`, as a dict or as an attribute)."""
    found: dict[str, str] = {}
    for name, entry in (getattr(baseline, "features", None) or {}).items():
        kind = entry.get("kind") if isinstance(entry, Mapping) else getattr(entry, "kind", entry)
        if kind in ("numeric", "categorical"):
            found[str(name)] = str(kind)
    return found


def decide_from_rows(
    profile: Sequence[Mapping[str, Any]],
    drift: Sequence[Mapping[str, Any]],
    performance: Sequence[Mapping[str, Any]],
    *,
    project: Project,
    baseline: BaselineLike | None,
    model_id: str,
    now: datetime,
    last_retrain: datetime | None,
) -> policy.Decision:
    """The retrain decision for `model_id` from the metric tables' rows (mlci's or Databricks')."""
    bounds = thresholds(project, baseline, model_id)
    view = MetricView(
        MetricRows(profile, drift, performance),
        project=project,
        model_id=model_id,
        now=now,
        features=_features(baseline),
    )
    signals = {keyed.key: (bounds[keyed.key], view.windows(keyed.rule.signal)) for keyed in rules_of(project)}
    return policy.decide(
        signals,
        retrain_rule(project),
        now=utc(now),
        last_retrain=utc(last_retrain) if last_retrain is not None else None,
    )


# ---------------------------------------------------------------- the files written


def decision_record(
    project: Project,
    decision: policy.Decision,
    *,
    model_id: str,
    baseline_run_id: str | None,
    now: datetime,
    last_retrain: datetime | None,
) -> dict[str, Any]:
    """decision.json's content (SPEC14 "Decision")."""
    retrain = project.config.monitor.retrain
    rules = rules_of(project)
    texts = {keyed.key: keyed.text for keyed in rules}
    return {
        "mlci_monitor_decision": DECISION_VERSION,
        "decision": decision.decision,
        "reason": decision.reason,
        "retrain": decision.decision == "retrain",
        "model_id": model_id,
        "baseline_run_id": baseline_run_id,
        "now": utc(now).isoformat(),
        "last_retrain": utc(last_retrain).isoformat() if last_retrain is not None else None,
        "cooldown_until": decision.cooldown_until.isoformat() if decision.cooldown_until is not None else None,
        "rule": {
            "signals": [keyed.text for keyed in rules],
            "evaluate_last_windows": retrain.evaluate_last_windows,
            "min_violating_windows": retrain.min_violating_windows,
            "require_latest_window": retrain.require_latest_window,
            "min_rows_per_window": retrain.min_rows_per_window,
            "cooldown": retrain.cooldown,
        },
        "signals": [
            {
                "name": verdict.name,
                "rule": texts.get(verdict.name, verdict.name),
                "threshold": verdict.threshold,
                "fires": verdict.fires,
                "violating": verdict.violating,
                "evidence": verdict.evidence,
                "windows": [
                    {"start": start, "value": value, "verdict": judged} for start, value, judged in verdict.windows
                ],
            }
            for verdict in decision.signals
        ],
    }


def write_decision(
    project: Project,
    decision: policy.Decision,
    *,
    model_id: str,
    baseline_run_id: str | None,
    now: datetime,
    last_retrain: datetime | None,
) -> Path:
    """Write `<monitor.output>/decision.json` and `.mlci/out/monitor.xml`, each whole; the JSON's path."""
    record = decision_record(
        project, decision, model_id=model_id, baseline_run_id=baseline_run_id, now=now, last_retrain=last_retrain
    )
    return write_record(project, record, decision)


def write_record(project: Project, record: Mapping[str, Any], decision: policy.Decision) -> Path:
    """Write a decision_record() as decision.json and the decision's JUnit file; the JSON's path."""
    path = output_dir(project) / DECISION_FILE
    data = (json.dumps(record, indent=2, allow_nan=False) + "\n").encode("utf-8")
    fs.write_atomic(path, data, root=project.root)
    fs.write_atomic(project.out_dir / JUNIT_FILE, junit_xml(decision), root=project.root)
    return path


def _xml(text: str) -> str:
    return _NOT_XML.sub(lambda m: ascii(m.group())[1:-1], text)


def junit_xml(decision: policy.Decision) -> bytes:
    """One test case per signal per window (`<signal> @ <window start>`): a violation is a
    failure, a window that is no evidence (too few rows, no value) is skipped; a signal with
    no closed window at all is one skipped case, so every rule shows up."""
    cases: list[tuple[str, str, str, str | None]] = []  # classname, name, kind, message
    for verdict in decision.signals:
        classname = _xml(f"monitor.{verdict.name}")
        if not verdict.windows:
            cases.append((classname, _xml(verdict.name), "skipped", "no closed window"))
        for start, value, judged in verdict.windows:
            shown = "no value" if value is None else f"{value:.6g}"
            message = {
                "violated": f"{verdict.name} = {shown} violates {verdict.threshold}",
                "ok": None,
                "too few rows": "too few rows in the window to count",
                "no value": "no value in this window",
            }[judged]
            kind = {"violated": "failure", "ok": "ok"}.get(judged, "skipped")
            cases.append((classname, _xml(f"{verdict.name} @ {start}"), kind, message))
    suite = ET.Element(
        "testsuite",
        {
            "name": "mlci.monitor",
            "tests": str(len(cases)),
            "failures": str(sum(kind == "failure" for _, _, kind, _ in cases)),
            "errors": "0",
            "skipped": str(sum(kind == "skipped" for _, _, kind, _ in cases)),
            "time": "0",
        },
    )
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", {"name": "decision", "value": decision.decision})
    ET.SubElement(properties, "property", {"name": "reason", "value": _xml(decision.reason)})
    for classname, name, kind, message in cases:
        case = ET.SubElement(suite, "testcase", {"classname": classname, "name": name, "time": "0"})
        if kind == "failure" and message is not None:
            failure = ET.SubElement(case, "failure", {"message": _xml(message), "type": "retrain-rule"})
            failure.text = _xml(message)
        elif kind == "skipped":
            ET.SubElement(case, "skipped", {"message": _xml(message or "")})
    data: bytes = ET.tostring(suite, encoding="utf-8", xml_declaration=True)
    return data


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


_MARK = {"violated": "❌", "ok": "✅", "too few rows": "too few rows", "no value": "no value"}


def decision_markdown(decision: policy.Decision) -> str:
    """The CI job summary: the decision, why, and one row per signal (windows oldest first)."""
    lines = [
        f"**Decision: {decision.decision}**: {_cell(decision.reason)}",
        "",
        "| signal | bound | windows, oldest first | violating | evidence | fires |",
        "|---|---|---|---:|---:|---|",
    ]
    for verdict in decision.signals:
        shown = "; ".join(
            f"{start[:10]} {'-' if value is None else f'{value:.4g}'} {_MARK[judged]}"
            for start, value, judged in verdict.windows
        )
        lines.append(
            f"| {_cell(verdict.name)} | {_cell(verdict.threshold)} | {_cell(shown) or 'no closed window'} | "
            f"{verdict.violating} | {verdict.evidence} | {'yes' if verdict.fires else 'no'} |"
        )
    if decision.cooldown_until is not None:
        lines += ["", f"Cooldown until {decision.cooldown_until.isoformat()}."]
    return "\n".join(lines)
