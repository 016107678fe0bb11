"""The statistics: K-S D equals scipy's exact statistic, the CSN fit recovers a known tail exponent."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from rlx_pipeline.validation import ks, power_law


def test_ks_d_is_the_exact_two_sample_statistic():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 3000), rng.normal(0.2, 1, 2000)
    r = ks("x", a, b)
    assert r.d == pytest.approx(sps.ks_2samp(a, b).statistic, abs=1e-12)
    assert r.wasserstein == pytest.approx(sps.wasserstein_distance(a, b))
    assert (r.n_hist, r.n_golden, r.sampled) == (3000, 2000, False)
    assert ks("x", a[:5], b) is None  # too few values to say anything


@pytest.mark.parametrize("alpha", [2.4, 2.7])
def test_power_law_recovers_a_known_alpha(alpha):
    rng = np.random.default_rng(7)
    xmin = 0.07
    tail = xmin * (1 - rng.random(20_000)) ** (-1 / (alpha - 1))
    body = rng.uniform(0.001, xmin, 30_000)  # not a power law below xmin
    fit = power_law(np.r_[body, tail])
    assert fit.alpha == pytest.approx(alpha, abs=0.1)
    assert fit.xmin == pytest.approx(xmin, rel=0.25)
    assert 0 < fit.alpha_se < 0.1


def test_power_law_needs_data():
    assert power_law(np.array([1.0, 2.0])) is None


@pytest.mark.parametrize("seed", range(5))
def test_ks_hist_d_equals_scipy_exactly_with_ties(seed):
    from rlx_pipeline.validation.stats import Hist, ks_hist

    rng = np.random.default_rng(seed)
    a = rng.integers(0, 40, rng.integers(20, 300))  # many ties, like ms inter-arrivals or level counts
    b = rng.integers(3, 45, rng.integers(20, 300))
    r = ks_hist("x", Hist.of(a), Hist.of(b))
    assert r.d == sps.ks_2samp(a, b, method="exact").statistic  # bit for bit: D = k / lcm(n1, n2)
    assert r.d == pytest.approx(sps.ks_2samp(a, b, method="asymp").statistic, rel=1e-15)
    assert r.wasserstein == pytest.approx(sps.wasserstein_distance(a, b), rel=1e-12)
    big_a, big_b = np.tile(a, 50), np.tile(b, 50)
    big = ks_hist("x", Hist.of(big_a), Hist.of(big_b))
    assert big.p_value == pytest.approx(sps.ks_2samp(big_a, big_b, method="asymp").pvalue, rel=1e-9)


def test_a_histogram_built_in_batches_equals_one_built_at_once():
    from rlx_pipeline.validation.stats import Hist

    rng = np.random.default_rng(3)
    x = rng.integers(0, 1000, 50_000)
    h = Hist()
    for part in np.array_split(x, 37):
        h.add(part)
    once = Hist.of(x)
    assert np.array_equal(h.compact().values, once.values) and np.array_equal(h.counts, once.counts)
    assert h.n == 50_000


def test_power_law_of_fixed_point_sizes_recovers_alpha():
    """Sizes on a lot grid (ties) through the histogram path: the continuous MLE still holds above xmin."""
    from rlx_pipeline.validation.stats import Hist, power_law_hist

    rng = np.random.default_rng(11)
    alpha, lot = 2.4, 1e-5
    x = 0.001 * (1 - rng.random(200_000)) ** (-1 / (alpha - 1))
    lots = np.maximum(np.round(x / lot), 1).astype(np.int64)
    v, c = np.unique(lots, return_counts=True)
    fit = power_law_hist(Hist.of(v * lot, c))
    assert fit.alpha == pytest.approx(alpha, abs=0.05)
    assert fit.n == 200_000 and fit.n_tail > 1000
    assert fit.alpha_se < 0.05
