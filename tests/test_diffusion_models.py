"""The finite-volume solver against analytical solutions, the two-stage model against an
independent method-of-lines simulation, and the Monte Carlo intervals' calibration."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.integrate import solve_ivp
from scipy.sparse import diags
from scipy.special import erf, erfc

from napari_zonation import fit_diffusion, olivine_diffusivity
from napari_zonation.diffusion.models import Domain, make_grid
from napari_zonation.diffusion.solver import cell_average_step, control_volumes, relax

DAY = 86400.0


# ---------------------------------------------------------------------------- solver
@pytest.mark.parametrize(("s", "p"), [(2.0, 100.0), (0.7, 73.3), (9.0, 120.0)])
def test_constant_d_step_matches_erf_to_1e3(s, p):
    dom = Domain(0.0, 250.0, rim="closed")
    x = make_grid(dom, [p], s).x
    c0 = cell_average_step(x, [p], [1.0, 0.0])
    c = relax(x, c0, s * s, None, rim="closed", n_steps=60)
    ref = 1.0 - 0.5 * (1 + erf((x - p) / (2 * s)))
    assert np.max(np.abs(c - ref)) < 1e-3


def test_fixed_rim_half_space_matches_erfc_to_1e3():
    s = 3.0
    dom = Domain(0.0, 150.0)
    x = make_grid(dom, [0.0], s).x
    c = relax(x, np.zeros(x.size), s * s, None, rim="fixed", rim_value=1.0, n_steps=60)
    assert np.max(np.abs(c - erfc(x / (2 * s)))) < 1e-3


def _mol(x_edges_n, length, c0_fn, tau, drel, fixed_left=None):
    """Cell-centred method of lines with scipy's BDF: an independent reference."""
    n = x_edges_n
    dx = length / n
    x = (np.arange(n) + 0.5) * dx
    c0 = c0_fn(x)

    def rhs(_t, c):
        dn = drel(c)
        df = 0.5 * (dn[1:] + dn[:-1])
        flux = df * np.diff(c) / dx
        out = np.zeros_like(c)
        out[:-1] += flux / dx
        out[1:] -= flux / dx
        if fixed_left is not None:  # Dirichlet at x = 0, half a cell from the first centre
            out[0] += dn[0] * (fixed_left - c[0]) / (0.5 * dx) / dx
        return out

    sp = diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(n, n))
    sol = solve_ivp(rhs, (0, tau), c0, method="BDF", jac_sparsity=sp, rtol=1e-8, atol=1e-10)
    return x, sol.y[:, -1]


def test_composition_dependent_d_matches_the_method_of_lines():
    """D = 10^(3 (XFe - 0.15)) from Fo80 to Fo90: D differs 2x across the step."""

    def drel(c):
        return 10 ** (3 * ((1 - c / 100) - 0.15))

    p, tau = 40.0, 25.0
    xr, cr = _mol(1600, 100.0, lambda x: np.where(x < p, 80.0, 90.0), tau, drel)
    dom = Domain(0.0, 100.0, rim="closed")
    x = make_grid(dom, [p], 5.0).x
    c = relax(x, cell_average_step(x, [p], [80.0, 90.0]), tau, drel, rim="closed", n_steps=80)
    assert np.max(np.abs(np.interp(xr, x, c) - cr)) < 0.01  # of a 10 Fo step: 1e-3


def test_costa_drift_conserves_mass_and_reaches_exp_equilibrium():
    """dC/dt = d/dx(D dC/dx - D C g): closed ends conserve mass, and the steady state has zero
    flux, dC/dx = C g, so C ~ exp(g x) for a constant g."""
    x = np.linspace(0.0, 50.0, 401)
    g = 0.04
    c0 = np.ones(x.size)
    vol = control_volumes(x)
    c = relax(x, c0, 1e5, None, rim="closed", drift=np.full(x.size - 1, g), n_steps=200)
    assert np.sum(vol * c) == pytest.approx(np.sum(vol * c0), rel=1e-10)
    ratio = c / c[0]
    assert np.max(np.abs(ratio - np.exp(g * x)) / np.exp(g * x)) < 2e-3


