"""Tests of napari_zonation.diffusion against analytical solutions and the synthetic truth.

References are computed here, independently of the module: the erf solution with
scipy.special.erf, the Dohmen & Chakraborty (2007) equation and Frost's (1991) QFM written out
again, and a method-of-lines solution (scipy.integrate.solve_ivp) for composition-dependent D.
The laws, the solver, the two-stage model, the uncertainty and the real data have their own
test files (test_diffusion_laws.py, test_diffusion_models.py, test_diffusion_real.py).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.integrate import solve_ivp
from scipy.sparse import diags
from scipy.special import erf

from napari_zonation._validation import ZonationInputError
from napari_zonation.diffusion import fit_diffusion, olivine_diffusivity, qfm_log_fo2_pa
from napari_zonation.synthetic import make_profiles

DAY = 86400.0


# ---------------------------------------------------------------------------- references
def ref_log_d001_m2s(t_c, p_mpa, log_fo2_pa, xfe):
    """Dohmen & Chakraborty (2007) TaMED, [001], written out from the paper."""
    t_k = t_c + 273.15
    p_pa = p_mpa * 1e6
    return (
        -9.21
        - (201000 + (p_pa - 1e5) * 7e-6) / (2.303 * 8.314 * t_k)
        + (1 / 6) * (log_fo2_pa - (-7.0))
        + 3 * (xfe - 0.1)
    )


def ref_qfm_log_pa(t_c, p_mpa):
    """Frost (1991) QFM (beta quartz), log10 bar -> Pa."""
    t_k = t_c + 273.15
    return -25096.3 / t_k + 8.735 + 0.110 * (p_mpa * 10 - 1) / t_k + 5.0


def erf_profile(d, outer, inner, p, s):
    return outer + (inner - outer) * 0.5 * (1 + erf((d - p) / (2 * s)))


def table(*profiles):
    """Long profiles table from (label, d, value[, sigma]) tuples."""
    frames = []
    for item in profiles:
        lab, d, v = item[:3]
        f = pd.DataFrame({"label": lab, "distance_um": d, "value": v})
        if len(item) > 3:
            f["sigma"] = item[3]
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return fn(*a, **k)


# ---------------------------------------------------------------------------- erf fits
def test_exact_erf_profiles_recovered():
    d = np.arange(0.0, 100.0, 1.0)
    cases = [(1, 160.0, 140.0, 30.0, 2.0), (2, 80.0, 88.0, 55.0, 6.5), (3, 0.3, 0.36, 20.0, 11.0)]
    prof = table(*[(lab, d, erf_profile(d, a, b, p, s)) for lab, a, b, p, s in cases])
    out = fit_diffusion(prof, model="erf").set_index("label")
    for lab, a, b, p, s in cases:
        row = out.loc[lab]
        assert row.fit_status == "ok"
        assert row.sqrt_dt_um == pytest.approx(s, rel=1e-4)
        assert row.step_position_um == pytest.approx(p, abs=1e-3)
        assert row.outer_value == pytest.approx(a, rel=1e-5)
        assert row.inner_value == pytest.approx(b, rel=1e-5)
        assert row.step_height == pytest.approx(b - a, rel=1e-4)
        assert row.n_points == d.size
    # no diffusivity given: no timescale, and the table says why
    assert out.timescale_days.isna().all()
    assert out.diffusion_assumption.str.contains("no diffusivity").all()


def test_irregular_unsorted_points_and_sigma_weighting():
    rng = np.random.default_rng(3)
    d = np.sort(rng.uniform(0, 80, 90))
    clean = erf_profile(d, 85.0, 78.0, 35.0, 3.0)
    sigma = np.where(np.arange(d.size) % 2 == 0, 0.05, 5.0)
    noisy = clean + rng.normal(0, sigma)
    # the rows may come in any order as long as each profile's distances are monotonic:
    # here the profile runs core to rim (decreasing) and is interleaved with another label
    other = table((2, d, noisy, sigma))
    prof = pd.concat([table((1, d[::-1], noisy[::-1], sigma[::-1])), other])
    prof = prof.iloc[np.argsort(np.tile(np.arange(d.size), 2), kind="stable")]
    row = fit_diffusion(prof, model="erf").set_index("label").loc[1]
    # the weighted fit rests on the precise points: error about 0.05 / 7 * sqrt(n) scale
    assert row.fit_status == "ok"
    assert abs(row.sqrt_dt_um - 3.0) < 4 * row.sqrt_dt_err_um
    assert row.sqrt_dt_err_um < 0.15
    assert row.chi2_red == pytest.approx(1.0, abs=0.5)


@pytest.mark.parametrize(
    ("quantity", "noise"),
    [("composition", 0.003), ("grey", 0.01)],
)
def test_synthetic_profiles_sqrt_dt(quantity, noise):
    """make_profiles truth: the errors are calibrated (pulls ~ N(0, 1)).

    Steps are 0.03-0.07 of full scale (8-18 DN in grey, 3-12 mol % in composition) against
    a noise of 2.55 DN (grey) or 0.3 mol % (composition), so a single erf fit with 60-150
    points at 1 um spacing has a signal-to-noise of 3-7 per point in grey (sqrt_dt known to
    ~20-40 %) and 10-40 in composition (~5 %). Rather than a fixed tolerance, the test asks
    that the reported 1-sigma errors describe the real scatter: the pulls
    (fit - truth) / sqrt_dt_err_um of the profiles fitted "ok" have a standard deviation
    within 0.7-1.4, and 95 % are within 3.
    """
    frames = []
    for seed in range(4):
        prof, truth = make_profiles(
            8,
            zoning_types=("rim_brighter", "rim_darker"),
            quantity=quantity,
            noise=noise,
            seed=seed,
        )
        out = fit_diffusion(prof, model="erf")
        merged = out.merge(truth[["label", "sqrt_dt_um"]], on="label", suffixes=("", "_true"))
        frames.append(merged)
    m = pd.concat(frames, ignore_index=True)
    assert len(m) == 64
    ok = m[m.fit_status == "ok"]
    pull = (ok.sqrt_dt_um - ok.sqrt_dt_um_true) / ok.sqrt_dt_err_um
    rel = (ok.sqrt_dt_um - ok.sqrt_dt_um_true).abs() / ok.sqrt_dt_um_true
    assert 0.7 < pull.std() < 1.4
    assert abs(pull.mean()) < 0.4
    assert np.percentile(pull.abs(), 95) < 3.0
    if quantity == "composition":
        assert len(ok) == 64
        assert rel.max() < 0.3
        assert rel.median() < 0.08
    else:
        # a few 8-DN steps at SNR 3 collapse to a sharp step: flagged, never silently "ok"
        assert len(ok) >= 54
        assert set(m.fit_status) <= {"ok", "unresolved"}
        assert rel.median() < 0.3


def test_synthetic_step_positions_and_plateaus():
    prof, truth = make_profiles(
        6,
        zoning_types=("rim_brighter", "rim_darker"),
        quantity="composition",
        noise=0.003,
        seed=11,
    )
    out = fit_diffusion(prof, rim="open").merge(truth, on="label", suffixes=("", "_true"))
    p_true = out.step_positions_um_true.map(lambda t: t[0])
    assert (out.step_position_um - p_true).abs().max() < 1.0
    outer_true = out.plateau_values.map(lambda t: t[0])
    inner_true = out.plateau_values.map(lambda t: t[1])
    assert (out.outer_value - outer_true).abs().max() < 0.5  # 0.3 mol % noise, many points
    assert (out.inner_value - inner_true).abs().max() < 0.5


def test_sharp_step_is_unresolved_with_an_upper_bound():
    d = np.arange(0.0, 60.0, 1.0)
    rng = np.random.default_rng(0)
    y = erf_profile(d, 80.0, 90.0, 30.3, 0.05) + rng.normal(0, 0.1, d.size)
    for model in ("erf", "step"):
        row = fit_diffusion(table((1, d, y, 0.1)), diffusivity_um2_s=1e-3, model=model).iloc[0]
        assert row.fit_status == "unresolved", model
        upper = row.sqrt_dt_um + row.sqrt_dt_err_um
        assert 0.05 <= upper < 1.0  # below the 1 um spacing, above the truth
        assert np.isnan(row.timescale_days)  # a bound, not a number
        assert row.timescale_days_lo == 0.0
        assert row.timescale_days_hi == pytest.approx(upper**2 / 1e-3 / DAY, rel=1e-6)
        assert "finer spacing" in row.fit_error


def test_non_monotonic_distances_are_reported_and_the_others_fitted():
    d = np.arange(0.0, 60.0, 1.0)
    y = erf_profile(d, 80.0, 88.0, 30.0, 3.0)
    back_and_forth = np.concatenate([d[:30], d[20:50]])  # a second traverse under one label
    prof = table((1, d, y), (2, back_and_forth, erf_profile(back_and_forth, 80, 88, 30, 3)))
    out = fit_diffusion(prof, diffusivity_um2_s=1e-3).set_index("label")
    assert out.loc[1, "fit_status"] == "ok"
    assert out.loc[2, "fit_status"] == "distances not monotonic"
    assert "distance order" in out.loc[2, "fit_error"]
    assert np.isnan(out.loc[2, "timescale_days"])


# ---------------------------------------------------------------------------- timescales
def test_timescale_from_a_known_d_and_t():
    d_um2_s, t_days = 2e-4, 30.0  # 2e-16 m^2/s, a month
    s = math.sqrt(d_um2_s * t_days * DAY)  # 22.8 um
    d = np.arange(0.0, 300.0, 2.0)
    rng = np.random.default_rng(1)
    y = erf_profile(d, 84.0, 88.0, 120.0, s) + rng.normal(0, 0.02, d.size)
    row = fit_diffusion(table((1, d, y, 0.02)), diffusivity_um2_s=d_um2_s).iloc[0]
    assert row.model == "step"
    assert row.timescale_days == pytest.approx(t_days, rel=0.03)
    assert row.timescale_days_lo < t_days < row.timescale_days_hi
    assert row.diffusivity_um2_s == d_um2_s


def test_olivine_timescale_end_to_end():
    """Fo profile relaxed for 100 days with the paper's D -> 100 days back."""
    t_c, p_mpa, dqfm, angles = 1150.0, 200.0, 0.5, (60.0, 60.0, 45.0)
    outer, inner = 78.0, 86.0  # mean Fo82 -> XFe 0.18
    log_fo2 = ref_qfm_log_pa(t_c, p_mpa) + dqfm
    d001 = 10 ** ref_log_d001_m2s(t_c, p_mpa, log_fo2, 0.18) * 1e12
    cos2 = np.cos(np.deg2rad(angles)) ** 2  # 0.25, 0.25, 0.5
    d_trav = d001 * (cos2[0] / 6 + cos2[1] / 6 + cos2[2])
    t_days = 100.0
    s = math.sqrt(d_trav * t_days * DAY)
    d = np.arange(0.0, 5 * s + 60, max(s / 8, 0.5))
    y = erf_profile(d, outer, inner, 2 * s + 10, s)
    out = fit_diffusion(
        table((7, d, y)),
        mineral="olivine",
        temperature_c=t_c,
        pressure_mpa=p_mpa,
        delta_qfm=dqfm,
        angles_deg=angles,
        model="erf",
    )
    row = out.iloc[0]
    assert row.xfe == pytest.approx(0.18, abs=1e-6)
    assert row.diffusivity_um2_s == pytest.approx(d_trav, rel=0.005)
    assert row.timescale_days == pytest.approx(t_days, rel=0.01)
    assert "Dohmen" in row.diffusion_assumption


