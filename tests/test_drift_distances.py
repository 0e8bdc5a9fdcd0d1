"""The drift distances Databricks' drift metric tables report (contracts/drift.py), checked
against scipy's own implementations and their defining properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2, chi2_contingency

from mlci.contracts.drift import chi2_sf, chi_squared_test, js_distance, l_infinity_distance, tv_distance

counts = st.lists(st.integers(0, 10_000), min_size=2, max_size=12)


@given(
    pair=counts.flatmap(
        lambda a: st.tuples(st.just(a), st.lists(st.integers(0, 10_000), min_size=len(a), max_size=len(a)))
    )
)
def test_js_matches_scipy_and_the_distances_are_bounded(pair: tuple[list[int], list[int]]) -> None:
    reference, current = pair
    if not sum(reference) or not sum(current):
        return
    expected = jensenshannon([r / sum(reference) for r in reference], [c / sum(current) for c in current], base=2)
    assert js_distance(reference, current) == pytest.approx(float(expected), abs=1e-5)
    for distance in (js_distance, tv_distance, l_infinity_distance):
        assert 0.0 <= distance(reference, current) <= 1.0
        assert distance(reference, reference) == 0.0
    assert l_infinity_distance(reference, current) <= tv_distance(reference, current) + 1e-6


def test_disjoint_samples_are_at_distance_one() -> None:
    assert js_distance([10, 0], [0, 10]) == 1.0
    assert tv_distance([10, 0], [0, 10]) == 1.0
    assert l_infinity_distance([10, 0, 0], [0, 5, 5]) == 1.0


def test_chi_squared_matches_scipy_on_a_contingency_table() -> None:
    reference, current = [120, 80, 40, 0], [90, 100, 60, 0]
    statistic, pvalue = chi_squared_test(reference, current)
    expected = chi2_contingency([reference[:3], current[:3]], correction=False)
    assert statistic == pytest.approx(expected.statistic, abs=1e-5)
    assert pvalue == pytest.approx(expected.pvalue, abs=1e-5)
    # Scaled copies of one distribution cannot be told apart.
    assert chi_squared_test([10, 20, 30], [20, 40, 60]) == (0.0, 1.0)
    assert chi_squared_test([10, 0], [0, 0]) == (0.0, 1.0)
    assert not math.isnan(chi_squared_test([1, 0], [0, 1])[1])


@given(
    statistic=st.floats(0, 5_000, allow_nan=False) | st.floats(0, 5, allow_nan=False),
    degrees=st.integers(1, 400),
)
def test_the_pure_python_chi_squared_tail_matches_scipy(statistic: float, degrees: int) -> None:
    # mlci's data path computes the p-value without scipy; scipy is the reference here only.
    expected = float(chi2.sf(statistic, degrees))
    assert chi2_sf(statistic, degrees) == pytest.approx(expected, rel=1e-9, abs=1e-13)


def test_the_chi_squared_tail_at_its_edges() -> None:
    assert chi2_sf(0.0, 3) == 1.0
    assert chi2_sf(math.inf, 3) == 0.0
    assert math.isnan(chi2_sf(math.nan, 3))
    # Around the mode, where the series and the continued fraction meet (x = a + 1).
    for degrees in (1, 2, 9, 50):
        for statistic in (degrees + 1.999, degrees + 2.0, degrees + 2.001):
            assert chi2_sf(statistic, degrees) == pytest.approx(float(chi2.sf(statistic, degrees)), rel=1e-12)
    with pytest.raises(ValueError):
        chi2_sf(1.0, 0)
