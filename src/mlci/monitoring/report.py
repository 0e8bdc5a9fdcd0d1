"""`mlci monitor report`: one self-contained HTML page of the metric tables and the decision.

Inline SVG drawn here (no script, no stylesheet or font from elsewhere, nothing fetched), so
the file opens from a CI artifact as it is: the decision and why, the retrain signals with
their bounds, realised against estimated performance per window, drift per column per window
against monitor.drift's threshold, label coverage and rows per window against the rule's
minimums. Column names and slice values come from user data: every value on the page goes
through html.escape, in text and in attributes alike.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mlci import fs
from mlci.config import Project
from mlci.monitoring.check import MetricRows, MetricView, output_dir, utc, window_start

REPORT_FILE = "report.html"
REALISED, ESTIMATED, BOUND, BAD, MUTED = "#1f77b4", "#ff7f0e", "#d62728", "#d62728", "#9e9e9e"
_THRESHOLD = re.compile(r"^(>=|<=)\s*(\S+)$")
# (realised, estimated) pairs drawn on one chart; the gap between them is concept drift.
_CLASSIFIER_PAIRS = (
    ("accuracy_score", "estimated_accuracy_score"),
    ("precision", "estimated_precision"),
    ("recall", "estimated_recall"),
    ("f1_score", "estimated_f1_score"),
)
_CLASSIFIER_OTHERS = ("roc_auc", "log_loss", "estimation_gap")
_REGRESSION = ("root_mean_squared_error", "mean_squared_error", "mean_average_error", "r2_score")


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


@dataclass(frozen=True)
class Series:
    label: str
    colour: str
    values: Sequence[float | None]  # one per window, None: no figure
    flagged: Sequence[bool] = ()  # per window: the point violates its bound (drawn larger, in red)


@dataclass(frozen=True)
class Bound:
    label: str
    value: float


def _parse_threshold(text: str) -> float | None:
    match = _THRESHOLD.match(text.strip())
    if not match:
        return None
    try:
        return float(match.group(2))
    except ValueError:
        return None


def chart(
    title: str,
    starts: Sequence[datetime],
    series: Sequence[Series],
    bounds: Sequence[Bound] = (),
    *,
    bars: bool = False,
    width: int = 560,
    height: int = 190,
) -> str:
    """One SVG chart over the windows (oldest left): lines (or bars) and dashed bounds."""
    left, right, top, bottom = 56, 12, 26, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    figures = [v for s in series for v in s.values if v is not None] + [b.value for b in bounds]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">',
        f"<title>{esc(title)}</title>",
        f'<text x="{left}" y="16" class="t">{esc(title)}</text>',
    ]
    if not figures or not starts:
        parts.append(f'<text x="{left}" y="{top + plot_h / 2:.0f}" class="m">no figure in any window</text></svg>')
        return "".join(parts)
    low, high = min(figures), max(figures)
    if bars:
        low = min(low, 0.0)
    if high - low < 1e-12:
        low, high = low - (abs(low) * 0.1 or 0.5), high + (abs(high) * 0.1 or 0.5)
    pad = (high - low) * 0.08
    low, high = (low if bars and low == 0 else low - pad), high + pad
    count = len(starts)
    step = plot_w / count

    def x_at(index: int) -> float:
        return left + step * (index + 0.5)

    def y_at(value: float) -> float:
        return top + plot_h - (value - low) / (high - low) * plot_h

    parts.append(
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#ccc" stroke-width="1"/>'
    )
    for tick in (low, (low + high) / 2, high):
        parts.append(f'<text x="{left - 4}" y="{y_at(tick) + 4:.1f}" class="a" text-anchor="end">{fmt(tick)}</text>')
    shown = sorted({0, count - 1, *range(0, count, max(1, count // 5))})
    for index in shown:
        parts.append(
            f'<text x="{x_at(index):.1f}" y="{height - 12}" class="a" text-anchor="middle">'
            f"{esc(_day(starts[index]))}</text>"
        )
    for bound in bounds:
        y = y_at(bound.value)
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{BOUND}" '
            f'stroke-dasharray="5,4" stroke-width="1.5"/>'
            f'<text x="{left + plot_w - 2}" y="{y - 3:.1f}" class="a" text-anchor="end" fill="{BOUND}">'
            f"{esc(bound.label)} {fmt(bound.value)}</text>"
        )
    for number, one in enumerate(series):
        if bars:
            bar_w = step * 0.8 / len(series)
            for index, value in enumerate(one.values):
                if value is None:
                    continue
                x = x_at(index) - step * 0.4 + bar_w * number
                y0, y1 = y_at(max(value, 0.0)), y_at(min(value, 0.0))
                parts.append(
                    f'<rect x="{x:.1f}" y="{y0:.1f}" width="{bar_w:.1f}" height="{max(y1 - y0, 0.5):.1f}" '
                    f'fill="{one.colour}"><title>{esc(one.label)} {esc(_day(starts[index]))}: {fmt(value)}</title>'
                    "</rect>"
                )
            continue
        run: list[str] = []
        for index, value in enumerate([*one.values, None]):
            if value is not None:
                run.append(f"{x_at(index):.1f},{y_at(value):.1f}")
                continue
            if len(run) > 1:
                parts.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{one.colour}" stroke-width="2"/>')
            run = []
        for index, value in enumerate(one.values):
            if value is None:
                continue
            bad = index < len(one.flagged) and one.flagged[index]
            parts.append(
                f'<circle cx="{x_at(index):.1f}" cy="{y_at(value):.1f}" r="{4 if bad else 3}" '
                f'fill="{BAD if bad else one.colour}"><title>{esc(one.label)} {esc(_day(starts[index]))}: '
                f"{fmt(value)}{' (violates its bound)' if bad else ''}</title></circle>"
            )
    if len(series) > 1 or bounds:
        x = left
        for one in series:
            parts.append(
                f'<rect x="{x}" y="{height - 8}" width="10" height="6" fill="{one.colour}"/>'
                f'<text x="{x + 14}" y="{height - 2}" class="a">{esc(one.label)}</text>'
            )
            x += 22 + 7 * len(one.label)
    parts.append("</svg>")
    return "".join(parts)


def _day(start: datetime) -> str:
    moment = utc(start)
    return moment.strftime("%Y-%m-%d %H:%M" if moment.hour or moment.minute else "%Y-%m-%d")


def served_model(rows: MetricRows, decision: Mapping[str, Any] | None) -> str | None:
    """The model the report is about: the decision's, else the one with the newest window."""
    if decision is not None and isinstance(decision.get("model_id"), str):
        return str(decision["model_id"])
    newest: tuple[datetime, str] | None = None
    for row in [*rows.profile, *rows.performance]:
        start, model_id = window_start(row), row.get("model_id")
        if start is not None and isinstance(model_id, str) and (newest is None or start > newest[0]):
            newest = (start, model_id)
    return newest[1] if newest is not None else None