# ---------------------------------------------------------------------------- D&C 2007
def test_dohmen_chakraborty_value_at_1200c_qfm_fo85():
    # by hand: T = 1473.15 K; QFM (Frost 1991) = -25096.3/T + 8.735 = -8.301 log bar
    # = -3.301 log Pa; Arrhenius 201000 / (2.303 * 8.314 * 1473.15) = 7.126;
    # fO2 term (-3.301 + 7) / 6 = 0.617; XFe term 3 * 0.05 = 0.15
    # -> log10 D001 = -9.21 - 7.126 + 0.617 + 0.15 = -15.57 m^2/s (2.7e-16 m^2/s).
    assert qfm_log_fo2_pa(1200.0, 0.1) == pytest.approx(-3.301, abs=0.002)
    d_um2_s = olivine_diffusivity(1200.0, xfe=0.15, pressure_mpa=0.1, delta_qfm=0.0)
    log_d = math.log10(d_um2_s * 1e-12)
    assert log_d == pytest.approx(-15.57, abs=0.01)
    assert log_d == pytest.approx(
        ref_log_d001_m2s(1200.0, 0.1, ref_qfm_log_pa(1200.0, 0.1), 0.15), abs=0.003
    )
    # pressure: +500 MPa lowers D by 7e-6 * 5e8 / (2.303 R T) = 0.124 log units at fixed fO2
    hi_p = olivine_diffusivity(1200.0, xfe=0.15, pressure_mpa=500.1, log_fo2_pa=-3.301)
    lo_p = olivine_diffusivity(1200.0, xfe=0.15, pressure_mpa=0.1, log_fo2_pa=-3.301)
    assert math.log10(lo_p / hi_p) == pytest.approx(3500 / (2.303 * 8.314 * 1473.15), abs=0.002)
    # composition: D doubles from Fo90 to Fo80 (3 * 0.1 = 0.3 log units)
    ratio = olivine_diffusivity(1200.0, xfe=0.2, delta_qfm=0) / olivine_diffusivity(
        1200.0, xfe=0.1, delta_qfm=0
    )
    assert ratio == pytest.approx(10**0.3, rel=1e-9)


