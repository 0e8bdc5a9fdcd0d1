"""The retrain rule (mlci/monitoring/policy.py): direction-aware thresholds, k violating
windows of the last n with the latest among them, a minimum row count, and the cooldown."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlci.monitoring.policy import Decision, RetrainRule, Threshold, Window, decide, evaluate

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
DAY = timedelta(days=1)
RULE = RetrainRule(evaluate_last_windows=5, min_violating_windows=2, min_rows_per_window=100, cooldown=3 * DAY)
AUC = Threshold("min", 0.8)  # must stay at or above
PSI = Threshold("max", 0.2)  # must stay at or below


def windows(*values: float | None, rows: int = 1000) -> list[Window]:
    return [Window(T0 + i * DAY, rows, v) for i, v in enumerate(values)]


def now_after(ws: list[Window]) -> datetime:
    return ws[-1].start + DAY


def test_two_violations_including_the_latest_retrain() -> None:
    auc = windows(0.9, 0.9, 0.75, 0.9, 0.7)
    decision = decide({"roc_auc": (AUC, auc)}, RULE, now=now_after(auc))
    assert decision.decision == "retrain" and decision.fired == ("roc_auc",)
    assert decision.reason == "roc_auc >= 0.8 violated in 2 of the last 5 windows"


def test_the_latest_window_must_violate_when_the_rule_says_so() -> None:
    auc = windows(0.7, 0.7, 0.9)  # degraded, then recovered
    assert decide({"roc_auc": (AUC, auc)}, RULE, now=now_after(auc)).decision == "hold"
    loose = RetrainRule(min_violating_windows=2, min_rows_per_window=100, require_latest_window=False)
    assert decide({"roc_auc": (AUC, auc)}, loose, now=now_after(auc)).decision == "retrain"


def test_direction_decides_what_violates() -> None:
    drift = windows(0.1, 0.3, 0.35)
    assert decide({"psi": (PSI, drift)}, RULE, now=now_after(drift)).decision == "retrain"
    assert decide({"psi": (Threshold("min", 0.2), drift)}, RULE, now=now_after(drift)).decision == "hold"
    # The bound itself is no violation, in either direction.
    assert not Threshold("max", 0.2).violated_by(0.2) and not Threshold("min", 0.8).violated_by(0.8)


def test_only_the_last_n_windows_count() -> None:
    auc = windows(0.1, 0.1, 0.1, 0.9, 0.9, 0.9, 0.9, 0.7)  # old violations out of the window
    verdict = evaluate("roc_auc", auc, AUC, RULE)
    assert verdict.violating == 1 and not verdict.fires and len(verdict.windows) == 5


def test_small_windows_are_no_evidence_either_way() -> None:
    small = windows(0.1, 0.1, 0.1, rows=50)
    decision = decide({"roc_auc": (AUC, small)}, RULE, now=now_after(small))
    assert decision.decision == "insufficient_data"
    assert {verdict for _, _, verdict in decision.signals[0].windows} == {"too few rows"}
    no_labels = windows(None, None, None)
    assert decide({"roc_auc": (AUC, no_labels)}, RULE, now=now_after(no_labels)).decision == "insufficient_data"


def test_newer_windows_without_evidence_neither_count_nor_hide_the_ones_before() -> None:
    """Labels that arrive later than a window: the newest windows have no realised figure yet.
    The rule reads back from the newest window that is evidence, and shows the pending ones."""
    delayed = windows(0.5, 0.5, 0.5, 0.5, None)
    decision = decide({"accuracy": (AUC, delayed)}, RULE, now=now_after(delayed))
    assert decision.decision == "retrain" and decision.signals[0].violating == 4
    assert decision.signals[0].windows[-1][2] == "no value"
    small_latest = [*windows(0.7, 0.7), Window(T0 + 2 * DAY, 10, 0.5)]
    assert decide({"roc_auc": (AUC, small_latest)}, RULE, now=now_after(small_latest)).decision == "retrain"
    # Only evidence counts toward the n windows: five pending windows do not push the four out.
    long_delay = windows(0.5, 0.5, 0.9, 0.5, None, None, None, None, None)
    assert evaluate("accuracy", long_delay, AUC, RULE).violating == 3


def test_inside_the_cooldown_a_version_without_windows_yet_holds() -> None:
    """Right after a retrain the new version has no evidence: hold, not insufficient_data."""
    empty = windows(None, None)
    now = now_after(empty)
    assert decide({"auc": (AUC, empty)}, RULE, now=now, last_retrain=now - DAY).decision == "hold"
    assert decide({"auc": (AUC, empty)}, RULE, now=now, last_retrain=now - 4 * DAY).decision == "insufficient_data"


def test_the_cooldown_holds_a_retrain_once_and_then_lets_it_through() -> None:
    auc = windows(0.9, 0.7, 0.7)
    now = now_after(auc)
    held = decide({"roc_auc": (AUC, auc)}, RULE, now=now, last_retrain=now - DAY)
    assert held.decision == "hold" and held.fired == ("roc_auc",)
    assert held.cooldown_until == now + 2 * DAY
    assert decide({"roc_auc": (AUC, auc)}, RULE, now=now, last_retrain=now - 3 * DAY).decision == "retrain"


def test_any_signal_firing_retrains_and_each_is_reported() -> None:
    auc, drift = windows(0.9, 0.9, 0.9), windows(0.3, 0.1, 0.4)
    decision = decide({"roc_auc": (AUC, auc), "psi": (PSI, drift)}, RULE, now=now_after(auc))
    assert decision.decision == "retrain" and decision.fired == ("psi",)
    assert [v.name for v in decision.signals] == ["psi", "roc_auc"]


@pytest.mark.parametrize(
    "rule",
    [
        {"evaluate_last_windows": 0},
        {"evaluate_last_windows": 3, "min_violating_windows": 4},
        {"min_violating_windows": 0},
        {"min_rows_per_window": -1},
        {"cooldown": -DAY},
    ],
)
def test_a_rule_that_could_never_decide_is_refused(rule: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RetrainRule(**rule)  # type: ignore[arg-type]


figures = st.lists(st.one_of(st.none(), st.floats(0, 1)), min_size=1, max_size=8)


@given(values=figures, rows=st.lists(st.integers(0, 2000), min_size=8, max_size=8))
def test_the_decision_follows_the_rule_for_any_windows(values: list[float | None], rows: list[int]) -> None:
    ws = [Window(T0 + i * DAY, rows[i], v) for i, v in enumerate(values)]
    decision: Decision = decide({"roc_auc": (AUC, ws)}, RULE, now=now_after(ws))
    evidence = [i for i, w in enumerate(ws) if w.rows >= RULE.min_rows_per_window and w.value is not None]
    recent = ws[: evidence[-1] + 1][-RULE.evaluate_last_windows :] if evidence else []
    counted = [w for w in recent if w.rows >= RULE.min_rows_per_window and w.value is not None]
    violated = [w for w in counted if w.value is not None and w.value < AUC.value]
    latest_violated = bool(recent) and recent[-1] in violated
    if len(violated) >= RULE.min_violating_windows and latest_violated:
        assert decision.decision == "retrain"
    elif len(counted) >= RULE.min_violating_windows:
        assert decision.decision == "hold"
    else:
        assert decision.decision == "insufficient_data"