def _signal_bounds(decision: Mapping[str, Any] | None) -> dict[str, list[Bound]]:
    """Each decision signal's resolved bound, by the signal it reads."""
    found: dict[str, list[Bound]] = {}
    for signal in (decision or {}).get("signals", []):
        value = _parse_threshold(str(signal.get("threshold", "")))
        rule = str(signal.get("rule") or signal.get("name", ""))
        name = rule.split()[0] if rule else str(signal.get("name"))
        if value is not None:
            direction = str(signal.get("threshold", "")).split()[0]
            found.setdefault(name, []).append(Bound(f"bound {direction}", value))
    return found


def _violations(decision: Mapping[str, Any] | None, signal: str, starts: Sequence[datetime]) -> list[bool]:
    violated: set[str] = set()
    for entry in (decision or {}).get("signals", []):
        rule = str(entry.get("rule") or entry.get("name", ""))
        if (rule.split() or [""])[0] == signal:
            violated |= {str(w.get("start")) for w in entry.get("windows", []) if w.get("verdict") == "violated"}
    return [utc(start).isoformat() in violated for start in starts]


def render(project: Project, rows: MetricRows, decision: Mapping[str, Any] | None, *, now: datetime) -> str:
    """The report's HTML."""
    cfg = project.config
    model_id = served_model(rows, decision) or ""
    view = MetricView(rows, project=project, model_id=model_id, now=now)
    starts = view.starts
    bounds = _signal_bounds(decision)
    drawn: set[str] = set()
    body: list[str] = [
        f"<h1>Monitoring report: {esc(cfg.project.name)}</h1>",
        f"<p class='m'>Model <code>{esc(model_id or 'none')}</code>, {len(starts)} closed window(s) of "
        f"{esc(cfg.monitor.granularity)}, generated for {esc(utc(now).isoformat())}.</p>",
        _decision_html(decision),
    ]

    def line(signal: str, label: str, colour: str = REALISED) -> Series:
        drawn.add(signal)
        values = [view.value(signal, start) for start in starts]
        return Series(label, colour, values, _violations(decision, signal, starts))

    def has_values(one: Series) -> bool:
        return any(value is not None for value in one.values)

    # Performance: realised against estimated, with the rule's bounds on either.
    performance: list[str] = []
    if cfg.train.task == "classification":
        for realised, estimated in _CLASSIFIER_PAIRS:
            pair = [line(realised, f"realised {realised}"), line(estimated, f"estimated {realised}", ESTIMATED)]
            if any(has_values(one) for one in pair):
                performance.append(
                    chart(
                        realised,
                        starts,
                        pair,
                        [*bounds.get(realised, []), *bounds.get(estimated, [])],
                    )
                )
        others: Sequence[str] = _CLASSIFIER_OTHERS
    else:
        others = _REGRESSION
    for signal in others:
        one = line(signal, signal)
        if has_values(one) or signal in bounds:
            performance.append(chart(signal, starts, [one], bounds.get(signal, [])))
    body.append("<h2>Performance per window</h2>")
    body.append(
        "".join(performance) or "<p class='m'>No performance figure yet: no labels and no estimate in any window.</p>"
    )

    # Drift per column against monitor.drift's threshold.
    body.append("<h2>Drift against the baseline, per column</h2>")
    drift_charts: list[str] = []
    share = line("drifted_columns_share", "drifted_columns_share")
    if has_values(share) or "drifted_columns_share" in bounds:
        drift_charts.append(
            chart(
                "share of drifted columns",
                starts,
                [share],
                bounds.get("drifted_columns_share", []),
            )
        )
    for column in [*view.monitored_columns(), "prediction"]:
        judged = [view.column_drift(column, start) for start in starts]
        if all(j is None for j in judged):
            continue
        first = next(j for j in judged if j is not None)
        drift_charts.append(
            chart(
                f"{column}: {first.statistic}",
                starts,
                [
                    Series(
                        first.statistic,
                        REALISED,
                        [j.value if j is not None else None for j in judged],
                        [j is not None and j.drifted for j in judged],
                    )
                ],
                [Bound("threshold", first.threshold)],
            )
        )
    drawn.add("prediction_drift")
    body.append("".join(drift_charts) or "<p class='m'>No drift figure in any window.</p>")

    # The data behind each figure: rows and labels per window against the rule's minimums.
    body.append("<h2>Rows and labels per window</h2>")
    rows_series = Series("rows", REALISED, [float(view.rows(start)) for start in starts])
    labelled = Series("labelled rows", ESTIMATED, [float(view.labelled(start)) for start in starts])
    minimum = Bound("min_rows_per_window", float(cfg.monitor.retrain.min_rows_per_window))
    body.append(chart("rows per window", starts, [rows_series, labelled], [minimum], bars=True))
    coverage = line("label_coverage", "label coverage")
    body.append(
        chart(
            "label coverage",
            starts,
            [coverage],
            [Bound("min_label_coverage", cfg.monitor.min_label_coverage), *bounds.get("label_coverage", [])],
            bars=True,
        )
    )
    for signal in sorted(set(bounds) - drawn):  # any other signal the rule reads (contract_failures)
        body.append(chart(signal, starts, [line(signal, signal)], bounds[signal]))
    body.append(_window_table(view, starts))
    return _PAGE.format(title=esc(f"mlci monitor: {cfg.project.name}"), body="\n".join(body))