# ---------------------------------------------------------------------------- models
def test_two_stage_history_recovers_both_times():
    """An independent method-of-lines history: stage 1 relaxes a core step at b1 with the
    margin b2 held at the intermediate level; a new rim replaces everything rimward of b2;
    stage 2 relaxes both with the rim held. The two-stage fit recovers sqrt(tau1), sqrt(tau2)."""
    b1, b2, length = 60.0, 20.0, 120.0
    core, mid, rim = 88.0, 84.0, 80.0
    tau1, tau2 = 36.0, 9.0

    def one(_c):
        return np.ones_like(_c)

    # stage 1 on [b2, length], Dirichlet at b2
    xs1, c1 = _mol(1000, length - b2, lambda u: np.where(u + b2 < b1, mid, core), tau1, one,
                   fixed_left=mid)
    xs1 = xs1 + b2
    # stage 2 on [0, length]
    def start2(x):
        return np.where(x < b2, rim, np.interp(x, xs1, c1))

    xs2, c2 = _mol(1200, length, start2, tau2, one, fixed_left=rim)
    d = np.arange(0.0, length + 1e-9, 1.5)
    rng = np.random.default_rng(4)
    sig = 0.03
    y = np.interp(d, xs2, c2) + rng.normal(0, sig, d.size)
    prof = pd.DataFrame({"label": 1, "distance_um": d, "value": y, "sigma": sig})
    out = fit_diffusion(prof, model="two_stage", diffusivity_um2_s=1e-3, n_samples=500).iloc[0]
    assert out.fit_status == "ok"
    assert out.sqrt_dt_um == pytest.approx(math.sqrt(tau2), rel=0.08)
    assert out.stage1_sqrt_dt_um == pytest.approx(math.sqrt(tau1), rel=0.08)
    assert out.timescale_days == pytest.approx(tau2 / 1e-3 / DAY, rel=0.16)
    assert out.stage1_days == pytest.approx(tau1 / 1e-3 / DAY, rel=0.16)
    assert out.stage1_status == "ok"
    assert out.plateau_levels == pytest.approx((rim, mid, core), abs=0.2)
    assert out.step_positions_um == pytest.approx((b2, b1), abs=1.5)


def test_two_stage_core_beyond_the_traverse_is_recovered_with_the_core_fixed():
    """A long stage 1 whose core plateau the traverse never reaches (the measured values stay
    well below the core level): with the core held at its true level (``fix``, what an
    inversion with a narrow core prior does), t1 and t2 are recovered."""
    b1, b2, length = 90.0, 15.0, 110.0
    core, mid, rim = 89.5, 86.0, 85.0
    tau1, tau2 = 400.0, 9.0

    xs1, c1 = _mol(1000, length - b2, lambda u: np.where(u + b2 < b1, mid, core), tau1,
                   np.ones_like, fixed_left=mid)
    xs1 = xs1 + b2

    def start2(x):
        return np.where(x < b2, rim, np.interp(x, xs1, c1))

    xs2, c2 = _mol(1100, length, start2, tau2, np.ones_like, fixed_left=rim)
    d = np.arange(0.0, length + 1e-9, 2.0)
    rng = np.random.default_rng(6)
    sig = 0.03
    y = np.interp(d, xs2, c2) + rng.normal(0, sig, d.size)
    assert y.max() < core - 0.5  # the core plateau is not measured
    prof = pd.DataFrame({"label": 1, "distance_um": d, "value": y, "sigma": sig})
    out = fit_diffusion(prof, model="two_stage", diffusivity_um2_s=1e-3, n_samples=300,
                        fix={"core": core}).iloc[0]
    assert out.fit_status == "ok"
    assert out.stage1_status == "ok"
    assert out.plateau_levels[2] == core
    assert out.stage1_sqrt_dt_um == pytest.approx(math.sqrt(tau1), rel=0.1)
    assert out.sqrt_dt_um == pytest.approx(math.sqrt(tau2), rel=0.1)


def test_two_stage_without_stage_one_gives_a_bound_not_a_time():
    """A history whose first stage never happened (tau1 = 0: the core/intermediate step is
    sharp when the new rim grows): stage 2 is recovered, and stage 1 is reported as
    unresolved, an upper bound with no stage-1 timescale, not a number on the fit's floor."""
    b1, b2, length = 60.0, 20.0, 120.0
    core, mid, rim = 88.0, 84.0, 80.0
    tau2 = 16.0

    def start2(x):
        return np.where(x < b2, rim, np.where(x < b1, mid, core))

    xs2, c2 = _mol(1200, length, start2, tau2, np.ones_like, fixed_left=rim)
    d = np.arange(0.0, length + 1e-9, 1.5)
    rng = np.random.default_rng(5)
    sig = 0.03
    y = np.interp(d, xs2, c2) + rng.normal(0, sig, d.size)
    prof = pd.DataFrame({"label": 1, "distance_um": d, "value": y, "sigma": sig})
    out = fit_diffusion(prof, model="two_stage", diffusivity_um2_s=1e-3, n_samples=300).iloc[0]
    assert out.fit_status == "ok"
    assert out.sqrt_dt_um == pytest.approx(math.sqrt(tau2), rel=0.08)
    assert out.stage1_status == "unresolved"
    assert math.isnan(out.stage1_days)
    assert out.stage1_days_lo == 0.0
    # the bound is an upper bound on a stage that lasted nothing, and a small one
    assert 0.0 < out.stage1_days_hi < tau2 / 1e-3 / DAY
    assert "stage 1 is not resolved" in out.fit_error