def test_ped_mechanism_below_1e_10_pa():
    # PED (fO2 <= 1e-10 Pa): log D = -8.91 - (220000 + PV) / (2.303 R T) + 3 (XFe - 0.1)
    t_k = 900 + 273.15
    ref = -8.91 - 220000 / (2.303 * 8.314 * t_k) + 3 * 0.05
    got = math.log10(olivine_diffusivity(900.0, xfe=0.15, log_fo2_pa=-11.0) * 1e-12)
    assert got == pytest.approx(ref, abs=0.003)


def test_fit_diffusion_uses_dc2007_with_xfe_from_fo_profile():
    d = np.arange(0.0, 80.0, 1.0)
    y = erf_profile(d, 80.0, 90.0, 40.0, 4.0)  # mean Fo85
    out = fit_diffusion(
        table((1, d, y)),
        mineral="olivine",
        temperature_c=1200,
        pressure_mpa=0.1,
        delta_qfm=0.0,
        angles_deg=(90, 90, 0),
        model="erf",
    )
    ref = 10 ** ref_log_d001_m2s(1200.0, 0.1, ref_qfm_log_pa(1200.0, 0.1), 0.15) * 1e12
    assert out.xfe.iloc[0] == pytest.approx(0.15, abs=1e-6)
    assert out.diffusivity_um2_s.iloc[0] == pytest.approx(ref, rel=0.005)
    # no condition uncertainty and a noise-free profile: the Monte Carlo median is t itself
    assert out.timescale_days.iloc[0] == pytest.approx(16.0 / ref / DAY, rel=0.005)


def test_anisotropy_rule():
    kw = dict(xfe=0.15, pressure_mpa=100, delta_qfm=0.0)
    d001 = olivine_diffusivity(1200.0, angles_deg=(90, 90, 0), **kw)
    assert olivine_diffusivity(1200.0, **kw) == pytest.approx(d001)  # no angles: [001]
    assert olivine_diffusivity(1200.0, angles_deg=(0, 90, 90), **kw) == pytest.approx(d001 / 6)
    assert olivine_diffusivity(1200.0, angles_deg=(90, 0, 90), **kw) == pytest.approx(d001 / 6)
    # 45 degrees between [100] and [001]: 0.5/6 + 0.5
    assert olivine_diffusivity(1200.0, angles_deg=(45, 90, 45), **kw) == pytest.approx(
        d001 * (0.5 / 6 + 0.5)
    )
    with pytest.raises(ZonationInputError, match="three"):
        olivine_diffusivity(1200.0, angles_deg=(0, 90), **kw)


