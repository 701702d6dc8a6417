"""Periodic models of a zoning profile: oscillatory mantles (bands) between a start and an
end depth, with or without rim and core levels, found on a grid over the period and refined,
with a frequency drift, harmonics and a trend when the criterion pays for them (see
:mod:`napari_zonation.zoning_models`)."""

from __future__ import annotations

import numpy as np

from ._stats import unit_step
from ._zoning_base import Fit, ProfileData, _varpro, criterion

#: fewest periods of an oscillatory mantle that ends at a core level / at the deepest point
OSC_MIN_PERIODS = 2.0
OSC_MIN_PERIODS_TRUNCATED = 1.5
#: shortest band period, in sampling intervals
OSC_MIN_PERIOD_POINTS = 3.0


def _osc_columns(d, q: dict, tau: float, linear: tuple[str, ...]) -> np.ndarray:
    """Design matrix of the linear parameters ``linear`` of an oscillatory mantle, given the
    nonlinear ones in ``q`` (frequency ``f``, ``chirp``, mantle start ``s`` and end ``e``)."""
    s = q.get("s", -np.inf)
    e = q.get("e", np.inf)
    u_s = unit_step(d, s, tau) if np.isfinite(s) else np.ones(d.size)
    u_e = unit_step(d, e, tau) if np.isfinite(e) else np.zeros(d.size)
    mant = u_s - u_e
    ang = 2 * np.pi * (q["f"] * d + q.get("chirp", 0.0) * d * d)
    cols = {
        "m": mant,
        "A": mant * np.sin(ang),
        "B": mant * np.cos(ang),
        "A2": mant * np.sin(2 * ang),
        "B2": mant * np.cos(2 * ang),
        "A3": mant * np.sin(3 * ang),
        "B3": mant * np.cos(3 * ang),
        "A4": mant * np.sin(4 * ang),
        "B4": mant * np.cos(4 * ang),
        "trend": mant * (d - q.get("dm", 0.0)),
        "rim": 1.0 - u_s,
        "core": u_e,
    }
    return np.stack([cols[k] for k in linear], axis=1)


def _osc_eval(d, q: dict, tau: float) -> np.ndarray:
    """Oscillatory mantle model of the parameters ``q``."""
    linear = tuple(k for k in _LINEAR if k in q)
    return _osc_columns(d, q, tau, linear) @ np.array([q[k] for k in linear])


_LINEAR = ("m", "A", "B", "A2", "B2", "A3", "B3", "A4", "B4", "trend", "rim", "core")
#: harmonics the bands may add to their fundamental, each a pair of linear parameters: bands
#: that are not sine waves (square bands need the odd harmonics, sawtooth bands all of them)
_HARMONICS = {2: ("A2", "B2"), 3: ("A3", "B3"), 4: ("A4", "B4")}
_EXTRA_KEYS = (*(k for h in _HARMONICS.values() for k in h), "trend")


