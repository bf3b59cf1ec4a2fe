"""Expected Validation Performance (Dodge et al. 2019), vectorised over k.

With v_(1) <= ... <= v_(N) the sorted scores of N assignments, the expected best of k draws is
sum_i v_(i) * w_i(k), where w_i(k) is the probability that v_(i) is the maximum:
  with replacement:     (i/N)^k - ((i-1)/N)^k
  without replacement:  C(i-1, k-1) / C(N, k)      (Tang et al. 2020; k <= N)
The std uses the same weights: sqrt(sum_i w_i (v_(i) - E)^2).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.special import gammaln

Estimator = Literal["with-replacement", "unbiased"]


def max_weights(n: int, ks: np.ndarray, estimator: Estimator = "with-replacement") -> np.ndarray:
    """(len(ks), n) matrix: row j is the distribution of the max's rank after ks[j] draws."""
    i = np.arange(1, n + 1, dtype=float)
    ks = np.asarray(ks, dtype=float)[:, None]
    if estimator == "with-replacement":
        return (i / n) ** ks - ((i - 1) / n) ** ks
    if estimator == "unbiased":
        if np.any(ks > n):
            raise ValueError(f"k: the unbiased estimator needs k <= N = {n} (got k = {int(ks.max())})")
        # log C(i-1, k-1) - log C(n, k), zero weight where i < k.
        log_w = _log_comb(i - 1, ks - 1) - _log_comb(np.full_like(i, n), ks)
        return np.where(i >= ks, np.exp(log_w), 0.0)
    raise ValueError(f"estimator: must be 'with-replacement' or 'unbiased' (got {estimator!r})")


def _log_comb(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return gammaln(n + 1) - gammaln(k + 1) - gammaln(np.maximum(n - k, 0) + 1)


def expected_max(scores, ks, estimator: Estimator = "with-replacement") -> tuple[np.ndarray, np.ndarray]:
    """E[max of k draws] and its std, for each k in ks."""
    v = np.sort(np.asarray(scores, dtype=float))
    if v.size == 0:
        raise ValueError("scores: need at least one score (got none)")
    w = max_weights(v.size, np.asarray(ks), estimator)
    mean = w @ v
    var = np.einsum("kn,kn->k", w, (v[None, :] - mean[:, None]) ** 2)
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
