import numpy as np
import pytest
import torch

from kdscope.core.stats import bootstrap_ci


def test_bootstrap_interval_matches_the_normal_approximation_for_a_proportion():
    hits = np.r_[np.ones(900), np.zeros(100)]
    estimate, low, high = bootstrap_ci(hits, resamples=4000)
    half_width = 1.96 * np.sqrt(0.9 * 0.1 / 1000)
    assert estimate == pytest.approx(0.9)
    assert low == pytest.approx(0.9 - half_width, abs=0.004) and high == pytest.approx(0.9 + half_width, abs=0.004)


def test_bootstrap_custom_statistic_and_errors():
    estimate, low, high = bootstrap_ci(np.arange(101.0), np.median, resamples=300)
    assert estimate == 50.0 and low < 50.0 < high
    with pytest.raises(ValueError):
        bootstrap_ci(np.array([]))
    with pytest.raises(ValueError):
        bootstrap_ci(np.ones(3), confidence=1.0)


@pytest.mark.parametrize("ties", [False, True])
def test_spearman_rows_equal_scipy_per_row(ties):
    from scipy.stats import rankdata, spearmanr

    from kdscope.core.stats import average_ranks, spearman_rows

    rng = np.random.default_rng(3)
    a, b = rng.random((6, 40)), rng.random((6, 40))
    if ties:
        a, b = np.round(a * 4), np.round(b * 3)
        a[2] = 1.0  # a constant row has no ranking
    np.testing.assert_array_equal(average_ranks(torch.from_numpy(a)).numpy(), rankdata(a, axis=1))
    got = spearman_rows(torch.from_numpy(a), torch.from_numpy(b))
    expected = [spearmanr(x, y).statistic if np.ptp(x) and np.ptp(y) else np.nan for x, y in zip(a, b)]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    assert np.isnan(got[2]) == ties


def test_spearman_rows_is_nan_where_a_row_holds_nan_and_refuses_other_shapes():
    from kdscope.core.stats import spearman_rows

    a = torch.tensor([[1.0, float("nan"), 3.0, 2.0], [float("nan")] * 4, [1.0, 2.0, 3.0, 4.0]])
    b = torch.tensor([[1.0, 2.0, 3.0, 4.0]] * 3)
    got = spearman_rows(a, b, chunk=2)
    assert np.isnan(got[:2]).all() and got[2] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="one shape"):
        spearman_rows(a[:1], b)