def fit_oscillations(p: ProfileData) -> list[Fit]:
    """Periodic mantles (module notes): a grid over start, end and frequency, then refined."""
    d, v, w = p.d, p.v, p.w
    n, sp, L = p.n, p.spacing, p.length
    p_min = OSC_MIN_PERIOD_POINTS * sp
    if n < 8 or L < OSC_MIN_PERIODS_TRUNCATED * p_min:
        return []
    sw = np.sqrt(w)
    f = np.arange(OSC_MIN_PERIODS_TRUNCATED / L, 1.0 / p_min, 0.5 / L)
    if f.size == 0:
        return []
    s_opts = np.concatenate([[-np.inf], np.quantile(d[2:], [0.03, 0.1, 0.2, 0.3])])
    e_opts = np.concatenate([np.quantile(d[:-3], np.linspace(0.45, 1.0, 8)), [np.inf]])
    best = {}
    for s in np.unique(s_opts):
        for e in np.unique(e_opts):
            top = min(e, p.d1)
            bot = max(s, p.d0)
            if top - bot < OSC_MIN_PERIODS_TRUNCATED * p_min:
                continue
            mant = ((d >= s) & (d < e)).astype(float)
            cols = [mant]
            if np.isfinite(s):
                cols.append((d < s).astype(float))
            if np.isfinite(e):
                cols.append((d >= e).astype(float))
            base = np.stack(cols, axis=1)  # (n, nb)
            need = np.where(np.isfinite(e), OSC_MIN_PERIODS, OSC_MIN_PERIODS_TRUNCATED)
            fs = f[(top - bot) * f >= need]
            if fs.size == 0:
                continue
            ang = 2 * np.pi * fs[:, None] * d[None, :]
            x = np.concatenate(
                [
                    np.broadcast_to(base[None], (fs.size, n, base.shape[1])),
                    (mant * np.sin(ang))[..., None],
                    (mant * np.cos(ang))[..., None],
                ],
                axis=2,
            )
            xw = x * sw[None, :, None]
            xt = np.swapaxes(xw, 1, 2)
            xtx = xt @ xw
            xty = xt @ (v * sw)
            ridge = 1e-9 * np.trace(xtx, axis1=1, axis2=2)[:, None, None] * np.eye(xtx.shape[1])
            beta = np.linalg.solve(xtx + ridge, xty[..., None])[..., 0]
            r = v[None, :] - np.einsum("fnc,fc->fn", x, beta)
            rss = np.sum(w[None, :] * r * r, axis=1)
            j = int(np.argmin(rss))
            key = (bool(np.isfinite(s)), bool(np.isfinite(e)))
            if key not in best or rss[j] < best[key][0]:
                best[key] = (float(rss[j]), s, e, fs[j], beta[j])

    # refine the variants whose grid fit is within reach of the best one; only the best
    # refined variant tries a frequency drift, a harmonic and a trend
    def grid_score(item):
        (has_rim, has_core), (rss, *_rest) = item
        k = 4 + 2 * int(has_rim) + 2 * int(has_core)
        return criterion(rss, n, k, p.known_sigma, p.variance_floor)

    ranked = sorted(best.items(), key=grid_score)
    top = grid_score(ranked[0])
    fits = []
    for (has_rim, has_core), (_, s, e, fr, beta) in ranked:
        if grid_score(((has_rim, has_core), (_, s, e, fr, beta))) > top + 20.0:
            continue
        fit = _refine_osc(p, s, e, fr, beta, has_rim, has_core, extras=False)
        if fit is not None:
            fits.append(fit)
    ok = [f for f in fits if _osc_ok(f, p)[0]]
    if ok:
        lead = min(ok, key=lambda f: criterion(f.rss, n, f.k, p.known_sigma, p.variance_floor))
        q = lead.info
        better = _refine_osc(
            p,
            q.get("s", -np.inf),
            q.get("e", np.inf),
            q["f"],
            None,
            "s" in q,
            "e" in q,
            extras=True,
            first=lead,
        )
        if better is not None and better is not lead:
            fits.append(better)
    return fits