def test_angles_that_are_not_a_direction_warn_and_are_used_as_given():
    """Sum of cos^2 = 1.19 (the Kilauea Ol5B_lg angles): warned, used as the authors did."""
    d = np.arange(0.0, 60.0, 1.0)
    prof = table((1, d, erf_profile(d, 80, 88, 30, 3)))
    kw = dict(mineral="olivine", temperature_c=1200, pressure_mpa=100, delta_qfm=0,
              model="erf", n_samples=0)
    with pytest.warns(UserWarning, match="do not describe one direction"):
        out = fit_diffusion(prof, angles_deg=(54, 28, 105), **kw).iloc[0]
    along = quiet(fit_diffusion, prof, angles_deg=(90, 90, 0), **kw).iloc[0]
    c2 = np.cos(np.deg2rad([54, 28, 105])) ** 2
    assert out.diffusivity_um2_s == pytest.approx(
        along.diffusivity_um2_s * ((c2[0] + c2[1]) / 6 + c2[2]), rel=1e-9)
    assert "used as given" in out.diffusion_assumption


def test_no_angles_states_the_assumption():
    d = np.arange(0.0, 60.0, 1.0)
    prof = table((1, d, erf_profile(d, 80, 88, 30, 3)))
    with pytest.warns(UserWarning, match="angles_deg"):
        out = fit_diffusion(
            prof, mineral="olivine", temperature_c=1200, pressure_mpa=100, delta_qfm=0
        )
    assert "[001]" in out.diffusion_assumption.iloc[0]
    assert "minima" in out.diffusion_assumption.iloc[0]


# ---------------------------------------------------------------------------- uncertainty
def test_temperature_uncertainty_sets_the_interval():
    """Noise-free profile, T = 1200 +/- 30 C at fixed fO2: t is proportional to 1/D(T), so the
    5-95 % interval of t is 1/D at T -/+ 1.645 sigma (D monotonic in T)."""
    for fo2 in ({"delta_qfm": 0.0}, {"log_fo2_pa": -3.3}):
        d0 = olivine_diffusivity(1200.0, xfe=0.15, pressure_mpa=100, **fo2)
        up = olivine_diffusivity(1230.0, xfe=0.15, pressure_mpa=100, **fo2)
        dn = olivine_diffusivity(1170.0, xfe=0.15, pressure_mpa=100, **fo2)
        assert 1.2 < up / d0 < 1.7
        assert 1.2 < d0 / dn < 1.7
    t1, t2 = 1473.15, 1443.15
    d0 = olivine_diffusivity(1200.0, xfe=0.15, log_fo2_pa=-3.3)
    dn = olivine_diffusivity(1170.0, xfe=0.15, log_fo2_pa=-3.3)
    assert d0 / dn == pytest.approx(math.exp(201000 / 8.314 * (1 / t2 - 1 / t1)), rel=0.002)

    d = np.arange(0.0, 100.0, 1.0)
    y = erf_profile(d, 80.0, 90.0, 45.0, 5.0)
    kw = dict(mineral="olivine", temperature_c=1200, pressure_mpa=100, log_fo2_pa=-3.3,
              angles_deg=(90, 90, 0), model="erf", n_samples=20000, d_law="dc07",
              ea_kj_mol_err=0)
    plain = fit_diffusion(table((1, d, y)), **kw).iloc[0]
    wide = fit_diffusion(table((1, d, y)), temperature_c_err=30, **kw).iloc[0]
    assert plain.timescale_days_hi / plain.timescale_days_lo < 1.001
    t0 = wide.timescale_days
    assert t0 == pytest.approx(plain.timescale_days, rel=0.01)
    k = 1.6449 * 30
    d_mid = olivine_diffusivity(1200.0, xfe=0.15, pressure_mpa=100, log_fo2_pa=-3.3)
    d_cold = olivine_diffusivity(1200.0 - k, xfe=0.15, pressure_mpa=100, log_fo2_pa=-3.3)
    d_hot = olivine_diffusivity(1200.0 + k, xfe=0.15, pressure_mpa=100, log_fo2_pa=-3.3)
    assert wide.timescale_days_hi / t0 == pytest.approx(d_mid / d_cold, rel=0.03)
    assert t0 / wide.timescale_days_lo == pytest.approx(d_hot / d_mid, rel=0.03)


def test_fit_error_and_temperature_error_combine():
    rng = np.random.default_rng(5)
    d = np.arange(0.0, 100.0, 1.0)
    y = erf_profile(d, 80.0, 90.0, 45.0, 5.0) + rng.normal(0, 0.3, d.size)
    kw = dict(mineral="olivine", temperature_c=1200, pressure_mpa=100, delta_qfm=0.0,
              angles_deg=(90, 90, 0), model="erf", n_samples=20000, ea_kj_mol_err=0)
    fit_only = fit_diffusion(table((1, d, y, 0.3)), **kw).iloc[0]
    both = fit_diffusion(table((1, d, y, 0.3)), temperature_c_err=30, **kw).iloc[0]
    assert fit_only.sqrt_dt_err_um > 0
    # t = s^2 / D: ln t has the 1-sigma 2 ds / s of the fit alone
    assert fit_only.timescale_days_hi / fit_only.timescale_days == pytest.approx(
        math.exp(1.6449 * 2 * fit_only.sqrt_dt_err_um / fit_only.sqrt_dt_um), rel=0.02
    )
    assert both.timescale_days_hi > fit_only.timescale_days_hi
    assert both.timescale_days_lo < fit_only.timescale_days_lo


