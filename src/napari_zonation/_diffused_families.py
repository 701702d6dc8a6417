"""Zoning profiles made by diffusing initial conditions: a physically made family set.

Each family draws an initial profile (one step, two steps, square bands, sawtooth bands) and
relaxes it with the package's finite-volume solver (:func:`napari_zonation.diffusion.solver.relax`)
for a random time, so that its truth holds by construction: a profile that began as one step is
one step, however asymmetric diffusion made it; bands are bands.

- ``ol_step``, ``ol_two_step``: olivine Fo profiles relaxed with the composition-dependent Fe-Mg
  interdiffusivity of Dohmen & Chakraborty (2007), ``D ~ 10^(3 XFe)``, at 1050-1250 C (the rim
  held at its value, as by a melt in contact; the core end closed). Across a Fo contrast of up to
  25 mol% D changes by a factor of up to ~6: the steps are asymmetric, not error functions.
- ``bands_square``, ``bands_sawtooth``: An bands of plagioclase (square bands of random duty
  cycle and jittered widths; sawtooth bands: a slow change then an abrupt reset), softened by a
  little diffusion at constant D, above a core level or to the deepest point.

Every family returns a :class:`DiffusedShape` on relative depth ``t`` (0 rim, 1 deepest point)
in the quantity's own units (Fo or An mol%).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .diffusion.laws import olivine_diffusivity
from .diffusion.solver import cell_average_step, relax

__all__ = ["DiffusedShape", "DIFFUSED_FAMILIES", "MIN_POINTS_DIFFUSED"]

#: nodes of the relative-depth grid the initial profiles are relaxed on
_NODES = 1201


@dataclass
class DiffusedShape:
    """A relaxed profile on relative depth and its truth (see :mod:`synthetic_profiles`)."""

    t: np.ndarray
    c: np.ndarray
    zoning_type: str
    quantity: str
    n_plateaus: int
    steps_t: tuple[float, ...] = ()
    period_t: float = np.nan
    feature: float = 1.0
    extra: dict = field(default_factory=dict)

    def fn(self, t) -> np.ndarray:
        return np.interp(np.asarray(t, dtype=float), self.t, self.c)


def _u(rng, lo, hi) -> float:
    return float(rng.uniform(min(lo, hi), max(lo, hi)))


def _grid() -> np.ndarray:
    return np.linspace(0.0, 1.0, _NODES)


def _olivine_relax(rng, x, levels, positions, w_fast):
    """Relax a stepped Fo profile with D(XFe) of olivine so that the diffusion length on the
    fast (Fe-rich) side is ``w_fast`` (relative depth; ``2 sqrt(D_max t)``)."""
    levels = np.asarray(levels, dtype=float)
    c0 = cell_average_step(x, positions, levels)
    xfe = 1.0 - levels / 100.0
    xfe_ref = float(np.min(xfe))
    ratio = 10.0 ** (3.0 * (float(np.max(xfe)) - xfe_ref))

    def d_rel(c):
        return 10.0 ** (3.0 * ((1.0 - np.asarray(c) / 100.0) - xfe_ref))

    # D_max t = (w_fast / 2)^2 and D_max = ratio D_ref: tau = D_ref t
    tau = (w_fast / 2.0) ** 2 / ratio
    c = relax(x, c0, tau, d_rel, rim="fixed", rim_value=levels[0], core="closed", n_steps=120)
    temp = _u(rng, 1050.0, 1250.0)
    return c, {"temperature_c": temp, "d_ratio": ratio, "tau_rel": tau, "xfe_ref": xfe_ref}


def _fo_levels(rng, n: int) -> np.ndarray:
    """``n`` Fo levels (rim first) between 65 and 91 mol%, neighbours 3-25 mol% apart."""
    for _ in range(100):
        core = _u(rng, 76.0, 90.0)
        jumps = rng.uniform(3.0, 25.0, n - 1) * rng.choice([-1.0, 1.0], n - 1)
        lv = core + np.concatenate([[0.0], np.cumsum(jumps)])
        if lv.min() >= 65.0 and lv.max() <= 91.0:
            return lv[::-1]  # rim first
    return np.linspace(80.0, 88.0, n)


def _ol_step(rng, length, spacing):
    """One Fo step inside the crystal, rim held at its value, relaxed with D(XFe)."""
    x = _grid()
    sp = spacing / length
    p = _u(rng, max(0.1, 4 * sp), 0.65)
    lv = _fo_levels(rng, 2)
    # the fast side's diffusion length: at least a third of a sampling interval, at most a
    # third of the room to the core end and the step's depth (the core level stays seen)
    w_max = max(min(0.35 * (1.0 - p), 0.8 * p, 0.25), 0.5 * sp)
    w_fast = _u(rng, 0.3 * sp, w_max) if rng.random() < 0.5 else float(
        np.exp(_u(rng, np.log(0.3 * sp), np.log(w_max)))
    )
    c, extra = _olivine_relax(rng, x, lv, [p], w_fast)
    return DiffusedShape(x, c, "", "Fo", 2, (p,), extra={**extra, "w_fast": w_fast})


def _ol_two_step(rng, length, spacing):
    """Two Fo steps (three levels) relaxed with D(XFe), every plateau left visible."""
    x = _grid()
    sp = spacing / length
    minw = max(4.5 * sp, 0.08)
    for _ in range(200):
        widths = rng.dirichlet(np.full(3, 1.5)) * 0.85
        widths[-1] += 0.15
        if np.all(widths >= minw):
            break
    else:
        widths = np.array([0.3, 0.3, 0.4])
    pos = np.cumsum(widths)[:2]
    lv = _fo_levels(rng, 3)
    # each plateau keeps at least half its width: the fast diffusion length at most a
    # quarter of the narrowest plateau
    w_max = max(0.25 * float(np.min(widths)), 0.4 * sp)
    w_fast = _u(rng, 0.3 * sp, w_max)
    c, extra = _olivine_relax(rng, x, lv, pos, w_fast)
    span = float(np.ptp(lv))
    out = DiffusedShape(x, c, "multi_step", "Fo", 3, tuple(pos), extra={**extra, "w_fast": w_fast})
    out.feature = float(np.min(np.abs(np.diff(lv)))) / span
    return out


def _band_zone(rng, length, spacing, p_min_points: float = 5.0):
    """Depth where the bands end (relative) and their period (relative)."""
    p_min = max(p_min_points * spacing, 3.5) / length
    top = 1.0 if rng.random() < 0.4 else _u(rng, 0.6, 0.85)
    period = max(top / _u(rng, 2.5, 6.0), p_min)
    if top / period < 2.5:
        period = top / 2.5
    return top, period


def _relax_bands(rng, x, c0, period):
    w = _u(rng, 0.0, 0.15) * period
    return relax(x, c0, (w / 2.0) ** 2, None, rim="closed", core="closed", n_steps=60), w


def _bands_square(rng, length, spacing):
    """Square An bands (random duty cycle, jittered band widths) above a core level or to the
    deepest point, softened by a little diffusion."""
    x = _grid()
    top, period = _band_zone(rng, length, spacing)
    duty = _u(rng, 0.35, 0.65)
    edges, d, high = [], _u(rng, 0.0, 0.5) * period, bool(rng.random() < 0.5)
    first_high = high
    while d < top:
        edges.append(d)
        part = duty if high else 1.0 - duty
        d += period * part * _u(rng, 0.8, 1.2)
        high = not high
    edges = [e for e in edges if e > 0]
    amp = _u(rng, 3.0, 12.0)
    an0 = _u(rng, 40.0, 75.0)
    n_lv = len(edges) + 1
    # the segment before the first edge is in the state opposite to the first band's
    lv = np.array([an0 + (amp if ((i % 2 == 1) == first_high) else 0.0) for i in range(n_lv)])
    core_an = an0 + 0.5 * amp + _u(rng, -0.5, 0.5) * amp
    if top < 1.0:
        # the bands end at ``top``: the level beyond is the core's
        keep = [e for e in edges if e < top]
        lv = np.concatenate([lv[: len(keep) + 1], [core_an]])
        edges = keep + [top]
    c0 = cell_average_step(x, edges, lv)
    c, w = _relax_bands(rng, x, c0, period)
    return DiffusedShape(
        x, c, "oscillatory", "An", 1, (), period, extra={"duty": duty, "w_diffusion": w}
    )


def _bands_sawtooth(rng, length, spacing):
    """Sawtooth An bands (a slow change over each band, then an abrupt reset) above a core
    level or to the deepest point, softened by a little diffusion."""
    x = _grid()
    top, period = _band_zone(rng, length, spacing)
    amp = _u(rng, 3.0, 12.0) * rng.choice([-1.0, 1.0])
    an0 = _u(rng, 40.0, 75.0)
    offset = _u(rng, 0.0, 1.0)
    frac = ((x / period) + offset) % 1.0
    c0 = an0 + amp * frac
    if top < 1.0:
        c0 = np.where(x < top, c0, an0 + _u(rng, 0.2, 0.8) * amp)
    c, w = _relax_bands(rng, x, c0, period)
    return DiffusedShape(x, c, "oscillatory", "An", 1, (), period, extra={"w_diffusion": w})


#: family name -> draw function ``(rng, length_um, spacing_um) -> DiffusedShape``
DIFFUSED_FAMILIES = {
    "ol_step": _ol_step,
    "ol_two_step": _ol_two_step,
    "bands_square": _bands_square,
    "bands_sawtooth": _bands_sawtooth,
}
#: fewest points a family needs to be what it is
MIN_POINTS_DIFFUSED = {"ol_step": 12, "ol_two_step": 20, "bands_square": 24, "bands_sawtooth": 24}


def olivine_days(extra: dict, length_um: float) -> float:
    """Time (days) the relaxation of an olivine family stands for at its temperature (QFM),
    D along [001]: ``tau_rel length^2 / D_ref``."""
    d_ref = olivine_diffusivity(extra["temperature_c"], xfe=extra["xfe_ref"], delta_qfm=0.0)
    return float(extra["tau_rel"] * length_um**2 / d_ref / 86400.0)