def _refine_osc(
    p, s, e, fr, beta, has_rim, has_core, extras: bool = True, first: Fit | None = None
) -> Fit | None:
    """Refine a grid node (variable projection over the frequency and the mantle's ends);
    then try a frequency drift, a second harmonic and a trend of the mantle's mean, each
    kept when the criterion pays for it."""
    d, v, w = p.d, p.v, p.w
    sw = np.sqrt(w)
    tau = p.spacing
    f_hi = 1.0 / (OSC_MIN_PERIOD_POINTS * p.spacing)
    f_lo = 0.5 / max(p.length, 1e-9)
    dm = 0.5 * (p.d0 + p.d1)

    def refine(extra_linear: tuple[str, ...], chirp: bool, start: dict) -> Fit | None:
        names = ["f"] + (["chirp"] if chirp else []) + (["s"] if has_rim else [])
        names += ["e"] if has_core else []
        linear = ("m", "A", "B", *extra_linear)
        linear += ("rim",) if has_rim else ()
        linear += ("core",) if has_core else ()
        lb = {"f": f_lo, "chirp": -f_hi / max(p.length, 1e-9), "s": p.d0, "e": p.d0}
        ub = {"f": f_hi, "chirp": f_hi / max(p.length, 1e-9), "s": p.d1, "e": p.d1}

        def solve(x):
            q = dict(zip(names, x, strict=True), dm=dm)
            cols = _osc_columns(d, q, tau, linear)
            coef, *_ = np.linalg.lstsq(cols * sw[:, None], v * sw, rcond=None)
            return q, cols, coef

        def resid(x):
            _, cols, coef = solve(x)
            return sw * (cols @ coef - v)

        x0 = [start.get(k, 0.0) for k in names]
        try:
            res = _varpro(
                resid, x0, [lb[k] for k in names], [ub[k] for k in names], 25 * (len(names) + 1)
            )
        except (ValueError, np.linalg.LinAlgError):
            return None
        q, _, coef = solve(res.x)
        q.update(dict(zip(linear, coef, strict=True)))
        if "trend" not in linear:
            q.pop("dm", None)
        return Fit(
            "oscillatory",
            "oscillatory",
            len(names) + len(linear),
            float(np.sum(res.fun**2)),
            lambda y, q=q: _osc_eval(np.asarray(y, float), q, tau),
            q,
        )

    start = {"f": fr, "s": s, "e": e, "chirp": 0.0}
    best = first if first is not None else refine((), False, start)
    if best is None or not extras or not _osc_ok(best, p)[0]:
        return best
    start = {k: best.info[k] for k in ("f", "s", "e") if k in best.info}
    # harmonics up to the order the sampling resolves (two points per harmonic period),
    # each order tried with all the lower ones; then a frequency drift and a trend
    f_top = best.info["f"] + 2 * abs(best.info.get("chirp", 0.0)) * p.length
    orders = [h for h in _HARMONICS if h * f_top * 2.0 * p.spacing <= 1.0]
    tries = [(tuple(k for j in orders if j <= h for k in _HARMONICS[j]), False) for h in orders]
    for extra, chirp in (*tries, ((), True), (("trend",), False)):
        cur = best.info
        extra = tuple(sorted(set(extra) | {k for k in _EXTRA_KEYS if k in cur}))
        chirp = chirp or "chirp" in cur
        cand = refine(extra, chirp, {**start, "chirp": cur.get("chirp", 0.0)})
        if cand is None or not _osc_ok(cand, p)[0]:
            continue
        if criterion(cand.rss, p.n, cand.k, p.known_sigma, p.variance_floor) < criterion(
            best.rss, p.n, best.k, p.known_sigma, p.variance_floor
        ):
            best = cand
            start = {k: best.info[k] for k in ("f", "s", "e") if k in best.info}
    return best


def osc_summary(fit: Fit, p: ProfileData) -> dict:
    """Period (mean over the mantle), amplitude (half peak-to-peak of the fundamental),
    mantle start and end depths."""
    q = fit.info
    s = max(q.get("s", p.d0), p.d0)
    e = min(q.get("e", p.d1), p.d1)
    ch = q.get("chirp", 0.0)
    f_mean = q["f"] + ch * (s + e)
    return {
        "period": float(1.0 / f_mean) if f_mean > 0 else np.nan,
        "amplitude": float(np.hypot(q["A"], q["B"])),
        "start": float(s),
        "end": float(e),
        "periods": float((e - s) * f_mean),
    }


def _osc_ok(fit: Fit, p: ProfileData) -> tuple[bool, str]:
    q = fit.info
    d = p.d
    if not all(np.isfinite(x) for x in q.values()):
        return False, "the fit did not converge"
    s = q.get("s", -np.inf)
    e = q.get("e", np.inf)
    top, bot = min(e, p.d1), max(s, p.d0)
    ch = q.get("chirp", 0.0)
    f_ends = q["f"] + 2 * ch * np.array([bot, top])
    if np.any(f_ends <= 0) or np.any(f_ends * OSC_MIN_PERIOD_POINTS * p.spacing > 1.0 + 1e-9):
        return False, "band period shorter than three points"
    periods = q["f"] * (top - bot) + ch * (top**2 - bot**2)
    # bands that reach the deepest point of a short crystal need 1.5 periods; bands between
    # a rim level and a core level, or under a rim level, need two (fewer alternations
    # after a rim plateau are a multi-step profile)
    truncated = not (np.isfinite(e) and e < p.d1) and not np.isfinite(s)
    need = OSC_MIN_PERIODS_TRUNCATED if truncated else OSC_MIN_PERIODS
    if periods < need - 1e-9:
        return False, f"fewer than {need:g} periods"
    if np.isfinite(s) and (s <= p.d0 or int(np.sum(d < s)) < 2):
        return False, "a rim level of fewer than two points"
    if np.isfinite(e) and e < p.d1 and (int(np.sum(d > e)) < 3 or p.d1 - e < p.min_core_um):
        return False, "the core level is too short"
    if p.min_range > 0 and 2 * np.hypot(q["A"], q["B"]) < p.min_range:
        return False, "bands smaller than shell systematics"
    return True, ""