def test_direct_diffusivity_error():
    d = np.arange(0.0, 100.0, 1.0)
    y = erf_profile(d, 10.0, 20.0, 45.0, 5.0)
    row = fit_diffusion(table((1, d, y)), diffusivity_um2_s=1e-3, diffusivity_um2_s_err=2e-4,
                        model="erf", n_samples=20000).iloc[0]
    # D log-normal with sigma ln(1.2): t's 95th percentile is t * 1.2^1.645
    assert row.timescale_days_hi / row.timescale_days == pytest.approx(1.2**1.6449, rel=0.02)


# ---------------------------------------------------------------------------- bad input
def _good_profile(label=1):
    d = np.arange(0.0, 60.0, 1.0)
    return (label, d, erf_profile(d, 80.0, 88.0, 30.0, 3.0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(mineral="olivine", pressure_mpa=100, delta_qfm=0), "temperature_c"),
        (dict(mineral="olivine", temperature_c=1200, pressure_mpa=100), "delta_qfm or log_fo2_pa"),
        (dict(mineral="olivine"), "temperature_c and delta_qfm or log_fo2_pa"),
        (
            dict(
                mineral="olivine", temperature_c=1200, pressure_mpa=100, delta_qfm=0, log_fo2_pa=-3
            ),
            "both delta_qfm and log_fo2_pa",
        ),
        (dict(mineral="olivine", temperature_c=1700, delta_qfm=0), "kelvin"),
        (dict(mineral="olivine", temperature_c=300, delta_qfm=0), "outside 600-1600"),
        (dict(mineral="olivine", d_law="dfens", temperature_c=1200), "log_fo2_pa"),
        (dict(mineral="olivine", d_law="magic", temperature_c=1200, delta_qfm=0), "d_law"),
        (dict(mineral="plagioclase", temperature_c=1100), "diffusivity_um2_s"),
        (dict(temperature_c=1200, delta_qfm=0), "mineral"),
        (dict(diffusivity_um2_s=1e-3, temperature_c=1200), "not both"),
        (dict(diffusivity_um2_s=-1.0), "positive"),
        (dict(diffusivity_um2_s=0.0), "positive"),
        (dict(diffusivity_um2_s=1e-3, temperature_c_err=30), "diffusivity_um2_s_err"),
        (dict(model="magic"), "model"),
        (dict(bogus_option=3), "unknown option"),
        (dict(mineral="olivine", temperature_c=1200, delta_qfm=0, xfe=1.5), "xfe"),
        (dict(d_law="arrhenius", temperature_c=1200, ea_kj_mol=200), "d0_m2_s"),
        (dict(mineral="olivine", temperature_c=1200, delta_qfm=0, euler_deg=(0, 0, 0)),
         "azimuth_deg"),
        (dict(rim="leaky"), "rim"),
        (dict(model="initial"), "initial="),
    ],
)
def test_bad_conditions_raise(kwargs, match):
    with pytest.raises(ZonationInputError, match=match):
        quiet(fit_diffusion, table(_good_profile()), **kwargs)


def test_bad_conditions_of_one_profile_do_not_stop_the_others():
    prof = table(_good_profile(1), _good_profile(2), _good_profile(3))
    cond = pd.DataFrame({"label": [1, 2, 3], "temperature_c": [1200.0, 1700.0, 1150.0],
                         "pressure_mpa": 100.0, "delta_qfm": 0.0,
                         "angle_100_deg": 90.0, "angle_010_deg": 90.0, "angle_001_deg": 0.0})
    out = fit_diffusion(prof, mineral="olivine", conditions=cond).set_index("label")
    assert out.loc[[1, 3], "fit_status"].eq("ok").all()
    assert out.loc[2, "fit_status"] == "bad conditions"
    assert "kelvin" in out.loc[2, "fit_error"]
    # each profile at its own temperature: the hotter one is younger
    assert out.loc[1, "timescale_days"] < out.loc[3, "timescale_days"]
    assert out.loc[1, "temperature_c"] == 1200.0


def test_grey_values_need_xfe():
    d = np.arange(0.0, 60.0, 1.0)
    prof = table((1, d, erf_profile(d, 160.0, 140.0, 30.0, 3.0)))  # grey DN, not Fo
    kw = dict(
        mineral="olivine", temperature_c=1200, pressure_mpa=100, delta_qfm=0, angles_deg=(90, 90, 0)
    )
    with pytest.raises(ZonationInputError, match="xfe"):
        fit_diffusion(prof, **kw)
    out = fit_diffusion(prof, xfe=0.15, **kw)
    assert out.xfe.iloc[0] == 0.15
    assert np.isfinite(out.timescale_days.iloc[0])


def test_not_a_profiles_table():
    with pytest.raises(ZonationInputError):
        fit_diffusion(pd.DataFrame({"label": [1], "value": [2.0]}))