def test_given_initial_profile_is_relaxed():
    """model='initial': the user's initial profile (two steps) relaxed with constant D."""
    d = np.arange(0.0, 80.0, 0.5)
    s = 2.5
    y = 10 + 5 * 0.5 * (1 + erf((d - 20) / (2 * s))) - 3 * 0.5 * (1 + erf((d - 50) / (2 * s)))
    ini = pd.DataFrame({"label": 1, "distance_um": [0, 19.999, 20.0, 49.999, 50.0, 80.0],
                        "value": [10, 10, 15, 15, 12, 12]})
    out = fit_diffusion(pd.DataFrame({"label": 1, "distance_um": d, "value": y}),
                        model="initial", initial=ini, rim="closed").iloc[0]
    assert out.fit_status == "ok"
    assert out.sqrt_dt_um == pytest.approx(s, rel=0.02)


def test_return_curves_gives_the_model_and_initial_profile():
    d = np.arange(0.0, 60.0, 1.0)
    y = 80 + 8 * 0.5 * (1 + erf((d - 30) / 6))
    out, curves = fit_diffusion(pd.DataFrame({"label": 3, "distance_um": d, "value": y}),
                                rim="open", return_curves=True)
    assert set(curves.columns) >= {"label", "distance_um", "model", "initial"}
    assert (curves.label == 3).all()
    at = np.interp(d, curves.distance_um, curves.model)
    assert np.max(np.abs(at - y)) < 0.05
    assert set(np.round(curves.initial[[0, len(curves) - 1]], 3)) == {80.0, 88.0}


