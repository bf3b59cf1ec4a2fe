"""Significance over seeds: Almost Stochastic Order, a permutation test of the difference in
medians with a bootstrap interval, Holm's correction, and a bootstrap power analysis in seeds.

ASO (del Barrio et al. 2018; Dror et al. 2019) follows deepsig 1.2.8's ``aso`` step by step, with
the same random draws (iteration i seeds NumPy's legacy generator with seed + i + 1 and draws the
A then the B sample), vectorised over the bootstrap iterations: deepsig takes ~3 s a call here,
this ~20 ms, and tests/tracking/test_significance.py checks the two agree to 1e-9.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy.stats import norm


def _quantiles(sorted_scores: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The empirical quantile function at t, deepsig's way: x_(ceil(n t)), clipped to [1, n];
    ``sorted_scores`` may be (..., n), sorted along the last axis."""
    n = sorted_scores.shape[-1]
    idx = np.clip(np.ceil(n * t).astype(int) - 1, 0, n - 1)
    return sorted_scores[..., idx]


def violation_ratio(a_sorted: np.ndarray, b_sorted: np.ndarray, dt: float) -> np.ndarray:
    """ε_W2 (Dror et al. 2019, eqs. 4-5): the share of the squared Wasserstein distance between
    the quantile functions where A's quantile is below B's; 0.5 where the two are identical."""
    t = np.arange(dt, 1, dt)
    f, g = _quantiles(a_sorted, t), _quantiles(b_sorted, t)
    diff = g - f
    w2 = np.sum(diff ** 2 * dt, axis=-1)
    violated = np.where(f >= g, 0.0, diff)
    part = np.sum(violated[..., 1:] ** 2 * dt, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(w2 == 0, 0.5, part / np.where(w2 == 0, 1.0, w2))


def aso(a, b, *, confidence: float = 0.95, num_comparisons: int = 1, bootstrap: int = 1000,
        dt: float = 0.005, seed: int = 0) -> float:
    """ε_min: an upper bound (at ``confidence``, Bonferroni-adjusted over ``num_comparisons``) on
    how far A violates stochastic dominance over B. ε_min < 0.5 leans to A; near 0, A dominates."""
    a, b = np.sort(np.asarray(a, dtype=float)), np.sort(np.asarray(b, dtype=float))
    if a.size == 0 or b.size == 0:
        raise ValueError("scores: ASO needs at least one score on each side")
    if num_comparisons > 1:
        confidence += (1 - confidence) / num_comparisons
    observed = violation_ratio(a, b, dt)
    draws = np.empty((bootstrap, a.size + b.size))
    for i in range(bootstrap):
        draws[i] = np.random.RandomState(seed + i + 1).uniform(0, 1, a.size + b.size)
    sa = np.sort(_quantiles_at(a, draws[:, :a.size]), axis=1)
    sb = np.sort(_quantiles_at(b, draws[:, a.size:]), axis=1)
    samples = violation_ratio(sa, sb, dt)
    const = math.sqrt(a.size * b.size / (a.size + b.size))
    sigma = np.std(const * (samples - observed))
    return float(np.clip(observed - sigma / const * norm.ppf(1 - confidence), 0, 1))


def _quantiles_at(sorted_scores: np.ndarray, p: np.ndarray) -> np.ndarray:
    n = sorted_scores.size
    return sorted_scores[np.clip(np.ceil(n * p).astype(int) - 1, 0, n - 1)]


@dataclass(frozen=True)
class MedianTest:
    diff: float           # median(A) - median(B)
    p_value: float        # two-sided permutation p-value
    ci_low: float         # bootstrap percentile interval of the difference
    ci_high: float
    exact: bool           # every relabelling enumerated (else a seeded Monte Carlo sample)


def _median_diffs(pooled: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """For each row of boolean ``labels`` (True = A), median(A) - median(B)."""
    a = np.where(labels, pooled, np.nan)
    b = np.where(labels, np.nan, pooled)
    return np.nanmedian(a, axis=1) - np.nanmedian(b, axis=1)


def median_test(a, b, *, permutations: int = 20_000, bootstrap: int = 2000, level: float = 0.95,
                seed: int = 0) -> MedianTest:
    """Permutation test of the difference in medians (exact when the relabellings number at most
    ``permutations``), with a percentile bootstrap interval of the difference."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError("scores: the median test needs at least one score on each side")
    pooled = np.concatenate([a, b])
    observed = float(np.median(a) - np.median(b))
    rng = np.random.default_rng(seed)
    exact = math.comb(pooled.size, a.size) <= permutations
    if exact:
        labels = np.zeros((math.comb(pooled.size, a.size), pooled.size), dtype=bool)
        for row, idx in enumerate(combinations(range(pooled.size), a.size)):
            labels[row, list(idx)] = True
    else:
        order = np.argsort(rng.random((permutations, pooled.size)), axis=1)
        labels = order < a.size
    null = _median_diffs(pooled, labels)
    tol = 1e-12 * max(1.0, abs(observed))
    p = float(np.mean(np.abs(null) >= abs(observed) - tol))
    if not exact:
        p = (p * permutations + 1) / (permutations + 1)
    boot = (np.median(a[rng.integers(0, a.size, (bootstrap, a.size))], axis=1)
            - np.median(b[rng.integers(0, b.size, (bootstrap, b.size))], axis=1))
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return MedianTest(observed, p, float(lo), float(hi), exact)


def holm(p_values) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    m = p.size
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


POWER_SEEDS = (2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50)


def seeds_for_power(a, b, *, alpha: float, target: float = 0.8, resamples: int = 200, permutations: int = 200,
                    seed: int = 0, sizes: tuple[int, ...] = POWER_SEEDS) -> tuple[int | None, dict[int, float]]:
    """Bootstrap power analysis: for n seeds per method, draw n scores from each method's observed
    seeds (with replacement), run the median permutation test at ``alpha``, and count how often it
    rejects. Returns the smallest n reaching ``target`` power (None past the largest size) and the
    power at each size tried. The effect is the observed one: no effect, no power."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    power = {}
    for n in sizes:
        ra = a[rng.integers(0, a.size, (resamples, n))]
        rb = b[rng.integers(0, b.size, (resamples, n))]
        pooled = np.concatenate([ra, rb], axis=1)                                 # (R, 2n)
        observed = np.median(ra, axis=1) - np.median(rb, axis=1)
        perm = np.argsort(rng.random((permutations, 2 * n)), axis=1)               # (P, 2n)
        shuffled = pooled[:, perm]                                                 # (R, P, 2n)
        null = np.median(shuffled[..., :n], axis=2) - np.median(shuffled[..., n:], axis=2)
        p = (np.sum(np.abs(null) >= np.abs(observed)[:, None] - 1e-12, axis=1) + 1) / (permutations + 1)
        power[n] = float(np.mean(p <= alpha))
        if power[n] >= target:
            return n, power
    return None, power
