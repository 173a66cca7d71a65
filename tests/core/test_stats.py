import numpy as np
import pytest

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
