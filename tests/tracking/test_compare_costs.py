"""peftsearch compare over a compute budget (tracking.cost_budgets): each method gets the draws
its own mean cost buys, so unequal costs are compared fairly. Synthetic scores and costs, 200
seeded replications per claim; the command end to end is in test_compare.py."""
from __future__ import annotations

import warnings
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from tracking.compare import CompareOptions, budget_label, sentence
from tracking.cost_budgets import _evp_and_se, budget_grid, cost_budget_comparison
from tracking.evp import fractional_weights

REPS, N = 200, 50
OPTIONS = CompareOptions(resamples=200, budget_points=12)  # level 0.95, alpha 0.05 as by default


def _costs(rng, mean: float, n: int = N) -> np.ndarray:
    return mean * rng.uniform(0.8, 1.2, n)  # wall times vary by ±20% around the method's mean


def _replicate(draw, reps: int = REPS, options: CompareOptions = OPTIONS) -> list[tuple]:
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for r in range(reps):
            va, ca, vb, cb = draw(np.random.default_rng(r))
            out.append(cost_budget_comparison(va.round(3), ca, vb.round(3), cb, options, seed=r))
    return out


def _normal(rng, n: int = N, mean: float = 0.70, sd: float = 0.02) -> np.ndarray:
    return rng.normal(mean, sd, n)


def _rate(results, check) -> float:
    return float(np.mean([bool(check(curve, summary)) for curve, summary in results]))


def _no_call(curve, _summary) -> bool:
    return not (curve["a_wins"].any() or curve["b_wins"].any())


def test_unequal_costs_with_equal_expected_best_scores_are_not_called():
    """B costs twice A per trial and each B score is the best of two draws of A's distribution,
    so at any budget b B's b / 2c draws are b / c draws of A's: EVP_A(b) = EVP_B(b) exactly.
    A permutation test would be wrong here (the scores are not exchangeable); this one must call
    nothing in 95% of replications. Measured: 4.5% of replications called something."""
    results = _replicate(lambda g: (_normal(g), _costs(g, 60), np.maximum(_normal(g), _normal(g)), _costs(g, 120)))
    assert _rate(results, _no_call) >= 0.95
    assert np.mean([c["n_a"].iat[-1] / c["n_b"].iat[-1] for c, _ in results]) == pytest.approx(2, rel=0.05)


def test_identical_methods_at_equal_costs_are_not_called():
    results = _replicate(lambda g: (_normal(g), _costs(g, 60), _normal(g), _costs(g, 60)))
    assert _rate(results, _no_call) >= 0.95  # measured: 3.5% called something


def test_a_better_method_at_equal_cost_is_called_better_at_every_budget():
    """A = B + 0.04 (2 sd), same cost: A wins at every budget compared, B nowhere. (At 1.5 sd,
    the margin test_compare.py plants for the permutation test over trials, this test called A at
    every budget in 92% of replications: the bootstrap-t band is the less powerful of the two.)"""
    results = _replicate(lambda g: (_normal(g, mean=0.74), _costs(g, 60), _normal(g), _costs(g, 60)))
    assert _rate(results, lambda c, s: c["a_wins"].all() and not c["b_wins"].any()) >= 0.95
    assert _rate(results, lambda c, s: s["a_wins_from_k"] == c["k"].iat[0] and not s["crossing_k"]) >= 0.95


def test_the_cheaper_of_two_equal_methods_wins_where_its_extra_draws_tell():
    """The same score distribution, B four times A's cost: at every budget A has four times B's
    draws, so A truly has the higher expected best score (most clearly at the smallest budget,
    4 draws against 1; the gap shrinks as both grow). A must be called there, B never, and the
    curves must not be reported to cross."""
    results = _replicate(lambda g: (_normal(g), _costs(g, 60), _normal(g), _costs(g, 240)))
    assert _rate(results, lambda c, s: c["a_wins"].iat[0]) >= 0.95          # measured 97%
    assert _rate(results, lambda c, s: not c["b_wins"].any()) >= 0.95        # measured 100%
    assert _rate(results, lambda c, s: c["n_a"].iat[0] == pytest.approx(4, rel=0.2)) == 1.0
    assert _rate(results, lambda c, s: (c["evp_a"] > c["evp_b"]).all()) >= 0.95


