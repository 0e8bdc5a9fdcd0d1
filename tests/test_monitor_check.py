"""The retrain rule read off the metric tables (mlci/monitoring/check.py) and the files it
writes: decision.json and the JUnit file, parsed back; the HTML report, parsed and escaped.

The rule itself (k of n, latest window, cooldown arithmetic) is tested in
test_monitor_policy.py; here the question is whether the right figure of the right window
reaches it, from Parquet tables as mlci writes them and from Databricks-shaped rows.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from conftest import MINIMAL_CONFIG
from monitor_fixture_tables import DAY, T0, Tables, days

from mlci.errors import ConfigError
from mlci.monitoring import check, report
from mlci.monitoring.policy import Decision
from mlci.project import project_from_text

NOW = T0 + 5 * DAY + timedelta(hours=1)  # five closed windows T0 .. T0+4d
RULE = """\
monitor:
  retrain:
    signals:
{signals}
    evaluate_last_windows: 5
    min_violating_windows: 2
    require_latest_window: {latest}
    min_rows_per_window: 500
    cooldown: 3d
"""


def project(tmp_path: Path, *signals: str, latest: bool = True, extra: str = "") -> Any:
    lines = "\n".join(f"      - {text!r}" for text in signals or ("accuracy_score >= 0.8",))
    text = MINIMAL_CONFIG + RULE.format(signals=lines, latest=str(latest).lower()) + extra
    (tmp_path / "mlci.yaml").write_text(text)
    return project_from_text(text, tmp_path)


@dataclass(frozen=True)
class Baseline:
    """The fields check.py reads of mlci.monitoring.baseline.Baseline."""

    run_id: str = "run123"
    performance: dict[str, float] = field(default_factory=lambda: {"accuracy_score": 0.9, "roc_auc": 0.95})
    features: dict[str, dict[str, str]] = field(default_factory=dict)


def decide(
    tmp_path: Path,
    tables: Tables,
    proj: Any,
    *,
    baseline: Baseline | None = None,
    now: datetime = NOW,
    last_retrain: datetime | None = None,
) -> Decision:
    """Write the tables as Parquet, read them back as the stage does, decide."""
    rows = check.read_tables(tables.write(tmp_path / ".mlci" / "monitor"))
    return check.decide_from_rows(
        rows.profile,
        rows.drift,
        rows.performance,
        project=proj,
        baseline=baseline,
        model_id=tables.model_id,
        now=now,
        last_retrain=last_retrain,
    )


def accuracy_tables(*values: float | None, **window: Any) -> Tables:
    tables = Tables()
    for start, value in zip(days(T0, len(values)), values, strict=True):
        tables.window(start, accuracy=value, **window)
    return tables


def junit(proj: Any) -> ET.Element:
    return ET.parse(proj.out_dir / check.JUNIT_FILE).getroot()


def written(proj: Any, decision: Decision, baseline_run_id: str | None = None, **kw: Any) -> dict[str, Any]:
    path = check.write_decision(
        proj, decision, model_id="demo@1", baseline_run_id=baseline_run_id, now=NOW, last_retrain=kw.get("last")
    )
    assert path == tmp_decision(proj)
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def tmp_decision(proj: Any) -> Path:
    return proj.root / ".mlci" / "monitor" / "decision.json"


# ---------------------------------------------------------------- hold, retrain, insufficient


def test_steady_windows_hold_and_every_window_is_a_passing_case(tmp_path: Path) -> None:
    proj = project(tmp_path, "accuracy_score >= 0.8", "drifted_columns_share <= 0.5")
    decision = decide(tmp_path, accuracy_tables(0.9, 0.91, 0.9, 0.89, 0.9), proj)
    assert decision.decision == "hold"
    data = written(proj, decision)
    assert data["mlci_monitor_decision"] == 1 and data["decision"] == "hold" and data["retrain"] is False
    assert data["model_id"] == "demo@1" and data["now"] == NOW.isoformat() and data["cooldown_until"] is None
    assert data["rule"]["signals"] == ["accuracy_score >= 0.8", "drifted_columns_share <= 0.5"]
    assert data["rule"]["cooldown"] == "3d" and data["rule"]["min_rows_per_window"] == 500
    accuracy = next(s for s in data["signals"] if s["name"] == "accuracy_score")
    assert [w["value"] for w in accuracy["windows"]] == [0.9, 0.91, 0.9, 0.89, 0.9]
    assert accuracy["threshold"] == ">= 0.8" and accuracy["evidence"] == 5 and not accuracy["fires"]
    suite = junit(proj)
    cases = suite.findall("testcase")
    assert len(cases) == 10 and suite.get("tests") == "10" and suite.get("failures") == "0"
    assert cases[0].get("name") == f"accuracy_score @ {T0.isoformat()}"
    assert not suite.findall(".//failure") and not suite.findall(".//skipped")


def test_degraded_windows_retrain_and_the_violations_are_the_failing_cases(tmp_path: Path) -> None:
    proj = project(tmp_path, "accuracy_score >= 0.8", "drifted_columns_share <= 0.5")
    decision = decide(tmp_path, accuracy_tables(0.9, 0.9, 0.9, 0.7, 0.6), proj)
    assert decision.decision == "retrain" and decision.fired == ("accuracy_score",)
    data = written(proj, decision)
    assert data["retrain"] is True and "accuracy_score >= 0.8 violated in 2 of the last 5" in data["reason"]
    suite = junit(proj)
    failing = [case.get("name") for case in suite.findall("testcase") if case.find("failure") is not None]
    assert failing == [
        f"accuracy_score @ {(T0 + 3 * DAY).isoformat()}",
        f"accuracy_score @ {(T0 + 4 * DAY).isoformat()}",
    ]
    assert suite.get("failures") == "2"
    message = suite.find("testcase/failure")
    assert message is not None and message.get("message") == "accuracy_score = 0.7 violates >= 0.8"
    assert suite.find("properties/property[@name='decision']").get("value") == "retrain"  # type: ignore[union-attr]


def test_small_windows_give_insufficient_data_and_skipped_cases(tmp_path: Path) -> None:
    proj = project(tmp_path, "accuracy_score >= 0.8")
    decision = decide(tmp_path, accuracy_tables(0.5, 0.5, 0.5, rows=100), proj)
    assert decision.decision == "insufficient_data"
    written(proj, decision)
    suite = junit(proj)
    assert suite.get("skipped") == "3" and suite.get("failures") == "0"
    assert {s.get("message") for s in suite.iter("skipped")} == {"too few rows in the window to count"}


def test_a_rule_without_any_window_is_one_skipped_case(tmp_path: Path) -> None:
    proj = project(tmp_path, "accuracy_score >= 0.8")
    rows = check.MetricRows([], [], [])
    decision = check.decide_from_rows(
        rows.profile,
        rows.drift,
        rows.performance,
        project=proj,
        baseline=None,
        model_id="demo@1",
        now=NOW,
        last_retrain=None,
    )
    assert decision.decision == "insufficient_data"
    written(proj, decision)
    (case,) = junit(proj).findall("testcase")
    assert case.get("name") == "accuracy_score" and case.find("skipped").get("message") == "no closed window"  # type: ignore[union-attr]


# ---------------------------------------------------------------- which rows and which figure


def test_k_of_n_and_the_latest_window_are_read_in_window_order(tmp_path: Path) -> None:
    # Rows written newest first: the check orders windows by start, not by row order.
    tables = accuracy_tables(0.7, 0.7, 0.9, 0.9, 0.9)
    tables.profile.reverse()
    tables.performance.reverse()
    assert decide(tmp_path, tables, project(tmp_path)).decision == "hold"  # violations not in the latest
    loose = project(tmp_path, "accuracy_score >= 0.8", latest=False)
    assert decide(tmp_path, tables, loose).decision == "retrain"
    one = accuracy_tables(0.9, 0.9, 0.9, 0.9, 0.6)  # one of the last five: k = 2 not met
    assert decide(tmp_path, one, project(tmp_path)).decision == "hold"


def test_realised_figures_count_their_labelled_rows_not_the_window_rows(tmp_path: Path) -> None:
    proj = project(tmp_path, "accuracy_score >= 0.8", "drifted_columns_share <= 0.5")
    # 1000 rows a window but 400 labels: accuracy is no evidence; drift on all rows is.
    tables = accuracy_tables(0.5, 0.5, 0.5, labels=400, share=0.9)
    decision = decide(tmp_path, tables, proj)
    accuracy, share = decision.signals
    assert {verdict for _, _, verdict in accuracy.windows} == {"too few rows"}
    assert share.name == "drifted_columns_share" and share.violating == 3
    assert decision.decision == "retrain" and decision.fired == ("drifted_columns_share",)


def test_the_estimation_gap_also_counts_labelled_rows(tmp_path: Path) -> None:
    proj = project(tmp_path, "estimation_gap <= 0.05")
    few = decide(tmp_path, accuracy_tables(0.9, 0.9, labels=499, gap=0.2), proj)
    assert few.decision == "insufficient_data"
    enough = decide(tmp_path, accuracy_tables(0.9, 0.9, labels=500, gap=0.2), proj)
    assert enough.decision == "retrain"


def test_realised_figures_wait_for_the_label_coverage(tmp_path: Path) -> None:
    # 2000 rows, 600 labelled: enough rows (500) but coverage 0.3 > 0.25 only with the config lowered.
    strict = project(tmp_path, "accuracy_score >= 0.8", extra="  min_label_coverage: 0.5\n")
    tables = accuracy_tables(0.5, 0.5, 0.5, rows=2000, labels=600)
    decision = decide(tmp_path, tables, strict)
    assert {verdict for _, _, verdict in decision.signals[0].windows} == {"no value"}
    lenient = project(tmp_path, "accuracy_score >= 0.8", extra="  min_label_coverage: 0.25\n")
    assert decide(tmp_path, tables, lenient).decision == "retrain"


def test_other_models_slices_open_windows_and_consecutive_drift_are_not_read(tmp_path: Path) -> None:
    proj = project(tmp_path, "accuracy_score >= 0.8", "drifted_columns_share <= 0.5")
    tables = accuracy_tables(0.9, 0.9, 0.9, 0.9)
    for start in days(T0, 4):
        tables.window(start, accuracy=0.1, model_id="demo@0", share=1.0)  # the previous version
    tables.window(T0 + 5 * DAY, accuracy=0.1, share=1.0)  # still open at NOW: ends after it
    tables.window(T0 + 4 * DAY, accuracy=0.1, share=1.0)  # the fifth closed window, bad
    sliced = dict(tables.profile[0], slice_key="country", slice_value="<b>x</b>", accuracy_score=0.0)
    tables.profile.append(sliced)
    decision = decide(tmp_path, tables, proj)
    accuracy = decision.signals[0]
    assert [value for _, value, _ in accuracy.windows] == [0.9, 0.9, 0.9, 0.9, 0.1]
    assert decision.decision == "hold"  # one bad closed window of demo@1 only


def test_precision_and_recall_read_the_weighted_average(tmp_path: Path) -> None:
    # (f1_score reads the same way, but config's rule pattern takes no digit in a signal name yet.)
    proj = project(tmp_path, "precision >= 0.8", "recall >= 0.8")
    tables = Tables()
    for start in days(T0, 3):
        tables.window(start, accuracy=0.7, recall=0.95)  # precision follows accuracy in the fixture
    decision = decide(tmp_path, tables, proj)
    precision, recall = decision.signals
    assert precision.name == "precision" and [v for _, v, _ in precision.windows] == [0.7, 0.7, 0.7]
    assert precision.fires
    assert [v for _, v, _ in recall.windows] == [0.95, 0.95, 0.95] and not recall.fires


# ---------------------------------------------------------------- bounds relative to the baseline


def test_relative_bounds_take_the_served_versions_baseline_figure(tmp_path: Path) -> None:
    proj = project(tmp_path, "accuracy_score >= baseline - 0.05", "estimated_accuracy_score >= baseline * 0.9")
    tables = accuracy_tables(0.86, 0.84, 0.84, estimated=0.82)
    decision = decide(tmp_path, tables, proj, baseline=Baseline())
    accuracy, estimated = decision.signals
    assert accuracy.threshold == ">= 0.85" and accuracy.violating == 2 and accuracy.fires
    # estimated_* is bounded by the same metric's holdout figure: 0.9 * 0.9 = 0.81
    assert estimated.threshold == ">= 0.81" and estimated.violating == 0
    data = written(proj, decision, baseline_run_id="run123")
    assert data["baseline_run_id"] == "run123"
    assert data["signals"][0]["rule"] == "accuracy_score >= baseline - 0.05"


def test_a_relative_bound_without_a_baseline_is_an_error_at_its_line(tmp_path: Path) -> None:
    proj = project(tmp_path, "drifted_columns_share <= 0.5", "accuracy_score >= baseline - 0.05")
    line = (tmp_path / "mlci.yaml").read_text().splitlines().index("      - 'accuracy_score >= baseline - 0.05'") + 1
    with pytest.raises(ConfigError) as caught:
        decide(tmp_path, accuracy_tables(0.9), proj, baseline=None)
    message = caught.value.message
    assert message.startswith(f"{tmp_path / 'mlci.yaml'}:{line}: monitor.retrain.signals[1]: ")
    assert "demo@1 has no baseline" in message and "\n" not in message
    with pytest.raises(ConfigError, match="has no roc_auc figure"):
        decide(
            tmp_path, accuracy_tables(0.9), project(tmp_path, "roc_auc >= baseline"), baseline=Baseline(performance={})
        )


def test_a_relative_bound_on_a_signal_no_baseline_has_is_an_error(tmp_path: Path) -> None:
    proj = project(tmp_path, "drifted_columns_share <= baseline + 0.1")
    with pytest.raises(
        ConfigError, match=r"monitor\.retrain\.signals\[0\]: .* a baseline has no drifted_columns_share"
    ):
        decide(tmp_path, accuracy_tables(0.9), proj, baseline=Baseline())


def test_the_default_rules_need_a_baseline_and_say_so(tmp_path: Path) -> None:
    text = MINIMAL_CONFIG + "monitor:\n  min_label_coverage: 0.3\n"
    (tmp_path / "mlci.yaml").write_text(text)
    proj = project_from_text(text, tmp_path)
    with pytest.raises(ConfigError) as caught:
        decide(tmp_path, accuracy_tables(0.9), proj, baseline=None)
    line = text.splitlines().index("monitor:") + 1
    assert caught.value.message.startswith(f"{tmp_path / 'mlci.yaml'}:{line}: the default retrain rule ")
    assert "set monitor.retrain.signals" in caught.value.message
    assert decide(tmp_path, accuracy_tables(0.9), proj, baseline=Baseline()).decision == "insufficient_data"


# ---------------------------------------------------------------- cooldown


def test_a_retrain_within_the_cooldown_holds_and_says_until_when(tmp_path: Path) -> None:
    proj = project(tmp_path, "accuracy_score >= 0.8")
    tables = accuracy_tables(0.9, 0.9, 0.9, 0.6, 0.6)
    last = NOW - 2 * DAY
    decision = decide(tmp_path, tables, proj, last_retrain=last)
    assert decision.decision == "hold" and "cooldown" in decision.reason
    data = written(proj, decision, last=last)
    assert data["last_retrain"] == last.isoformat() and data["cooldown_until"] == (last + 3 * DAY).isoformat()
    assert decide(tmp_path, tables, proj, last_retrain=NOW - 4 * DAY).decision == "retrain"


# ---------------------------------------------------------------- Databricks-shaped rows


def databricks_rows(
    drifts: list[float], *, nan_accuracy: bool = False, labelled: int = 600
) -> tuple[list[dict[str, Any]], ...]:
    """Rows as Spark's Row.asDict(True) gives Lakehouse Monitoring's tables: naive UTC
    timestamps, NaN for missing figures, no performance table, drift rows for every column."""
    profile, drift = [], []
    for index, value in enumerate(drifts):
        start = datetime(2026, 11, 1) + index * DAY  # naive, as Spark returns TIMESTAMP
        window = {"start": start, "end": start + DAY}
        common = {"window": window, "granularity": "1 day", "model_id": "demo@1", "slice_key": None}
        accuracy = math.nan if nan_accuracy else 0.9
        profile.append(
            {**common, "column_name": ":table", "log_type": "INPUT", "count": 800, "accuracy_score": accuracy}
        )
        # The label column's profile: how many of the window's 800 rows are labelled.
        profile.append(
            {**common, "column_name": "label", "log_type": "INPUT", "count": 800, "num_nulls": 800 - labelled}
        )
        for column, data_type, stat in (("x1", "double", value), ("x2", "bigint", 0.01), ("city", "string", 0.0)):
            drift.append(
                {
                    **common,
                    "column_name": column,
                    "drift_type": "BASELINE",
                    "data_type": data_type,
                    "population_stability_index": stat,
                    "js_distance": 0.5 if column == "city" and value > 0.2 else 0.01,
                }
            )
        drift.append(
            {
                **common,
                "column_name": "prediction",
                "drift_type": "BASELINE",
                "data_type": "bigint",
                "js_distance": 0.3,
                "population_stability_index": 9.0,
            }
        )
        drift.append({**common, "column_name": "x1", "drift_type": "CONSECUTIVE", "population_stability_index": 5.0})
    return profile, drift, []


def test_databricks_tables_give_drift_signals_from_the_drift_rows(tmp_path: Path) -> None:
    proj = project(tmp_path, "drifted_columns_share <= 0.5", "prediction_drift <= 0.2", "accuracy_score >= 0.8")
    profile, drift, performance = databricks_rows([0.01, 0.01, 0.5, 0.6])
    decision = check.decide_from_rows(
        profile, drift, performance, project=proj, baseline=None, model_id="demo@1", now=NOW, last_retrain=None
    )
    share, prediction, accuracy = (
        next(v for v in decision.signals if v.name == n)
        for n in ("drifted_columns_share", "prediction_drift", "accuracy_score")
    )
    # x1 (numeric: PSI 0.5 > 0.2) and city (categorical: JS 0.5 > 0.1) of x1, x2, city drift.
    assert [v for _, v, _ in share.windows] == [0.0, 0.0, pytest.approx(2 / 3), pytest.approx(2 / 3)]
    assert share.fires and decision.decision == "retrain"
    # A classifier's prediction is categorical: its JS distance, not its PSI.
    assert [v for _, v, _ in prediction.windows] == [0.3] * 4 and prediction.fires
    assert [v for _, v, _ in accuracy.windows] == [0.9] * 4  # 600 labelled: the label column's non-nulls
    assert accuracy.windows[0][0] == "2026-11-01T00:00:00+00:00"  # naive timestamps taken as UTC


def test_databricks_realised_metrics_need_their_labels_too(tmp_path: Path) -> None:
    """No performance table on Databricks: a window of 800 requests with 3 labels is no
    evidence for a realised metric (the guard MLOps Stacks' retrain check lacks)."""
    proj = project(tmp_path, "accuracy_score >= 0.95")
    profile, drift, performance = databricks_rows([0.0, 0.0, 0.0], labelled=3)
    decision = check.decide_from_rows(
        profile, drift, performance, project=proj, baseline=None, model_id="demo@1", now=NOW, last_retrain=None
    )
    assert decision.decision == "insufficient_data"
    assert {verdict for _, _, verdict in decision.signals[0].windows} == {"too few rows"}  # 3 labelled rows


def test_databricks_nan_figures_are_no_value(tmp_path: Path) -> None:
    proj = project(tmp_path, "accuracy_score >= 0.8")
    profile, drift, performance = databricks_rows([0.0, 0.0, 0.0], nan_accuracy=True)
    decision = check.decide_from_rows(
        profile, drift, performance, project=proj, baseline=None, model_id="demo@1", now=NOW, last_retrain=None
    )
    assert decision.decision == "insufficient_data"
    assert {verdict for _, _, verdict in decision.signals[0].windows} == {"no value"}


def test_the_baselines_feature_kinds_and_drift_columns_choose_the_statistic(tmp_path: Path) -> None:
    # city declared numeric by the baseline: judged by PSI (0.0), so only x1 drifts; x2 unmonitored.
    proj = project(tmp_path, "drifted_columns_share <= 0.4", extra="  drift:\n    columns: [x1, city]\n")
    profile, drift, performance = databricks_rows([0.5, 0.5])
    features = {"x1": {"kind": "numeric"}, "city": {"kind": "numeric"}}
    decision = check.decide_from_rows(
        profile,
        drift,
        performance,
        project=proj,
        baseline=Baseline(features=features),
        model_id="demo@1",
        now=NOW,
        last_retrain=None,
    )
    assert [v for _, v, _ in decision.signals[0].windows] == [0.5, 0.5]


# ---------------------------------------------------------------- small parsers and the summary


def test_times_and_durations_parse_or_say_what_is_expected() -> None:
    assert check.parse_time("2026-11-30T06:00:00Z") == datetime(2026, 11, 30, 6, tzinfo=timezone.utc)
    assert check.parse_time("2026-11-30") == datetime(2026, 11, 30, tzinfo=timezone.utc)
    assert check.parse_time("2026-11-30T08:00:00+02:00") == datetime(2026, 11, 30, 6, tzinfo=timezone.utc)
    assert check.parse_duration("30d") == 30 * DAY and check.parse_duration("12h") == timedelta(hours=12)
    assert check.parse_duration("2w") == 14 * DAY
    with pytest.raises(ValueError, match="ISO 8601"):
        check.parse_time("yesterday")
    with pytest.raises(ValueError, match="like 30d"):
        check.parse_duration("30 days")


def test_the_summary_table_has_one_row_per_signal(tmp_path: Path) -> None:
    proj = project(tmp_path, "accuracy_score >= 0.8", "drifted_columns_share <= 0.5")
    decision = decide(tmp_path, accuracy_tables(0.9, 0.9, 0.9, 0.7, 0.6), proj)
    markdown = check.decision_markdown(decision)
    lines = markdown.splitlines()
    assert lines[0].startswith("**Decision: retrain**")
    rows = [line for line in lines if line.startswith("| accuracy_score") or line.startswith("| drifted")]
    assert len(rows) == 2 and "2026-11-05 0.6 ❌" in rows[0] and rows[0].endswith("| 2 | 5 | yes |")


def test_unreadable_or_missing_tables_are_one_line_errors(tmp_path: Path) -> None:
    from mlci.errors import UsageError

    with pytest.raises(UsageError, match="run 'mlci monitor run' first"):
        check.read_tables(tmp_path)
    (tmp_path / check.PROFILE_TABLE).write_bytes(b"not parquet")
    with pytest.raises(UsageError) as caught:
        check.read_tables(tmp_path)
    assert "not a readable Parquet table" in caught.value.message and "\n" not in caught.value.message


# ---------------------------------------------------------------- the report


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)


