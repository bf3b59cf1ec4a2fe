"""Expected Validation Performance (Dodge et al. 2019): the expected best score of k draws from
the N observed scores, for each budget k, by estimators chosen by name (ESTIMATORS).

Scores are sorted once and tied values merged: u_1 < ... < u_D are the distinct scores and c_j
how many scores are <= u_j. Each estimator gives F_j(k) = P(max of k draws <= u_j):
  with-replacement (Dodge et al. 2019):         (c_j / N)^k
  unbiased, without replacement (Tang et al. 2020): C(c_j, k) / C(N, k)     (k <= N)
The probability that the max is u_j is W_j(k) = F_j(k) - F_{j-1}(k); E = sum_j W_j u_j and the std
is sqrt(sum_j W_j (u_j - E)^2), summed directly: no E[x^2] - E[x]^2, so all-tied scores give
exactly 0. The cost is O(N log N) for the sort plus O(D*K) <= O(N*K), over blocks of k so memory
stays bounded; nothing is cached between calls.
"""
from __future__ import annotations

from typing import Callable, Literal

import numpy as np
from scipy.special import gammaln

Estimator = Literal["with-replacement", "unbiased"]
BLOCK_ELEMENTS = 1 << 21  # ~16 MB of float64 per (k-block, D) temporary


def _cdf_with_replacement(counts: np.ndarray, n: int, ks: np.ndarray) -> np.ndarray:
    return (counts[None, :] / n) ** ks[:, None]


def _cdf_unbiased(counts: np.ndarray, n: int, ks: np.ndarray) -> np.ndarray:
    c, k = counts[None, :].astype(float), ks[:, None].astype(float)
    with np.errstate(invalid="ignore"):
        log_f = (gammaln(c + 1) - gammaln(np.maximum(c - k, 0) + 1)) - (gammaln(n + 1) - gammaln(n - k + 1))
    return np.where(c >= k, np.exp(log_f), 0.0)


ESTIMATORS: dict[str, Callable[[np.ndarray, int, np.ndarray], np.ndarray]] = {
    "with-replacement": _cdf_with_replacement,
    "unbiased": _cdf_unbiased,
}
CITATIONS = {"with-replacement": "Dodge et al. 2019, draws with replacement",
             "unbiased": "Tang et al. 2020, unbiased, draws without replacement"}


def check(estimator: str, n: int, ks: np.ndarray) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator: must be one of {', '.join(ESTIMATORS)} (got {estimator!r})")
    if estimator == "unbiased" and ks.size and ks.max() > n:
        raise ValueError(f"k: the unbiased estimator needs k <= N = {n} (got k = {int(ks.max())})")


def budget_ticks(n: int, max_k: int | None = None, *, dense: int = 300, log_points: int = 100) -> np.ndarray:
    """k = 1, 2, ... up to ``dense``, then ``log_points`` log-spaced integers up to max_k (default N)."""
    top = int(max_k or n)
    if top < 1:
        raise ValueError(f"max_k: must be at least 1 (got {top})")
    if top <= dense:
        return np.arange(1, top + 1)
    tail = np.unique(np.round(np.geomspace(dense, top, log_points)).astype(int))
    return np.unique(np.concatenate([np.arange(1, dense + 1), tail, [top]]))


def distinct(scores) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct scores u and cumulative counts c (c_j = #scores <= u_j)."""
    v = np.sort(np.asarray(scores, dtype=float).ravel())
    if v.size == 0:
        raise ValueError("scores: need at least one score (got none)")
    u, counts = np.unique(v, return_counts=True)
    return u, np.cumsum(counts)


def expected_max(scores, ks, estimator: Estimator = "with-replacement") -> tuple[np.ndarray, np.ndarray]:
    """E[max of k draws] and its std, for each k in ks."""
    u, c = distinct(scores)
    n = int(c[-1])
    ks = np.asarray(ks, dtype=int).ravel()
    check(estimator, n, ks)
    cdf = ESTIMATORS[estimator]
    mean, std = np.empty(ks.size), np.empty(ks.size)
    step = max(1, BLOCK_ELEMENTS // u.size)
    for s in range(0, ks.size, step):
        f = cdf(c, n, ks[s:s + step])
        f[:, -1] = 1.0  # P(max <= the largest score) is 1 exactly
        w = np.diff(f, axis=1, prepend=0.0)
        m = w @ u
        mean[s:s + step] = m
        std[s:s + step] = np.sqrt(np.einsum("kd,kd->k", w, (u[None, :] - m[:, None]) ** 2))
    return mean, std


def expected_max_rows(scores: np.ndarray, ks, estimator: Estimator = "with-replacement") -> tuple[np.ndarray, np.ndarray]:
    """Many groups at once: ``scores`` is (G, N); returns (G, K) means and stds."""
    rows = [expected_max(r, ks, estimator) for r in np.asarray(scores, dtype=float)]
    return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])


