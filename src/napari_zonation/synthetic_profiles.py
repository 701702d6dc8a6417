"""Randomised 1D zoning profiles from explicit shape families, with their true zoning type.

These profiles test the zoning descriptors on shapes the project's thin-section generator does
not make: every family draws its own geometry at random (number and position of steps, step
widths, gradient extents and curvature, band periods, amplitudes and their drift, trends,
noise, sampling and length), so that a description tuned to one set of shapes does not pass.

Each family gives a noise-free shape ``value(d)`` of the distance ``d`` from the rim (um) and
its truth: the zoning type of the vocabulary (:data:`napari_zonation.vocabulary.ZONING_TYPES`,
less ``complex``), the number of plateaus, the rim and core levels. :data:`TRAIN_FAMILIES`
are the families the descriptors were developed on; :data:`HELD_OUT_FAMILIES` are kept out of
development and scored once (``benchmarks/zoning.py --held-out``). :data:`PHYSICAL_FAMILIES`
are made differently: initial profiles (one or two steps, square or sawtooth bands) relaxed
with the package's diffusion solver, the olivine ones with a composition-dependent D
(:mod:`napari_zonation._diffused_families`); their values are Fo or An, not a drawn level and
span.

The noise is a fraction (``noise``, 0.5-5 % by default) of the shape's zoning span (its
highest minus lowest value; for an unzoned profile a span drawn like the others'), Gaussian
and white; profiles may carry their ``sigma`` (the true one) or not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import erf

from ._diffused_families import DIFFUSED_FAMILIES, MIN_POINTS_DIFFUSED
from ._stats import unit_step

__all__ = [
    "Shape",
    "FAMILIES",
    "TRAIN_FAMILIES",
    "HELD_OUT_FAMILIES",
    "PHYSICAL_FAMILIES",
    "random_shape",
    "make_random_profiles",
]


@dataclass
class Shape:
    """A noise-free zoning shape and its truth.

    Attributes
    ----------
    family : str
        The family it was drawn from.
    zoning_type : str
        True zoning type (``rim_brighter`` / ``rim_darker`` by the sign of rim minus core).
    fn : callable
        ``fn(t)``: the value at relative depth ``t = d / length`` (0 rim, 1 deepest point),
        before the level and span are applied (0 to 1 or so).
    length_um : float
        Depth of the deepest point (um).
    level : float
        Value of ``fn = 0``.
    span : float
        Value change of ``fn`` from 0 to 1.
    n_plateaus : int
        True number of plateaus (1 for unzoned, gradient and oscillatory).
    steps_t : tuple of float
        True step positions on relative depth (rim first), for step families.
    period_um : float
        Band period at the rim (oscillatory), NaN otherwise.
    feature : float
        The smallest contrast that makes the shape what it is, in ``fn`` units (the smallest
        jump between two levels of a multi-step; 1 for a step, a slope or bands), so that a
        scene can keep it above what its noise hides.
    """

    family: str
    zoning_type: str
    fn: Callable[[np.ndarray], np.ndarray]
    length_um: float
    level: float
    span: float
    n_plateaus: int = 1
    steps_t: tuple[float, ...] = ()
    period_um: float = np.nan
    feature: float = 1.0
    extra: dict = field(default_factory=dict)

    def value(self, d_um) -> np.ndarray:
        """Noise-free value at distances ``d_um`` from the rim."""
        t = np.asarray(d_um, dtype=float) / self.length_um
        return self.level + self.span * self.fn(t)


# ------------------------------------------------------------------------------ helpers


def _erf_step(t, p, w):
    """0 -> 1 error-function step at ``p`` of width ``w`` (relative depth units)."""
    return unit_step(t, p, max(w, 1e-9))


def _steps(levels, pos, widths):
    levels = np.asarray(levels, float)

    def fn(t):
        out = np.full(np.shape(t), levels[0], dtype=float)
        for k, (p, w) in enumerate(zip(pos, widths, strict=True)):
            out = out + (levels[k + 1] - levels[k]) * _erf_step(t, p, w)
        return out

    return fn


def _curve(t, c):
    """Monotone 0 -> 1 curve on 0..1; ``c`` = 0 straight, > 0 steep at the start."""
    t = np.clip(t, 0.0, 1.0)
    if abs(c) < 1e-9:
        return t
    return (1.0 - np.exp(-c * t)) / (1.0 - np.exp(-c))


def _u(rng, lo, hi):
    """Uniform draw on [lo, hi] (or [hi, lo])."""
    lo, hi = float(lo), float(hi)
    return float(rng.uniform(min(lo, hi), max(lo, hi)))


def _min_t(spacing, length, points):
    """Relative depth spanned by ``points`` sampling intervals."""
    return points * spacing / length


# ------------------------------------------------------------------------------ families


def _flat(rng, length, spacing):
    return Shape("flat", "unzoned", lambda t: np.zeros(np.shape(t)), length, 0.0, 1.0, 1)


def _step_erf(rng, length, spacing):
    """One erf step inside the crystal: both plateaus seen."""
    w = _u(rng, 0.0, 0.12) * rng.random() + _min_t(spacing, length, 0.3)
    lo = max(w + _min_t(spacing, length, 3), 0.06)
    p = _u(rng, lo, max(lo + 0.05, 0.7))
    return Shape("step_erf", "", _steps([0, 1], [p], [w]), length, 0.0, 1.0, 2, (p,))


def _step_rim_held(rng, length, spacing):
    """Diffusion from a rim held at a fixed value: a half error function from the boundary
    (the initial step at the rim or just inside it)."""
    w = _u(rng, max(_min_t(spacing, length, 1.5), 0.02), 0.22)
    b = _u(rng, -0.3, 0.5) * w  # the initial step's position (relative to the rim)

    def fn(t):
        # core level 1, rim held at 0: the solution of a step at b with a fixed boundary
        # at 0 (image source at -b), as published olivine models have it
        tt = np.asarray(t, float)
        return 0.5 * (erf((tt - b) / w) + erf((tt + b) / w))

    return Shape("step_rim_held", "", fn, length, 0.0, 1.0, 2, (max(b, 0.0),))


def _multi(rng, length, spacing, n=None, alternating=None):
    most = int(np.clip(0.85 * length / spacing / 4.0, 3, 5))
    n = int(rng.integers(3, most + 1)) if n is None else n
    if alternating is None:
        alternating = rng.random() < 0.5
    jumps = rng.uniform(0.3, 1.0, n - 1)
    signs = np.where(np.arange(n - 1) % 2 == 0, 1.0, -1.0) if alternating else np.ones(n - 1)
    levels = np.concatenate([[0.0], np.cumsum(jumps * signs)])
    levels = (levels - levels.min()) / np.ptp(levels)
    # plateaus of random width (at least 4 points), the core at least 15 % of the depth
    minw = max(_min_t(spacing, length, 4), 0.04)
    for _ in range(200):
        widths = rng.dirichlet(np.full(n, 1.5)) * (1.0 - 0.15)
        widths[-1] += 0.15
        if np.all(widths >= minw):
            break
    else:
        widths = np.full(n, 1.0 / n)
    pos = np.cumsum(widths)[:-1]
    ws = []
    for k in range(n - 1):
        room = min(widths[k], widths[k + 1])
        ws.append(_u(rng, _min_t(spacing, length, 0.3), max(0.35 * room, 0.01)))
    kind = "multi_alternating" if alternating else "multi_monotonic"
    out = Shape(kind, "multi_step", _steps(levels, pos, ws), length, 0.0, 1.0, n, tuple(pos))
    out.feature = float(np.min(np.abs(np.diff(levels))))
    return out


def _gradient_hinge(rng, length, spacing):
    """A straight or curved slope from the rim to a core plateau."""
    h = _u(rng, 0.35, 0.85)
    # a gradient is straight or gently curved (its slope changes by at most a factor e):
    # steep at the rim and flattening smoothly into the core is a diffusion profile from
    # the rim (a step held at the rim); flat at the rim and steepening into an abrupt core
    # end is half a step
    c = 0.0 if rng.random() < 0.5 else _u(rng, -1.0, 1.0)
    return Shape(
        "gradient_hinge", "gradient", lambda t: _curve(np.asarray(t) / h, c), length, 0, 1, 1
    )


def _gradient_full(rng, length, spacing):
    """A straight or curved slope across the whole profile (no core plateau)."""
    c = 0.0 if rng.random() < 0.5 else rng.choice([-1.0, 1.0]) * _u(rng, 0.5, 1.5)
    return Shape("gradient_full", "gradient", lambda t: _curve(t, c), length, 0.0, 1.0, 1)


def _osc(rng, length, spacing, variant):
    p_min = max(4.5 * spacing, 3.0)
    top = 1.0 if variant == "osc_full" else _u(rng, 0.55, 0.85)
    start = _u(rng, 0.08, 0.25) if variant == "osc_under_rim_step" else 0.0
    zone_um = (top - start) * length
    n_bands = _u(rng, 2.5, 8.0)
    period = zone_um / n_bands
    if period < p_min:
        period = p_min
    if zone_um / period < 2.5:  # too short a crystal for 2.5 bands at this sampling
        period = zone_um / 2.5
    pt = period / length
    phase = _u(rng, 0, 2 * np.pi)
    amp = 0.5
    rim_level = rng.choice([-1.0, 1.0]) * _u(rng, 0.8, 1.6) if start > 0 else 0.0

    def fn(t):
        t = np.asarray(t, float)
        inside = _erf_step(t, start, 0.15 * pt) * (1.0 - _erf_step(t, top, 0.15 * pt))
        wave = amp * np.cos(2 * np.pi * (t - start) / pt + phase)
        out = inside * wave
        if start > 0:
            out = out + rim_level * (1.0 - _erf_step(t, start, 0.15 * pt))
        return out

    return Shape(variant, "oscillatory", fn, length, 0.0, 1.0, 1, (), period)


# held-out families --------------------------------------------------------------------


def _gradient_inner(rng, length, spacing):
    """A rim plateau, then a straight or curved slope to the deepest point or to a core
    plateau: a gradient over an inner part of the radius."""
    a = _u(rng, 0.1, 0.35)
    b = _u(rng, max(a + 0.4, 0.75), 1.0) if rng.random() < 0.5 else 1.0
    c = 0.0 if rng.random() < 0.5 else rng.choice([-1.0, 1.0]) * _u(rng, 0.5, 1.5)
    return Shape(
        "gradient_inner",
        "gradient",
        lambda t: _curve((np.asarray(t) - a) / (b - a), c),
        length,
        0.0,
        1.0,
        1,
    )


def _osc_chirp(rng, length, spacing):
    """Bands whose period widens or narrows with depth and whose amplitude decays, on a
    sloping mean, ending at a core plateau or at the deepest point."""
    p_min = max(4.5 * spacing, 3.0)
    top = 1.0 if rng.random() < 0.5 else _u(rng, 0.6, 0.85)
    zone = top * length
    p0 = max(zone / _u(rng, 3.0, 7.0), p_min)
    ratio = _u(rng, 0.6, 1.6)
    p1 = max(p0 * ratio, p_min)
    if zone / max(p0, p1) < 2.5:
        p0 = p1 = zone / 2.5
    # phase(d) = 2 pi integral of 1/P(d), P linear from p0 at the rim to p1 at the zone's end
    k = (p1 - p0) / zone
    decay = _u(rng, 0.4, 1.0)
    trend = _u(rng, -0.4, 0.4)

    def fn(t):
        d = np.asarray(t, float) * length
        dz = np.clip(d, 0.0, zone)
        ph = 2 * np.pi * (np.log1p(k * dz / p0) / k if abs(k) > 1e-9 else dz / p0)
        amp = 0.5 * (1.0 - (1.0 - decay) * dz / zone)
        inside = 1.0 - _erf_step(d / length, top, 0.15 * p1 / length)
        return inside * (amp * np.cos(ph) + trend * (1 - dz / zone))

    return Shape("osc_chirp", "oscillatory", fn, length, 0.0, 1.0, 1, (), p0)


def _osc_square(rng, length, spacing):
    """Sawtooth or square bands (not sine waves) above a core plateau or to the deepest
    point."""
    p_min = max(5.0 * spacing, 3.5)
    top = 1.0 if rng.random() < 0.4 else _u(rng, 0.6, 0.85)
    zone = top * length
    period = max(zone / _u(rng, 2.5, 6.0), p_min)
    if zone / period < 2.5:
        period = zone / 2.5
    saw = rng.random() < 0.5
    soft = 0.06 * period

    def fn(t):
        d = np.asarray(t, float) * length
        x = (d / period) % 1.0
        if saw:  # slow rise, fast fall (growth-dissolution cycles)
            wave = x - 0.5
        else:
            wave = 0.5 * np.tanh(np.sin(2 * np.pi * d / period) * period / (2 * np.pi * soft))
        inside = 1.0 - _erf_step(d / length, top, 0.1 * period / length)
        return inside * wave

    return Shape("osc_square", "oscillatory", fn, length, 0.0, 1.0, 1, (), period)


def _multi_rim_held(rng, length, spacing):
    """Three or four plateaus whose outermost step is a diffusion front held at the rim."""
    n = int(rng.integers(3, 5))
    s = _multi(rng, length, spacing, n=n)
    inner = s.fn
    w = _u(rng, max(_min_t(spacing, length, 1.5), 0.02), 0.08)
    first = s.steps_t[0]
    lv0 = float(inner(np.array([0.0]))[0])
    lv1 = float(inner(np.array([0.5 * (first + (s.steps_t[1] if n > 2 else 1.0))]))[0])

    def fn(t):
        t = np.asarray(t, float)
        base = inner(t)
        # the rim plateau becomes a diffusion profile from the boundary
        held = lv0 + (lv1 - lv0) * erf(np.clip(t, 0, None) / w)
        return np.where(t < first, held, base)

    out = Shape("multi_rim_held", "multi_step", fn, length, 0.0, 1.0, n, s.steps_t)
    out.feature = s.feature
    return out


def _step_nonlinear(rng, length, spacing):
    """One diffused step whose diffusivity depends on the value (D doubling across the
    step, as Fe-Mg in olivine): an asymmetric, non-erf step inside the crystal."""
    p = _u(rng, 0.15, 0.6)
    w = _u(rng, _min_t(spacing, length, 0.8), 0.1)
    ratio = _u(rng, 2.0, 6.0)
    x = np.linspace(-1.0, 2.0, 601)
    u = (x > p).astype(float)
    dx = x[1] - x[0]
    # explicit finite differences to sqrt(D0 t) = w / 2 with D = D0 ratio^(1 - u)
    d_of = lambda uu: ratio ** (1.0 - uu)  # noqa: E731
    dt = 0.2 * dx * dx / ratio
    steps = int(np.ceil((w / 2.0) ** 2 / dt))
    dt = (w / 2.0) ** 2 / max(steps, 1)
    for _ in range(min(steps, 20000)):
        dm = d_of(0.5 * (u[1:] + u[:-1]))
        flux = dm * np.diff(u) / dx
        u[1:-1] += dt * np.diff(flux) / dx
    return Shape("step_nonlinear", "", lambda t: np.interp(t, x, u), length, 0.0, 1.0, 2, (p,))


#: every family: name -> (draw function, zoning type; "" = rim_brighter / rim_darker by sign)
FAMILIES: dict[str, Callable] = {
    "flat": _flat,
    "step_erf": _step_erf,
    "step_rim_held": _step_rim_held,
    "multi_alternating": lambda r, L, s: _multi(r, L, s, alternating=True),
    "multi_monotonic": lambda r, L, s: _multi(r, L, s, alternating=False),
    "gradient_hinge": _gradient_hinge,
    "gradient_full": _gradient_full,
    "osc_core": lambda r, L, s: _osc(r, L, s, "osc_core"),
    "osc_full": lambda r, L, s: _osc(r, L, s, "osc_full"),
    "osc_under_rim_step": lambda r, L, s: _osc(r, L, s, "osc_under_rim_step"),
    # held out
    "gradient_inner": _gradient_inner,
    "osc_chirp": _osc_chirp,
    "osc_square": _osc_square,
    "multi_rim_held": _multi_rim_held,
    "step_nonlinear": _step_nonlinear,
}
HELD_OUT_FAMILIES: tuple[str, ...] = (
    "gradient_inner",
    "osc_chirp",
    "osc_square",
    "multi_rim_held",
    "step_nonlinear",
)
TRAIN_FAMILIES: tuple[str, ...] = tuple(f for f in FAMILIES if f not in HELD_OUT_FAMILIES)


def _physical(name: str) -> Callable:
    def draw(rng, length, spacing):
        ds = DIFFUSED_FAMILIES[name](rng, length, spacing)
        out = Shape(name, ds.zoning_type, ds.fn, length, 0.0, 1.0, ds.n_plateaus, ds.steps_t)
        out.period_um = float(ds.period_t * length)
        out.feature = ds.feature
        out.extra = {**ds.extra, "quantity": ds.quantity}
        return out

    return draw


#: profiles made by diffusing initial conditions with the package's solver
#: (:mod:`napari_zonation._diffused_families`): one- and two-step olivine Fo profiles relaxed
#: with a composition-dependent D, square and sawtooth An bands. Their values are in the
#: quantity's own units (Fo, An), not drawn like the shape families'.
PHYSICAL_FAMILIES: tuple[str, ...] = tuple(DIFFUSED_FAMILIES)
FAMILIES.update({name: _physical(name) for name in PHYSICAL_FAMILIES})


def random_shape(family: str, rng: np.random.Generator, length_um: float, spacing_um: float):
    """Draw one shape of a family for a profile ``length_um`` deep sampled every
    ``spacing_um``; its level is 0 and its zoning span 1 (set them on the result)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {sorted(FAMILIES)}")
    s = FAMILIES[family](rng, float(length_um), float(spacing_um))
    s.family = family
    return s


