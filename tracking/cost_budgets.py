"""Comparing two methods over a compute budget (seconds or GPU-hours) instead of a count of trials.

A sample's cost is what ``peftsearch evp --budget`` uses (tracking.analysis.samples): one trial's
wall time (its run's end - start), or the sum over an assignment's seeds; GPU-hours are those
seconds × the trial's GPUs / 3600. At a budget b an arm whose samples cost c̄ on average (the mean
over its runs: Dodge et al. 2019 scale their x axis by the average time per trial the same way) gets
m = b / c̄ draws, a real number: its EVP there is tracking.evp.fractional_weights (with replacement,
F^m for real m; without, linear between floor and ceil).

Why not the permutation test of tracking.compare.budget_comparison: with unequal costs the two arms
are not exchangeable. Two methods with the same score distribution do *not* have the same expected
best score at a budget b, since the cheaper one gets more draws and truly is better there. The null
at each b is EVP_A(b) = EVP_B(b), so the test is a bootstrap one:

- each arm's samples (score and cost together) are resampled independently, ``resamples`` times;
  each resample has its own mean cost, so its own m(b), and its own EVP curve;
- P(A > B) at b is the share of resamples with EVP*_A(b) > EVP*_B(b);
- a sup-t simultaneous band (Montiel Olea & Plagborg-Møller 2019), bootstrap-t: each resample's
  differences d*(b) = EVP*_A(b) - EVP*_B(b), re-centred at the observed d(b), are studentised by
  that resample's own jackknife se (_evp_and_se), and the critical value q is the 1 - alpha
  quantile over resamples of max_b |d*(b) - d(b)| / se*(b). d(b) ± q se(b) covers the true
  difference at every budget at once, so A (B) is called where d(b) / se(b) > q (< -q) and P(A >
  B) >= level (<= 1 - level): a false call anywhere on the grid has probability about alpha.
  Studentising by the bootstrap sd instead is not calibrated: it called a winner in 10.5% and
  6.5% of the replications of the two nulls in tests/tracking/test_compare_costs.py (alpha =
  0.05, N = 50; this test: 4.5% and 3.5%), since the bootstrap sd of an EVP is too small at large k.

The grid: ``points`` log-spaced budgets, from the larger of the two mean costs (each arm has at
least one draw) up to where one arm has ``max_k`` draws, by default a quarter of its N (never below
the first budget, never past its N). The cap is for power, not validity: past N / 4 an EVP rests on
the top few scores, its pivot is heavy-tailed, and that raises the one critical value for every
budget. At N = 50 (12 budgets, 200 resamples) a 1.5-sd shift was called at every budget in 33% of
replications with the grid to N and 92% with the cap; both called a null in 4.5%.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from tracking.evp import BLOCK_ELEMENTS, fractional_weights

GRID_POINTS = 40


def budget_grid(ca: np.ndarray, cb: np.ndarray, *, max_k: int | None = None, points: int = GRID_POINTS) -> np.ndarray:
    """Log-spaced budgets at which both arms have at least one draw and at most max_k (default
    N / 4) of their N."""
    lo = max(ca.mean(), cb.mean())
    if not (np.isfinite(lo) and lo > 0):
        raise ValueError(f"budget: needs a positive cost per trial (got a mean of {lo})")
    full = min(ca.sum(), cb.sum())
    if full < lo:
        raise ValueError(f"budget: one side's trials cost {full:.4g} in all, less than one trial of the other "
                         f"({lo:.4g}); no budget lets both be compared")
    draws = lambda c: min(c.size, max_k or max(1, c.size // 4)) * c.mean()  # noqa: E731
    hi = min(full, max(lo, min(draws(ca), draws(cb))))
    return np.unique(np.geomspace(lo, hi, points)) if hi > lo else np.array([lo])


def _weights(n: int, m: np.ndarray, estimator) -> np.ndarray:
    return fractional_weights(n, m.ravel(), estimator).reshape(*m.shape, n)


def _slope_weights(n: int, m: np.ndarray, estimator) -> np.ndarray:
    """d/dm of the rank weights at m: with replacement d(F^m)/dm = F^m ln F exactly; otherwise a
    central difference (the slope of the linear interpolation between whole k)."""
    if estimator != "with-replacement":
        h = 1e-3 * m[..., None]
        return (_weights(n, m * (1 + 1e-3), estimator) - _weights(n, m * (1 - 1e-3), estimator)) / (2 * h)
    log_f = np.log(np.arange(1, n + 1) / n)
    f = np.exp(m[..., None] * log_f) * log_f
    return np.diff(f, axis=-1, prepend=0.0)


def _evp_and_se(scores: np.ndarray, costs: np.ndarray, budgets: np.ndarray, estimator) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``scores`` (R, N; sorted, ``costs`` in the same order): the EVP at each
    budget's m = b / c̄ (R, G), and its jackknife standard error, each trial left out in turn with
    its cost (the leave-one-out EVP at the row's m, plus dEVP/dm × the change in m its cost makes:
    the jackknife of the linearised statistic, O(N) per trial by prefix and suffix sums). The
    bootstrap sd of an EVP near k = N is too small (a resample never exceeds the sample's best
    score; at N = 50 it was 0.71 of the true sd at k = N, the jackknife 0.91), hence this one."""
    r, n = scores.shape
    g = budgets.size
    evp, se = np.empty((r, g)), np.empty((r, g))
    step = max(1, BLOCK_ELEMENTS // (g * n))
    for s in range(0, r, step):
        x, c = scores[s:s + step], costs[s:s + step]
        cbar = c.mean(axis=1, keepdims=True)
        m = budgets[None, :] / cbar
        evp[s:s + step] = np.einsum("rgn,rn->rg", _weights(n, m, estimator), x)
        if n < 2:
            se[s:s + step] = 0.0
            continue
        slope = np.einsum("rgn,rn->rg", _slope_weights(n, m, estimator), x)
        w = _weights(n - 1, m, estimator)                                   # (r, g, n-1)
        below = np.concatenate([np.zeros(w.shape[:2] + (1,)), np.cumsum(w * x[:, None, :-1], axis=2)], axis=2)
        above = np.cumsum((w * x[:, None, 1:])[..., ::-1], axis=2)[..., ::-1]
        above = np.concatenate([above, np.zeros(w.shape[:2] + (1,))], axis=2)
        m_out = budgets[None, :, None] * (n - 1) / (n * cbar[..., None] - c[:, None, :])   # m without trial i
        loo = below + above + slope[..., None] * (m_out - m[..., None])                    # (r, g, n)
        se[s:s + step] = np.sqrt((n - 1) / n * ((loo - loo.mean(axis=2, keepdims=True)) ** 2).sum(axis=2))
    return evp, se


def arm_curve(scores, costs, budgets: np.ndarray, estimator, *, resamples: int, seed: int):
    """The arm's EVP at each budget, its draws m = b / c̄ there, its jackknife se, and the same
    (EVP, se) on ``resamples`` bootstrap resamples of its (score, cost) pairs, each at its own
    b / c̄*: (evp, m, se, boot_evp, boot_se)."""
    v, c = np.asarray(scores, dtype=float), np.asarray(costs, dtype=float)
    order = np.argsort(v, kind="stable")
    evp, se = _evp_and_se(v[order][None, :], c[order][None, :], budgets, estimator)
    idx = np.random.default_rng(seed).integers(0, v.size, size=(resamples, v.size))
    idx = np.take_along_axis(idx, np.argsort(v[idx], axis=1, kind="stable"), axis=1)
    boot, boot_se = _evp_and_se(v[idx], c[idx], budgets, estimator)
    return evp[0], budgets / c.mean(), se[0], boot, boot_se


def cost_budget_comparison(va, ca, vb, cb, o, *, seed: int) -> tuple[pd.DataFrame, dict]:
    """One row per budget b: b (column ``k``, in the cost unit), each arm's draws there (n_a, n_b),
    its EVP, the bootstrap P(A > B), the studentised difference t and whether A or B wins there;
    and the summary (crossings, the budgets from which one wins, the sup-t critical value)."""
    from tracking.compare import _budget_summary

    ca, cb = np.asarray(ca, dtype=float), np.asarray(cb, dtype=float)
    b = budget_grid(ca, cb, max_k=o.max_k, points=o.budget_points)
    ea, na, sa, ba, sba = arm_curve(va, ca, b, o.estimator, resamples=o.resamples, seed=seed)
    eb, nb, sb, bb, sbb = arm_curve(vb, cb, b, o.estimator, resamples=o.resamples, seed=seed + 10_007)
    d, dstar = ea - eb, ba - bb
    p = np.mean(dstar > 0, axis=0) + 0.5 * np.mean(dstar == 0, axis=0)
    se, se_star = np.hypot(sa, sb), np.hypot(sba, sbb)
    with np.errstate(divide="ignore", invalid="ignore"):
        pivot = np.where(se_star > 0, np.abs(dstar - d) / se_star, 0.0)
        t = np.where(se > 0, d / se, np.sign(d) * np.inf * (np.abs(d) > 1e-12))
    critical = float(np.quantile(pivot.max(axis=1), 1 - o.alpha))
    curve = pd.DataFrame({"k": b, "n_a": na, "n_b": nb, "evp_a": ea, "evp_b": eb, "p_a_beats_b": p,
                          "t": np.nan_to_num(t), "a_wins": (t > critical) & (p >= o.level),
                          "b_wins": (t < -critical) & (p <= 1 - o.level)})
    return curve, _budget_summary(curve, cost=True) | {"critical_t": critical, "cost_a": float(ca.mean()),
                                            "cost_b": float(cb.mean())}
