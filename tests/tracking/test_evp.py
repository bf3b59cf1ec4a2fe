import itertools

import numpy as np
import pytest

from tracking.evp import expected_max


def brute_force(scores, k, replace=True):
    """E[max] and std by enumerating every draw of k assignments."""
    draws = (itertools.product(scores, repeat=k) if replace else itertools.combinations(scores, k))
    maxima = np.array([max(d) for d in draws])
    return maxima.mean(), maxima.std()


def test_hand_checked_values():
    # sorted v = 0.1, 0.5, 0.9; k=2 weights (1/9, 3/9, 5/9)
    mean, std = expected_max([0.9, 0.1, 0.5], [1, 2])
    assert mean[0] == pytest.approx(0.5)
    assert mean[1] == pytest.approx((0.1 * 1 + 0.5 * 3 + 0.9 * 5) / 9)
    assert std[0] == pytest.approx(np.std([0.1, 0.5, 0.9]))
    m2 = (0.1 + 1.5 + 4.5) / 9
    assert std[1] == pytest.approx(np.sqrt((1 * (0.1 - m2) ** 2 + 3 * (0.5 - m2) ** 2 + 5 * (0.9 - m2) ** 2) / 9))


def test_ties():
    mean, std = expected_max([0.5, 0.7, 0.5], [1, 2, 3])
    assert mean[1] == pytest.approx((0.5 * 1 + 0.5 * 3 + 0.7 * 5) / 9)
    assert mean[2] == pytest.approx(0.5 * (8 / 27) + 0.7 * (19 / 27))
    all_tied, tied_std = expected_max([0.6, 0.6, 0.6], [1, 5])
    assert all_tied == pytest.approx([0.6, 0.6]) and tied_std == pytest.approx([0.0, 0.0])


def test_single_assignment():
    mean, std = expected_max([0.42], [1, 2, 10])
    assert mean == pytest.approx([0.42] * 3) and std == pytest.approx([0.0] * 3)


@pytest.mark.parametrize("seed", range(5))
def test_matches_enumeration(seed):
    scores = np.random.default_rng(seed).choice([0.5, 0.55, 0.6, 0.61, 0.7], size=5)  # ties likely
    for k in (1, 2, 3, 6):  # k > N too
        mean, std = expected_max(scores, [k])
        bm, bs = brute_force(list(scores), k)
        assert mean[0] == pytest.approx(bm) and std[0] == pytest.approx(bs, abs=1e-9)
    for k in (1, 2, 5):
        mean, std = expected_max(scores, [k], "unbiased")
        bm, bs = brute_force(list(scores), k, replace=False)
        assert mean[0] == pytest.approx(bm) and std[0] == pytest.approx(bs, abs=1e-9)


def test_curve_grows_to_the_max():
    mean, _ = expected_max([0.2, 0.4, 0.8], np.arange(1, 60))
    assert np.all(np.diff(mean) >= 0) and mean[-1] == pytest.approx(0.8, abs=1e-6)


def test_unbiased_refuses_k_over_n():
    with pytest.raises(ValueError, match="k <= N = 3"):
        expected_max([0.1, 0.2, 0.3], [4], "unbiased")


def test_unbiased_single_assignment_and_k_equals_n():
    mean, std = expected_max([0.42], [1], "unbiased")
    assert mean == pytest.approx([0.42]) and std == pytest.approx([0.0])
    mean, _ = expected_max([0.3, 0.9, 0.5], [3], "unbiased")  # k = N: the max, surely
    assert mean == pytest.approx([0.9])
    with pytest.raises(ValueError, match=r"unbiased estimator needs k <= N = 1 \(got k = 2\)"):
        expected_max([0.42], [1, 2], "unbiased")