#: fewest points a family needs to be what it is (bands need 2.5 periods of 4.5 points,
#: multi-steps three plateaus of 4 points and a core)
MIN_POINTS: dict[str, int] = {
    "multi_alternating": 20,
    "multi_monotonic": 20,
    "multi_rim_held": 20,
    "osc_core": 24,
    "osc_full": 14,
    "osc_under_rim_step": 30,
    "osc_chirp": 24,
    "osc_square": 24,
    **MIN_POINTS_DIFFUSED,
}


def _sampling(rng, least: int = 12) -> tuple[float, int]:
    """Point spacing (um) and count: image-like (0.5-1 um, 15-150 points) or traverse-like
    (2-8 um, 12-70 points), at least ``least`` points."""
    if rng.random() < 0.5:
        return _u(rng, 0.5, 1.0), int(rng.integers(max(15, least), 151))
    return _u(rng, 2.0, 8.0), int(rng.integers(max(12, least), max(71, least + 1)))


def make_random_profiles(
    n_per_family: int = 20,
    *,
    families: tuple[str, ...] = TRAIN_FAMILIES,
    noise: tuple[float, float] = (0.005, 0.05),
    sigma_fraction: float = 0.5,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Randomised profiles of the shape families, with their truth.

    Parameters
    ----------
    n_per_family : int
        Profiles per family.
    families : tuple of str
        Families to draw (:data:`TRAIN_FAMILIES` by default; :data:`HELD_OUT_FAMILIES` for the
        held-out benchmark).
    noise : (float, float)
        Range of the noise (1-sigma) as a fraction of the zoning span, drawn log-uniformly.
    sigma_fraction : float
        Share of the profiles that carry their (true) ``sigma``; the others have none.
    seed : int
        Seed of the random generator.

    Returns
    -------
    prof : pandas.DataFrame
        Long table ``label, distance_um, value, [sigma], quantity, source`` (0 at the rim).
    truth : pandas.DataFrame
        One row per label: ``family``, ``zoning_type``, ``n_plateaus``, ``rim_value``,
        ``core_value``, ``noise``, ``spacing_um``, ``n_points``, ``length_um``,
        ``period_um``, ``step_positions_um``, ``has_sigma``.
    """
    rng = np.random.default_rng(seed)
    frames, rows = [], []
    label = 0
    for fam in families:
        for _ in range(n_per_family):
            label += 1
            spacing, n = _sampling(rng, MIN_POINTS.get(fam, 12))
            d = np.arange(n) * spacing + _u(rng, 0.0, 0.5) * spacing
            length = float(d[-1])
            shape = random_shape(fam, rng, length, spacing)
            quantity = shape.extra.get("quantity")
            if quantity is None:  # a shape family: its level and span drawn here
                span = float(_u(rng, 5.0, 40.0)) * rng.choice([-1.0, 1.0])
                level = float(_u(rng, 50.0, 200.0))
                shape.level, shape.span = level, span
            clean = shape.value(d)
            zspan = float(np.ptp(shape.value(np.linspace(0, length, 2001))))
            ref = zspan if zspan > 0 else abs(shape.span)
            frac = float(np.exp(_u(rng, np.log(noise[0]), np.log(noise[1]))))
            sigma = frac * ref
            value = clean + rng.normal(0.0, sigma, n)
            has_sigma = bool(rng.random() < sigma_fraction)
            frame = pd.DataFrame({"label": label, "distance_um": d, "value": value})
            if has_sigma:
                frame["sigma"] = sigma
            frame["quantity"] = quantity or "grey"
            frame["source"] = "synthetic"
            frames.append(frame)
            zt = shape.zoning_type
            rim, core = float(shape.value(np.array([0.0]))[0]), float(clean[-1])
            if zt == "":
                zt = "rim_brighter" if rim > core else "rim_darker"
            rows.append(
                {
                    "label": label,
                    "family": fam,
                    "zoning_type": zt,
                    "n_plateaus": shape.n_plateaus,
                    "rim_value": rim,
                    "core_value": core,
                    "noise": frac,
                    "sigma_true": sigma,
                    "spacing_um": spacing,
                    "n_points": n,
                    "length_um": length,
                    "period_um": shape.period_um,
                    "step_positions_um": tuple(float(p) * length for p in shape.steps_t),
                    "has_sigma": has_sigma,
                }
            )
    return pd.concat(frames, ignore_index=True), pd.DataFrame(rows)
