"""Fitting the finite-difference models to a measured profile by weighted least squares.

The residuals are ``(y - model(d)) / sigma`` (chi-square weighted by each point's ``sigma``;
unweighted when the profile has none, the errors then scaled by the residual scatter). The
model is the relaxed initial profile of :mod:`.models`, blurred by the measurement's
resolution, on a node grid refined around the steps; the fit is run again on a grid rebuilt
around the solution when the steps moved or the width shrank. The 1-sigma error of
``ln tau`` comes from the Jacobian (inflated by sqrt(chi2_red) when chi2_red > 1); a step too
sharp to measure gets a one-sided bound from the profile likelihood.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.optimize import least_squares

from .models import (
    Domain,
    GivenInitialModel,
    Grid,
    Physics,
    PlateauModel,
    TwoStageModel,
    make_grid,
    predict,
)


@dataclass
class FitResult:
    theta: np.ndarray
    cov: np.ndarray | None
    chi2: float
    dof: int
    chi2_red: float  # NaN without sigma
    success: bool
    message: str
    grid: Grid
    model: object
    scale: float  # value scale of the normalisation
    offset: float
    fixed: tuple = ()  # indices of the parameters held fixed
    rho: float = 0.0  # lag-1 autocorrelation of the residuals (0 when not significant)

    def ln_tau_err(self, index: int = -1) -> float:
        if self.cov is None:
            return math.nan
        v = self.cov[index, index]
        return math.sqrt(v) if np.isfinite(v) and v >= 0 else math.nan


def residual_correlation(resid: np.ndarray) -> float:
    """Lag-1 autocorrelation of the residuals along the profile when it is significant
    (above 2 / sqrt(n)), else 0; clipped to 0.8.

    Residuals that run in streaks (what a model misses near the rim, unresolved structure,
    neighbouring points that share a measurement volume) carry less information than their
    number: for an AR(1) series the variance of a fitted parameter grows by
    ``(1 + rho) / (1 - rho)``, the factor the fit's covariance is scaled by.
    """
    r = np.asarray(resid, dtype=float)
    n = r.size
    if n < 8:
        return 0.0
    r = r - r.mean()
    den = float(np.sum(r * r))
    if den <= 0:
        return 0.0
    rho = float(np.sum(r[1:] * r[:-1]) / den)
    return float(min(rho, 0.8)) if rho > 2.0 / math.sqrt(n) else 0.0


def guess_steps(d: np.ndarray, y: np.ndarray, k: int) -> list[float]:
    """Positions of the ``k`` largest jumps of the smoothed profile, rim first."""
    n = d.size
    ys = gaussian_filter1d(y, sigma=max(1.0, n / 60.0), mode="nearest")
    grad = np.abs(np.gradient(ys, d))
    order = np.argsort(grad)[::-1]
    chosen: list[int] = []
    min_gap = max(2, n // (4 * k + 2))
    for i in order:
        if all(abs(int(i) - j) >= min_gap for j in chosen):
            chosen.append(int(i))
        if len(chosen) == k:
            break
    while len(chosen) < k:  # pragma: no cover - tiny profiles
        chosen.append(int(n * (len(chosen) + 1) / (k + 1)))
    return sorted(float(d[i]) for i in chosen)


def _levels_between(d, y, positions) -> list[float]:
    edges = [-np.inf] + list(positions) + [np.inf]
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (d > lo) & (d < hi)
        out.append(float(np.median(y[sel])) if sel.any() else float(np.median(y)))
    return out


def fit_model(
    model,
    theta0: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    d: np.ndarray,
    y: np.ndarray,
    sigma: np.ndarray | None,
    domain: Domain,
    physics: Physics,
    blur_sigma: float,
    s_scale: float,
    *,
    value_slots: list[int],
    extra_starts: int = 2,
    starts: list | None = None,
    refine: bool = True,
    fixed: dict | None = None,
) -> FitResult:
    """Weighted least squares of ``model`` to ``(d, y)``.

    ``theta0``, ``lower``, ``upper`` and the extra ``starts`` are full parameter vectors;
    ``fixed`` (``{index: value}``) holds parameters at given values. ``value_slots`` are the
    parameters in value units (normalised internally so that the profile spans about 1); the
    others are micrometres or ln tau. The result's ``theta`` is the full vector and its ``cov``
    has zero rows and columns for the held parameters.
    """
    fixed = dict(fixed or {})
    size = len(theta0)
    free = np.array([i for i in range(size) if i not in fixed], dtype=int)
    offset = 0.0 if getattr(model, "multiplicative", False) else float(np.median(y))
    scale = float(np.ptp(y)) or 1.0
    yn = (y - offset) / scale
    sn = None if sigma is None else sigma / scale
    w = 1.0 if sn is None else sn
    phys = Physics(
        k_value=physics.k_value * scale,
        v_ref=(physics.v_ref - offset) / scale,
        n_steps=physics.n_steps,
        drift=physics.drift,
        d_nodes=physics.d_nodes,
        d_of_x=physics.d_of_x,
        lnk_of_x=physics.lnk_of_x,
    )
    model_out = model
    if hasattr(model, "normalised"):  # values carried by the model itself
        model = model.normalised(offset, scale)
    vs = np.zeros(size, dtype=bool)
    vs[list(value_slots)] = True

    def to_norm(theta):
        t = np.array(theta, dtype=float)
        t[vs] = (t[vs] - offset) / scale
        return t

    def from_norm(t):
        out = np.array(t, dtype=float)
        out[vs] = out[vs] * scale + offset
        return out

    held = to_norm(np.array([fixed.get(i, 0.0) for i in range(size)]))

    def full(tf):
        t = held.copy()
        t[free] = tf
        return t

    lo = to_norm(lower)
    hi = to_norm(upper)
    lo[vs] = np.where(np.isfinite(np.asarray(lower, float)[vs]), lo[vs], -np.inf)
    hi[vs] = np.where(np.isfinite(np.asarray(upper, float)[vs]), hi[vs], np.inf)
    lo_f, hi_f = lo[free], hi[free]

    def run(tf0, grid):
        def resid(tf):
            return (yn - predict(model, full(tf), grid, domain, phys, d, blur_sigma)) / w

        tf0 = np.clip(tf0, lo_f + 1e-9 * (1 + np.abs(lo_f)), hi_f - 1e-9 * (1 + np.abs(hi_f)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return least_squares(resid, tf0, bounds=(lo_f, hi_f), x_scale="jac",
                                 diff_step=1e-6, max_nfev=400)

    t0 = to_norm(theta0)
    for i in fixed:
        t0[i] = held[i]
    grid = make_grid(domain, model.focus(from_norm(t0)), s_scale)
    ln_tau_slots = [i for i, nme in enumerate(model.names()) if nme.startswith("ln_tau")]
    cand = [t0]
    for j in range(extra_starts):
        alt = t0.copy()
        alt[ln_tau_slots] = t0[ln_tau_slots] + (1.4 if j % 2 == 0 else -1.4) * (j // 2 + 1)
        cand.append(alt)
    for extra in starts or []:
        e = to_norm(np.asarray(extra, dtype=float))
        e[list(fixed)] = held[list(fixed)]
        cand.append(e)
    best = None
    for start in cand:
        try:
            sol = run(start[free], grid)
        except (ValueError, np.linalg.LinAlgError):
            continue
        if best is None or sol.cost < best.cost:
            best = sol
    if best is None:
        raise RuntimeError("the least-squares fit failed from every start")
    if refine:
        taus = [math.exp(full(best.x)[i]) for i in ln_tau_slots]
        s_new = math.sqrt(max(min(taus), 1e-12))
        f0 = model.focus(from_norm(t0))
        f1 = model.focus(from_norm(full(best.x)))
        moved = float(np.max(np.abs(np.subtract(f1, f0)))) if f0 else 0.0
        if s_new < 0.8 * s_scale or moved > 2.0 * s_scale or s_new > 3.0 * s_scale:
            s_scale = max(s_new, 1e-3)
            grid = make_grid(domain, f1, s_scale)
            try:
                best = run(best.x, grid)
            except (ValueError, np.linalg.LinAlgError):  # pragma: no cover
                pass
    n = d.size
    k = free.size
    chi2 = float(np.sum(best.fun**2))
    dof = max(n - k, 1)
    chi2_red = chi2 / dof if sn is not None else math.nan
    rho = residual_correlation(best.fun)
    cov = None
    try:
        jac = best.jac
        cf = np.linalg.pinv(jac.T @ jac)
        cf = cf * (chi2 / dof if sn is None else max(1.0, chi2_red))
        cf = cf * (1.0 + rho) / (1.0 - rho)
        s_vec = np.where(vs[free], scale, 1.0)
        cf = cf * np.outer(s_vec, s_vec)
        cov = np.zeros((size, size))
        cov[np.ix_(free, free)] = cf
    except (np.linalg.LinAlgError, ValueError):  # pragma: no cover
        cov = None
    return FitResult(
        theta=from_norm(full(best.x)),
        cov=cov,
        chi2=chi2 if sn is not None else chi2 * scale**2,
        dof=dof,
        chi2_red=chi2_red,
        success=bool(best.success),
        message=str(best.message),
        grid=grid,
        model=model_out,
        scale=scale,
        offset=offset,
        fixed=tuple(sorted(fixed)),
        rho=rho,
    )


def model_curve(fit: FitResult, domain: Domain, physics: Physics, d: np.ndarray,
                blur_sigma: float) -> np.ndarray:
    """The fitted model at distances ``d`` (value units)."""
    return predict(fit.model, fit.theta, fit.grid, domain, physics, np.asarray(d, float),
                   blur_sigma)


def profile_ln_tau(
    fit: FitResult, d, y, sigma, domain, physics, blur_sigma, *, value_slots, lower, upper,
    slot: int = -1, direction: int = 1, first_step: float = 0.1, max_span: float = 8.0,
) -> float:
    """The ln tau on one side of the best fit (``direction`` +1 or -1) where chi-square, the
    other parameters refitted within their bounds, has risen by one (times chi2_red when
    > 1): the 1-sigma profile-likelihood bound. NaN when it is not reached within the
    parameter's bounds or ``max_span``."""
    slot = slot % fit.theta.size
    scale_chi = max(1.0, fit.chi2_red) if np.isfinite(fit.chi2_red) else fit.chi2 / fit.dof
    scale_chi *= (1.0 + fit.rho) / (1.0 - fit.rho)
    w = 1.0 if sigma is None else sigma
    base = fit.theta.copy()
    chi_prev, lt_prev = fit.chi2, float(base[slot])
    free = [i for i in range(base.size) if i != slot and i not in fit.fixed]
    lo = np.asarray(lower, float)[free]
    hi = np.asarray(upper, float)[free]
    limit = float(upper[slot]) if direction > 0 else float(lower[slot])
    step = max(first_step, 0.02)
    travelled = 0.0
    while travelled < max_span:
        lt = lt_prev + direction * step
        if (lt - limit) * direction > 0:
            lt = limit
        def resid(tf, lt=lt):
            t = base.copy()
            t[free] = tf
            t[slot] = lt
            return (y - predict(fit.model, t, fit.grid, domain, physics, d, blur_sigma)) / w

        x0 = np.clip(base[free], lo + 1e-9 * (1 + np.abs(lo)), hi - 1e-9 * (1 + np.abs(hi)))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sol = least_squares(resid, x0, bounds=(lo, hi), x_scale="jac", max_nfev=60,
                                    diff_step=1e-6)
        except (ValueError, np.linalg.LinAlgError):  # pragma: no cover
            return math.nan
        chi = float(np.sum(sol.fun**2))
        if (chi - fit.chi2) / scale_chi >= 1.0:
            frac = (fit.chi2 + scale_chi - chi_prev) / max(chi - chi_prev, 1e-300)
            return float(lt_prev + direction * np.clip(frac, 0.0, 1.0) * abs(lt - lt_prev))
        base[free] = sol.x
        travelled += abs(lt - lt_prev)
        chi_prev, lt_prev = chi, lt
        if lt == limit:
            return math.nan
        step *= 1.6
    return math.nan


def profile_upper_ln_tau(fit, d, y, sigma, domain, physics, blur_sigma, *, value_slots, lower,
                         upper, slot: int = -1) -> float:
    """1-sigma profile-likelihood upper bound of ln tau (see :func:`profile_ln_tau`)."""
    return profile_ln_tau(fit, d, y, sigma, domain, physics, blur_sigma,
                          value_slots=value_slots, lower=lower, upper=upper, slot=slot,
                          direction=1, first_step=0.1)


__all__ = [
    "FitResult",
    "GivenInitialModel",
    "PlateauModel",
    "TwoStageModel",
    "fit_model",
    "guess_steps",
    "model_curve",
    "profile_ln_tau",
    "profile_upper_ln_tau",
]