def _decision_html(decision: Mapping[str, Any] | None) -> str:
    if decision is None:
        return "<div class='d none'><b>No decision yet</b>: run <code>mlci monitor check</code>.</div>"
    verdict = str(decision.get("decision", ""))
    css = {"retrain": "retrain", "hold": "hold"}.get(verdict, "none")
    facts = [
        f"<div class='d {css}'><b>Decision: {esc(verdict)}</b>: {esc(decision.get('reason', ''))}",
        f"<br><span class='m'>now {esc(decision.get('now'))}; last retrain {esc(decision.get('last_retrain'))}"
        + (f"; cooldown until {esc(decision['cooldown_until'])}" if decision.get("cooldown_until") else "")
        + (f"; baseline run {esc(decision['baseline_run_id'])}" if decision.get("baseline_run_id") else "")
        + "</span></div>",
    ]
    rule = decision.get("rule") or {}
    facts.append(
        f"<p class='m'>Retrain when at least {esc(rule.get('min_violating_windows'))} of the last "
        f"{esc(rule.get('evaluate_last_windows'))} windows violate a bound"
        + (", the newest among them" if rule.get("require_latest_window") else "")
        + f"; a window counts with at least {esc(rule.get('min_rows_per_window'))} rows; cooldown "
        f"{esc(rule.get('cooldown'))}.</p>"
    )
    head = "<tr><th>signal</th><th>bound</th><th>windows, oldest first</th><th>violating</th><th>fires</th></tr>"
    cells: list[str] = []
    for signal in decision.get("signals", []):
        windows = " ".join(
            f"<span class='w {esc(str(w.get('verdict', '')).replace(' ', '-'))}' "
            f"title='{esc(w.get('start'))}: {esc(w.get('verdict'))}'>"
            f"{esc(fmt(w.get('value') if isinstance(w.get('value'), (int, float)) else None))}</span>"
            for w in signal.get("windows", [])
        )
        cells.append(
            f"<tr><td>{esc(signal.get('rule') or signal.get('name'))}</td><td>{esc(signal.get('threshold'))}</td>"
            f"<td>{windows or 'no closed window'}</td><td>{esc(signal.get('violating'))} of "
            f"{esc(signal.get('evidence'))} counted</td><td>{'yes' if signal.get('fires') else 'no'}</td></tr>"
        )
    facts.append(f"<table>{head}{''.join(cells)}</table>")
    return "\n".join(facts)