def test_bootstrap_is_seeded_and_order_free():
    from tracking.evp import bootstrap_ci

    scores = [0.61, 0.7, 0.55, 0.7, 0.64, 0.58]
    a = bootstrap_ci(scores, [1, 3, 6], resamples=500, seed=7)
    b = bootstrap_ci(scores[::-1], [1, 3, 6], resamples=500, seed=7)
    c = bootstrap_ci(scores, [1, 3, 6], resamples=500, seed=8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert np.all(a[0] <= a[1]) and np.all(a[0] >= min(scores)) and np.all(a[1] <= max(scores))


def test_bootstrap_single_score_is_a_point():
    from tracking.evp import bootstrap_ci

    lo, hi = bootstrap_ci([0.5], [1, 4], resamples=50, seed=0)
    assert lo == pytest.approx([0.5, 0.5]) and hi == pytest.approx([0.5, 0.5])


def test_bootstrap_coverage():
    """With scores drawn from a known distribution, the 90% interval of E[max_k] should cover
    the true value (by Monte Carlo on a huge sample) in roughly 90% of 200 repeated experiments
    (binomial sd ≈ 2%; percentile bootstraps of a max can under-cover, so allow 80-97%)."""
    from tracking.evp import bootstrap_ci

    rng = np.random.default_rng(0)
    ks = np.array([1, 3])
    truth = rng.beta(5, 2, size=(200_000, 3)).max(axis=1).mean(), rng.beta(5, 2, size=200_000).mean()
    covered = np.zeros(2)
    reps = 200
    for r in range(reps):
        lo, hi = bootstrap_ci(rng.beta(5, 2, size=30), ks, resamples=400, seed=r, level=0.9)
        covered += (lo <= [truth[1], truth[0]]) & ([truth[1], truth[0]] <= hi)
    rate = covered / reps
    assert np.all(rate >= 0.8) and np.all(rate <= 0.97), rate


def test_bootstrap_refuses_bad_settings():
    from tracking.evp import bootstrap_ci

    with pytest.raises(ValueError, match="bootstrap: needs at least 1 resample"):
        bootstrap_ci([0.1], [1], resamples=0, seed=0)
    with pytest.raises(ValueError, match=r"unbiased estimator needs k <= N = 2 \(got k = 3\)"):
        bootstrap_ci([0.1, 0.2], [3], "unbiased", resamples=10, seed=0)


def test_std_has_no_cancellation_where_the_max_is_certain():
    """Without replacement at k = N the max is surely the largest score: the std is exactly 0
    (E[x^2] - E[x]^2 left up to 1.6e-7 here); likewise for all-tied scores at any k."""
    scores = np.random.default_rng(0).uniform(0.5, 0.9, 2000)
    _, std = expected_max(scores, [2000], "unbiased")
    assert std[0] == 0.0
    _, std = expected_max(np.full(500, 0.731), [1, 7, 500, 5000])
    assert np.all(std == 0.0)


def test_budget_ticks_are_dense_then_log_spaced():
    from tracking.evp import budget_ticks

    assert np.array_equal(budget_ticks(50), np.arange(1, 51))
    ks = budget_ticks(100_000)
    assert np.array_equal(ks[:300], np.arange(1, 301)) and ks[-1] == 100_000
    assert np.all(np.diff(ks) > 0) and ks.size < 420
    assert budget_ticks(100_000, 40)[-1] == 40


def test_resampled_means_are_the_estimator_on_each_resample():
    from tracking.evp import resampled_means

    scores = np.array([0.61, 0.7, 0.55, 0.7, 0.64, 0.58])
    ks = [1, 2, 4]
    est = resampled_means(scores, ks, resamples=5, seed=3)
    v = np.sort(scores)
    idx = np.sort(np.random.default_rng(3).integers(0, v.size, size=(5, v.size)), axis=1)
    for b in range(5):
        assert est[b] == pytest.approx(expected_max(v[idx[b]], ks)[0], abs=1e-12)


def test_fractional_weights_at_whole_draws_match_enumeration():
    from tracking.evp import fractional_weights

    v = np.sort(np.random.default_rng(3).random(6))
    for estimator, replace in (("with-replacement", True), ("unbiased", False)):
        got = fractional_weights(v.size, [1, 2, 3, 4], estimator) @ v
        assert got == pytest.approx([brute_force(v, k, replace)[0] for k in (1, 2, 3, 4)], abs=1e-12)


def test_fractional_weights_with_replacement_are_invariant_to_rescaling_the_cost():
    """The best of 2m draws from x is the best of m draws from the N² pairwise maxima of x (the
    empirical distribution of the best of 2 draws), for real m too: what makes a method that costs
    2c per trial, each trial the best of two, equal to one that costs c."""
    from tracking.evp import fractional_weights

    x = np.random.default_rng(4).normal(size=7).round(2)
    pairs = np.sort(np.maximum.outer(x, x).ravel())
    m = np.array([0.6, 1.0, 1.7, 3.25])
    assert fractional_weights(pairs.size, m) @ pairs == pytest.approx(fractional_weights(x.size, 2 * m) @ np.sort(x),
                                                                    abs=1e-12)
    assert np.diff(fractional_weights(x.size, np.linspace(1, 7, 25)) @ np.sort(x)).min() > 0  # grows with m


def test_fractional_weights_unbiased_interpolate_between_whole_draws():
    from tracking.evp import fractional_weights

    v = np.sort(np.random.default_rng(5).random(5))
    two, three = brute_force(v, 2, False)[0], brute_force(v, 3, False)[0]
    assert fractional_weights(5, [2.25], "unbiased") @ v == pytest.approx([0.75 * two + 0.25 * three], abs=1e-12)
    assert fractional_weights(5, [0.4, 9.0], "unbiased") @ v == pytest.approx([v.mean(), v.max()], abs=1e-12)
