"""Step models of a zoning profile: levels joined by error-function steps (symmetric, held
at the rim, or with a width on each side), started from the optimal piecewise-constant
partition, and the check that every level is a plateau (see :mod:`napari_zonation.zoning_models`).
"""

from __future__ import annotations

import numpy as np
from scipy import optimize
from scipy.special import erf

from ._zoning_base import Fit, ProfileData


def segment_partitions(y: np.ndarray, kmax: int, min_size: int, w: np.ndarray) -> list:
    """Optimal weighted piecewise-constant partitions with 1..kmax segments; for each K the
    indices where segments 2..K start."""
    n = y.size
    s0 = np.concatenate([[0.0], np.cumsum(w)])
    s1 = np.concatenate([[0.0], np.cumsum(w * y)])
    s2 = np.concatenate([[0.0], np.cumsum(w * y * y)])
    s = np.arange(n + 1)[:, None]
    t = np.arange(n + 1)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = (s2[t] - s2[s]) - (s1[t] - s1[s]) ** 2 / (s0[t] - s0[s])
    cost[(t - s) < min_size] = np.inf
    c = cost[0].copy()
    backs, out = [], [np.array([], dtype=int)]
    for _ in range(2, kmax + 1):
        tot = c[:, None] + cost
        arg = np.argmin(tot, axis=0)
        c = tot[arg, np.arange(n + 1)]
        backs.append(arg)
        cuts, tt = [], n
        for b in reversed(backs):
            tt = int(b[tt])
            cuts.append(tt)
        out.append(np.array(sorted(cuts), dtype=int))
    return out


def _step_basis(d, pos, widths, held):
    """Step shapes h_i (0 at the rim side, 1 at the core side) and their derivatives."""
    z = (d[:, None] - pos[None, :]) / widths[None, :]
    phi = np.exp(-(z**2)) / np.sqrt(np.pi)
    h = 0.5 * (1.0 + erf(z))
    dh_dz = phi.copy()
    if held:
        zc = np.maximum(z[:, 0], 0.0)
        h[:, 0] = erf(zc)
        dh_dz[:, 0] = 2.0 * np.exp(-(zc**2)) / np.sqrt(np.pi) * (z[:, 0] > 0)
    return h, dh_dz, z


def steps_predict(d, levels, pos, widths, held=False):
    d = np.asarray(d, dtype=float)
    h, _, _ = _step_basis(d, np.asarray(pos, float), np.asarray(widths, float), held)
    return levels[0] + h @ np.diff(levels)


def fit_steps(
    p: ProfileData,
    cuts: np.ndarray,
    held: bool = False,
    shared: bool = False,
    width0: float = 1.5,
    tight: bool = False,
    start: tuple | None = None,
) -> Fit | None:
    """``len(cuts) + 1`` levels joined by erf steps (the first held at the rim if ``held``),
    started from a piecewise-constant partition (``cuts``: where segments 2.. start); with
    ``shared`` every step has the same width (one ``sqrt(D t)`` for the profile); with
    ``tight`` each width is at most 0.6 times the distance from its starting position to
    the neighbouring ones (or the profile's ends), so that two steps cannot merge into a
    bump that reaches a level no point has; ``start`` = (levels, positions, widths) replaces
    the starting point the partition gives."""
    d, v, w = p.d, p.v, p.w
    k = len(cuts) + 1
    if k < 2:
        return None
    m = k - 1
    sp, length = p.spacing, max(p.length, p.spacing)
    seg = np.split(v, cuts)
    wseg = np.split(w, cuts)
    means = np.array([np.average(a, weights=b) for a, b in zip(seg, wseg, strict=True)])
    lo, hi = float(np.min(v)), float(np.max(v))
    rng = max(hi - lo, 1e-12)
    pad = 0.0
    pos0 = 0.5 * (d[cuts - 1] + d[cuts])
    w0 = np.full(m, width0 * sp)
    lev_lo, lev_hi = np.full(k, lo - pad), np.full(k, hi + pad)
    pos_lo, pos_hi = np.full(m, d[0]), np.full(m, d[-1])
    if held:
        # the boundary at or just outside the first point; the rim level is the boundary's
        # value, an extrapolation of the data
        pos0[0] = d[0] - 0.25 * sp
        pos_lo[0], pos_hi[0] = d[0] - 2.0 * sp, d[0]
        w0[0] = max(float(d[cuts[0]] - d[0]), sp)
        lev_lo[0], lev_hi[0] = lo - rng, hi + rng
    nw = 1 if shared else m
    w0 = w0[:nw] if not shared else np.array([float(np.median(w0))])
    wid_lo, wid_hi = np.full(nw, 0.05 * sp), np.full(nw, 0.5 * length)
    if tight and not shared:
        ends = np.concatenate([[d[0]], pos0, [d[-1]]])
        gaps = np.minimum(np.diff(ends)[:-1], np.diff(ends)[1:])
        wid_hi = np.maximum(0.6 * gaps, 0.5 * sp)
        if held:
            wid_hi[0] = 0.5 * length
        w0 = np.minimum(w0, 0.9 * wid_hi)
    if start is not None:
        means, pos0, w0 = (np.asarray(x, dtype=float).copy() for x in start)
    x0 = np.concatenate([np.clip(means, lev_lo, lev_hi), pos0, np.clip(w0, wid_lo, wid_hi)])
    lb = np.concatenate([lev_lo, pos_lo, wid_lo])
    ub = np.concatenate([lev_hi, pos_hi, wid_hi])
    x0 = np.clip(x0, lb + 1e-12 * (ub - lb), ub - 1e-12 * (ub - lb))
    sw = np.sqrt(w)

    def unpack(x):
        return x[:k], x[k : k + m], np.broadcast_to(x[k + m :], (m,))

    def resid(x):
        lv, ps, ws = unpack(x)
        h, _, _ = _step_basis(d, ps, ws, held)
        return sw * (lv[0] + h @ np.diff(lv) - v)

    def jac(x):
        lv, ps, ws = unpack(x)
        h, dh, z = _step_basis(d, ps, ws, held)
        dl = np.diff(lv)
        hh = np.hstack([np.ones((d.size, 1)), h, np.zeros((d.size, 1))])
        jm = np.empty((d.size, k + m + nw))
        jm[:, :k] = hh[:, :-1] - hh[:, 1:]
        jm[:, k : k + m] = -dl[None, :] * dh / ws[None, :]
        d_w = -dl[None, :] * dh * z / ws[None, :]
        jm[:, k + m :] = d_w.sum(axis=1, keepdims=True) if shared else d_w
        return jm * sw[:, None]

    res = optimize.least_squares(
        resid, x0, jac=jac, bounds=(lb, ub), method="trf", x_scale="jac", max_nfev=60 * k
    )
    lv, ps, ws = unpack(res.x)
    order = np.argsort(ps) if not held else np.concatenate([[0], 1 + np.argsort(ps[1:])])
    # reorder steps with their heights: rebuild levels from the sorted heights
    heights = np.diff(lv)[order]
    ps, ws = ps[order], np.array(ws)[order]
    lv = lv[0] + np.concatenate([[0.0], np.cumsum(heights)])
    rss = float(np.sum(res.fun**2))
    name = f"steps{k}"

    def predict(x, lv=lv, ps=ps, ws=ws):
        return steps_predict(x, lv, ps, ws, held)

    return Fit(
        name,
        "steps",
        k + m + nw,
        rss,
        predict,
        {"levels": lv, "positions": ps, "widths": ws, "held": held, "shared": shared},
    )


