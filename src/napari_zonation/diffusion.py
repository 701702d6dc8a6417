"""Diffusion chronometry: error-function fits, olivine Fe-Mg diffusivity, timescales.

The quick first look (``model="erf"``) fits every profile with the analytical relaxation of a
single step in an infinite medium,

    value(d) = a + (b - a) * 0.5 * (1 + erf((d - p) / (2 * s))),   s = sqrt(D t),

and turns ``s`` into a timescale ``t = s**2 / D`` when a diffusivity is known. ``model="fd"``
fits a 1D finite-difference model of the same step with a composition-dependent diffusivity
(olivine Fe-Mg, D evaluated at each node's own XFe), the way published olivine chronometry is
done.

Olivine Fe-Mg interdiffusion follows Dohmen & Chakraborty (2007), Phys. Chem. Minerals 34,
409-430, doi:10.1007/s00269-007-0158-6 (the TaMED equation above fO2 = 1e-10 Pa, PED below);
the QFM buffer follows Frost (1991), Rev. Mineral. 25, 1-9.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.linalg import solve_banded
from scipy.ndimage import gaussian_filter1d
from scipy.optimize import curve_fit, least_squares
from scipy.special import erf

from ._validation import ZonationInputError, check_profiles

__all__ = [
    "erf_step",
    "fit_diffusion",
    "olivine_diffusivity",
    "qfm_log_fo2_pa",
]

#: Gas constant, J/(mol K).
R_GAS = 8.314462618
SECONDS_PER_DAY = 86400.0
#: D&C (2007): the TaMED mechanism holds above this fO2 (Pa); the PED mechanism below it.
FO2_TAMED_MIN_PA = 1e-10
#: D[001] / D[100] = D[001] / D[010] for olivine Fe-Mg (Dohmen & Chakraborty 2007).
OLIVINE_ANISOTROPY = 6.0

OUTPUT_COLUMNS = (
    "label",
    "sqrt_dt_um",
    "sqrt_dt_err_um",
    "step_position_um",
    "step_height",
    "outer_value",
    "inner_value",
    "diffusivity_um2_s",
    "timescale_days",
    "timescale_days_low",
    "timescale_days_high",
    "chi2_red",
    "n_points",
    "fit_status",
    "fit_error",
    "model",
    "xfe",
    "diffusion_assumption",
)

_DEFAULT_OPTIONS = {
    "min_points": 6,
    "window_um": None,
    "step_significance": 4.0,
    "diffusivity_um2_s_err": None,
    "rim": "fixed",
    "composition_dependent": True,
    "fd_nodes": 300,
    "fd_steps": 200,
}


# --------------------------------------------------------------------------------------------
# Physics: the erf solution, QFM, olivine Fe-Mg diffusivity
# --------------------------------------------------------------------------------------------
def erf_step(d, outer, inner, position_um, sqrt_dt_um):
    """Relaxed step: ``outer + (inner - outer) * 0.5 * (1 + erf((d - p) / (2 sqrt(Dt))))``.

    Parameters
    ----------
    d : array-like
        Distance from the rim, micrometres.
    outer, inner : float
        Plateau values on the rim side (small ``d``) and the core side (large ``d``).
    position_um : float
        Step position, micrometres from the rim.
    sqrt_dt_um : float
        sqrt(D t) in micrometres (the step's 16-84 % half-width is sqrt(2) times this).

    Returns
    -------
    numpy.ndarray
        The profile at ``d``.
    """
    d = np.asarray(d, dtype=float)
    return outer + (inner - outer) * 0.5 * (1.0 + erf((d - position_um) / (2.0 * sqrt_dt_um)))


def _erf_step_jac(d, outer, inner, position_um, sqrt_dt_um) -> np.ndarray:
    """Jacobian of :func:`erf_step` with respect to (outer, inner, position, sqrt_dt)."""
    d = np.asarray(d, dtype=float)
    z = (d - position_um) / (2.0 * sqrt_dt_um)
    e = 0.5 * (1.0 + erf(z))
    g = (inner - outer) * np.exp(-(z**2)) / math.sqrt(math.pi)
    return np.column_stack([1.0 - e, e, -g / (2.0 * sqrt_dt_um), -g * z / sqrt_dt_um])


def qfm_log_fo2_pa(temperature_c, pressure_mpa=0.1):
    """log10 fO2 (Pa) of the quartz-fayalite-magnetite buffer, after Frost (1991).

    ``log10 fO2 (bar) = A / T + B + C (P - 1) / T`` with T in K and P in bar; beta-quartz
    (T > 573 C): A = -25096.3, B = 8.735, C = 0.110; alpha-quartz: A = -26455.3, B = 10.344,
    C = 0.092 (Frost 1991, Rev. Mineral. 25, table 1). Returned in Pa (+5 log units).

    Parameters
    ----------
    temperature_c : float or array-like
        Temperature, degrees Celsius.
    pressure_mpa : float
        Pressure, MPa (0.1 MPa = 1 bar).

    Returns
    -------
    float or numpy.ndarray
        log10 of the buffer's oxygen fugacity in pascals.
    """
    t_k = np.asarray(temperature_c, dtype=float) + 273.15
    p_bar = float(pressure_mpa) * 10.0
    beta = t_k > 573.0 + 273.15
    a = np.where(beta, -25096.3, -26455.3)
    b = np.where(beta, 8.735, 10.344)
    c = np.where(beta, 0.110, 0.092)
    log_bar = a / t_k + b + c * (p_bar - 1.0) / t_k
    out = log_bar + 5.0
    return float(out) if out.ndim == 0 else out


def _anisotropy_factor(angles_deg) -> float:
    """D_traverse / D_[001] for angles (alpha, beta, gamma) to [100], [010], [001]."""
    try:
        ang = np.asarray(angles_deg, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise ZonationInputError(
            f"angles_deg={angles_deg!r} is not numeric; give three angles in degrees between the "
            "traverse and olivine's [100], [010] and [001] axes, e.g. angles_deg=(90, 90, 0)."
        ) from exc
    if ang.size != 3 or not np.all(np.isfinite(ang)):
        raise ZonationInputError(
            f"angles_deg={angles_deg!r} must be three finite angles in degrees (alpha, beta, "
            "gamma) between the traverse and olivine's [100], [010] and [001] axes."
        )
    cos2 = np.cos(np.deg2rad(ang)) ** 2
    if abs(cos2.sum() - 1.0) > 0.05:
        raise ZonationInputError(
            f"angles_deg={tuple(ang)} are not the angles of one direction to three orthogonal "
            f"axes: cos^2 alpha + cos^2 beta + cos^2 gamma = {cos2.sum():.3f}, it must be 1. "
            "Check the EBSD angles (e.g. (90, 90, 0) is a traverse along [001])."
        )
    cos2 = cos2 / cos2.sum()
    return float((cos2[0] + cos2[1]) / OLIVINE_ANISOTROPY + cos2[2])


def olivine_diffusivity(
    temperature_c,
    *,
    xfe,
    pressure_mpa=0.1,
    delta_qfm=None,
    log_fo2_pa=None,
    angles_deg=None,
):
    """Fe-Mg interdiffusion coefficient in olivine, um^2/s (Dohmen & Chakraborty 2007).

    Along [001], for the TaMED mechanism (fO2 > 1e-10 Pa):

        log10 D001 (m^2/s) = -9.21 - (201000 + (P - 1e5) * 7e-6) / (2.303 R T)
                             + 1/6 log10(fO2 / 1e-7) + 3 (XFe - 0.1)

    and for the PED mechanism (fO2 <= 1e-10 Pa):

        log10 D001 (m^2/s) = -8.91 - (220000 + (P - 1e5) * 7e-6) / (2.303 R T) + 3 (XFe - 0.1)

    with T in K, P in Pa, fO2 in Pa and XFe the mole fraction of fayalite. D[100] = D[010] =
    D[001] / 6, and along a traverse at angles (alpha, beta, gamma) to [100], [010], [001]:
    D = D100 cos^2 alpha + D010 cos^2 beta + D001 cos^2 gamma.

    Parameters
    ----------
    temperature_c : float or array-like
        Temperature, degrees Celsius.
    xfe : float or array-like
        Mole fraction of fayalite, 1 - Fo/100.
    pressure_mpa : float
        Pressure, MPa (default 0.1 MPa = 1 bar).
    delta_qfm, log_fo2_pa : float, optional
        Oxygen fugacity, either in log units relative to QFM (Frost 1991; the buffer follows
        the temperature) or as log10 fO2 in Pa. Exactly one.
    angles_deg : sequence of 3 floats, optional
        Angles between the traverse and [100], [010], [001]. Omitted: D along [001].

    Returns
    -------
    float or numpy.ndarray
        Diffusivity along the traverse (or [001]) in um^2/s.
    """
    if (delta_qfm is None) == (log_fo2_pa is None):
        raise ZonationInputError(
            "olivine diffusivity needs the oxygen fugacity as exactly one of delta_qfm (log units "
            "relative to QFM) or log_fo2_pa (log10 fO2 in Pa)."
        )
    t_c = np.asarray(temperature_c, dtype=float)
    t_k = t_c + 273.15
    p_pa = float(pressure_mpa) * 1e6
    if delta_qfm is not None:
        log_fo2 = qfm_log_fo2_pa(t_c, pressure_mpa) + float(delta_qfm)
    else:
        log_fo2 = np.asarray(float(log_fo2_pa)) + 0.0 * t_k
    xfe = np.asarray(xfe, dtype=float)
    ln10rt = math.log(10.0) * R_GAS * t_k
    pv = (p_pa - 1e5) * 7e-6
    tamed = -9.21 - (201000.0 + pv) / ln10rt + (log_fo2 + 7.0) / 6.0 + 3.0 * (xfe - 0.1)
    ped = -8.91 - (220000.0 + pv) / ln10rt + 3.0 * (xfe - 0.1)
    log_d = np.where(np.asarray(log_fo2) > math.log10(FO2_TAMED_MIN_PA), tamed, ped)
    factor = 1.0 if angles_deg is None else _anisotropy_factor(angles_deg)
    d_um2_s = factor * 10.0**log_d * 1e12
    return float(d_um2_s) if np.ndim(d_um2_s) == 0 else d_um2_s


# --------------------------------------------------------------------------------------------
# The diffusivity model resolved from the keywords
# --------------------------------------------------------------------------------------------
@dataclass
class _DModel:
    kind: str  # "none", "direct", "olivine"
    assumption: str
    direct: float = math.nan
    direct_rel_err: float = 0.0
    temperature_c: float = math.nan
    temperature_c_err: float = 0.0
    pressure_mpa: float = 0.1
    delta_qfm: float | None = None
    log_fo2_pa: float | None = None
    angles: tuple | None = None
    xfe: float | None = None  # None: from the profile (Fo mol %)
    composition_dependent: bool = False  # D(XFe) known: olivine, D&C 3 (XFe - 0.1) term
    notes: list = field(default_factory=list)

    def diffusivity(self, xfe: float, dtemp: float = 0.0) -> float:
        """D (um^2/s) at ``xfe`` and temperature + dtemp."""
        if self.kind == "direct":
            return self.direct
        if self.kind == "olivine":
            return olivine_diffusivity(
                self.temperature_c + dtemp,
                xfe=xfe,
                pressure_mpa=self.pressure_mpa,
                delta_qfm=self.delta_qfm,
                log_fo2_pa=self.log_fo2_pa,
                angles_deg=self.angles,
            )
        return math.nan

    def log_spread(self, xfe: float) -> tuple[float, float]:
        """(ln D(T+err) - ln D, ln D - ln D(T-err)) or the direct relative error, both >= 0."""
        if self.kind == "direct":
            return self.direct_rel_err, self.direct_rel_err
        if self.kind == "olivine" and self.temperature_c_err > 0:
            d0 = self.diffusivity(xfe)
            up = self.diffusivity(xfe, +self.temperature_c_err)
            dn = self.diffusivity(xfe, -self.temperature_c_err)
            return abs(math.log(up / d0)), abs(math.log(d0 / dn))
        return 0.0, 0.0


def _finite_float(value, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise ZonationInputError(f"{name}={value!r} is not a number.") from exc
    if not math.isfinite(out):
        raise ZonationInputError(f"{name}={value!r} must be a finite number.")
    return out


def _resolve_diffusivity(
    *,
    mineral,
    temperature_c,
    pressure_mpa,
    delta_qfm,
    log_fo2_pa,
    angles_deg,
    xfe,
    diffusivity_um2_s,
    temperature_c_err,
    diffusivity_um2_s_err,
    composition_dependent,
) -> _DModel:
    mineral_name = None if mineral is None else str(mineral).strip().lower()
    if mineral_name in ("ol", "olv"):
        mineral_name = "olivine"
    conditions = {
        "temperature_c": temperature_c,
        "pressure_mpa": pressure_mpa,
        "delta_qfm": delta_qfm,
        "log_fo2_pa": log_fo2_pa,
    }
    given = [k for k, v in conditions.items() if v is not None]
    if xfe is not None:
        xfe = _finite_float(xfe, "xfe")
        if not 0.0 <= xfe <= 1.0:
            raise ZonationInputError(
                f"xfe={xfe} must be the mole fraction of fayalite, between 0 and 1 "
                "(Fo85 is xfe=0.15)."
            )
    if temperature_c_err is not None:
        temperature_c_err = abs(_finite_float(temperature_c_err, "temperature_c_err"))

    if diffusivity_um2_s is not None:
        d = _finite_float(diffusivity_um2_s, "diffusivity_um2_s")
        if d <= 0:
            raise ZonationInputError(
                f"diffusivity_um2_s={diffusivity_um2_s!r} must be positive (um^2/s; "
                "1e-16 m^2/s is 1e-4 um^2/s)."
            )
        if given:
            raise ZonationInputError(
                f"both diffusivity_um2_s and {', '.join(given)} were given; pass either a direct "
                "diffusivity_um2_s or the conditions to compute it (mineral='olivine', "
                "temperature_c, pressure_mpa, delta_qfm or log_fo2_pa), not both."
            )
        if angles_deg is not None:
            raise ZonationInputError(
                "angles_deg applies to the olivine Arrhenius law; a direct diffusivity_um2_s is "
                "taken as the diffusivity along the traverse. Drop angles_deg, or compute D from "
                "mineral='olivine' and the conditions."
            )
        if temperature_c_err is not None:
            raise ZonationInputError(
                "temperature_c_err needs the temperature dependence of D (mineral='olivine' with "
                "temperature_c ...); with a direct diffusivity_um2_s give its uncertainty as "
                "diffusivity_um2_s_err (um^2/s, 1-sigma) instead."
            )
        rel = 0.0
        if diffusivity_um2_s_err is not None:
            rel = abs(_finite_float(diffusivity_um2_s_err, "diffusivity_um2_s_err")) / d
        model = _DModel(
            kind="direct",
            direct=d,
            direct_rel_err=rel,
            assumption=f"diffusivity given: D = {d:.4g} um^2/s along the traverse",
            xfe=xfe,
        )
        if mineral_name == "olivine" and composition_dependent:
            model.composition_dependent = True
        return model

    if diffusivity_um2_s_err is not None:
        raise ZonationInputError(
            "diffusivity_um2_s_err was given without diffusivity_um2_s; pass both, or compute D "
            "from mineral='olivine' and the conditions with temperature_c_err."
        )

    if mineral_name is None:
        if given or angles_deg is not None or temperature_c_err is not None:
            raise ZonationInputError(
                f"{', '.join(given) or 'angles_deg/temperature_c_err'} given but no mineral; pass "
                "mineral='olivine' to compute the Fe-Mg diffusivity from the conditions, or a "
                "direct diffusivity_um2_s for any mineral."
            )
        return _DModel(
            kind="none",
            assumption="no diffusivity given: sqrt(Dt) only, no timescale",
            xfe=xfe,
        )

    if mineral_name != "olivine":
        raise ZonationInputError(
            f"no built-in diffusivity for mineral={mineral!r} (only 'olivine' Fe-Mg, Dohmen & "
            "Chakraborty 2007); pass diffusivity_um2_s (um^2/s along the traverse) for it."
        )

    missing = []
    if temperature_c is None:
        missing.append("temperature_c")
    if delta_qfm is None and log_fo2_pa is None:
        missing.append("delta_qfm or log_fo2_pa")
    if missing:
        raise ZonationInputError(
            f"olivine diffusivity needs {' and '.join(missing)} (with pressure_mpa); or pass "
            "diffusivity_um2_s directly."
        )
    if delta_qfm is not None and log_fo2_pa is not None:
        raise ZonationInputError(
            "both delta_qfm and log_fo2_pa were given; the oxygen fugacity takes exactly one: "
            "delta_qfm (log units relative to the QFM buffer) or log_fo2_pa (log10 fO2 in Pa)."
        )
    t_c = _finite_float(temperature_c, "temperature_c")
    if t_c <= -273.15:
        raise ZonationInputError(f"temperature_c={t_c} is below absolute zero; give degrees C.")
    notes = []
    if pressure_mpa is None:
        p_mpa = 0.1
        notes.append("pressure not given: 0.1 MPa (1 bar) assumed")
        warnings.warn(
            "pressure_mpa not given: olivine diffusivity computed at 0.1 MPa (1 bar). The "
            "activation volume is 7 cm^3/mol, so 500 MPa lowers D by about 0.12 log units.",
            UserWarning,
            stacklevel=3,
        )
    else:
        p_mpa = _finite_float(pressure_mpa, "pressure_mpa")
        if p_mpa < 0:
            raise ZonationInputError(f"pressure_mpa={p_mpa} must be >= 0 (MPa).")
    dq = None if delta_qfm is None else _finite_float(delta_qfm, "delta_qfm")
    lf = None if log_fo2_pa is None else _finite_float(log_fo2_pa, "log_fo2_pa")
    log_fo2 = qfm_log_fo2_pa(t_c, p_mpa) + dq if dq is not None else lf
    mech = "TaMED" if log_fo2 > math.log10(FO2_TAMED_MIN_PA) else "PED"
    if not 700.0 <= t_c <= 1200.0:
        notes.append(f"T = {t_c:g} C outside the 700-1200 C calibration")
    if angles_deg is None:
        angles = None
        orient = (
            "angles unknown: D along [001] (the fastest axis) used, so timescales are minima, up "
            "to 6x longer if the traverse is along [100] or [010]"
        )
        warnings.warn(
            "angles_deg not given: the olivine diffusivity along [001] (the fastest axis, 6x "
            "D[100] and D[010]) is used, so timescales are minima. Measure the traverse's "
            "orientation (EBSD) and pass angles_deg=(alpha, beta, gamma).",
            UserWarning,
            stacklevel=3,
        )
    else:
        factor = _anisotropy_factor(angles_deg)
        angles = tuple(float(a) for a in np.asarray(angles_deg, dtype=float).ravel())
        orient = f"angles {angles} to [100],[010],[001]: D = {factor:.3f} x D[001]"
    fo2_text = f"dQFM {dq:+g}" if dq is not None else f"log fO2 {lf:g} Pa"
    err_text = f" +/- {temperature_c_err:g}" if temperature_c_err else ""
    assumption = (
        f"olivine Fe-Mg, Dohmen & Chakraborty 2007 ({mech}), {t_c:g}{err_text} C, {p_mpa:g} MPa, "
        f"{fo2_text}; {orient}"
    )
    if notes:
        assumption += "; " + "; ".join(notes)
    return _DModel(
        kind="olivine",
        assumption=assumption,
        temperature_c=t_c,
        temperature_c_err=temperature_c_err or 0.0,
        pressure_mpa=p_mpa,
        delta_qfm=dq,
        log_fo2_pa=lf,
        angles=angles,
        xfe=xfe,
        composition_dependent=bool(composition_dependent),
        notes=notes,
    )


def _values_look_like_fo(values: np.ndarray) -> bool:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return False
    lo, hi = np.percentile(v, [1, 99])
    return bool(lo >= 49.0 and hi <= 101.0)


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------
@dataclass
class _Profile:
    d: np.ndarray
    y: np.ndarray
    w: np.ndarray | None  # sigma per point, None when unknown


def _prepare(group: pd.DataFrame, has_sigma: bool) -> _Profile:
    d = pd.to_numeric(group["distance_um"], errors="coerce").to_numpy(dtype=float)
    y = pd.to_numeric(group["value"], errors="coerce").to_numpy(dtype=float)
    s = None
    if has_sigma:
        s = pd.to_numeric(group["sigma"], errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(d) & np.isfinite(y)
    d, y = d[ok], y[ok]
    if s is not None:
        s = s[ok]
        good = np.isfinite(s) & (s > 0)
        if not good.any():
            s = None
        elif not good.all():
            s = np.where(good, s, np.median(s[good]))
    order = np.argsort(d, kind="stable")
    return _Profile(d[order], y[order], None if s is None else s[order])


def _window(prof: _Profile, window_um) -> _Profile:
    """The points within ``window_um`` of the largest jump (all points when None)."""
    if window_um is None or prof.d.size < 3 or np.ptp(prof.d) <= 0:
        return prof
    _, _, p0 = _initial_guess(prof.d, prof.y)
    keep = np.abs(prof.d - p0) <= float(window_um)
    return _Profile(prof.d[keep], prof.y[keep], None if prof.w is None else prof.w[keep])


def _initial_guess(d: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(outer, inner, position) from the largest jump of the smoothed profile."""
    n = d.size
    ys = gaussian_filter1d(y, sigma=max(1.0, n / 60.0), mode="nearest")
    grad = np.gradient(ys, d) if np.all(np.diff(d) > 0) else np.gradient(ys)
    i = int(np.nanargmax(np.abs(grad[1:-1]))) + 1 if n > 2 else 0
    p0 = float(d[i])
    k = max(2, n // 8)
    outer = float(np.median(y[: max(1, min(i, k))])) if i > 0 else float(y[0])
    inner = float(np.median(y[max(i + 1, n - k) :])) if i < n - 1 else float(y[-1])
    if outer == inner:
        inner = outer + (np.std(y) or 1.0)
    return outer, inner, p0


def _failed(out: dict, status: str, message: str) -> dict:
    return {**out, "fit_status": status, "fit_error": message}


def _fit_erf(prof: _Profile, opts: dict) -> dict:
    """Fit one profile with :func:`erf_step`; a dict of output columns (NaN-free on success)."""
    d, y, sig = prof.d, prof.y, prof.w
    n = d.size
    out = {"n_points": int(n)}
    if n == 0:
        return _failed(out, "no data", "no point has both a finite distance_um and value.")
    if n < opts["min_points"]:
        return _failed(
            out,
            "too few points",
            f"{n} finite point(s); the erf fit needs at least {opts['min_points']} "
            "(option min_points).",
        )
    if np.ptp(d) <= 0:
        return _failed(out, "no distance range", "all points share one distance_um.")
    if np.ptp(y) == 0:
        return _failed(out, "no step", "the profile is flat.")
    outer0, inner0, p0 = _initial_guess(d, y)
    span = float(np.ptp(d))
    spacing = float(np.median(np.diff(np.unique(d)))) if np.unique(d).size > 1 else span
    s_min, s_max = 1e-3 * spacing, 5.0 * span
    lower = [-np.inf, -np.inf, float(d.min()), s_min]
    upper = [np.inf, np.inf, float(d.max()), s_max]
    starts = sorted({max(spacing, s_min * 10), 3 * spacing, span / 12, span / 4})
    best = None
    for s0 in starts:
        s0 = float(np.clip(s0, s_min * 1.01, s_max * 0.99))
        x0 = [outer0, inner0, float(np.clip(p0, lower[2], upper[2])), s0]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                popt, pcov = curve_fit(
                    erf_step,
                    d,
                    y,
                    p0=x0,
                    sigma=sig,
                    absolute_sigma=sig is not None,
                    bounds=(lower, upper),
                    jac=_erf_step_jac,
                    x_scale="jac",
                    max_nfev=500,
                )
        except (RuntimeError, ValueError):
            continue
        res = (y - erf_step(d, *popt)) / (1.0 if sig is None else sig)
        chi2 = float(np.sum(res**2))
        if best is None or chi2 < best[0]:
            best = (chi2, popt, pcov)
    if best is None:
        return _failed(out, "fit failed", "scipy.optimize.curve_fit did not converge.")
    chi2, popt, pcov = best
    a, b, p, s = (float(v) for v in popt)
    dof = max(n - 4, 1)
    chi2_red = chi2 / dof if sig is not None else math.nan
    perr = np.sqrt(np.clip(np.diag(pcov), 0, None)) if np.all(np.isfinite(pcov)) else None
    if perr is not None and sig is not None and chi2_red > 1.0:
        # sigma underestimates the scatter: inflate the errors (Birge ratio)
        perr = perr * math.sqrt(chi2_red)
        pcov = pcov * chi2_red
    height = b - a
    h_err = math.nan
    if perr is not None:
        h_var = pcov[0, 0] + pcov[1, 1] - 2 * pcov[0, 1]
        h_err = math.sqrt(max(h_var, 0.0))
    noise = float(np.median(sig)) if sig is not None else float(np.std(y - erf_step(d, *popt)))
    base = {**out, "chi2_red": chi2_red}
    n_out, n_in = int(np.sum(d < p)), int(np.sum(d > p))
    # a sharp step's covariance is unreliable: never claim better than two plateau means
    scatter = noise * (math.sqrt(max(chi2_red, 1.0)) if sig is not None else 1.0)
    h_floor = scatter * math.sqrt(1.0 / max(n_out, 1) + 1.0 / max(n_in, 1))
    h_err = h_floor if not np.isfinite(h_err) else max(h_err, h_floor)
    if abs(height) < opts["step_significance"] * max(h_err, 1e-300):
        return _failed(
            base,
            "no step",
            f"fitted step {height:.3g} is below {opts['step_significance']:g} times its "
            f"uncertainty ({h_err:.2g}); the profile looks unzoned.",
        )
    if min(n_out, n_in) < 3:
        return _failed(
            base,
            "step at profile end",
            f"the fitted step ({p:.3g} um) has {min(n_out, n_in)} point(s) on one side (an end "
            "point, not a step); extend the profile past the step.",
        )
    if s >= 0.5 * s_max:
        return _failed(
            base,
            "no step",
            f"fitted width sqrt(Dt) = {s:.3g} um is wider than the profile ({span:.3g} um): "
            "a gradient, not a relaxed step.",
        )
    s_err = float(perr[3]) if perr is not None else math.nan
    result = {
        **base,
        "sqrt_dt_um": s,
        "sqrt_dt_err_um": s_err,
        "step_position_um": p,
        "step_height": height,
        "outer_value": a,
        "inner_value": b,
        "fit_status": "ok",
        "fit_error": "",
    }
    if s < 0.5 * spacing:
        # the covariance means nothing at the lower bound: give a profile-likelihood bound
        scale = max(1.0, chi2_red) if sig is not None else chi2 / dof
        s_up = _profile_upper_s(d, y, sig, popt, chi2, scale, spacing, span)
        result["fit_status"] = "unresolved"
        result["sqrt_dt_err_um"] = s_up - s
        result["_s_upper"] = s_up
        result["fit_error"] = (
            f"the step is sharper than the point spacing ({spacing:.3g} um) allows to measure: "
            f"sqrt_dt_um < {s_up:.3g} um (1-sigma, profile likelihood); "
            "measure at a finer spacing."
        )
    return result


def _profile_upper_s(d, y, sig, popt, chi2_min, scale, spacing, span) -> float:
    """Smallest s > best fit where chi2 (other parameters refitted) rises by 1 * scale."""
    prev = [float(v) for v in popt[:3]]
    s_prev, chi_prev = float(popt[3]), chi2_min
    lower = [-np.inf, -np.inf, float(d.min())]
    upper = [np.inf, np.inf, float(d.max())]
    for s_fixed in spacing * np.geomspace(0.25, max(span / spacing, 1.0), 60):
        if s_fixed <= s_prev:
            continue

        def f(dd, a, b, p, s_fixed=s_fixed):
            return erf_step(dd, a, b, p, s_fixed)

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p3, _ = curve_fit(
                    f,
                    d,
                    y,
                    p0=prev,
                    sigma=sig,
                    absolute_sigma=sig is not None,
                    bounds=(lower, upper),
                    max_nfev=500,
                )
        except (RuntimeError, ValueError):
            continue
        res = (y - f(d, *p3)) / (1.0 if sig is None else sig)
        chi = float(np.sum(res**2))
        if (chi - chi2_min) / scale >= 1.0:
            frac = (chi2_min + scale - chi_prev) / max(chi - chi_prev, 1e-300)
            return float(s_prev + np.clip(frac, 0.0, 1.0) * (s_fixed - s_prev))
        prev, s_prev, chi_prev = list(p3), float(s_fixed), chi
    return math.nan


# --------------------------------------------------------------------------------------------
# Finite-difference model (model="fd")
# --------------------------------------------------------------------------------------------
def _fd_grid(
    start: float, length: float, p: float, n_left: int, n_right: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cell edges on [start, length] with one edge exactly at the step ``p``; cell centres."""
    edges = np.concatenate(
        [np.linspace(start, p, n_left + 1), np.linspace(p, length, n_right + 1)[1:]]
    )
    return edges, 0.5 * (edges[1:] + edges[:-1])


def _fd_relax(
    edges: np.ndarray,
    c0: np.ndarray,
    tau: float,
    drel: Callable[[np.ndarray], np.ndarray],
    *,
    rim: str,
    rim_value: float,
    n_steps: int,
) -> np.ndarray:
    """Relax cell values ``c0`` for a reduced time ``tau = D_ref t`` (um^2).

    dc/dt = d/dx (D(c) dc/dx) with D = D_ref * drel(c), finite volumes on the cells between
    ``edges`` (any spacing), implicit (backward Euler) steps on a time grid refined at the start
    (t_k = tau (k/n)^2), D lagged one step and averaged over the two cells of each face. Core
    end: no flux; rim (``edges[0]``): ``fixed`` at ``rim_value`` (a melt in contact) or
    ``closed``.
    """
    vol = np.diff(edges)
    centres = 0.5 * (edges[1:] + edges[:-1])
    h = np.diff(centres)
    n = vol.size
    c = c0.astype(float).copy()
    times = tau * (np.arange(n_steps + 1) / n_steps) ** 2
    ab = np.zeros((3, n))
    for k in range(n_steps):
        dt = times[k + 1] - times[k]
        if dt <= 0:
            continue
        dn = drel(c)
        coef = 0.5 * (dn[1:] + dn[:-1]) * dt / h  # n - 1 faces
        diag = vol.copy()
        diag[:-1] += coef
        diag[1:] += coef
        rhs = vol * c
        if rim == "fixed":
            c_rim = dn[0] * dt / (centres[0] - edges[0])
            diag[0] += c_rim
            rhs[0] += c_rim * rim_value
        ab[0, 1:] = -coef
        ab[1, :] = diag
        ab[2, :-1] = -coef
        c = solve_banded((1, 1), ab, rhs, check_finite=False)
    return c


def _fit_fd(
    prof: _Profile, first: dict, drel: Callable, opts: dict, *, closed_start: bool = False
) -> dict:
    """Fit the FD model for reduced time, step position and plateaus, from the erf fit.

    The model spans the rim (0) to the last point; with ``closed_start`` (a window of the
    profile) it spans the window and both ends are closed.
    """
    d, y, sig = prof.d, prof.y, prof.w
    a0, b0, p0, s0 = (
        first["outer_value"],
        first["inner_value"],
        first["step_position_um"],
        first["sqrt_dt_um"],
    )
    length = float(d.max())
    start = float(d.min()) if closed_start else min(0.0, float(d.min()))
    rim = "closed" if closed_start else opts["rim"]
    n_cells = int(opts["fd_nodes"])
    dx = (length - start) / n_cells
    # cells per side fixed for the whole fit, so the model moves smoothly with p
    n_left = int(np.clip(round((p0 - start) / dx), 3, n_cells - 3))
    n_right = max(3, n_cells - n_left)
    weights = 1.0 if sig is None else sig

    def model(theta):
        a, b, p, log_s = theta
        edges, centres = _fd_grid(start, length, p, n_left, n_right)
        c0 = np.where(centres < p, a, b).astype(float)
        tau = math.exp(2 * log_s)
        c = _fd_relax(edges, c0, tau, drel, rim=rim, rim_value=a, n_steps=opts["fd_steps"])
        x_ext = np.concatenate([[start], centres, [length]])
        c_ext = np.concatenate([[a if rim == "fixed" else c[0]], c, [c[-1]]])
        return np.interp(d, x_ext, c_ext)

    def resid(theta):
        return (y - model(theta)) / weights

    x0 = np.array([a0, b0, p0, math.log(max(s0, 0.3 * dx))])
    lo = [-np.inf, -np.inf, max(float(d.min()), start + 2 * dx), math.log(0.3 * dx)]
    hi = [np.inf, np.inf, min(float(d.max()), length - 2 * dx), math.log(5 * length)]
    x0 = np.clip(x0, np.array(lo) + 1e-9, np.array(hi) - 1e-9)
    try:
        sol = least_squares(resid, x0, bounds=(lo, hi), x_scale="jac", diff_step=1e-4)
    except (ValueError, np.linalg.LinAlgError) as exc:
        return {"fit_status": "fit failed", "fit_error": f"finite-difference fit: {exc}"}
    a, b, p, log_s = sol.x
    n = d.size
    chi2 = float(np.sum(sol.fun**2))
    dof = max(n - 4, 1)
    chi2_red = chi2 / dof if sig is not None else math.nan
    s = math.exp(log_s)
    s_err = math.nan
    try:
        jtj = sol.jac.T @ sol.jac
        cov = np.linalg.pinv(jtj)
        scale = chi2 / dof if sig is None else max(1.0, chi2_red)
        cov = cov * scale
        s_err = s * math.sqrt(max(cov[3, 3], 0.0))
    except np.linalg.LinAlgError:
        pass
    out = {
        "sqrt_dt_um": s,
        "sqrt_dt_err_um": s_err,
        "step_position_um": float(p),
        "step_height": float(b - a),
        "outer_value": float(a),
        "inner_value": float(b),
        "chi2_red": chi2_red,
        "fit_status": "ok" if sol.success else "fit failed",
        "fit_error": "" if sol.success else f"least_squares: {sol.message}",
    }
    if out["fit_status"] == "ok" and s <= 0.31 * dx:
        out["fit_status"] = "unresolved"
        out["fit_error"] = "the step is sharper than the model grid: sqrt_dt_um is an upper limit."
    return out


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------
def check_diffusion_options(**kwargs) -> None:
    """Check :func:`fit_diffusion`'s keyword arguments without fitting anything.

    Raises the :class:`ZonationInputError` that :func:`fit_diffusion` would raise for the
    same conditions and options (missing or contradictory conditions, unknown options or
    models), so that a long run can refuse them before its first stage. Checks that need the
    profiles (e.g. olivine values that are not Fo without ``xfe``) are left to the fit.
    """
    _checked_options(**kwargs)


#: the conditions that set the diffusivity (keyword arguments of _resolve_diffusivity)
_CONDITIONS = (
    "mineral",
    "temperature_c",
    "pressure_mpa",
    "delta_qfm",
    "log_fo2_pa",
    "angles_deg",
    "xfe",
    "diffusivity_um2_s",
    "temperature_c_err",
)


def _checked_options(model: str = "erf", **kwargs) -> tuple[dict, _DModel, str]:
    """The options merged with their defaults, the diffusivity model and the model name,
    from :func:`fit_diffusion`'s keyword arguments (conditions and options)."""
    conditions = {name: kwargs.pop(name, None) for name in _CONDITIONS}
    options = kwargs
    unknown = sorted(set(options) - set(_DEFAULT_OPTIONS))
    if unknown:
        raise ZonationInputError(
            f"unknown option(s) {unknown} for fit_diffusion; accepted: "
            f"{', '.join(sorted(_DEFAULT_OPTIONS))}."
        )
    opts = {**_DEFAULT_OPTIONS, **options}
    model = str(model).lower()
    if model not in ("erf", "fd"):
        raise ZonationInputError(
            f"model={model!r} is not known; use 'erf' (analytical quick look) or 'fd' "
            "(finite differences with composition-dependent D)."
        )
    if opts["rim"] not in ("fixed", "closed"):
        raise ZonationInputError(f"rim={opts['rim']!r}: use 'fixed' or 'closed'.")
    if int(opts["min_points"]) < 5:
        raise ZonationInputError("min_points must be at least 5 (the erf has 4 parameters).")

    dmodel = _resolve_diffusivity(
        **conditions,
        diffusivity_um2_s_err=opts["diffusivity_um2_s_err"],
        composition_dependent=opts["composition_dependent"],
    )
    return opts, dmodel, model


def fit_diffusion(
    prof: pd.DataFrame,
    *,
    mineral: str | None = None,
    temperature_c: float | None = None,
    pressure_mpa: float | None = None,
    delta_qfm: float | None = None,
    log_fo2_pa: float | None = None,
    angles_deg: Sequence[float] | None = None,
    xfe: float | None = None,
    diffusivity_um2_s: float | None = None,
    temperature_c_err: float | None = None,
    model: str = "erf",
    **options,
) -> pd.DataFrame:
    """Fit diffusion-relaxed steps to profiles and turn their widths into timescales.

    Every profile (``label``) is fitted with one relaxed step,
    ``value(d) = a + (b - a) * 0.5 * (1 + erf((d - p) / (2 s)))`` with ``s = sqrt(D t)``
    (:func:`scipy.optimize.curve_fit`, weighted by ``sigma`` when the table has it), started
    from the largest jump of the smoothed profile and several widths, the best chi-square kept.
    When a diffusivity D is known, ``t = s**2 / D``.

    D is either given (``diffusivity_um2_s``, any mineral, taken along the traverse) or, for
    ``mineral="olivine"``, Fe-Mg interdiffusion from Dohmen & Chakraborty (2007; see
    :func:`olivine_diffusivity`) at ``temperature_c``, ``pressure_mpa`` and the oxygen fugacity
    (exactly one of ``delta_qfm``, relative to QFM after Frost 1991, or ``log_fo2_pa``), at the
    profile's XFe and along the traverse from ``angles_deg``. Without angles D along [001], the
    fastest axis, is used (timescales are then minima; stated in ``diffusion_assumption``).
    XFe is ``xfe`` when given; otherwise, when the values are Fo in mol % (50-100), it is
    1 - mean(outer, inner)/100 of each profile's fit; otherwise an error asks for ``xfe``.

    Uncertainty: ``sqrt_dt_err_um`` is the 1-sigma error of ``s`` from the fit covariance
    (inflated by sqrt(chi2_red) when chi2_red > 1). The timescale range is log-normal:
    ``ln t_high = ln t + sqrt((2 ds/s)^2 + ln(D(T) / D(T - dT))^2)`` and
    ``ln t_low = ln t - sqrt((2 ds/s)^2 + ln(D(T + dT) / D(T))^2)`` with dT =
    ``temperature_c_err`` (the QFM buffer follows T when ``delta_qfm`` is given), or the
    relative ``diffusivity_um2_s_err`` for a direct D. 30 C at 1200 C moves D by a factor of
    about 1.4 at fixed fO2 (about 1.6 along a buffer).

    Parameters
    ----------
    prof : pandas.DataFrame
        Long profiles table: ``label``, ``distance_um`` (0 at the rim), ``value``; optional
        ``sigma`` (1-sigma of value) and ``channel`` (then one row per label and channel).
    mineral : str, optional
        ``"olivine"`` for the built-in Fe-Mg diffusivity; other minerals need
        ``diffusivity_um2_s``.
    temperature_c, pressure_mpa : float, optional
        Temperature (C) and pressure (MPa; 0.1 MPa with a warning when omitted).
    delta_qfm, log_fo2_pa : float, optional
        Oxygen fugacity: log units relative to QFM, or log10 fO2 in Pa. Exactly one.
    angles_deg : sequence of 3 floats, optional
        Angles between the traverse and olivine's [100], [010], [001] (degrees).
    xfe : float, optional
        Mole fraction of fayalite for D; default from Fo profiles.
    diffusivity_um2_s : float, optional
        Diffusivity along the traverse in um^2/s, for any mineral.
    temperature_c_err : float, optional
        1-sigma temperature uncertainty (C), folded into the timescale range.
    model : {"erf", "fd"}
        ``"erf"``: the analytical quick look. ``"fd"``: a 1D finite-difference model of the
        step (started from the erf fit) with D evaluated at each node's own composition (olivine
        with Fo values: D proportional to 10**(3 XFe), D&C 2007), fitted for time, step
        position and plateaus by chi-square weighted with ``sigma``. ``sqrt_dt_um`` is then
        sqrt(D_ref t) with D_ref the diffusivity at the profile's mean XFe.
    **options
        ``min_points`` (6), ``window_um`` (fit only within this distance of the largest jump;
        default the whole profile), ``step_significance`` (4: a step smaller than this many
        standard errors counts as no step), ``diffusivity_um2_s_err`` (1-sigma of a direct D),
        and for ``model="fd"``: ``rim`` (``"fixed"``: rim held at its initial value, a melt in
        contact; ``"closed"``: no flux), ``composition_dependent`` (True), ``fd_nodes`` (300 cells),
        ``fd_steps`` (200).

    Returns
    -------
    pandas.DataFrame
        One row per label: ``label``, ``sqrt_dt_um``, ``sqrt_dt_err_um``, ``step_position_um``,
        ``step_height`` (inner - outer), ``outer_value`` (rim side), ``inner_value`` (core
        side), ``diffusivity_um2_s``, ``timescale_days``, ``timescale_days_low``,
        ``timescale_days_high``, ``chi2_red`` (NaN without sigma), ``n_points``,
        ``fit_status`` (``"ok"``, or the reason, with NaN results: ``"no data"``,
        ``"too few points"``, ``"no distance range"``, ``"no step"``, ``"step at profile
        end"``, ``"fit failed"``; ``"unresolved"``, a step sharper than the point spacing,
        keeps the best fit with ``sqrt_dt_um + sqrt_dt_err_um`` a 1-sigma profile-likelihood
        upper bound and ``timescale_days_low`` = 0), ``fit_error`` (the reason in words),
        ``model``, ``xfe`` (the XFe used for D), ``diffusion_assumption`` (the D model,
        conditions and orientation assumption in words). With a ``channel`` column holding
        several channels, ``channel`` follows ``label``.

    Raises
    ------
    ZonationInputError
        Missing or contradictory conditions (e.g. olivine without temperature or fO2, both
        ``delta_qfm`` and ``log_fo2_pa``), non-Fo values without ``xfe``, unknown options or
        models, a table without the profile columns.
    """
    prof = check_profiles(prof)
    opts, dmodel, model = _checked_options(
        mineral=mineral,
        temperature_c=temperature_c,
        pressure_mpa=pressure_mpa,
        delta_qfm=delta_qfm,
        log_fo2_pa=log_fo2_pa,
        angles_deg=angles_deg,
        xfe=xfe,
        diffusivity_um2_s=diffusivity_um2_s,
        temperature_c_err=temperature_c_err,
        model=model,
        **options,
    )
    values = pd.to_numeric(prof["value"], errors="coerce").to_numpy(dtype=float)
    is_fo = _values_look_like_fo(values)
    if dmodel.kind == "olivine" and dmodel.xfe is None and not is_fo:
        raise ZonationInputError(
            "the olivine diffusivity needs the fayalite fraction: the profile values are not Fo "
            "in mol % (50-100; grey levels?), so pass xfe (e.g. xfe=0.15 for Fo85), or calibrate "
            "the profiles to Fo first."
        )
    # D varies with each node's composition only when the values are Fo and D(XFe) is known
    comp_dep = dmodel.composition_dependent and is_fo

    has_sigma = "sigma" in prof.columns
    keys = ["label"]
    if "channel" in prof.columns and prof["channel"].nunique(dropna=False) > 1:
        keys.append("channel")
    rows = []
    for key, group in prof.groupby(keys, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key, strict=True))
        pr = _window(_prepare(group, has_sigma), opts["window_um"])
        res = _fit_erf(pr, opts)
        xfe_ref = math.nan
        if res.get("fit_status") in ("ok", "unresolved"):
            if dmodel.xfe is not None:
                xfe_ref = dmodel.xfe
            elif is_fo:
                xfe_ref = 1.0 - 0.5 * (res["outer_value"] + res["inner_value"]) / 100.0
        if model == "fd" and res.get("fit_status") == "unresolved":
            res["fit_error"] += " (erf quick look; the FD model was not run)"
        if model == "fd" and res.get("fit_status") == "ok":
            if comp_dep:
                ref = xfe_ref

                def drel(c, ref=ref):
                    return 10.0 ** (3.0 * ((1.0 - np.asarray(c) / 100.0) - ref))
            else:

                def drel(c):
                    return np.ones_like(c)

            # the FD's reduced time is D(xfe_ref) t, so xfe_ref stays that of the erf fit
            res.update(_fit_fd(pr, res, drel, opts, closed_start=opts["window_um"] is not None))
        row.update(res)
        row["model"] = model
        row["xfe"] = xfe_ref
        assumption = dmodel.assumption
        if model == "fd":
            assumption += (
                "; FD: D at each node's XFe (10^(3 XFe)), sqrt_dt_um at the mean XFe"
                if comp_dep
                else "; FD: constant D"
            )
            closed = opts["rim"] == "closed" or opts["window_um"] is not None
            assumption += ", ends closed" if closed else ", rim held at the outer value"
        row["diffusion_assumption"] = assumption
        _add_timescale(row, dmodel, xfe_ref)
        row.pop("_s_upper", None)
        rows.append(row)

    table = pd.DataFrame(rows)
    for col in OUTPUT_COLUMNS:
        if col not in table.columns:
            table[col] = (
                "" if col in ("fit_status", "fit_error", "diffusion_assumption") else (math.nan)
            )
    table["n_points"] = table["n_points"].fillna(0).astype(int)
    cols = keys + [c for c in OUTPUT_COLUMNS if c not in keys]
    return table[cols].reset_index(drop=True)


def _add_timescale(row: dict, dmodel: _DModel, xfe_ref: float) -> None:
    for col in ("diffusivity_um2_s", "timescale_days", "timescale_days_low", "timescale_days_high"):
        row[col] = math.nan
    s = row.get("sqrt_dt_um", math.nan)
    if dmodel.kind == "none" or not np.isfinite(s):
        return
    if dmodel.kind == "olivine" and not np.isfinite(xfe_ref):
        return
    d = dmodel.diffusivity(xfe_ref)
    row["diffusivity_um2_s"] = d
    t_days = s**2 / d / SECONDS_PER_DAY
    row["timescale_days"] = t_days
    s_err = row.get("sqrt_dt_err_um", math.nan)
    fit_ln = 2.0 * s_err / s if np.isfinite(s_err) else math.nan
    up_d, dn_d = dmodel.log_spread(xfe_ref)  # ln D(T+dT)/D, ln D/D(T-dT)
    s_up = row.get("_s_upper")
    if s_up is not None:  # unresolved: t is bounded above only
        row["timescale_days_low"] = 0.0
        row["timescale_days_high"] = s_up**2 / d / SECONDS_PER_DAY * math.exp(dn_d)
    elif np.isfinite(fit_ln):
        row["timescale_days_low"] = t_days * math.exp(-math.hypot(fit_ln, up_d))
        row["timescale_days_high"] = t_days * math.exp(math.hypot(fit_ln, dn_d))