EVIL = '<script>alert("x")</script>&<img src=x onerror=alert(1)>'


def test_the_report_draws_every_part_and_escapes_user_data(tmp_path: Path) -> None:
    proj = project(tmp_path, "accuracy_score >= 0.8", "drifted_columns_share <= 0.5", "estimation_gap <= 0.05")
    tables = Tables()
    for index, start in enumerate(days(T0, 5)):
        tables.window(
            start,
            accuracy=0.9 - 0.05 * index,
            estimated=0.9,
            gap=0.05 * index,
            share=0.5,
            psi={"x1": 0.1 * index, EVIL: 0.3},
        )
    rows = check.read_tables(tables.write(tmp_path / ".mlci" / "monitor"))
    decision = check.decide_from_rows(
        rows.profile,
        rows.drift,
        rows.performance,
        project=proj,
        baseline=None,
        model_id="demo@1",
        now=NOW,
        last_retrain=None,
    )
    check.write_decision(proj, decision, model_id="demo@1", baseline_run_id=None, now=NOW, last_retrain=None)
    record = json.loads(tmp_decision(proj).read_text())
    path = report.write_report(proj, rows, record, now=NOW)
    assert path == tmp_path / ".mlci" / "monitor" / "report.html"
    html = path.read_text()
    page = Page()
    page.feed(html)
    page.close()
    text = "".join(page.text)
    # Self-contained: no script, no fetched resource of any kind.
    assert "script" not in page.tags and "img" not in page.tags and "link" not in page.tags
    assert not [name for name, _ in page.attributes if name in ("src", "href") or name.startswith("on")]
    assert "<script" not in html and "onerror=alert" not in html.replace("onerror=alert(1)&gt;", "")
    # The column name is shown, as text, exactly.
    assert f"{EVIL}: population_stability_index" in text
    # One chart per part: performance pair, gap, drift share, two columns, prediction?, rows, coverage.
    titles = [t for t in page.text if t.strip()]
    assert "Decision: retrain" in text and decision.reason in text
    for wanted in (
        "accuracy_score",
        "estimation_gap",
        "share of drifted columns",
        "x1: population_stability_index",
        "rows per window",
        "label coverage",
    ):
        assert wanted in titles, wanted
    assert page.tags.count("svg") >= 7
    assert "bound >= 0.8" in text and "min_rows_per_window" in text and "threshold" in text
    # The violating windows of accuracy are marked (the last two: 0.75 and 0.7 < 0.8).
    assert text.count("(violates its bound)") >= 2


def test_the_report_without_a_decision_still_draws_the_tables(tmp_path: Path) -> None:
    proj = project(tmp_path)
    rows = check.read_tables(accuracy_tables(0.9, 0.8).write(tmp_path / ".mlci" / "monitor"))
    page = Page()
    page.feed(report.render(proj, rows, None, now=NOW))
    text = "".join(page.text)
    assert "No decision yet" in text and "demo@1" in text and page.tags.count("svg") >= 3