#: largest ratio of the two widths of an asymmetric step: the widths go as the square root of
#: the diffusivity on each side, and a diffusivity that changes by up to a factor of 16 across
#: a step (Fe-Mg in olivine: D ~ 10^(3 XFe), an XFe contrast of 0.4) gives a ratio of 4
ASYM_MAX_RATIO = 4.0


def asym_steps_predict(d, levels, pos, widths_rim, widths_core):
    """Levels joined by error-function steps whose width differs on the rim side and the
    core side of each step (a diffusivity that depends on the composition)."""
    d = np.asarray(d, dtype=float)[:, None]
    pos = np.asarray(pos, float)[None, :]
    wl = np.asarray(widths_rim, float)[None, :]
    wr = np.asarray(widths_core, float)[None, :]
    z = np.where(d < pos, (d - pos) / wl, (d - pos) / wr)
    h = 0.5 * (1.0 + erf(z))
    return levels[0] + h @ np.diff(levels)


def fit_steps_asym(p: ProfileData, base: Fit) -> Fit | None:
    """The steps of ``base`` (not held at the rim) refitted with two widths per step: one on
    the rim side, one on the core side, their ratio at most :data:`ASYM_MAX_RATIO` either
    way. Parametrised by the geometric mean width and the log ratio."""
    q = base.info
    if q.get("held") or q.get("shared"):
        return None
    d, v, w = p.d, p.v, p.w
    lv0 = np.asarray(q["levels"], float)
    ps0 = np.asarray(q["positions"], float)
    ws0 = np.asarray(q["widths"], float)
    k, m = lv0.size, ps0.size
    sp, length = p.spacing, max(p.length, p.spacing)
    lo, hi = float(np.min(v)), float(np.max(v))
    lr = np.log(ASYM_MAX_RATIO)
    wlo, whi = np.log(0.05 * sp), np.log(0.5 * length)
    lb = np.concatenate([np.full(k, lo), np.full(m, d[0]), np.full(m, wlo), np.full(m, -lr)])
    ub = np.concatenate([np.full(k, hi), np.full(m, d[-1]), np.full(m, whi), np.full(m, lr)])
    sw = np.sqrt(w)

    def unpack(x):
        g, r = np.exp(x[k + m : k + 2 * m]), x[k + 2 * m :]
        return x[:k], x[k : k + m], g * np.exp(-0.5 * r), g * np.exp(0.5 * r)

    def resid(x):
        lv, ps, wl, wr = unpack(x)
        return sw * (asym_steps_predict(d, lv, ps, wl, wr) - v)

    best = None
    for r0 in (-0.5 * lr, 0.5 * lr):
        x0 = np.concatenate([lv0, ps0, np.log(np.maximum(ws0, 0.05 * sp)), np.full(m, r0)])
        x0 = np.clip(x0, lb + 1e-9 * (ub - lb), ub - 1e-9 * (ub - lb))
        try:
            res = optimize.least_squares(
                resid, x0, bounds=(lb, ub), method="trf", x_scale="jac", max_nfev=40 * k
            )
        except (ValueError, np.linalg.LinAlgError):
            continue
        if best is None or res.cost < best.cost:
            best = res
    if best is None:
        return None
    lv, ps, wl, wr = unpack(best.x)
    order = np.argsort(ps)
    heights = np.diff(lv)[order]
    ps, wl, wr = ps[order], wl[order], wr[order]
    lv = lv[0] + np.concatenate([[0.0], np.cumsum(heights)])

    def predict(x, lv=lv, ps=ps, wl=wl, wr=wr):
        return asym_steps_predict(x, lv, ps, wl, wr)

    return Fit(
        f"steps{k}",
        "steps",
        k + 3 * m,
        float(2.0 * best.cost),
        predict,
        {
            "levels": lv,
            "positions": ps,
            "widths": np.sqrt(wl * wr),
            "widths_rim": wl,
            "widths_core": wr,
            "held": False,
            "shared": False,
            "asymmetric": True,
        },
    )


