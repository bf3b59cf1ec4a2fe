"""ASO and the seed-level tests against deepsig (the reference implementation, run here on the same
inputs), hand-checkable cases, and Holm's correction against its definition."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from tracking.significance import aso, holm, median_test, seeds_for_power

CASES = [  # (scores A, scores B): fixed inputs, rounded like accuracies
    ([0.712, 0.705, 0.731, 0.698, 0.720], [0.690, 0.701, 0.684, 0.710, 0.695]),
    ([0.61, 0.64, 0.58], [0.63, 0.60, 0.62]),
    ([0.80, 0.82, 0.79, 0.85, 0.81, 0.83, 0.80], [0.78, 0.84, 0.77, 0.80]),
    ([0.5] * 4, [0.5] * 4),
]


@pytest.mark.parametrize("a, b", CASES)
@pytest.mark.parametrize("num_comparisons", [1, 6])
def test_aso_matches_deepsig(a, b, num_comparisons):
    deepsig = pytest.importorskip("deepsig")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deepsig warns on a zero Wasserstein distance (the tied case)
        theirs = deepsig.aso(np.array(a), np.array(b), seed=11, num_bootstrap_iterations=300,
                             num_comparisons=num_comparisons, show_progress=False)
    ours = aso(a, b, seed=11, bootstrap=300, num_comparisons=num_comparisons)
    assert ours == pytest.approx(theirs, abs=1e-6)


def test_aso_both_ways_on_a_clear_winner():
    a, b = [0.90, 0.91, 0.92, 0.93, 0.94], [0.60, 0.61, 0.62, 0.63, 0.64]
    assert aso(a, b, seed=0, bootstrap=200) == 0.0
    assert aso(b, a, seed=0, bootstrap=200) > 0.99


def test_median_test_exact_small_case():
    """3 vs 3: the p-value is the share of the C(6,3) = 20 relabellings, enumerated here by hand,
    whose |median difference| is at least the observed one."""
    from itertools import combinations

    a, b = [0.9, 0.8, 0.85], [0.1, 0.2, 0.15]
    pooled = a + b
    diffs = [abs(np.median([pooled[i] for i in idx]) - np.median([pooled[i] for i in range(6) if i not in idx]))
             for idx in combinations(range(6), 3)]
    t = median_test(a, b, seed=0)
    assert t.exact and t.diff == pytest.approx(0.7)
    assert t.p_value == pytest.approx(np.mean(np.array(diffs) >= 0.7 - 1e-12)) and t.p_value < 0.5
    assert t.ci_low <= t.diff <= t.ci_high


def test_median_test_monte_carlo_is_seeded_and_close_to_exact():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.7, 0.02, 9), rng.normal(0.68, 0.02, 9)
    exact = median_test(a, b, seed=0)  # C(18, 9) = 48,620 > 20,000: Monte Carlo
    assert not exact.exact and median_test(a, b, seed=0) == exact
    full = median_test(a, b, permutations=50_000, seed=0)
    assert full.exact and exact.p_value == pytest.approx(full.p_value, abs=0.02)


def test_holm_against_its_definition():
    p = np.array([0.01, 0.04, 0.03, 0.5])
    # sorted 0.01, 0.03, 0.04, 0.5 -> 4*0.01, max(0.04, 3*0.03), max(0.09, 2*0.04), max(0.09, 0.5)
    assert holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def test_power_grows_with_the_effect_and_is_none_without_one():
    base = np.array([0.70, 0.71, 0.69, 0.705, 0.695])
    big, _ = seeds_for_power(base + 0.03, base, alpha=0.05, seed=0)
    small, _ = seeds_for_power(base + 0.005, base, alpha=0.05, seed=0)
    none, power = seeds_for_power(base, base, alpha=0.05, seed=0)
    assert big is not None and (small is None or small > big)
    assert none is None and max(power.values()) < 0.2
    # with 3 seeds per method an exact two-sided permutation test cannot reach p <= 0.05 at all
    assert math.comb(6, 3) == 20 and median_test(base[:3] + 1, base[:3]).p_value >= 0.1