def _window_table(view: MetricView, starts: Sequence[datetime]) -> str:
    head = "<tr><th>window start</th><th>rows</th><th>labelled</th><th>label coverage</th></tr>"
    cells = [
        f"<tr><td>{esc(_day(start))}</td><td>{view.rows(start)}</td><td>{view.labelled(start)}</td>"
        f"<td>{esc(fmt(view.coverage(start)))}</td></tr>"
        for start in starts
    ]
    return f"<h2>Windows</h2><table>{head}{''.join(cells)}</table>"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1180px}}
svg{{margin:4px;background:#fff}} .t{{font-size:13px;font-weight:600}} .a{{font-size:10px;fill:#555}}
.m{{color:#666;font-size:13px}} table{{border-collapse:collapse;font-size:13px;margin:.5em 0}}
td,th{{border:1px solid #ddd;padding:3px 7px;text-align:left}}
.d{{padding:.6em 1em;border-radius:4px;margin:.5em 0}} .retrain{{background:#fde0dc}} .hold{{background:#e3f2e1}}
.none{{background:#eee}} .w{{padding:0 3px}} .violated{{color:#d62728;font-weight:600}}
.too-few-rows,.no-value{{color:#999}}
</style></head><body>
{body}
</body></html>
"""


def write_report(project: Project, rows: MetricRows, decision: Mapping[str, Any] | None, *, now: datetime) -> Path:
    """Write `<monitor.output>/report.html` whole; its path."""
    path = output_dir(project) / REPORT_FILE
    fs.write_atomic(path, render(project, rows, decision, now=now).encode("utf-8"), root=project.root)
    return path
