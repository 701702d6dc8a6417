"""Slope models of a zoning profile: straight and curved ramps with and without rim and core
plateaus, their corners sharp or rounded, found on a grid and refined (see
:mod:`napari_zonation.zoning_models`)."""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from ._zoning_base import Fit, ProfileData, _varpro, criterion

#: curvatures of the ramp grid search (c = 0: straight; c > 0 steep at the slope's rim
#: end), refined within _C_LIMITS: a gradient is straight or gently curved (its slope at the
#: flat end at least exp(-1.5) of the steep end's); a profile steep at the rim that flattens
#: smoothly into the core is a diffusion profile from the rim, a step held at the rim
_C_GRID = (0.0, -2.0, -1.25, -0.6, 0.6, 1.25)
_C_LIMITS = (-2.0, 1.5)

#: rounding of a straight ramp's corners: the ramp convolved with a Gaussian whose sigma is
#: ``rho`` times the slope's length (the image's blur, shell averaging across a curved
#: outline). At most _RHO_MAX: the slope keeps a straight middle (at rho = 0.25 the central
#: half of its length departs from a straight line by 2 % of the rise), which an erf step,
#: steepest at one point, has not
_RHO_GRID = (0.08, 0.16, 0.25)
_RHO_MAX = 0.25


def _curve(t, c):
    t = np.clip(t, 0.0, 1.0)
    c = np.asarray(c, dtype=float)
    small = np.abs(c) < 1e-6
    cc = np.where(small, 1.0, c)
    out = (1.0 - np.exp(-cc * t)) / (1.0 - np.exp(-cc))
    return np.where(small, t, out)


def _rounded(d, s, e, rho, rim=True, core=True):
    """A straight 0 -> 1 ramp from ``s`` to ``e`` whose corners (the one at ``s`` if ``rim``,
    the one at ``e`` if ``core``) are convolved with a Gaussian of sigma ``rho (e - s)``:
    ``((d - s)_+ - (d - e)_+) / (e - s)`` with a rounded corner's ``(d - p)_+`` replaced by
    ``r psi((d - p) / r)``, ``psi(z) = z Phi(z) + phi(z)`` (the integral of the normal CDF)."""
    d = np.asarray(d, float)
    length = np.maximum(np.asarray(e, float) - s, 1e-12)
    r = np.maximum(np.asarray(rho, float) * length, 1e-12)

    def corner(p, soft):
        z = (d - p) / r
        smooth = r * (z * ndtr(z) + np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi))
        return np.where(soft, smooth, np.maximum(d - p, 0.0))

    return (corner(s, rim) - corner(e, core)) / length


def ramp_predict(d, a, b, s, e, c, rho=0.0, rim=True, core=True):
    if rho > 0:
        return a + (b - a) * _rounded(d, s, e, rho, rim, core)
    t = (np.asarray(d, float) - s) / max(e - s, 1e-12)
    return a + (b - a) * _curve(t, c)


