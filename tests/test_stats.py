"""The shared statistics helpers against independent references (scipy.stats, closed forms)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from napari_zonation._stats import (
    iqr_sigma,
    median_profile,
    noise_sigma_diff,
    robust_sigma,
    unit_step,
)
from napari_zonation.diffusion import erf_step


def test_robust_sigma_is_scipys_normal_scaled_mad():
    x = np.random.default_rng(1).standard_t(3, 5001) * 2.5
    ref = stats.median_abs_deviation(x, scale="normal")
    assert robust_sigma(x) == pytest.approx(ref, rel=2e-5)  # 1.4826 is rounded
    assert robust_sigma([]) == 0.0


def test_noise_sigma_diff_recovers_white_noise_on_a_trend():
    rng = np.random.default_rng(2)
    d = np.linspace(0.0, 1.0, 40_000)
    r = 30.0 * np.sin(2 * np.pi * d) + rng.normal(0.0, 0.7, d.size)
    assert noise_sigma_diff(r) == pytest.approx(0.7, rel=0.03)
    assert noise_sigma_diff([1.0, 2.0]) == 0.0


def test_iqr_sigma_is_scipys_normal_scaled_iqr_and_ignores_nan():
    x = np.random.default_rng(3).normal(5.0, 2.0, (4000, 3))
    ref = stats.iqr(x, axis=0, scale="normal")
    x[::7, 1] = np.nan
    ref[1] = stats.iqr(x[:, 1], nan_policy="omit", scale="normal")
    np.testing.assert_allclose(iqr_sigma(x, axis=0), ref, rtol=2e-4)


def test_unit_step_is_a_gaussian_cdf_and_erf_step_uses_it():
    d = np.linspace(-10.0, 10.0, 201)
    w = 3.0  # width w = sigma * sqrt(2)
    np.testing.assert_allclose(unit_step(d, 1.5, w), stats.norm.cdf(d, 1.5, w / np.sqrt(2)),
                               atol=1e-12)
    s = 2.0  # sqrt(D t): w = 2 sqrt(D t)
    np.testing.assert_allclose(erf_step(d, 10.0, 4.0, 1.5, s),
                               10.0 - 6.0 * stats.norm.cdf(d, 1.5, 2 * s / np.sqrt(2)),
                               atol=1e-12)


def test_median_profile_of_scaled_lines_and_short_curves():
    d = np.linspace(0.0, 10.0, 11)
    grid, med = median_profile([(d, d), (d, 2 * d), (d, 5 * d), (d[:1], d[:1])], n=5)
    np.testing.assert_array_equal(grid, np.linspace(0.0, 10.0, 5))
    np.testing.assert_allclose(med, 2 * grid)
    # a curve shorter than the grid counts only where it has points
    short = np.linspace(0.0, 4.0, 5)
    grid, med = median_profile([(d, d), (d, 3 * d), (short, 100 + short)], n=11)
    assert grid[-1] == 10.0
    np.testing.assert_allclose(med[grid > 4.0], 2 * grid[grid > 4.0])
    assert median_profile([])[0].size == 0
