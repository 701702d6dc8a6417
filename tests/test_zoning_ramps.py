"""Slopes with rounded corners against wide erf steps (the gradient model family)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import gaussian_filter1d
from scipy.special import erf

from napari_zonation._zoning_ramps import _rounded, ramp_predict
from napari_zonation.descriptors import describe_zoning


def _blurred_ramp(d, s, e, blur_um):
    """A sharp 0 -> 1 ramp from ``s`` to ``e`` blurred numerically (scipy) on a fine grid."""
    fine = np.arange(-200.0, 400.0, 0.01)
    ramp = np.clip((fine - s) / (e - s), 0.0, 1.0)
    return np.interp(d, fine, gaussian_filter1d(ramp, blur_um / 0.01, mode="nearest"))


@pytest.mark.parametrize("rho", [0.05, 0.15, 0.25])
def test_rounded_ramp_is_the_ramp_convolved_with_a_gaussian(rho):
    d = np.linspace(-20.0, 80.0, 301)
    s, e = 10.0, 50.0
    np.testing.assert_allclose(
        _rounded(d, s, e, rho), _blurred_ramp(d, s, e, rho * (e - s)), atol=2e-4
    )
    # only the core corner rounded: the rim side is the sharp ramp where the blur of the
    # core corner does not reach
    one = _rounded(d, s, e, rho, rim=False, core=True)
    near_rim = d < e - 5 * rho * (e - s)
    np.testing.assert_allclose(one[near_rim], np.clip((d[near_rim] - s) / (e - s), 0, 1), atol=1e-6)
    np.testing.assert_allclose(
        ramp_predict(d, 2.0, 5.0, s, e, 0.0, rho), 2 + 3 * _rounded(d, s, e, rho)
    )


def _frame(lab, d, v, sigma):
    return pd.DataFrame({"label": lab, "distance_um": d, "value": v, "sigma": sigma})


def test_blurred_slope_under_a_rim_plateau_is_a_gradient():
    """A straight slope between a rim plateau and a core plateau whose corners are blurred
    (image blur, shell averaging): a gradient, not a wide step."""
    frames = []
    for lab in range(8):
        rng = np.random.default_rng(40 + lab)
        d = np.arange(0.5, rng.uniform(50, 90), 1.0)
        s, e = rng.uniform(0.1, 0.2) * d[-1], rng.uniform(0.6, 0.75) * d[-1]
        v = 100 + rng.choice([-1, 1]) * 12 * _blurred_ramp(d, s, e, rng.uniform(0.1, 0.2) * (e - s))
        frames.append(_frame(lab, d, v + rng.normal(0, 0.3, d.size), 0.3))
    tab = describe_zoning(pd.concat(frames))
    # with sharp corners only, 1 of these 8 was a gradient (the others wide steps)
    assert (tab["zoning_type"] == "gradient").sum() >= 7, tab["zoning_type"].tolist()


@pytest.mark.parametrize("noise", [0.02, 0.08])
def test_wide_erf_step_is_not_a_gradient(noise):
    """An erf step between two plateaus, as wide as a rounded slope could be, at 2 % and 8 %
    noise of its height: a step (rim_darker), at most one in 24 a gradient."""
    frames = []
    for lab in range(24):
        rng = np.random.default_rng(300 + lab)
        n = int(rng.integers(30, 120))
        d = np.arange(n) * rng.uniform(0.5, 4.0)
        pos, w = rng.uniform(0.35, 0.6) * d[-1], rng.uniform(0.06, 0.13) * d[-1]
        v = 80 + 10 * 0.5 * (1 + erf((d - pos) / w))
        frames.append(_frame(lab, d, v + rng.normal(0, 10 * noise, n), 10 * noise))
    tab = describe_zoning(pd.concat(frames))
    assert (tab["zoning_type"] == "rim_darker").mean() >= 0.9, tab["zoning_type"].tolist()
    assert (tab["zoning_type"] == "gradient").sum() <= 1, tab["zoning_type"].tolist()