def _true_evp(mean: float, sd: float, m: float) -> float:
    """E[best of m draws] of a normal, by quadrature: independent of the code under test."""
    f = lambda z: z * m * stats.norm.pdf(z) * stats.norm.cdf(z) ** (m - 1)  # noqa: E731
    return mean + sd * integrate.quad(f, -12, 12)[0]


def test_a_cheap_spread_method_overtakes_a_costly_steady_one_and_the_crossing_is_reported():
    """A: N(0.70, 0.03) at 60 s a trial; B: N(0.74, 0.005) at 240 s. B leads at small budgets, A
    (four times the draws, and the spread to use them) at large ones; the curves cross at the
    budget where the two true expected maxima meet (~484 s). N = 400, so the crossing is seen."""
    truth = optimize.brentq(lambda b: _true_evp(0.70, 0.03, b / 60) - _true_evp(0.74, 0.005, b / 240), 240, 3000)
    results = _replicate(lambda g: (_normal(g, 400, 0.70, 0.03), _costs(g, 60, 400),
                                    _normal(g, 400, 0.74, 0.005), _costs(g, 240, 400)), reps=20)
    assert _rate(results, lambda c, s: c["b_wins"].iat[0]) >= 0.95
    assert _rate(results, lambda c, s: c["a_wins"].iat[-1]) >= 0.8           # measured 90%
    reported = [s["crossing_k"].split(";") for _, s in results]
    assert all(len(x) == 1 and x[0] for x in reported)                        # one crossing each
    crossings = [float(x[0].replace(",", "")) for x in reported]
    assert np.median(crossings) == pytest.approx(truth, rel=0.15)
    assert all(truth / 2 < x < truth * 2 for x in crossings)
    curve, summary = next((c, s) for c, s in results if c["a_wins"].iat[-1] and c["b_wins"].iat[0])
    text = sentence(SimpleNamespace(task="rte", a="cheap", b="steady", seeds_a=5, seeds_b=5, aso_eps_a_over_b=0.3,
                                    diff=0.01, p_holm=0.2, significant=True, fairness_findings=0, **summary),
                    replace(OPTIONS, budget="seconds"))
    assert text.startswith(f"cheap beats steady on RTE at every budget ≥ {budget_label(summary['a_wins_from_k'])} seconds")
    where = summary["b_wins_at"].replace(";", ", ")
    budgets = "a budget of" if ("," not in where and "–" not in where) else "budgets of"  # one budget, or several
    assert f"the EVP curves cross at {summary['crossing_k']} seconds; steady beats cheap at {budgets} {where} seconds;" in text
    assert text.endswith(f"one trial costs {budget_label(summary['cost_a'])} vs {budget_label(summary['cost_b'])} "
                         "seconds on average.")


def test_grid_spans_one_draw_each_to_a_quarter_of_the_data_and_refuses_no_overlap():
    ca, cb = np.full(40, 60.0), np.full(40, 240.0)
    b = budget_grid(ca, cb, points=10)
    assert b[0] == pytest.approx(240) and b[-1] == pytest.approx(10 * 60)   # B's one draw; A's N / 4
    assert np.allclose(np.diff(np.log(b)), np.log(b[1] / b[0]))            # log-spaced
    assert budget_grid(ca, cb, max_k=40, points=10)[-1] == pytest.approx(40 * 60)
    assert budget_grid(ca, np.full(40, 1200.0), points=10).tolist() == [1200.0]  # the cap never cuts below one draw
    with pytest.raises(ValueError, match="less than one trial of the other"):
        budget_grid(np.full(3, 10.0), np.full(3, 100.0))


def test_the_jackknife_se_matches_a_full_jackknife_with_costs():
    """The linearised leave-one-out (prefix/suffix sums, dEVP/dm for the cost) against deleting
    each trial and recomputing its mean cost and EVP from scratch."""
    rng = np.random.default_rng(7)
    v, c, b = np.sort(rng.normal(size=30)), rng.uniform(1, 3, 30), np.array([3.0, 9.0, 20.0])
    evp, se = _evp_and_se(v[None], c[None], b, "with-replacement")
    loo = np.array([fractional_weights(29, b / np.delete(c, i).mean()) @ np.delete(v, i) for i in range(30)])
    full = np.sqrt(29 / 30 * ((loo - loo.mean(axis=0)) ** 2).sum(axis=0))
    assert evp[0] == pytest.approx(fractional_weights(30, b / c.mean()) @ v, abs=1e-12)
    assert se[0] == pytest.approx(full, rel=0.02)