def step_grid_start(p: ProfileData, held: bool) -> tuple | None:
    """The best single step on a grid of positions and widths (levels by linear least
    squares at each node): the start of the one-step fit, so that a sharp step between two
    points or a wide one is not left in a local minimum."""
    d, v, w = p.d, p.v, p.w
    n, sp, length = p.n, p.spacing, max(p.length, p.spacing)
    if n < 5:
        return None
    if held:
        pos = np.array([d[0] - sp, d[0] - 0.5 * sp, d[0]])
        widths = np.geomspace(0.5 * sp, 0.5 * length, 12)
    else:
        pos = 0.5 * (d[1:-3] + d[2:-2])  # two points before, three after
        widths = np.geomspace(0.2 * sp, 0.4 * length, 8)
    if pos.size == 0:
        return None
    pp, ww = np.meshgrid(pos, widths, indexing="ij")
    pp, ww = pp.ravel(), ww.ravel()
    z = (d[None, :] - pp[:, None]) / ww[:, None]
    h = erf(np.maximum(z, 0.0)) if held else 0.5 * (1.0 + erf(z))
    # v = a (1 - h) + b h: weighted normal equations per node
    g0, g1 = 1.0 - h, h
    s00, s01, s11 = (w * g0 * g0).sum(1), (w * g0 * g1).sum(1), (w * g1 * g1).sum(1)
    r0, r1 = (w * g0 * v).sum(1), (w * g1 * v).sum(1)
    det = s00 * s11 - s01**2
    ok = det > 1e-12 * np.maximum(s00 * s11, 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = (s11 * r0 - s01 * r1) / det
        b = (s00 * r1 - s01 * r0) / det
    rss = np.sum(w * (v[None, :] - a[:, None] * g0 - b[:, None] * g1) ** 2, axis=1)
    rss = np.where(ok & np.isfinite(rss), rss, np.inf)
    i = int(np.argmin(rss))
    if not np.isfinite(rss[i]):
        return None
    return np.array([a[i], b[i]]), np.array([pp[i]]), np.array([ww[i]])


def check_steps(fit: Fit, p: ProfileData) -> tuple[bool, str]:
    """Is each level a plateau: the rim level seen on two points before the first step (or
    held at the rim), each inner level seen between two steps at least half their widths
    apart, the core level reached on three points?"""
    d = p.d
    lv, ps, ws, held = (fit.info[x] for x in ("levels", "positions", "widths", "held"))
    # an asymmetric step has its own width on each side
    wl = np.asarray(fit.info.get("widths_rim", ws), float)
    wr = np.asarray(fit.info.get("widths_core", ws), float)
    if not held and (ps[0] - p.d0 < wl[0] or int(np.sum(d < ps[0] - 0.5 * wl[0])) < 2):
        return False, "the rim level is not reached before the first step"
    for i in range(len(ps) - 1):
        gap = ps[i + 1] - ps[i]
        inside = int(np.sum((d > ps[i] + 0.5 * wr[i]) & (d < ps[i + 1] - 0.5 * wl[i + 1])))
        if gap < 0.5 * (wr[i] + wl[i + 1]) or inside < 1:
            return False, "two steps too close (no plateau between them)"
    beyond = int(np.sum(d > ps[-1] + 0.5 * wr[-1]))
    if beyond < 3 or p.d1 - ps[-1] < max(wr[-1], p.min_core_um):
        return False, "the core level is not reached"
    if p.min_range > 0 and np.min(np.abs(np.diff(lv))) < p.min_range:
        return False, "a step smaller than shell systematics"
    return True, ""
