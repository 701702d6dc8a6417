"""The error-function quick look: one relaxed step in an infinite medium, fitted by weighted
least squares, and the profile preparation shared by every fit.

    value(d) = a + (b - a) * 0.5 * (1 + erf((d - p) / (2 * s))),   s = sqrt(D t)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.optimize import curve_fit

from .._stats import unit_step


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
    return outer + (inner - outer) * unit_step(d, position_um, 2.0 * sqrt_dt_um)


def _erf_step_jac(d, outer, inner, position_um, sqrt_dt_um) -> np.ndarray:
    """Jacobian of :func:`erf_step` with respect to (outer, inner, position, sqrt_dt)."""
    d = np.asarray(d, dtype=float)
    z = (d - position_um) / (2.0 * sqrt_dt_um)
    e = unit_step(d, position_um, 2.0 * sqrt_dt_um)
    g = (inner - outer) * np.exp(-(z**2)) / math.sqrt(math.pi)
    return np.column_stack([1.0 - e, e, -g / (2.0 * sqrt_dt_um), -g * z / sqrt_dt_um])



@dataclass
class _Profile:
    d: np.ndarray
    y: np.ndarray
    w: np.ndarray | None  # sigma per point, None when unknown


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
