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