def test_bad_profiles_are_recorded_and_the_others_fitted():
    rng = np.random.default_rng(2)
    d = np.arange(0.0, 40.0, 1.0)
    prof = table(
        _good_profile(1),
        (2, [0.0, 1.0], [80.0, 85.0]),  # two points
        (3, d, np.full(d.size, np.nan)),  # NaNs only
        (4, d, 84 + rng.normal(0, 0.2, d.size), 0.2),  # unzoned
        _good_profile(5),
        (6, np.where(d < 5, np.nan, d), erf_profile(d, 80.0, 88.0, 20.0, 2.0)),  # some NaNs
        (7, d, erf_profile(d, 80.0, 88.0, 38.5, 1.0)),  # the step at the last points
        (8, d, erf_profile(d, 80.0, 88.0, 20.0, 2.0) + rng.normal(0, 3.0, d.size), 3.0),
    )
    out = fit_diffusion(prof, diffusivity_um2_s=1e-3, rim="open").set_index("label")
    assert list(out.index) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert out.loc[[1, 5, 6], "fit_status"].eq("ok").all()
    assert out.loc[6, "n_points"] == 35
    assert out.loc[6, "sqrt_dt_um"] == pytest.approx(2.0, rel=1e-2)
    for lab in (2, 3, 4, 7, 8):
        assert out.loc[lab, "fit_status"] != "ok"
        assert out.loc[lab, "fit_error"]
        assert np.isnan(out.loc[lab, "timescale_days"])
    assert out.loc[2, "fit_status"] == "too few points"
    assert out.loc[2, "n_points"] == 2
    assert out.loc[3, "fit_status"] == "no data"
    assert out.loc[4, "fit_status"] == "no step"
    assert out.loc[7, "fit_status"] == "step at the core"
    assert out.loc[8, "fit_status"] in ("too noisy", "no step")
    assert out.loc[[1, 5], "sqrt_dt_um"].sub(3.0).abs().max() < 0.03


def test_unzoned_synthetic_profiles_give_no_step():
    prof, _ = make_profiles(10, zoning_types=("unzoned",), seed=4)
    out = fit_diffusion(prof)
    assert (out.fit_status != "ok").all()
    assert out.timescale_days.isna().all()


def test_channels_are_fitted_separately():
    d = np.arange(0.0, 60.0, 1.0)
    a = pd.DataFrame(
        {"label": 1, "distance_um": d, "value": erf_profile(d, 1, 2, 30, 2.0), "channel": "Fe"}
    )
    b = pd.DataFrame(
        {"label": 1, "distance_um": d, "value": erf_profile(d, 5, 3, 25, 4.0), "channel": "Mg"}
    )
    out = fit_diffusion(pd.concat([a, b]), rim="open").set_index("channel")
    assert out.loc["Fe", "sqrt_dt_um"] == pytest.approx(2.0, rel=1e-2)
    assert out.loc["Mg", "sqrt_dt_um"] == pytest.approx(4.0, rel=1e-2)


# ---------------------------------------------------------------------------- FD model
def test_fd_matches_erf_for_constant_d():
    d = np.arange(0.0, 120.0, 1.0)
    rng = np.random.default_rng(7)
    cases = [(1, 60.0, 3.0), (2, 55.0, 8.0)]
    prof = table(
        *[
            (lab, d, erf_profile(d, 0.6, 0.66, p, s) + rng.normal(0, 5e-4, d.size), 5e-4)
            for lab, p, s in cases
        ]
    )
    out = fit_diffusion(prof, model="fd", rim="open").set_index("label")
    for lab, p, s in cases:
        assert out.loc[lab, "fit_status"] == "ok"
        assert out.loc[lab, "sqrt_dt_um"] == pytest.approx(s, rel=0.03)
        assert out.loc[lab, "step_position_um"] == pytest.approx(p, abs=0.3)
    assert (out.model == "step").all()
    assert not out.diffusion_assumption.str.contains("each node").any()


def _mol_reference(length, p, outer, inner, tau, xref, n=720):
    """Method of lines: dc/dt = d/dx(D(c) dc/dx), D = 10^(3 (XFe - xref)), no flux at ends.

    Cell-centred finite volumes (n cells; p must fall on a cell edge), stiff BDF in time.
    """
    dx = length / n
    assert abs(p / dx - round(p / dx)) < 1e-9
    x = (np.arange(n) + 0.5) * dx
    c0 = np.where(x < p, outer, inner).astype(float)

    def drel(c):
        return 10 ** (3 * ((1 - c / 100) - xref))

    def rhs(_t, c):
        dn = drel(c)
        df = 0.5 * (dn[1:] + dn[:-1])
        flux = df * np.diff(c) / dx
        out = np.zeros_like(c)
        out[:-1] += flux / dx
        out[1:] -= flux / dx
        return out

    sparsity = diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(n, n))
    sol = solve_ivp(rhs, (0, tau), c0, method="BDF", jac_sparsity=sparsity, rtol=1e-7, atol=1e-9)
    return x, sol.y[:, -1]


def test_fd_composition_dependent_recovers_time():
    """Olivine Fo 75 -> 90: D varies 2.8x across the step; FD recovers D_ref t, erf is off."""
    outer, inner, p, length = 75.0, 90.0, 40.0, 90.0
    xref = 1 - 0.5 * (outer + inner) / 100
    tau = 36.0  # (D_ref t) in um^2: sqrt = 6 um
    x, c = _mol_reference(length, p, outer, inner, tau, xref)
    d = np.arange(0.0, length + 1e-9, 1.0)
    rng = np.random.default_rng(8)
    sigma = 0.05
    y = np.interp(d, x, c) + rng.normal(0, sigma, d.size)
    prof = table((1, d, y, sigma))
    kw = dict(mineral="olivine", diffusivity_um2_s=1e-3)
    fd = fit_diffusion(prof, model="fd", rim="closed", **kw).iloc[0]
    er = fit_diffusion(prof, model="erf", **kw).iloc[0]
    assert fd.fit_status == "ok"
    assert fd.sqrt_dt_um**2 == pytest.approx(tau, rel=0.04)
    assert fd.timescale_days == pytest.approx(tau / 1e-3 / DAY, rel=0.04)
    assert fd.chi2_red < 1.5
    # the symmetric erf cannot follow the asymmetric profile
    assert er.chi2_red > 2 * fd.chi2_red
    assert "each node" in fd.diffusion_assumption


