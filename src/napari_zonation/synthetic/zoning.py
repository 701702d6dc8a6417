"""The generator's grey model and zoning: phases' composition-to-grey lines, concentric
zoning patterns drawn at random, the zonings drawn against the glass's grey, and 1D
profiles with their truth (:func:`make_profiles`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import erf

from .._stats import unit_step
from ..vocabulary import ZONING_TYPES as _ALL_ZONING_TYPES
from ..vocabulary import interpret as _interpret

#: the zoning types the generator draws: every one of vocabulary.ZONING_TYPES but "complex"
ZONING_TYPES: tuple[str, ...] = tuple(t for t in _ALL_ZONING_TYPES if t != "complex")
PHASES: tuple[str, ...] = ("olivine", "clinopyroxene", "plagioclase")

#: phase -> (composition name, grey = intercept + slope * composition, composition bounds)
GREY_MODEL: dict[str, tuple[str, float, float, tuple[float, float]]] = {
    "olivine": ("Fo", 1.12, -0.006, (65.0, 92.0)),
    "clinopyroxene": ("Mg#", 0.79, -0.003, (60.0, 92.0)),
    "plagioclase": ("An", 0.225, 0.0015, (35.0, 95.0)),
}
#: grey levels (fraction of full scale) of what is not a zoned phenocryst
GREY = {
    "epoxy": 0.04,
    "glass": 0.42,
    "plagioclase_microlite": 0.31,
    "pyroxene_microlite": 0.55,
    "oxide": 0.90,
    "crack": 0.12,
    "grain_boundary": 0.22,
    "vesicle_wall": 0.70,
}
_PHASE_WEIGHTS = {"olivine": 0.4, "clinopyroxene": 0.25, "plagioclase": 0.35}


def grey_of(phase: str, composition):
    """Grey level (fraction of full scale) of a phase at a composition (Fo, Mg# or An)."""
    _, a, b, _ = GREY_MODEL[phase]
    return a + b * np.asarray(composition, dtype=float)


def composition_of(phase: str, grey):
    """Inverse of :func:`grey_of`."""
    _, a, b, _ = GREY_MODEL[phase]
    return (np.asarray(grey, dtype=float) - a) / b


def interpretation_of(phase: str, rim_minus_core_grey: float, zoning_type: str) -> str:
    """Petrological reading of a zoning pattern described in grey (the vocabulary's rule)."""
    return _interpret(zoning_type, rim_minus_core_grey, phase, "grey")[0]


@dataclass
class Zoning:
    """A concentric zoning pattern in grey (fraction of full scale) as a function of the
    distance to the rim in micrometres.

    Attributes
    ----------
    zoning_type : str
        One of :data:`ZONING_TYPES`.
    levels : tuple of float
        Plateau grey levels, rim first.
    steps_um : tuple of float
        Step positions from the rim (um), increasing; ``len(levels) - 1`` of them
        (for ``gradient`` and ``oscillatory``: the depth where the core plateau starts).
    sqrt_dt_um : float
        Diffusive relaxation ``sqrt(D t)`` of every step (um).
    osc_period_um, osc_amplitude : float
        Oscillation period (um) and amplitude (grey, half peak-to-peak), oscillatory only.
    """

    zoning_type: str
    levels: tuple[float, ...]
    steps_um: tuple[float, ...] = ()
    sqrt_dt_um: float = np.nan
    osc_period_um: float = np.nan
    osc_amplitude: float = np.nan

    def grey(self, d_um) -> np.ndarray:
        """Noise-free grey (fraction of full scale) at distances ``d_um`` from the rim."""
        d = np.asarray(d_um, dtype=float)
        zt = self.zoning_type
        if zt == "gradient":
            rim, core = self.levels
            p = self.steps_um[0]
            return np.where(d < p, rim + (core - rim) * np.clip(d, 0, None) / p, core)
        if zt == "oscillatory":
            core = self.levels[-1]
            p = self.steps_um[0]
            wave = core + self.osc_amplitude * np.cos(2 * np.pi * d / self.osc_period_um)
            # taper into the core plateau over a quarter period
            w = 0.5 * (1 - erf((d - p) / (0.25 * self.osc_period_um)))
            return core + w * (wave - core)
        out = np.full(d.shape, self.levels[0], dtype=float)
        s = max(self.sqrt_dt_um, 1e-6) if np.isfinite(self.sqrt_dt_um) else 1e-6
        for k, p in enumerate(self.steps_um):
            a, b = self.levels[k], self.levels[k + 1]
            out += (b - a) * unit_step(d, p, 2 * s)
        return out

    @property
    def n_plateaus(self) -> int:
        if self.zoning_type in ("gradient", "oscillatory", "unzoned"):
            return 1
        return len(self.levels)

    @property
    def rim_grey(self) -> float:
        return float(self.grey(np.array([0.0]))[0])

    @property
    def core_grey(self) -> float:
        return float(self.levels[-1])


def random_zoning(
    zoning_type: str, phase: str, depth_um: float, rng: np.random.Generator
) -> Zoning:
    """Draw a random zoning pattern of a type for a crystal whose core is ``depth_um`` deep.

    Contrasts between plateaus are 0.03-0.07 of full scale (8-18 DN in 8 bits), within the
    phase's composition bounds; steps lie between 6 um and 60 % of the depth.
    """
    if zoning_type not in ZONING_TYPES:
        raise ValueError(f"unknown zoning type {zoning_type!r}; choose from {ZONING_TYPES}")
    _, a, b, (cmin, cmax) = GREY_MODEL[phase]
    glo, ghi = sorted((a + b * cmin, a + b * cmax))
    depth = max(float(depth_um), 20.0)

    def level_pair(sign: float) -> tuple[float, float]:
        delta = rng.uniform(0.03, 0.07)
        delta = min(delta, ghi - glo - 1e-3)
        if sign > 0:  # rim brighter
            core = rng.uniform(glo, ghi - delta)
            return core + delta, core
        core = rng.uniform(glo + delta, ghi)
        return core - delta, core

    sqrt_dt = rng.uniform(1.0, 5.0)
    if zoning_type == "unzoned":
        return Zoning("unzoned", (rng.uniform(glo, ghi),))
    if zoning_type in ("rim_brighter", "rim_darker"):
        rim, core = level_pair(1.0 if zoning_type == "rim_brighter" else -1.0)
        p_lo = max(8.0, 3 * sqrt_dt)
        p = rng.uniform(p_lo, max(p_lo + 2.0, 0.45 * depth))
        return Zoning(zoning_type, (rim, core), (p,), sqrt_dt)
    if zoning_type == "gradient":
        rim, core = level_pair(rng.choice([-1.0, 1.0]))
        p = rng.uniform(0.4, 0.7) * depth
        return Zoning("gradient", (rim, core), (p,))
    if zoning_type == "oscillatory":
        period = rng.uniform(8.0, 16.0)
        n_osc = int(np.clip(np.floor(0.6 * depth / period), 3, 6))
        core = rng.uniform(glo + 0.04, ghi - 0.04) if ghi - glo > 0.08 else 0.5 * (glo + ghi)
        amp = rng.uniform(0.02, 0.035)
        return Zoning(
            "oscillatory",
            (core,),
            (n_osc * period,),
            np.nan,
            osc_period_um=period,
            osc_amplitude=amp,
        )
    # multi_step: 3 or 4 plateaus, each jump 0.03-0.06, alternating or monotonic
    n = int(rng.integers(3, 5))
    span = ghi - glo
    for _ in range(100):
        monotonic = rng.random() < 0.5
        sign = rng.choice([-1.0, 1.0])
        jumps = rng.uniform(0.03, 0.06, size=n - 1)
        signs = np.full(n - 1, sign) if monotonic else sign * (-1.0) ** np.arange(n - 1)
        rel = np.concatenate([[0.0], np.cumsum(jumps * signs)])
        if rel.max() - rel.min() < span - 2e-3:
            break
    else:  # pragma: no cover - phases have room for three steps
        rel = np.linspace(0, min(span, 0.09), n)
    start = rng.uniform(glo - rel.min(), ghi - rel.max())
    levels = tuple(float(v) for v in start + rel)
    outer = min(0.75 * depth, 12.0 * n + 20.0)
    gaps = rng.uniform(0.6, 1.0, size=n - 1)
    pos = (
        8.0
        + np.cumsum(gaps) / gaps.sum() * (outer - 8.0)
        - gaps[0] / gaps.sum() * (outer - 8.0) * 0.5
    )
    sqrt_dt = min(sqrt_dt, float(np.min(np.diff(np.concatenate([[0.0], pos])))) / 4)
    return Zoning("multi_step", levels, tuple(float(p) for p in pos), sqrt_dt)


def _truth_row(label: int, phase: str, z: Zoning, full_scale: float, quantity: str) -> dict:
    name = GREY_MODEL[phase][0]
    conv = (
        (lambda g: g * full_scale) if quantity == "grey" else (lambda g: composition_of(phase, g))
    )
    rim_g, core_g = z.rim_grey, z.core_grey
    slope = np.nan
    if z.zoning_type == "gradient":
        slope = (conv(z.levels[1]) - conv(z.levels[0])) / z.steps_um[0]
    amp = np.nan
    if z.zoning_type == "oscillatory":
        amp = abs(conv(z.levels[0] + z.osc_amplitude) - conv(z.levels[0]))
    return {
        "label": label,
        "phase": phase,
        "zoning_type": z.zoning_type,
        "interpretation": interpretation_of(phase, rim_g - core_g, z.zoning_type),
        "n_plateaus": z.n_plateaus,
        "plateau_values": tuple(float(conv(v)) for v in z.levels),
        "step_positions_um": tuple(z.steps_um)
        if z.zoning_type not in ("gradient", "oscillatory")
        else (),
        "sqrt_dt_um": z.sqrt_dt_um
        if z.zoning_type in ("rim_brighter", "rim_darker", "multi_step")
        else np.nan,
        "core_value": float(conv(core_g)),
        "rim_value": float(conv(rim_g)),
        "core_composition": float(composition_of(phase, core_g)),
        "rim_composition": float(composition_of(phase, rim_g)),
        "composition_name": name,
        "osc_period_um": z.osc_period_um,
        "osc_amplitude": amp,
        "slope_per_um": slope,
        "core_start_um": z.steps_um[-1] if z.steps_um else 0.0,
    }


def make_profiles(
    n_per_type: int = 8,
    *,
    zoning_types: tuple[str, ...] = ZONING_TYPES,
    phase: str = "olivine",
    spacing_um: float = 1.0,
    noise: float = 0.01,
    quantity: str = "grey",
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Synthetic 1D core-to-rim profiles with their true zoning.

    Parameters
    ----------
    n_per_type : int
        Profiles per zoning type.
    zoning_types : tuple of str
        Types to draw from :data:`ZONING_TYPES`.
    phase : str
        ``"olivine"``, ``"clinopyroxene"``, ``"plagioclase"`` or ``"mixed"`` (random per profile).
    spacing_um : float
        Distance between points (um).
    noise : float
        1-sigma noise: a fraction of full scale (255 DN) when ``quantity="grey"``, a fraction of
        100 mol % when ``quantity="composition"`` (0.003 = 0.3 mol %, EPMA-like).
    quantity : {"grey", "composition"}
        Values in 8-bit grey (DN, 0-255) or in composition (Fo, Mg# or An, mol %).
    seed : int
        Seed of the random generator.

    Returns
    -------
    prof : pandas.DataFrame
        Long table ``label, distance_um, value, sigma, source`` (distance 0 at the rim).
    truth : pandas.DataFrame
        One row per label (columns in ``docs/synthetic.md``).
    """
    if quantity not in ("grey", "composition"):
        raise ValueError("quantity must be 'grey' or 'composition'")
    rng = np.random.default_rng(seed)
    rows, frames = [], []
    label = 0
    for zt in zoning_types:
        for _ in range(n_per_type):
            label += 1
            ph = rng.choice(PHASES) if phase == "mixed" else phase
            depth = rng.uniform(60.0, 150.0)
            z = random_zoning(zt, ph, depth, rng)
            d = np.arange(0.0, depth + 1e-9, spacing_um)
            g = z.grey(d)
            if quantity == "grey":
                clean, sigma = g * 255.0, noise * 255.0
            else:
                clean, sigma = composition_of(ph, g), noise * 100.0
            value = clean + rng.normal(0.0, sigma, size=d.size) if sigma > 0 else clean
            frames.append(
                pd.DataFrame(
                    {
                        "label": label,
                        "distance_um": d,
                        "value": value,
                        "sigma": sigma,
                        "source": "synthetic",
                    }
                )
            )
            row = _truth_row(label, ph, z, 255.0, quantity)
            if quantity == "composition" and ph != "plagioclase":
                # zoning_type names the profile in the measured quantity (see vocabulary): Fo
                # and Mg# fall as grey rises, so a brighter rim is a lower-value rim
                swap = {"rim_brighter": "rim_darker", "rim_darker": "rim_brighter"}
                row["zoning_type"] = swap.get(row["zoning_type"], row["zoning_type"])
            rows.append(row)
    prof = pd.concat(frames, ignore_index=True)
    return prof, pd.DataFrame(rows)


def _phase_grey_range(phase: str) -> tuple[float, float]:
    _, a, b, (cmin, cmax) = GREY_MODEL[phase]
    lo, hi = sorted((a + b * cmin, a + b * cmax))
    return float(lo), float(hi)


def rim_at_glass_zoning(
    phase: str, depth_um: float, glass: float, rng: np.random.Generator
) -> Zoning | None:
    """A zoning whose outer zone has the grey of the glass around the crystal, or ``None``
    when the phase cannot reach that grey.

    Olivine and clinopyroxene get an Fe-rich rim (normal zoning toward the melt) within
    0.5-4 DN (8 bits) of the glass over a core 0.04-0.08 darker: a step or, one time in three,
    a gradient; the rim may reach 0.015 past the phase's core grey range (Fe-richer than any
    core). Plagioclase gets one of three patterns: a rim darker than the glass over a core
    brighter than it; an outer zone at the glass grey over a darker core; a dark rim, a zone at
    the glass grey and a bright core.
    """
    glo, ghi = _phase_grey_range(phase)
    depth = max(float(depth_um), 20.0)
    at_glass = glass + rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 4.0) / 255.0
    sqrt_dt = rng.uniform(1.0, 3.0)
    step = rng.uniform(max(6.0, 3 * sqrt_dt), max(6.0 + 1.0, min(25.0, 0.45 * depth)))
    if phase != "plagioclase":
        if not glo + 0.03 <= at_glass <= ghi + 0.015:
            return None
        core = max(at_glass - rng.uniform(0.04, 0.08), glo)
        if rng.random() < 1 / 3:
            return Zoning("gradient", (at_glass, core), (rng.uniform(0.3, 0.6) * depth,))
        return Zoning("rim_brighter", (at_glass, core), (step,), sqrt_dt)
    gap = 0.012
    dark_ok = glo < glass - gap
    bright_ok = glass + gap < ghi
    variant = int(rng.integers(3))
    if variant == 1 or not (dark_ok and bright_ok):
        # outer zone at the glass grey over a darker core
        if not glo + 0.03 <= at_glass <= ghi:
            return None
        core = at_glass - rng.uniform(0.03, 0.06)
        if core < glo:
            return None
        return Zoning("rim_brighter", (at_glass, core), (step,), sqrt_dt)
    rim = rng.uniform(glo, glass - gap)
    core = rng.uniform(glass + gap, ghi)
    if variant == 0:
        return Zoning("rim_darker", (rim, core), (step,), sqrt_dt)
    p1 = rng.uniform(5.0, 10.0)
    p2 = min(p1 + rng.uniform(6.0, 15.0), max(p1 + 4.0, 0.6 * depth))
    sqrt_dt = min(sqrt_dt, p1 / 4, (p2 - p1) / 4)
    return Zoning("multi_step", (rim, at_glass, core), (p1, p2), sqrt_dt)


def _thin_rim_zoning(
    phase: str, core: float, px: float, rng: np.random.Generator
) -> Zoning:
    """A real rim zone one to two pixels wide, 0.03-0.07 brighter or darker than the core
    (inside the phase's grey range), over an unzoned core; the step is sharp (``sqrt_dt`` a
    quarter pixel)."""
    glo, ghi = _phase_grey_range(phase)
    delta = rng.uniform(0.03, 0.07)
    up = core + delta <= ghi and (core - delta < glo or rng.random() < 0.5)
    rim = core + delta if up else core - delta
    # (the generator's distance of a pixel is its distance transform, a pixel more than its
    # centre's distance to the outline: the zone covers the outermost one to two pixels)
    width = (rng.uniform(1.0, 2.0) + 0.5) * px
    return Zoning("rim_brighter" if up else "rim_darker", (rim, core), (width,), 0.25 * px)


def _keep_contrast(z: Zoning, phase: str, glass: float, gap: float = 0.03) -> Zoning:
    """Shift a zoning's levels so that its core differs from the glass by at least ``gap``
    (staying inside the phase's grey range), so that a crystal never vanishes into a glass of
    its own core grey. A zoning that already differs enough comes back unchanged."""
    core = z.core_grey
    if abs(core - glass) >= gap:
        return z
    glo, ghi = _phase_grey_range(phase)
    up = glass + gap - core
    down = glass - gap - core
    lv = np.asarray(z.levels)
    amp = z.osc_amplitude if np.isfinite(z.osc_amplitude) else 0.0
    fits_up = lv.max() + amp + up <= ghi
    shift = up if (fits_up and (abs(up) <= abs(down) or lv.min() - amp + down < glo)) else down
    return Zoning(
        z.zoning_type,
        tuple(float(v + shift) for v in z.levels),
        z.steps_um,
        z.sqrt_dt_um,
        z.osc_period_um,
        z.osc_amplitude,
    )


