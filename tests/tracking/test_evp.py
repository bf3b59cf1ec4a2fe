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
