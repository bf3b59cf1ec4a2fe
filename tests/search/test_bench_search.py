"""`peftsearch bench search`'s arithmetic on known timestamps (the bench itself runs real Ray Tune
searches for minutes; its figures are in the README and issue notes, not asserted)."""
from __future__ import annotations

import math

import pytest

from search.bench_search import interval95, per_trial_cost


def test_a_trials_cost_is_its_span_plus_the_gap_to_the_next_one():
    cost, first = per_trial_cost([{"in": 10.0, "out": 11.0}, {"in": 11.3, "out": 12.5}, {"in": 13.0, "out": 13.8}])
    assert first == 10.0
    assert cost == pytest.approx((1.0 + 1.2 + 0.8) / 3 + (0.3 + 0.5) / 2)


def test_one_trial_has_no_gap():
    assert per_trial_cost([{"in": 5.0, "out": 7.5}]) == (2.5, 5.0)


def test_the_interval_is_the_t_interval_of_the_round_means():
    mean, half = interval95([0.2, 0.4, 0.3, 0.5, 0.1])
    assert mean == pytest.approx(0.3)
    # sd = 0.1581, t(0.975, 4) = 2.776: half-width 0.196
    assert half == pytest.approx(2.7764 * 0.158114 / math.sqrt(5), rel=1e-3)
    assert interval95([1.0])[1] == math.inf
