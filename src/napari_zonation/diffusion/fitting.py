"""Fitting the finite-difference models to a measured profile by weighted least squares.

The residuals are ``(y - model(d)) / sigma`` (chi-square weighted by each point's ``sigma``;
unweighted when the profile has none, the errors then scaled by the residual scatter). The
model is the relaxed initial profile of :mod:`.models`, blurred by the measurement's
resolution, on a node grid refined around the steps; the fit is run again on a grid rebuilt
around the solution when the steps moved or the width shrank. The 1-sigma error of
``ln tau`` comes from the Jacobian (inflated by sqrt(chi2_red) when chi2_red > 1, and for
residuals correlated along the profile by the AR(1) sandwich of :func:`ar1_variance_ratio`); a
step too sharp to measure gets a one-sided bound from the profile likelihood.
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
    rho: float = 0.0  # lag-1 autocorrelation of the errors, from the residuals (>= 0)
    var_ratio: np.ndarray | None = None  # variance inflation of each parameter by rho

    def ln_tau_err(self, index: int = -1) -> float:
        if self.cov is None:
            return math.nan
        v = self.cov[index, index]
        return math.sqrt(v) if np.isfinite(v) and v >= 0 else math.nan


def residual_correlation(resid: np.ndarray, jac: np.ndarray | None = None) -> float:
    """Lag-1 autocorrelation of the errors along the profile, estimated from the fit's
    whitened residuals; 0 when not positive, at most 0.8.

    Parameters
    ----------
    resid : numpy.ndarray
        Residuals divided by their sigma, in distance order.
    jac : numpy.ndarray, optional
        The whitened Jacobian of the fit at the solution (points x free parameters). With it,
        the estimate is the rho whose AR(1) errors, passed through this least-squares fit, give
        residuals of the observed lag-1 autocorrelation in expectation:
        ``trace(L M R M) / trace(M R M) = r`` (``M`` the fit's residual-maker matrix, ``L``
        the lag-1 shift, ``R_ij = rho^|i - j|``). A fit absorbs part of the errors of the
        points each parameter rests on, the more so when they are correlated (a streak looks
        like a shifted level or a wider step): the residuals of independent errors are
        anticorrelated and those of correlated errors less correlated than the errors, so the
        plain residual autocorrelation understates rho. Without ``jac`` the plain lag-1
        autocorrelation of the residuals is returned.

    Returns
    -------
    float
        The estimate, clipped to [0, 0.8].

    Notes
    -----
    Residuals that run in streaks (what a model misses, unresolved structure, neighbouring
    points that share a measurement volume or a segmentation outline) carry less information
    than their number; :func:`ar1_variance_ratio` turns the estimate into the inflation of
    each parameter's variance. There is no significance test: a pretest that sets small
    estimates to 0 leaves the intervals too narrow whenever the correlation is real but
    small.
    """
    r = np.asarray(resid, dtype=float)
    n = r.size
    if n < 8:
        return 0.0
    den = float(np.sum(r * r))
    if den <= 0:
        return 0.0
    r1 = float(np.sum(r[1:] * r[:-1]) / den)
    if jac is None or jac.ndim != 2 or jac.shape[0] != n or jac.shape[1] >= n - 1:
        return float(np.clip(r1, 0.0, 0.8))
    q, _ = np.linalg.qr(np.asarray(jac, dtype=float))
    idx = np.arange(n)
    lag = np.abs(idx[:, None] - idx[None, :])

    def expected_r1(rho: float) -> float:
        # E[e^T L e] / E[e^T e] for e = M eps, cov(eps) = R: traces without forming M
        rm = rho**lag if rho > 0 else np.eye(n)
        rq = rm @ q
        qrq = q.T @ rq
        # M R M = R - Q Q^T R - R Q Q^T + Q (Q^T R Q) Q^T
        mrm = rm - q @ rq.T - rq @ q.T + q @ qrq @ q.T
        return float(np.trace(mrm, offset=1) / max(np.trace(mrm), 1e-300))

    if r1 <= expected_r1(0.0):
        return 0.0
    if r1 >= expected_r1(0.8):
        return 0.8
    lo, hi = 0.0, 0.8
    for _ in range(14):  # bisection: the expectation grows with rho
        mid = 0.5 * (lo + hi)
        if expected_r1(mid) < r1:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def ar1_variance_ratio(jac: np.ndarray, rho: float) -> np.ndarray:
    """Variance inflation of each fitted parameter for AR(1) errors of lag-1 correlation rho.

    Parameters
    ----------
    jac : numpy.ndarray
        The whitened Jacobian at the solution (points in distance order x free parameters).
    rho : float
        The errors' lag-1 autocorrelation (see :func:`residual_correlation`).

    Returns
    -------
    numpy.ndarray
        ``diag(B J^T R J B) / diag(B)`` with ``B = (J^T J)^-1`` and ``R_ij = rho^|i - j|``:
        the least-squares estimate's variance under correlated errors (the sandwich) over
        the one that assumes independent points. For the mean of a long series this is
        ``(1 + rho) / (1 - rho)``; for a parameter resting on a few points of a narrow step
        (sqrt(Dt), the step position) it is what the Jacobian's shape makes it.
    """
    k = jac.shape[1]
    if rho <= 0 or k == 0:
        return np.ones(k)
    n = jac.shape[0]
    idx = np.arange(n)
    corr = rho ** np.abs(idx[:, None] - idx[None, :])
    bread = np.linalg.pinv(jac.T @ jac)
    sand = bread @ (jac.T @ corr @ jac) @ bread
    plain = np.diag(bread)
    ratio = np.where(plain > 0, np.diag(sand) / np.where(plain > 0, plain, 1.0), 1.0)
    return np.clip(ratio, 1.0, None)


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
    rho = 0.0
    var_ratio = np.ones(size)
    cov = None
    try:
        jac = np.asarray(best.jac, dtype=float)
        rho = residual_correlation(best.fun, jac)
        ratio = ar1_variance_ratio(jac, rho)
        var_ratio[free] = ratio
        cf = np.linalg.pinv(jac.T @ jac)
        cf = cf * (chi2 / dof if sn is None else max(1.0, chi2_red))
        cf = cf * np.sqrt(np.outer(ratio, ratio))
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
        var_ratio=var_ratio,
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
    if fit.var_ratio is not None:  # fit_model always sets it (ones when rho is 0)
        scale_chi *= float(fit.var_ratio[slot])
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
    "ar1_variance_ratio",
    "fit_model",
    "guess_steps",
    "model_curve",
    "profile_ln_tau",
    "profile_upper_ln_tau",
    "residual_correlation",
]
