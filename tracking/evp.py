"""Expected Validation Performance (Dodge et al. 2019), vectorised over k.

With v_(1) <= ... <= v_(N) the sorted scores of N assignments, the expected best of k draws is
sum_i v_(i) * w_i(k), where w_i(k) is the probability that v_(i) is the maximum:
  with replacement:     (i/N)^k - ((i-1)/N)^k
  without replacement:  C(i-1, k-1) / C(N, k)      (Tang et al. 2020; k <= N)
The std uses the same weights: sqrt(sum_i w_i (v_(i) - E)^2).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np
from scipy.special import gammaln

Estimator = Literal["with-replacement", "unbiased"]


def max_weights(n: int, ks: np.ndarray, estimator: Estimator = "with-replacement") -> np.ndarray:
    """(len(ks), n) matrix: row j is the distribution of the max's rank after ks[j] draws."""
    ks = np.asarray(ks)
    if estimator not in ("with-replacement", "unbiased"):
        raise ValueError(f"estimator: must be 'with-replacement' or 'unbiased' (got {estimator!r})")
    if estimator == "unbiased" and np.any(ks > n):
        raise ValueError(f"k: the unbiased estimator needs k <= N = {n} (got k = {int(ks.max())})")
    if ks.size and np.array_equal(ks, np.arange(1, ks.size + 1)):
        return _prefix_weights(n, int(ks.size), estimator)  # the usual k = 1..K: cached
    return _weights(n, ks, estimator)


@lru_cache(maxsize=64)
def _prefix_weights(n: int, kmax: int, estimator: Estimator) -> np.ndarray:
    """Weights for k = 1..kmax. Groups of a search mostly share N, so one matrix serves them all;
    with replacement, (i/N)^k for every k is a cumulative product: no power calls."""
    if estimator == "with-replacement":
        ratio = np.arange(1, n + 1, dtype=float) / n
        p = np.cumprod(np.broadcast_to(ratio, (kmax, n)), axis=0)   # p[k-1, i-1] = (i/N)^k
        w = np.diff(p, axis=1, prepend=0.0)
    else:
        w = _weights(n, np.arange(1, kmax + 1), estimator)
    w.setflags(write=False)
    return w


def _weights(n: int, ks: np.ndarray, estimator: Estimator) -> np.ndarray:
    i = np.arange(1, n + 1, dtype=float)
    ks = np.asarray(ks, dtype=float)[:, None]
    if estimator == "with-replacement":
        return (i / n) ** ks - ((i - 1) / n) ** ks
    # log C(i-1, k-1) - log C(n, k), zero weight where i < k.
    log_w = _log_comb(i - 1, ks - 1) - _log_comb(np.full_like(i, n), ks)
    return np.where(i >= ks, np.exp(log_w), 0.0)


def _log_comb(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return gammaln(n + 1) - gammaln(k + 1) - gammaln(np.maximum(n - k, 0) + 1)


def expected_max(scores, ks, estimator: Estimator = "with-replacement") -> tuple[np.ndarray, np.ndarray]:
    """E[max of k draws] and its std, for each k in ks."""
    v = np.asarray(scores, dtype=float)
    if v.size == 0:
        raise ValueError("scores: need at least one score (got none)")
    mean, std = expected_max_rows(v[None, :], ks, estimator)
    return mean[0], std[0]


def expected_max_rows(scores: np.ndarray, ks, estimator: Estimator = "with-replacement") -> tuple[np.ndarray, np.ndarray]:
    """Many groups of the same size N at once: ``scores`` is (G, N); returns (G, K) means and
    stds. The (K, N) weight matrix is read once for all G groups (one mat-mul, not G mat-vecs:
    at N = 1000 the weights are 8 MB, and re-reading them per group is what costs)."""
    v = np.sort(np.asarray(scores, dtype=float), axis=1)
    w = max_weights(v.shape[1], np.asarray(ks), estimator)
    mean = v @ w.T
    # Var = E[c^2] - E[c]^2 on scores centred at their mean: shift-free, so all-tied scores give
    # exactly 0, and no (K, N) temporary.
    c = v - v.mean(axis=1, keepdims=True)
    var = (c * c) @ w.T - (c @ w.T) ** 2
    return mean, np.sqrt(np.maximum(var, 0.0))


def bootstrap_ci(scores, ks, estimator: Estimator = "with-replacement", *, resamples: int, seed: int,
                 level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of E[max_k]: resample the N scores with replacement
    ``resamples`` times (seeded), recompute the estimator on each, take the (1 ± level)/2
    quantiles. All resamples go through one (K, N) @ (N, B) product, no Python loop."""
    if resamples < 1:
        raise ValueError(f"bootstrap: needs at least 1 resample (got {resamples})")
    if not 0 < level < 1:
        raise ValueError(f"level: must be in (0, 1) (got {level})")
    v = np.sort(np.asarray(scores, dtype=float))  # sorted first so the input order cannot matter
    if v.size == 0:
        raise ValueError("scores: need at least one score (got none)")
    idx = np.random.default_rng(seed).integers(0, v.size, size=(resamples, v.size))
    boot = np.sort(v[idx], axis=1)                                  # (B, N), each row sorted
    estimates = max_weights(v.size, np.asarray(ks), estimator) @ boot.T  # (K, B)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(estimates, [alpha, 1 - alpha], axis=1)
    return lo, hi