def fit_ramps(p: ProfileData, rounded: bool = True) -> list[Fit]:
    """Straight and curved slopes, with and without rim and core plateaus, straight ones with
    sharp or (``rounded``) rounded corners (module notes)."""
    d, v, w = p.d, p.v, p.w
    n, L = p.n, p.length
    if n < 5 or L <= 0:
        return []
    least = p.min_gradient_fraction * L
    # start depths: the first point (no rim plateau) or after at least two points
    s_opts = np.unique(np.concatenate([[p.d0], np.quantile(d[2:], np.linspace(0, 0.55, 10))]))
    e_opts = np.unique(np.concatenate([np.quantile(d[:-3], np.linspace(0.2, 1, 14)), [p.d1]]))
    ss, ee, cc = np.meshgrid(s_opts, e_opts, np.array(_C_GRID), indexing="ij")
    ss, ee, cc = ss.ravel(), ee.ravel(), cc.ravel()
    ok = ee - ss >= least - 1e-9
    ss, ee, cc = ss[ok], ee[ok], cc[ok]
    if ss.size == 0:
        return []
    g = _curve((d[None, :] - ss[:, None]) / (ee - ss)[:, None], cc[:, None])
    rr = np.zeros(ss.size)
    if rounded:
        # straight slopes with rounded corners, where a corner lies inside the profile
        st = (np.abs(cc) < 1e-9) & ((ss > p.d0 + 1e-9) | (ee < p.d1 - 1e-9))
        s2 = np.repeat(ss[st], len(_RHO_GRID))
        e2 = np.repeat(ee[st], len(_RHO_GRID))
        r2 = np.tile(np.array(_RHO_GRID), int(st.sum()))
        g2 = _rounded(
            d[None, :],
            s2[:, None],
            e2[:, None],
            r2[:, None],
            (s2 > p.d0 + 1e-9)[:, None],
            (e2 < p.d1 - 1e-9)[:, None],
        )
        ss, ee = np.concatenate([ss, s2]), np.concatenate([ee, e2])
        cc, rr = np.concatenate([cc, np.zeros(s2.size)]), np.concatenate([rr, r2])
        g = np.concatenate([g, g2])
    sw, swg, swgg = w.sum(), (w * g).sum(1), (w * g * g).sum(1)
    swv, swgv = float((w * v).sum()), (w * g * v).sum(1)
    swvv = float((w * v * v).sum())
    det = sw * swgg - swg**2
    good = det > 1e-12 * sw * np.maximum(swgg, 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = (sw * swgv - swg * swv) / det
        alpha = (swv - beta * swg) / sw
    rss = swvv - alpha * swv - beta * swgv
    rss = np.where(good, rss, np.inf)
    rim_pl = ss > p.d0 + 1e-9
    core_pl = ee < p.d1 - 1e-9
    # shape of each node: 0 straight, 1 curved, 2 straight with rounded corners
    kind = np.where(rr > 0, 2, np.where(np.abs(cc) > 1e-9, 1, 0))
    # the best grid node of each variant; the variants within reach of the best are refined
    nodes = []
    for has_rim in (False, True):
        for has_core in (False, True):
            for shape in (0, 1, 2):
                sel = np.flatnonzero((rim_pl == has_rim) & (core_pl == has_core) & (kind == shape))
                if sel.size == 0 or not np.isfinite(rss[sel]).any():
                    continue
                i = int(sel[np.argmin(rss[sel])])
                k = 2 + int(has_rim) + int(has_core) + int(shape > 0)
                score = criterion(float(rss[i]), n, k, p.known_sigma, p.variance_floor)
                nodes.append((score, i, has_rim, has_core, shape))
    if not nodes:
        return []
    # sharp slopes are refined within reach of the best sharp node (a rounded node's grid
    # score does not turn them away), rounded ones within reach of the best node
    top = min(t[0] for t in nodes)
    top_sharp = min((t[0] for t in nodes if t[4] < 2), default=top)
    fits = []
    for score, i, has_rim, has_core, shape in nodes:
        if score > (top if shape == 2 else top_sharp) + 20.0:
            continue
        fit = _refine_ramp(
            p, alpha[i], beta[i], ss[i], ee[i], cc[i], has_rim, has_core, shape == 1, rr[i]
        )
        if fit is not None:
            fits.append(fit)
    return fits


def _refine_ramp(p, a0, b0, s0, e0, c0, has_rim, has_core, is_curved, rho0=0.0) -> Fit | None:
    """Refine a grid node by variable projection over the slope's ends and its curvature or
    the rounding of its corners (``rho0 > 0``)."""
    d, v, w = p.d, p.v, p.w
    sw = np.sqrt(w)
    least = p.min_gradient_fraction * p.length
    names, x0, lb, ub = [], [], [], []
    if has_rim:
        names.append("s")
        x0.append(s0)
        lb.append(p.d0)
        ub.append(p.d1 - least)
    if has_core:
        names.append("e")
        x0.append(e0)
        lb.append(p.d0 + least)
        ub.append(p.d1)
    if is_curved:
        names.append("c")
        x0.append(c0)
        lb.append(_C_LIMITS[0])
        ub.append(_C_LIMITS[1])
    rounded = rho0 > 0
    if rounded:
        names.append("rho")
        x0.append(rho0)
        lb.append(0.02)
        ub.append(_RHO_MAX)

    def solve(x):
        q = dict(zip(names, x, strict=True))
        s, e, c = q.get("s", p.d0), q.get("e", p.d1), q.get("c", 0.0)
        rho = q.get("rho", 0.0)
        if rho > 0:
            g = _rounded(d, s, e, rho, has_rim, has_core)
        else:
            g = _curve((d - s) / max(e - s, 1e-9), c)
        cols = np.stack([1.0 - g, g], axis=1)
        coef, *_ = np.linalg.lstsq(cols * sw[:, None], v * sw, rcond=None)
        return (float(coef[0]), float(coef[1]), s, e, c, rho), cols @ coef

    if names:
        try:
            res = _varpro(lambda x: sw * (solve(x)[1] - v), x0, lb, ub, 30 * (len(names) + 1))
        except (ValueError, np.linalg.LinAlgError):
            return None
        xs = res.x
    else:
        xs = np.array([])
    (a, b, s, e, c, rho), fitted = solve(xs)
    rss = float(np.sum(w * (fitted - v) ** 2))
    k = 2 + int(has_rim) + int(has_core) + int(is_curved or rounded)
    kind = ("rim_" if has_rim else "") + ("hinge" if has_core else "full")
    return Fit(
        "gradient",
        "ramp",
        k,
        rss,
        lambda x, a=a, b=b, s=s, e=e, c=c, rho=rho, hr=has_rim, hc=has_core: ramp_predict(
            x, a, b, s, e, c, rho, hr, hc
        ),
        {
            "rim": a,
            "core": b,
            "start": s,
            "end": e,
            "curvature": c,
            "kind": kind,
            "curved": is_curved,
            "rounding": rho,
        },
    )


def check_ramp(fit: Fit, p: ProfileData) -> tuple[bool, str]:
    d = p.d
    s, e = fit.info["start"], fit.info["end"]
    if e - s < p.min_gradient_fraction * p.length - 1e-9:
        return False, "slope shorter than min_gradient_fraction of the profile"
    if int(np.sum((d >= s) & (d <= e))) < 3:
        return False, "fewer than three points on the slope"
    if s > p.d0 + 1e-9 and int(np.sum(d < s)) < 2:
        return False, "a rim plateau of fewer than two points"
    if e < p.d1 - 1e-9 and (int(np.sum(d > e)) < 3 or p.d1 - e < p.min_core_um):
        return False, "the core plateau is too short"
    if p.min_range > 0 and abs(fit.info["core"] - fit.info["rim"]) < p.min_range:
        return False, "a slope smaller than shell systematics"
    return True, ""
