"""Diffusivity laws, anisotropy and EBSD Euler angles against values worked out by hand."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from napari_zonation._validation import ZonationInputError
from napari_zonation.diffusion import (
    ArrheniusLaw,
    anisotropy_factor,
    euler_to_axis_angles,
    olivine_diffusivity,
)
from napari_zonation.diffusion.laws import DFENS2021, DFENS_COV, DFENS_MEAN, Conditions


def test_dfens_value_by_hand():
    """ln D001 = a0 + a1 ln fO2[bar] + a2 XFo + a3/T + a4 P + a5 P/T at 1225 C, 74 MPa,
    ln fO2 = -18.1 (bar), Fo86.5:
    -6.755 + 0.2244 (-18.1) - 7.181 (0.865) - 26740 / 1498.15 - 5.213e-10 (7.4e7)
    - 1.028e-7 (7.4e7) / 1498.15 = -34.9205 -> D001 = 6.8e-16 m^2/s."""
    t_k, p_pa, ln_fo2_bar, xfo = 1498.15, 7.4e7, -18.1, 0.865
    by_hand = (-6.755 + 0.2244 * ln_fo2_bar - 7.181 * xfo - 26740.0 / t_k - 5.213e-10 * p_pa
               - 1.028e-7 * p_pa / t_k)
    assert by_hand == pytest.approx(-34.9205, abs=2e-4)
    log_fo2_pa = ln_fo2_bar / math.log(10) + 5.0
    got = olivine_diffusivity(1225.0, xfe=1 - xfo, pressure_mpa=74.0, log_fo2_pa=log_fo2_pa,
                              law="dfens")
    assert math.log(got * 1e-12) == pytest.approx(by_hand, abs=1e-9)
    # D&C 2007 at the same conditions is about half (the pack's "1.8 times")
    dc = olivine_diffusivity(1225.0, xfe=1 - xfo, pressure_mpa=74.0, log_fo2_pa=log_fo2_pa)
    assert 1.5 < got / dc < 2.2


def test_dfens_samples_follow_the_published_covariance():
    law = DFENS2021()
    rng = np.random.default_rng(0)
    theta = law.sample(40000, rng)
    assert np.allclose(theta.mean(axis=0), DFENS_MEAN, rtol=0.02, atol=1e-12 + 0.02 * np.sqrt(
        np.diag(DFENS_COV)))
    sd = np.sqrt(np.diag(DFENS_COV))
    corr = np.corrcoef(theta.T)
    assert np.allclose(corr, DFENS_COV / np.outer(sd, sd), atol=0.02)
    # the spread of ln D at magmatic conditions is that of the linear combination
    cond = Conditions(np.asarray(1225.0), np.asarray(74.0), np.asarray(-2.86))
    ln_d = law.ln_d(cond, 0.135, theta)
    g = np.array([1.0, (-2.86 - 5) * math.log(10), 0.865, 1 / 1498.15, 7.4e7, 7.4e7 / 1498.15])
    assert ln_d.std() == pytest.approx(math.sqrt(g @ DFENS_COV @ g), rel=0.03)
    fixed = DFENS2021(use_covariance=False).sample(10, rng)
    assert np.all(fixed == DFENS_MEAN)


def test_arrhenius_user_law_by_hand():
    law = ArrheniusLaw(d0_m2_s=1e-8, ea_kj_mol=250.0, va_cm3_mol=5.0)
    cond = Conditions(np.asarray(1100.0), np.asarray(200.0), np.asarray(np.nan))
    by_hand = math.log(1e-8) - (250000.0 + 200e6 * 5e-6) / (8.314462618 * 1373.15)
    assert float(law.ln_d(cond, 0.1)) == pytest.approx(by_hand, abs=1e-12)
    with pytest.raises(ZonationInputError, match="d0_m2_s"):
        ArrheniusLaw(d0_m2_s=-1.0, ea_kj_mol=200.0)


def test_anisotropy_factor_by_hand():
    assert anisotropy_factor((90, 90, 0)) == pytest.approx(1.0)
    assert anisotropy_factor((0, 90, 90)) == pytest.approx(1 / 6)
    assert anisotropy_factor((60, 60, 45)) == pytest.approx(0.25 / 6 + 0.25 / 6 + 0.5)


@pytest.mark.parametrize(
    ("euler", "azimuth", "angles"),
    [
        ((0, 0, 0), 0, (0, 90, 90)),  # crystal axes on the sample axes, traverse along X: [100]
        ((0, 0, 0), 90, (90, 0, 90)),  # along Y: [010]
        ((0, 0, 0), 45, (45, 45, 90)),
        ((0, 90, 0), 90, (90, 90, 0)),  # Phi = 90 about X tips [001] onto -Y
        ((90, 0, 0), 0, (90, 0, 90)),  # phi1 = 90 about Z puts [010] on -X
        # Bunge g for (0, 90, 90): rows [100] = (0, 0, 1), [010] = (-1, 0, 0),
        # [001] = (0, -1, 0); the traverse along X is along [010]
        ((0, 90, 90), 0, (90, 0, 90)),
    ],
)
def test_euler_angles_hand_cases(euler, azimuth, angles):
    got = euler_to_axis_angles(euler, azimuth)
    assert got == pytest.approx(angles, abs=1e-9)


def test_euler_angles_always_describe_a_direction():
    rng = np.random.default_rng(1)
    for _ in range(50):
        e = rng.uniform(0, 360, 3)
        e[1] = rng.uniform(0, 180)
        ang = euler_to_axis_angles(e, rng.uniform(0, 360))
        assert sum(math.cos(math.radians(a)) ** 2 for a in ang) == pytest.approx(1.0, abs=1e-8)
        assert all(0 <= a <= 90 for a in ang)


def test_euler_angles_drive_the_fit_like_the_equivalent_axis_angles():
    import pandas as pd
    from scipy.special import erf

    from napari_zonation import fit_diffusion

    d = np.arange(0.0, 60.0, 1.0)
    prof = pd.DataFrame({"label": 1, "distance_um": d,
                         "value": 80 + 8 * 0.5 * (1 + erf((d - 30) / 6))})
    kw = dict(mineral="olivine", temperature_c=1200, pressure_mpa=100, delta_qfm=0,
              model="erf", n_samples=0)
    ang = euler_to_axis_angles((30, 60, 10), 20)
    a = fit_diffusion(prof, euler_deg=(30, 60, 10), azimuth_deg=20, **kw).iloc[0]
    b = fit_diffusion(prof, angles_deg=ang, **kw).iloc[0]
    assert a.diffusivity_um2_s == pytest.approx(b.diffusivity_um2_s, rel=1e-12)


def test_euler_angles_bad_input():
    with pytest.raises(ZonationInputError, match="Euler"):
        euler_to_axis_angles((0, 0), 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        euler_to_axis_angles((10, 20, 30), 40)  # no warning for a valid orientation