def test_fd_fixed_rim_matches_the_image_solution():
    """Rim held at the outer value (melt contact), constant D: the method of images gives
    c = a + (b - a)/2 [erfc((p - x)/(2s)) - erfc((p + x)/(2s))]; a plain erf cannot fit it."""
    from scipy.special import erfc

    a, b, p, s = 150.0, 130.0, 8.0, 4.0
    d = np.arange(0.0, 60.0, 0.5)
    clean = a + (b - a) / 2 * (erfc((p - d) / (2 * s)) - erfc((p + d) / (2 * s)))
    y = clean + np.random.default_rng(0).normal(0, 0.05, d.size)
    prof = table((1, d, y, 0.05))
    fd = fit_diffusion(prof, model="step", rim="fixed").iloc[0]
    er = fit_diffusion(prof, model="erf").iloc[0]
    assert fd.fit_status == "ok"
    assert fd.sqrt_dt_um == pytest.approx(s, rel=0.03)
    assert fd.step_position_um == pytest.approx(p, abs=0.3)
    assert fd.chi2_red < 1.3
    assert er.chi2_red > fd.chi2_red
    assert "rim held" in fd.diffusion_assumption
    assert "first point" in fd.diffusion_assumption


def test_window_starts_at_the_first_point_and_distances_are_not_rezeroed():
    """The same relaxed profile sampled from 6 um (no point at the rim): with the window at
    the first point and the rim held there, the fit is that of the same boundary problem
    shifted by 6 um; the distances in the result are the table's own."""
    from scipy.special import erfc

    a, b, p, s, x0 = 150.0, 130.0, 14.0, 4.0, 6.0
    d = np.arange(x0, 70.0, 0.5)
    u = d - x0  # the boundary problem starts at the first point
    y = a + (b - a) / 2 * (erfc((p - x0 - u) / (2 * s)) - erfc((p - x0 + u) / (2 * s)))
    row = fit_diffusion(table((1, d, y, 0.05))).iloc[0]
    assert row.domain_start_um == x0
    assert row.step_position_um == pytest.approx(p, abs=0.3)  # not p - x0
    assert row.sqrt_dt_um == pytest.approx(s, rel=0.03)
    zero = fit_diffusion(table((1, d, y, 0.05)), rim_at="zero").iloc[0]
    assert zero.domain_start_um == 0.0
    assert zero.chi2_red > row.chi2_red  # the rim held at 0 is the wrong problem here


def test_window_isolates_one_step_of_a_multi_step_profile():
    """Three or four plateaus: a single erf over the whole profile mixes the steps; within
    15 um of the largest jump (steps are >= ~10 um apart, sqrt_dt <= 5 um) it does not."""
    prof, truth = make_profiles(
        20, zoning_types=("multi_step",), quantity="composition", noise=0.003, seed=3
    )
    rel = {}
    for w in (None, 15.0):
        out = fit_diffusion(prof, window_um=w, model="erf").merge(
            truth[["label", "sqrt_dt_um"]], on="label", suffixes=("", "_true")
        )
        ok = out[out.fit_status == "ok"]
        assert len(ok) >= 18
        rel[w] = ((ok.sqrt_dt_um - ok.sqrt_dt_um_true) / ok.sqrt_dt_um_true).abs().median()
        if w is not None:
            assert (out.n_points <= 31).all()
    assert rel[15.0] < 0.15
    assert rel[None] > 2 * rel[15.0]


def test_multi_step_model_fits_all_steps_with_one_time():
    """The generator's multi-step profiles (one sqrt(Dt) for every step): the multi-step model
    with the plateaus describe_zoning found recovers it better than one window on one step."""
    from napari_zonation import describe_zoning

    prof, truth = make_profiles(
        8, zoning_types=("multi_step",), quantity="composition", noise=0.003, seed=5
    )
    zoning = describe_zoning(prof)
    out = fit_diffusion(prof, model="multi_step", zoning=zoning, rim="open").merge(
        truth[["label", "sqrt_dt_um", "n_plateaus"]], on="label", suffixes=("", "_true"))
    ok = out[out.fit_status == "ok"]
    assert len(ok) >= 6
    rel = (ok.sqrt_dt_um / ok.sqrt_dt_um_true - 1).abs()
    assert rel.median() < 0.1
    assert (ok.plateau_levels.map(len) == ok.n_plateaus).mean() >= 0.75


def test_empty_table_gives_an_empty_result_with_the_columns():
    out = fit_diffusion(pd.DataFrame({"label": [], "distance_um": [], "value": []}))
    assert len(out) == 0
    for col in ("label", "sqrt_dt_um", "timescale_days", "timescale_days_lo",
                "timescale_days_hi", "fit_status", "diffusion_assumption"):
        assert col in out.columns


