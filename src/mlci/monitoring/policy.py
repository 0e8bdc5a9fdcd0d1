"""The retrain rule: from per-window monitoring signals to one decision, retrain or hold.

A signal is one figure per closed window (a drift statistic, a realised or estimated metric,
the gap between the two), with the direction that is bad: `max` (the figure must stay at or
below the threshold: drift, error) or `min` (at or above it: accuracy, AUC). The rule looks
at the last `evaluate_last_windows` windows of each signal (counted back from its newest window
that is evidence) and asks for retrain when, for any signal, at least `min_violating_windows`
of them violate it (and, with `require_latest_window`, the newest among them). A window with fewer than
`min_rows_per_window` rows, or no figure, neither violates nor passes: it is not evidence.
When no signal has enough evidence to say either way the decision is `insufficient_data`,
and within `cooldown` of the last retrain it is `hold` whatever the figures say, so one
degradation triggers one retrain, not one per run.

This is the reference the Databricks Lakehouse Monitoring retrain check of the MLOps Stacks
template lacks: it compares the latest window with a hard-coded `>` and no sample-size guard.
Pure Python on small records: `mlci monitor check` (and its tests) call `decide`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

Direction = Literal["min", "max"]
Verdict = Literal["retrain", "hold", "insufficient_data"]


@dataclass(frozen=True)
class Threshold:
    """The bound a signal must keep: `min` (at least) or `max` (at most)."""

    direction: Direction
    value: float

    def violated_by(self, figure: float) -> bool:
        return figure < self.value if self.direction == "min" else figure > self.value

    def __str__(self) -> str:
        return f"{'>=' if self.direction == 'min' else '<='} {self.value:g}"


@dataclass(frozen=True)
class Window:
    """One closed window of one signal: when it starts, how many rows it holds, its figure
    (None: not computable, e.g. a realised metric before any label arrived)."""

    start: datetime
    rows: int
    value: float | None


@dataclass(frozen=True)
class RetrainRule:
    evaluate_last_windows: int = 5
    min_violating_windows: int = 2
    require_latest_window: bool = True
    min_rows_per_window: int = 500
    cooldown: timedelta = timedelta(days=3)

    def __post_init__(self) -> None:
        if self.evaluate_last_windows < 1:
            raise ValueError("evaluate_last_windows must be at least 1")
        if not 1 <= self.min_violating_windows <= self.evaluate_last_windows:
            raise ValueError("min_violating_windows must be between 1 and evaluate_last_windows")
        if self.min_rows_per_window < 0 or self.cooldown < timedelta(0):
            raise ValueError("min_rows_per_window and cooldown cannot be negative")


@dataclass(frozen=True)
class SignalVerdict:
    """What the rule found for one signal, for the decision JSON and the JUnit cases."""

    name: str
    threshold: str
    # (window start ISO 8601, value or None, "violated" | "ok" | "too few rows" | "no value")
    windows: tuple[tuple[str, float | None, str], ...]
    violating: int
    evidence: int  # windows that counted (enough rows and a value)
    fires: bool


@dataclass(frozen=True)
class Decision:
    decision: Verdict
    reason: str
    signals: tuple[SignalVerdict, ...]
    cooldown_until: datetime | None = None
    fired: tuple[str, ...] = field(default=())


def _judge(window: Window, threshold: Threshold, rule: RetrainRule) -> str:
    if window.rows < rule.min_rows_per_window:
        return "too few rows"
    if window.value is None:
        return "no value"
    return "violated" if threshold.violated_by(window.value) else "ok"


def evaluate(name: str, windows: Sequence[Window], threshold: Threshold, rule: RetrainRule) -> SignalVerdict:
    """One signal over its last `rule.evaluate_last_windows` windows (newest last), counted back
    from its newest window that is evidence. Newer windows without evidence (labels that have
    not arrived yet, a day of little traffic) are reported but neither count nor hide what the
    windows before them show: a realised metric whose labels take longer than a window to arrive
    would otherwise never have a violated newest window, and could never fire."""
    ordered = sorted(windows, key=lambda w: w.start)
    judged_all = [(w, _judge(w, threshold, rule)) for w in ordered]
    last_evidence = max((i for i, (_, v) in enumerate(judged_all) if v in ("violated", "ok")), default=-1)
    pending = judged_all[last_evidence + 1 :]  # newer than any evidence: shown, not counted
    judged = judged_all[: last_evidence + 1][-rule.evaluate_last_windows :]
    violating = sum(1 for _, verdict in judged if verdict == "violated")
    evidence = sum(1 for _, verdict in judged if verdict in ("violated", "ok"))
    latest_ok = not rule.require_latest_window or (bool(judged) and judged[-1][1] == "violated")
    return SignalVerdict(
        name=name,
        threshold=str(threshold),
        windows=tuple((w.start.isoformat(), w.value, verdict) for w, verdict in (*judged, *pending)),
        violating=violating,
        evidence=evidence,
        fires=violating >= rule.min_violating_windows and latest_ok,
    )


def decide(
    signals: Mapping[str, tuple[Threshold, Sequence[Window]]],
    rule: RetrainRule,
    *,
    now: datetime,
    last_retrain: datetime | None = None,
) -> Decision:
    """Retrain when any signal fires, outside the cooldown after `last_retrain`; hold when
    none fires and at least one had enough evidence to say so; else insufficient_data."""
    verdicts = tuple(evaluate(name, windows, threshold, rule) for name, (threshold, windows) in sorted(signals.items()))
    fired = tuple(v.name for v in verdicts if v.fires)
    cooling = last_retrain is not None and now < last_retrain + rule.cooldown
    until = last_retrain + rule.cooldown if cooling and last_retrain is not None else None
    if fired and cooling:
        return Decision(
            "hold", f"{', '.join(fired)} fired, but a retrain ran within the cooldown", verdicts, until, fired
        )
    if fired:
        detail = "; ".join(
            f"{v.name} {v.threshold} violated in {v.violating} of the last {len(v.windows)} windows"
            for v in verdicts
            if v.fires
        )
        return Decision("retrain", detail, verdicts, None, fired)
    # Enough evidence to hold: some signal had as many countable windows as it would need to fire.
    if any(v.evidence >= rule.min_violating_windows for v in verdicts):
        return Decision("hold", "no signal violated its threshold often enough", verdicts, until)
    if cooling:
        # Right after a retrain the new version has no windows yet: that is expected, not a
        # monitor that cannot decide (which would fail the scheduled pipeline for days).
        return Decision("hold", "a retrain ran within the cooldown; its version has no evidence yet", verdicts, until)
    return Decision(
        "insufficient_data",
        f"no signal has {rule.min_violating_windows} window(s) of at least {rule.min_rows_per_window} rows "
        "with a value",
        verdicts,
        until,
    )