# ---------------------------------------------------------------------------- uncertainty
def test_intervals_are_calibrated_over_temperature_and_the_fit():
    """200 synthetic Fo profiles relaxed for 10 days, each at its own true temperature drawn
    from N(1200, 30) C and with noise: the 5-95 % interval of a fit told 1200 +/- 30 C covers
    the true 10 days in 85-95 % of them."""
    rng = np.random.default_rng(11)
    t_true, n = 10.0, 200
    temps = rng.normal(1200.0, 30.0, n)
    d = np.arange(0.0, 80.0, 1.0)
    frames = []
    for i, tc in enumerate(temps):
        dd = olivine_diffusivity(tc, xfe=0.16, pressure_mpa=100, log_fo2_pa=-3.3,
                                 angles_deg=(90, 90, 0))
        s = math.sqrt(dd * t_true * DAY)
        y = 80 + 8 * 0.5 * (1 + erf((d - 40) / (2 * s))) + rng.normal(0, 0.15, d.size)
        frames.append(pd.DataFrame({"label": i, "distance_um": d, "value": y, "sigma": 0.15}))
    prof = pd.concat(frames, ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = fit_diffusion(prof, model="erf", mineral="olivine", temperature_c=1200,
                            temperature_c_err=30, pressure_mpa=100, log_fo2_pa=-3.3,
                            angles_deg=(90, 90, 0), composition_dependent=False,
                            ea_kj_mol_err=0, n_samples=2000)
    ok = out[out.fit_status == "ok"]
    assert len(ok) >= 190
    covered = ((ok.timescale_days_lo <= t_true) & (t_true <= ok.timescale_days_hi)).mean()
    assert 0.85 <= covered <= 0.95
    assert np.median(ok.timescale_days) == pytest.approx(t_true, rel=0.1)


def _ar1(rng, n, rho):
    e = np.empty(n)
    e[0] = rng.normal()
    for i in range(1, n):
        e[i] = rho * e[i - 1] + math.sqrt(1 - rho**2) * rng.normal()
    return e


def test_residual_correlation_sees_through_the_fit():
    """The lag-1 correlation of the errors from a fit's residuals: the fit's own
    anticorrelation is removed (white noise reads about 0, not negative) and a real one is
    recovered (AR(1) 0.5 reads about 0.5, where the raw residuals read about 0.4)."""
    from napari_zonation.diffusion.fitting import ar1_variance_ratio, residual_correlation

    rng = np.random.default_rng(3)
    n = 60
    d = np.arange(n, dtype=float)
    jac = np.column_stack([np.ones(n), d / n, np.exp(-(((d - 30) / 3) ** 2))])
    for rho, lo, hi in ((0.0, 0.0, 0.1), (0.5, 0.42, 0.56)):
        est = []
        for _ in range(150):
            e = _ar1(rng, n, rho)
            r = e - jac @ np.linalg.lstsq(jac, e, rcond=None)[0]
            est.append(residual_correlation(r, jac))
        assert lo <= np.mean(est) <= hi
    # the mean of a long series: the textbook (1 + rho) / (1 - rho)
    ratio = ar1_variance_ratio(np.ones((400, 1)), 0.5)
    assert ratio[0] == pytest.approx(3.0, rel=0.02)


@pytest.mark.parametrize(("rho", "seed"), [(0.0, 21), (0.5, 22)])
def test_intervals_are_calibrated_for_correlated_errors(rho, seed):
    """40 erf steps (sqrt(Dt) 1.5-4 um, 8-16 units high, sigma 0.8) whose errors are
    independent or AR(1)-correlated along the profile (0.5 between neighbours, as shells that
    share an outline or spots that share a volume), fitted with a plain D: the 5-95 % interval
    of the time covers the truth in 80-97 % of them, and the pulls scatter by about 1."""
    rng = np.random.default_rng(seed)
    d = np.arange(1.0, 56.0)
    frames, s_true = [], []
    for lab in range(40):
        s = rng.uniform(1.5, 4.0)
        p = rng.uniform(18.0, 32.0)
        h = rng.choice([-1.0, 1.0]) * rng.uniform(8.0, 16.0)
        y = 100 + h * 0.5 * (1 + erf((d - p) / (2 * s))) + 0.8 * _ar1(rng, d.size, rho)
        frames.append(pd.DataFrame({"label": lab, "distance_um": d, "value": y, "sigma": 0.8}))
        s_true.append(s)
    prof = pd.concat(frames, ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = fit_diffusion(prof, diffusivity_um2_s=1e-3, rim="open", blur_fwhm_um=0.0,
                            n_samples=400).set_index("label").sort_index()
    s_true = np.asarray(s_true)
    ok = (out.fit_status == "ok").to_numpy()
    assert ok.sum() >= 38
    t_true = s_true**2 / 1e-3 / DAY
    covered = ((out.timescale_days_lo <= t_true) & (t_true <= out.timescale_days_hi))[ok]
    pull = ((out.sqrt_dt_um - s_true) / out.sqrt_dt_err_um)[ok]
    assert 0.80 <= covered.mean() <= 0.97
    assert 0.7 <= pull.std() <= 1.3


def test_interval_percentiles_can_be_chosen():
    d = np.arange(0.0, 80.0, 1.0)
    y = 80 + 8 * 0.5 * (1 + erf((d - 40) / 8)) + np.random.default_rng(0).normal(0, .2, d.size)
    prof = pd.DataFrame({"label": 1, "distance_um": d, "value": y, "sigma": 0.2})
    kw = dict(diffusivity_um2_s=1e-3, model="erf", n_samples=5000)
    a = fit_diffusion(prof, **kw).iloc[0]
    b = fit_diffusion(prof, interval=(2.5, 97.5), **kw).iloc[0]
    assert b.timescale_days_lo < a.timescale_days_lo < a.timescale_days
    assert a.timescale_days < a.timescale_days_hi < b.timescale_days_hi


def test_pt_path_and_d_factors():
    d = np.arange(0.0, 80.0, 1.0)
    y = 80 + 8 * 0.5 * (1 + erf((d - 40) / 8))
    prof = pd.DataFrame({"label": 1, "distance_um": d, "value": y})
    kw = dict(mineral="olivine", pressure_mpa=100, log_fo2_pa=-3.3, angles_deg=(90, 90, 0),
              model="erf", n_samples=1000, composition_dependent=False, ea_kj_mol_err=0)
    one = fit_diffusion(prof, temperature_c=1150, **kw).iloc[0]
    # a path that spends half its time at 1100 C and half at 1200 C: D is the mean of the two
    path = pd.DataFrame({"temperature_c": [1100.0, 1200.0], "duration": [1.0, 1.0]})
    both = fit_diffusion(prof, temperature_c=1150, pt_path=path, **kw).iloc[0]
    d_mean = 0.5 * (olivine_diffusivity(1100.0, xfe=0.16, pressure_mpa=100, log_fo2_pa=-3.3)
                    + olivine_diffusivity(1200.0, xfe=0.16, pressure_mpa=100, log_fo2_pa=-3.3))
    assert both.diffusivity_um2_s == pytest.approx(d_mean, rel=1e-6)
    assert both.timescale_days == pytest.approx(16.0 / d_mean / DAY, rel=0.01)
    # D known to a factor: every sample doubles D -> half the time
    half = fit_diffusion(prof, temperature_c=1150, d_factors=[2.0], **kw).iloc[0]
    assert half.timescale_days == pytest.approx(one.timescale_days / 2, rel=1e-6)
    spread = fit_diffusion(prof, temperature_c=1150, d_factors=[0.5, 1.0, 2.0], **kw).iloc[0]
    assert spread.timescale_days_lo == pytest.approx(one.timescale_days / 2, rel=0.01)
    assert spread.timescale_days_hi == pytest.approx(one.timescale_days * 2, rel=0.01)


# ---------------------------------------------------------------------------- population
def test_timescale_density_per_cluster(tmp_path):
    from napari_zonation.diffusion import timescale_density, timescale_density_table

    rng = np.random.default_rng(0)
    fits = pd.DataFrame({
        "label": np.arange(60),
        "cluster": np.repeat([0, 1], 30),
        "timescale_days": np.concatenate([10 ** rng.normal(0, 0.2, 30),
                                          10 ** rng.normal(2, 0.2, 30)]),
        "fit_status": "ok",
    })
    fits.loc[5, "fit_status"] = "no step"  # not counted
    fits["timescale_days_lo"] = fits.timescale_days / 2
    fits["timescale_days_hi"] = fits.timescale_days * 2
    table = timescale_density_table(fits)
    for name, g in table.groupby("group"):
        step = np.diff(g.log10_days).mean()
        assert g.density.sum() * step == pytest.approx(1.0, abs=0.02)  # a density per log10 day
        peak = g.log10_days.iloc[int(np.argmax(g.density))]
        assert peak == pytest.approx({0: 0.0, 1: 2.0}[name], abs=0.2)
    assert table.groupby("group").n.first().to_dict() == {0: 29, 1: 30}
    fig, _ = timescale_density(fits, path=tmp_path / "t.png", csv_path=tmp_path / "t.csv",
                               title="two clusters")
    assert (tmp_path / "t.png").stat().st_size > 1000
    back = pd.read_csv(tmp_path / "t.csv")
    assert set(back.columns) == {"group", "log10_days", "density", "n"}
    ax = fig.axes[0]
    assert "log$_{10}$ timescale (days)" in ax.get_xlabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["cluster 0 (n = 29)",
                                                                  "cluster 1 (n = 30)"]
    empty = timescale_density(fits.assign(fit_status="no step"))[1]
    assert empty.empty


def test_command_line_diffusion_flags_reach_fit_diffusion():
    from napari_zonation.cli import _diffusion_options, build_parser
    from napari_zonation.diffusion import check_diffusion_options

    args = build_parser().parse_args([
        "demo", "--out", "x", "--mineral", "olivine", "--d-law", "dfens",
        "--temperature-c", "1200", "--temperature-c-err", "20", "--pressure-mpa", "100",
        "--pressure-mpa-err", "10", "--log-fo2-pa", "-3.3", "--log-fo2-pa-err", "0.2",
        "--xfe", "0.15", "--euler-deg", "10", "20", "30", "--azimuth-deg", "45",
        "--diffusion-model", "two_stage", "--blur-fwhm-um", "1.5"])
    opts = _diffusion_options(args)
    assert opts == {"mineral": "olivine", "d_law": "dfens", "temperature_c": 1200.0,
                    "temperature_c_err": 20.0, "pressure_mpa": 100.0, "pressure_mpa_err": 10.0,
                    "log_fo2_pa": -3.3, "log_fo2_pa_err": 0.2, "xfe": 0.15,
                    "euler_deg": (10.0, 20.0, 30.0), "azimuth_deg": 45.0,
                    "model": "two_stage", "blur_fwhm_um": 1.5}
    check_diffusion_options(**opts)
    plain = _diffusion_options(build_parser().parse_args(
        ["demo", "--out", "x", "--diffusivity-um2-s", "0.01", "--diffusivity-um2-s-err", "0.002",
         "--angles-deg", "90", "90", "0"]))
    assert plain == {"diffusivity_um2_s": 0.01, "diffusivity_um2_s_err": 0.002,
                     "angles_deg": (90.0, 90.0, 0.0)}
    assert _diffusion_options(build_parser().parse_args(["demo", "--out", "x"])) == {}