def test_missing_pressure_defaults_to_1_bar_with_a_warning():
    d = np.arange(0.0, 60.0, 1.0)
    prof = table((1, d, erf_profile(d, 80, 88, 30, 3)))
    kw = dict(mineral="olivine", temperature_c=1200, delta_qfm=0, angles_deg=(90, 90, 0))
    with pytest.warns(UserWarning, match="pressure_mpa"):
        out = fit_diffusion(prof, model="erf", **kw)
    assert "0.1 MPa" in out.diffusion_assumption.iloc[0]
    ref = 10 ** ref_log_d001_m2s(1200.0, 0.1, ref_qfm_log_pa(1200.0, 0.1), 0.16) * 1e12
    assert out.diffusivity_um2_s.iloc[0] == pytest.approx(ref, rel=0.005)


def test_blur_keeps_a_sharp_step_from_being_read_as_diffusion():
    """A sharp step measured with a 3 um (FWHM) beam, 0.5 um apart: the blurred step alone
    looks like sqrt(Dt) = 3 / 2.355 / sqrt(2) = 0.9 um; with the blur in the model the step is
    unresolved (no timescale), and a relaxed step under the same blur is recovered."""
    fwhm = 3.0
    sb = fwhm / 2.3548
    d = np.arange(0.0, 60.0, 0.5)
    rng = np.random.default_rng(3)
    sharp = erf_profile(d, 80.0, 88.0, 30.0, sb / math.sqrt(2)) + rng.normal(0, 0.02, d.size)
    naive = fit_diffusion(table((1, d, sharp, 0.02)), rim="open").iloc[0]
    assert naive.fit_status == "ok"
    assert naive.sqrt_dt_um == pytest.approx(sb / math.sqrt(2), rel=0.05)
    aware = fit_diffusion(table((1, d, sharp, 0.02)), rim="open", blur_fwhm_um=fwhm,
                          diffusivity_um2_s=1e-3).iloc[0]
    assert aware.fit_status == "unresolved"
    assert np.isnan(aware.timescale_days)
    # s = 2 um relaxed, then blurred: the erf of width sqrt(s^2 + sb^2 / 2)
    relaxed = erf_profile(d, 80.0, 88.0, 30.0, math.sqrt(4.0 + sb**2 / 2))
    r = fit_diffusion(table((1, d, relaxed + rng.normal(0, 0.02, d.size), 0.02)), rim="open",
                      blur_fwhm_um=fwhm).iloc[0]
    assert r.sqrt_dt_um == pytest.approx(2.0, rel=0.03)
    assert "blur FWHM 3" in r.diffusion_assumption


def test_image_profiles_get_a_pixel_blur_by_default():
    d = np.arange(1.0, 60.0, 1.0)
    prof = table((1, d, erf_profile(d, 80, 88, 30, 3)))
    prof["source"] = "rim"
    row = fit_diffusion(prof).iloc[0]
    assert row.blur_fwhm_um == pytest.approx(2.3548 * math.sqrt((1 / 2.3548) ** 2 + 1 / 12))
    prof["source"] = "csv"
    assert fit_diffusion(prof).iloc[0].blur_fwhm_um == 0.0


@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_a_wide_step_short_of_its_core_plateau_is_not_called_unzoned(noise):
    """An erf step of 12 (40 times the noise) whose core side runs out of the profile: the
    status names the missing plateau, not "no step"; a flat profile stays "no step"."""
    rng = np.random.default_rng(3)
    d = np.arange(1.5, 30.0, 1.0)
    rising = erf_profile(d, 100.0, 112.0, 20.0, 4.5) + rng.normal(0.0, noise, d.size)
    flat = 100.0 + rng.normal(0.0, 0.3, d.size)
    prof = table((1, d, rising, 0.3), (2, d, flat, 0.3))
    out = fit_diffusion(prof, diffusivity_um2_s=1e-3, n_samples=0).set_index("label")
    assert out.loc[1, "fit_status"] == "step at the core"
    assert "core plateau" in out.loc[1, "fit_error"]
    assert np.isnan(out.loc[1, "timescale_days"])
    assert out.loc[2, "fit_status"] == "no step"


def test_few_point_erf_interval_is_calibrated_against_the_analytical_truth():
    """The 5-95 % interval of a few-point erf fit (22 points across one step, sigma given)
    covers the true timescale in 85-95 % of 300 noise draws: calibrated, not just wide."""
    rng = np.random.default_rng(7)
    s_true, position, d_um2_s = 2.0, 9.0, 1e-3
    d = np.arange(1.0, 23.0, 1.0)
    frames = []
    for k in range(300):
        y = 100 + 10 * 0.5 * (1 + erf((d - position) / (2 * s_true)))
        frames.append(pd.DataFrame({"label": k, "distance_um": d, "sigma": 0.7,
                                    "value": y + rng.normal(0.0, 0.7, d.size)}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = fit_diffusion(pd.concat(frames), diffusivity_um2_s=d_um2_s, model="erf")
    ok = out[out.fit_status == "ok"]
    assert len(ok) >= 290
    t_true = s_true**2 / d_um2_s / DAY
    covered = (ok.timescale_days_lo <= t_true) & (t_true <= ok.timescale_days_hi)
    assert 0.85 <= covered.mean() <= 0.95
    # and not by being wide: the interval's half-width in ln t (1.645 sigma) matches the
    # actual scatter of the fitted ln t over the draws to within 20 %
    half = np.log(ok.timescale_days_hi / ok.timescale_days_lo) / 2.0 / 1.645
    scatter = float(np.std(np.log(ok.timescale_days)))
    assert float(np.median(half)) == pytest.approx(scatter, rel=0.2)