def rank_weights(n: int, ks, estimator: Estimator = "with-replacement") -> np.ndarray:
    """(K, N): the probability that the i-th smallest of N scores is the max of k draws (ties
    broken by rank, which leaves the mean unchanged). For blocks of k; not cached."""
    ks = np.asarray(ks, dtype=int).ravel()
    check(estimator, n, ks)
    f = ESTIMATORS[estimator](np.arange(1, n + 1), n, ks)
    f[:, -1] = 1.0
    return np.diff(f, axis=1, prepend=0.0)


def fractional_weights(n: int, m, estimator: Estimator = "with-replacement") -> np.ndarray:
    """(M, N) rank weights, as rank_weights, at real numbers of draws m (a cost budget divided by a
    mean cost per trial is rarely a whole number). With replacement, F(u)^m is the CDF of the best
    of m draws for any real m > 0: the same formula, no interpolation, and the curve is exactly
    invariant to rescaling costs (the best of 2 draws at cost 2c is the best of 1 draw of the max
    of two, at cost c per draw). Without replacement no such continuation exists, so the weights
    are interpolated linearly between floor(m) and ceil(m), with m clipped to [1, N]."""
    m = np.asarray(m, dtype=float).ravel()
    if estimator == "with-replacement":
        f = np.exp(np.maximum(m, 1e-12)[:, None] * np.log(np.arange(1, n + 1) / n))  # (i/N)^m, one exp
        f[:, -1] = 1.0
        return np.diff(f, axis=1, prepend=0.0)
    m = np.clip(m, 1, n)
    lo = np.floor(m).astype(int)
    hi = np.minimum(lo + 1, n)
    ks, inverse = np.unique(np.concatenate([lo, hi]), return_inverse=True)
    w = rank_weights(n, ks, estimator)
    frac = (m - lo)[:, None]
    return (1 - frac) * w[inverse[:m.size]] + frac * w[inverse[m.size:]]


def resampled_means(scores, ks, estimator: Estimator = "with-replacement", *, resamples: int, seed: int) -> np.ndarray:
    """(B, K): the estimator on ``resamples`` seeded bootstrap resamples of the scores (sorted
    first so the input order cannot matter). A resample of sorted scores, its indices sorted, is
    sorted itself, so every resample uses the same rank weights: one (B, N) @ (N, Kb) product per
    block of k, O(B * N * K) flops and O(B * N + N * Kb) memory."""
    v = np.sort(np.asarray(scores, dtype=float).ravel())
    if v.size == 0:
        raise ValueError("scores: need at least one score (got none)")
    if resamples < 1:
        raise ValueError(f"bootstrap: needs at least 1 resample (got {resamples})")
    ks = np.asarray(ks, dtype=int).ravel()
    n = v.size
    check(estimator, n, ks)
    boot = v[np.sort(np.random.default_rng(seed).integers(0, n, size=(resamples, n)), axis=1)]
    out = np.empty((resamples, ks.size))
    step = max(1, BLOCK_ELEMENTS // n)
    for s in range(0, ks.size, step):
        out[:, s:s + step] = boot @ rank_weights(n, ks[s:s + step], estimator).T
    return out


def bootstrap_ci(scores, ks, estimator: Estimator = "with-replacement", *, resamples: int, seed: int,
                 level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of E[max_k]: the (1 ± level)/2 quantiles of the estimator
    over ``resamples`` seeded resamples of the N scores."""
    if resamples < 1:
        raise ValueError(f"bootstrap: needs at least 1 resample (got {resamples})")
    if not 0 < level < 1:
        raise ValueError(f"level: must be in (0, 1) (got {level})")
    estimates = resampled_means(scores, ks, estimator, resamples=resamples, seed=seed)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(estimates, [alpha, 1 - alpha], axis=0)
    return lo, hi
