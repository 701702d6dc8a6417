"""Shape models of one core-to-rim profile and the criterion that chooses among them.

A profile (distance from the rim ``d``, value ``v``, optional 1-sigma ``sigma``) is fitted by
four families of shapes, each by least squares:

``constant``
    one level (``k = 1``): unzoned.
``steps<K>``, ``K = 2 .. max_plateaus``
    ``K`` levels joined by error-function steps, ``value = a + (b - a) (1 + erf((d - p) / w))
    / 2`` per step (``w = 2 sqrt(D t)``, growth then diffusion), started from the optimal
    ``K``-segment piecewise-constant partition (segment neighbourhood, Auger & Lawrence 1989).
    The outermost step may instead be *held at the rim*: the value at a boundary ``p <= d0``
    stays at the rim level and the profile is ``a + (b - a) erf((d - p) / w)`` (diffusion from
    a rim in contact with the melt, as olivine chronometry models it); its rim level need not
    be reached by any point. ``k = 3K - 2``.
``ramp``
    a straight or curved slope ``a + (b - a) g((d - s) / (e - s))`` between depths ``s`` and
    ``e`` with ``g(t) = (1 - exp(-c t)) / (1 - exp(-c))`` (``c = 0``: straight), flat beyond
    them: with or without a rim plateau (``s > d0``), with or without a core plateau
    (``e < d1``), straight or curved; found by a grid search over ``s``, ``e`` and ``c``
    (linear least squares at each node), then refined. ``k = 2`` plus one for each plateau and
    one for the curvature.
``oscillatory``
    a periodic mantle ``m + A sin(2 pi f d + phi)`` between depths ``s`` and ``e``, with or
    without a rim level before it (an oscillatory zone under a stepped rim) and a core level
    after it, found by a grid search over ``s``, ``e`` and the frequency (linear least squares
    at each node), then refined; the refined mantle may add a frequency drift with depth
    (band spacing that widens or narrows toward the core), a second harmonic (bands that are
    not sine waves) and a linear trend of its mean, each kept when the criterion pays for it.

The criterion is the Bayesian information criterion with the noise the data say:

- points with a ``sigma`` are judged against it: ``chi2 = sum(r^2 / sigma^2)`` and
  ``-2 ln L = chi2`` while ``chi2 <= n``, else ``n + n ln(chi2 / n)`` (the likelihood
  maximised over a common factor ``s >= 1`` on every sigma: the stated sigmas are a floor,
  scatter beyond them is allowed);
- points without one are judged against the noise of each model's residuals
  (``-2 ln L = n ln(RSS / n)``, Gaussian noise of unknown variance);

plus ``k ln n`` and a family margin (:data:`MARGINS`): the evidence a ramp or an oscillatory
mantle must add over the simpler families, calibrated on many random shapes (see
``benchmarks/zoning.py --calibrate``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize
from scipy.special import erf

from ._stats import unit_step

__all__ = ["ProfileData", "Fit", "MARGINS", "fit_all", "criterion"]

#: extra evidence (in -2 ln L units, beyond k ln n) a family needs to win: a step model
#: over one level (the search over step positions finds some fit in noise), each further
#: step, a slope and a periodic mantle (growth makes plateaus joined by steps: a continuous
#: slope and bands are the claims that need support). Calibrated by
#: ``benchmarks/zoning.py --part calibrate`` on 1120 profiles: 900 random profiles of the
#: training families at 0.5-20 % noise (seeds 110-112) and the 220 shell profiles of 10
#: repainted thin sections on their true labels (seeds 200-209); of the grid points whose
#: worst class accuracy is within 0.01 of the best (0.919), the one with the highest mean
#: accuracy (worst 0.914, mean 0.960), then the smallest margins.
MARGINS: dict[str, float] = {
    "constant": 0.0,
    "steps": 6.0,
    "step": 2.0,
    "ramp": 12.0,
    "oscillatory": 20.0,
}


def family_margin(fit: Fit, margins: dict) -> float:
    """The evidence a model must add beyond ``k ln n``: its family's margin, and for steps
    ``margins["step"]`` per step."""
    m = float(margins.get(fit.family, 0.0))
    if fit.family == "steps":
        m += float(margins.get("step", 0.0)) * (len(fit.info["levels"]) - 1)
    return m


#: curvatures of the ramp grid search (c = 0: straight; c > 0 steep at the slope's rim
#: end), refined within _C_LIMITS: a gradient is straight or gently curved (its slope at the
#: flat end at least exp(-1.5) of the steep end's); a profile steep at the rim that flattens
#: smoothly into the core is a diffusion profile from the rim, a step held at the rim
_C_GRID = (0.0, -2.0, -1.25, -0.6, 0.6, 1.25)
_C_LIMITS = (-2.0, 1.5)
#: fewest periods of an oscillatory mantle that ends at a core level / at the deepest point
OSC_MIN_PERIODS = 2.0
OSC_MIN_PERIODS_TRUNCATED = 1.5
#: shortest band period, in sampling intervals
OSC_MIN_PERIOD_POINTS = 3.0


@dataclass
class ProfileData:
    """One profile ready for fitting (sorted, finite, no duplicated distance).

    ``w`` are the least-squares weights: ``1 / sigma^2`` when ``known_sigma`` (absolute), else
    ones. ``min_core_um`` is the shortest core level a step or a ramp's core plateau must
    leave (image shell profiles: their deepest shells are unreliable); ``min_range`` the
    smallest zoning span a zoned model must have (shell systematics); both 0 for traverses.
    """

    d: np.ndarray
    v: np.ndarray
    w: np.ndarray
    known_sigma: bool
    min_core_um: float = 0.0
    min_range: float = 0.0
    min_gradient_fraction: float = 0.2
    variance_floor: float = 0.0

    @property
    def n(self) -> int:
        return int(self.d.size)

    @property
    def d0(self) -> float:
        return float(self.d[0])

    @property
    def d1(self) -> float:
        return float(self.d[-1])

    @property
    def length(self) -> float:
        return float(self.d[-1] - self.d[0])

    @property
    def spacing(self) -> float:
        s = float(np.median(np.diff(self.d))) if self.n > 1 else 1.0
        return s if s > 0 else max(self.length / max(self.n - 1, 1), 1e-9)


@dataclass
class Fit:
    """One fitted model: its name, family, parameter count, weighted RSS and prediction."""

    name: str
    family: str
    k: int
    rss: float
    predict: Callable[[np.ndarray], np.ndarray]
    info: dict = field(default_factory=dict)
    eligible: bool = True
    why: str = ""
    criterion: float = np.inf
    score: float = np.inf


def criterion(rss: float, n: int, k: int, known_sigma: bool, variance_floor: float = 0.0) -> float:
    """-2 ln L + k ln n (module notes); ``rss`` is weighted by ``1 / sigma^2`` when known."""
    if known_sigma:
        chi2 = max(rss, 0.0)
        m2l = chi2 if chi2 <= n else n + n * np.log(chi2 / n)
    else:
        m2l = n * np.log(max(rss / n, variance_floor, 1e-300))
    return float(m2l + k * np.log(n))


def _wls_rss(x: np.ndarray, v: np.ndarray, w: np.ndarray) -> float:
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(x * sw[:, None], v * sw, rcond=None)
    r = v - x @ coef
    return float(np.sum(w * r * r))


# ----------------------------------------------------------------------------- constant


def fit_constant(p: ProfileData) -> Fit:
    m = float(np.average(p.v, weights=p.w))
    rss = float(np.sum(p.w * (p.v - m) ** 2))
    return Fit("constant", "constant", 1, rss, lambda x, m=m: np.full(np.shape(x), m), {"level": m})


# ----------------------------------------------------------------------------- steps


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


# ----------------------------------------------------------------------------- ramps


def _curve(t, c):
    t = np.clip(t, 0.0, 1.0)
    c = np.asarray(c, dtype=float)
    small = np.abs(c) < 1e-6
    cc = np.where(small, 1.0, c)
    out = (1.0 - np.exp(-cc * t)) / (1.0 - np.exp(-cc))
    return np.where(small, t, out)


def ramp_predict(d, a, b, s, e, c):
    t = (np.asarray(d, float) - s) / max(e - s, 1e-12)
    return a + (b - a) * _curve(t, c)


def fit_ramps(p: ProfileData) -> list[Fit]:
    """Straight and curved slopes, with and without rim and core plateaus (module notes)."""
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
    curved = np.abs(cc) > 1e-9
    # the best grid node of each variant; the variants within reach of the best are refined
    nodes = []
    for has_rim in (False, True):
        for has_core in (False, True):
            for is_curved in (False, True):
                sel = np.flatnonzero(
                    (rim_pl == has_rim) & (core_pl == has_core) & (curved == is_curved)
                )
                if sel.size == 0 or not np.isfinite(rss[sel]).any():
                    continue
                i = int(sel[np.argmin(rss[sel])])
                k = 2 + int(has_rim) + int(has_core) + int(is_curved)
                score = criterion(float(rss[i]), n, k, p.known_sigma, p.variance_floor)
                nodes.append((score, i, has_rim, has_core, is_curved))
    if not nodes:
        return []
    top = min(t[0] for t in nodes)
    fits = []
    for score, i, has_rim, has_core, is_curved in nodes:
        if score > top + 20.0:
            continue
        fit = _refine_ramp(
            p, alpha[i], beta[i], ss[i], ee[i], cc[i], has_rim, has_core, is_curved
        )
        if fit is not None:
            fits.append(fit)
    return fits


def _refine_ramp(p, a0, b0, s0, e0, c0, has_rim, has_core, is_curved) -> Fit | None:
    """Refine a grid node by variable projection over the slope's ends and curvature."""
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

    def solve(x):
        q = dict(zip(names, x, strict=True))
        s, e, c = q.get("s", p.d0), q.get("e", p.d1), q.get("c", 0.0)
        g = _curve((d - s) / max(e - s, 1e-9), c)
        cols = np.stack([1.0 - g, g], axis=1)
        coef, *_ = np.linalg.lstsq(cols * sw[:, None], v * sw, rcond=None)
        return (float(coef[0]), float(coef[1]), s, e, c), cols @ coef

    if names:
        try:
            res = _varpro(lambda x: sw * (solve(x)[1] - v), x0, lb, ub, 30 * (len(names) + 1))
        except (ValueError, np.linalg.LinAlgError):
            return None
        xs = res.x
    else:
        xs = np.array([])
    (a, b, s, e, c), fitted = solve(xs)
    rss = float(np.sum(w * (fitted - v) ** 2))
    k = 2 + int(has_rim) + int(has_core) + int(is_curved)
    kind = ("rim_" if has_rim else "") + ("hinge" if has_core else "full")
    return Fit(
        "gradient",
        "ramp",
        k,
        rss,
        lambda x, a=a, b=b, s=s, e=e, c=c: ramp_predict(x, a, b, s, e, c),
        {
            "rim": a,
            "core": b,
            "start": s,
            "end": e,
            "curvature": c,
            "kind": kind,
            "curved": is_curved,
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


# ----------------------------------------------------------------------------- oscillations


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


def _varpro(resid_of_nonlin, x0, lb, ub, max_nfev):
    """Least squares over the nonlinear parameters only (variable projection: the linear
    ones are solved exactly inside ``resid_of_nonlin``)."""
    x0 = np.clip(np.asarray(x0, float), lb, ub)
    return optimize.least_squares(
        resid_of_nonlin, x0, bounds=(lb, ub), method="trf", x_scale="jac", max_nfev=max_nfev
    )


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


# ----------------------------------------------------------------------------- all models


def fit_all(
    p: ProfileData,
    max_plateaus: int = 5,
    margins: dict | None = None,
    shared_width: bool | str = False,
) -> list[Fit]:
    """Fit every family, check each model is what its name says, score them (module notes).

    Returns every fit with ``eligible``, ``why`` (the reason it is not eligible) and
    ``score`` (criterion plus the family's margin; lower is better).
    """
    margins = {**MARGINS, **(margins or {})}
    fits = [fit_constant(p)]
    kmax = int(min(max_plateaus, p.n // 3))
    if kmax >= 2:
        parts = segment_partitions(p.v, kmax, 2, p.w)
        variants = (False, True) if shared_width == "auto" else (bool(shared_width),)
        for k in range(2, kmax + 1):
            for held in (False, True) if k < 5 else (False,):
                for shared in variants if k > 2 else (False,):
                    tries = []
                    # one step: started from the best node of a position x width grid
                    start = step_grid_start(p, held) if k == 2 else None
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        fit = fit_steps(p, parts[k - 1], held, shared, start=start)
                    if fit is not None:
                        tries.append(fit)
                    if not tries:
                        continue
                    fit = min(tries, key=lambda f: f.rss)
                    if k > 2 and not check_steps(fit, p)[0]:
                        # two steps merged into a bump: refit with the widths held apart
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore", RuntimeWarning)
                            alt = fit_steps(p, parts[k - 1], held, shared, tight=True)
                        if alt is not None and check_steps(alt, p)[0]:
                            fit = alt
                    fits.append(fit)
                    if k <= 3 and not held and not shared:
                        # the same steps with a width on each side (composition-dependent D)
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore", RuntimeWarning)
                            asym = fit_steps_asym(p, fit)
                        if asym is not None:
                            fits.append(asym)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fits.extend(fit_ramps(p))
        fits.extend(fit_oscillations(p))
    for fit in fits:
        if fit.family == "steps":
            fit.eligible, fit.why = check_steps(fit, p)
        elif fit.family == "ramp":
            fit.eligible, fit.why = check_ramp(fit, p)
        elif fit.family == "oscillatory":
            fit.eligible, fit.why = _osc_ok(fit, p)
        if not np.isfinite(fit.rss):
            fit.eligible, fit.why = False, "the fit did not converge"
        fit.criterion = criterion(fit.rss, p.n, fit.k, p.known_sigma, p.variance_floor)
        fit.score = fit.criterion + family_margin(fit, margins)
    return fits
