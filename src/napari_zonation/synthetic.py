"""Seeded synthetic BSE thin sections and 1D profiles with ground truth.

The physics is documented in ``docs/synthetic.md``. In short: BSE grey grows with mean atomic
number; each phenocryst phase maps its composition linearly to grey (:data:`GREY_MODEL`);
zoning is concentric, a function of the Euclidean distance to the crystal's own boundary; growth
makes plateaus joined by steps that diffusion relaxes into error functions of half-width
``2 * sqrt(D t)``; the groundmass is glass with plagioclase, pyroxene and oxide microlites;
vesicles are near-black discs with a bright polished crescent; olivines are cracked; the probe
blurs the scene (Gaussian), the detector adds Gaussian noise, the beam current drifts slowly
across the field, and the result is quantised to 8 or 16 bits.

Options of :func:`make_thin_section`, all off by default, add what real BSE images carry
(drawn by ``_synthetic_features``): a glassy groundmass with real vesicles, black epoxy and
plucked holes, rims at the glass's grey, plagioclase zoned across it, thin real rim zones,
edge halos, crack contacts, needles and microlite clusters, scan lines, a data bar and JPEG
compression; :data:`SCENE_KINDS` holds one set per kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy.special import erf
from skimage.draw import disk, polygon

from . import _synthetic_features as feat
from ._stats import unit_step
from ._synthetic_features import glass_canvas
from .vocabulary import ZONING_TYPES as _ALL_ZONING_TYPES
from .vocabulary import interpret as _interpret

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


# ----------------------------------------------------------------------------------------
# thin sections


@dataclass
class SyntheticSample:
    """A synthetic BSE thin section with its ground truth.

    Attributes
    ----------
    image : numpy.ndarray
        uint8 or uint16 BSE image (y, x).
    labels : numpy.ndarray
        int32 true phenocryst labels (cracks and inclusions belong to their crystal).
    truth : pandas.DataFrame
        One row per crystal (see ``docs/synthetic.md``).
    pixel_size_um : float
        Micrometres per pixel.
    clean : numpy.ndarray
        float64 noise-free image in DN: probe blur applied, no drift, no noise.
    noise_dn : float
        1-sigma detector noise in DN.
    zonings : dict
        label -> :class:`Zoning` (grey as a fraction of full scale).
    full_scale : float
        255 or 65535.
    vesicles : numpy.ndarray
        bool mask of the vesicles (their discs; halos and walls outside the disc excluded).
    glass_grey : float
        Grey of the glass (fraction of full scale).
    epoxy : numpy.ndarray or None
        bool mask of black epoxy: mounting regions and plucked holes (a hole inside a crystal
        keeps the crystal's label).
    halo : numpy.ndarray or None
        bool mask of the crystals' edge-halo pixels (inside their labels), when drawn.
    needles : numpy.ndarray or None
        bool mask of needle microlites and microlite clusters, when drawn.
    data_bar_rows : int
        Rows of the data bar at the bottom (0: none).
    """

    image: np.ndarray
    labels: np.ndarray
    truth: pd.DataFrame
    pixel_size_um: float
    clean: np.ndarray
    noise_dn: float
    zonings: dict = field(default_factory=dict)
    full_scale: float = 255.0
    vesicles: np.ndarray | None = None
    glass_grey: float = GREY["glass"]
    epoxy: np.ndarray | None = None
    halo: np.ndarray | None = None
    needles: np.ndarray | None = None
    data_bar_rows: int = 0

    def true_profile(self, label: int, distance_um) -> np.ndarray:
        """Noise-free, unblurred grey (DN) of crystal ``label`` at distances from its rim."""
        return self.zonings[int(label)].grey(distance_um) * self.full_scale


def _crystal_polygon(phase: str, length_px: float, rng: np.random.Generator) -> np.ndarray:
    """Vertices (row, col) of a crystal outline centred on 0, random orientation."""
    if phase == "plagioclase":  # lath
        aspect = rng.uniform(2.0, 3.5)
        h, w = length_px / 2, length_px / (2 * aspect)
        cut = 0.3 * w
        v = np.array(
            [
                [-h + cut, -w],
                [h - cut, -w],
                [h, -w + cut],
                [h, w - cut],
                [h - cut, w],
                [-h + cut, w],
                [-h, w - cut],
                [-h, -w + cut],
            ]
        )
    elif phase == "olivine":  # elongated hexagon
        aspect = rng.uniform(1.2, 1.8)
        h, w = length_px / 2, length_px / (2 * aspect)
        v = np.array(
            [[-h, 0], [-0.45 * h, -w], [0.45 * h, -w], [h, 0], [0.45 * h, w], [-0.45 * h, w]]
        )
    else:  # clinopyroxene: octagon
        aspect = rng.uniform(1.0, 1.5)
        h, w = length_px / 2, length_px / (2 * aspect)
        t = np.deg2rad(np.arange(8) * 45 + 22.5)
        v = np.stack([h * np.sin(t), w * np.cos(t)], axis=1)
    v = v * rng.uniform(0.9, 1.1, size=v.shape)  # irregular faces
    a = rng.uniform(0, np.pi)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return v @ rot.T


def _draw_shapes(canvas, rng, n, make_vertices, value, mask_allowed=None):
    """Draw n random polygons of a value into canvas where mask_allowed (if given)."""
    H, W = canvas.shape
    centres = rng.uniform([0, 0], [H, W], size=(n, 2))
    for c in centres:
        v = make_vertices() + c
        rr, cc = polygon(v[:, 0], v[:, 1], shape=canvas.shape)
        if mask_allowed is not None:
            keep = mask_allowed[rr, cc]
            rr, cc = rr[keep], cc[keep]
        canvas[rr, cc] = value


def _lath(rng, length_px, width_px):
    a = rng.uniform(0, np.pi)
    h, w = length_px / 2, width_px / 2
    v = np.array([[-h, -w], [h, -w], [h, w], [-h, w]])
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return v @ rot.T


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


#: ready-made sets of the realism options of :func:`make_thin_section`, one per kind of what
#: real BSE images carry (``make_thin_section(..., **SCENE_KINDS["glassy"])``); "real" has
#: them all at once (with a bright glass: the faint olivine rims, not the glass-zoned laths)
SCENE_KINDS: dict[str, dict] = {
    "glassy": {"groundmass": "glass", "n_vesicles": 14, "vesicle_contact": 0.3},
    "epoxy": {"epoxy_fraction": 0.12, "plucked_holes": 15.0},
    "faint_rims": {
        "groundmass": "glass",
        "faint_rims": 1.0,
        "phases": ("olivine", "clinopyroxene"),
        "glass_texture": 0.012,
    },
    "glass_laths": {"glass_zoned_laths": 0.8, "phases": ("plagioclase", "olivine")},
    "halo": {"edge_halo": 0.35},
    "instrument": {"scan_lines": 6, "data_bar": True, "jpeg_quality": 75},
    "glomerocrysts": {"touching_fraction": 0.6, "crack_contacts": 1.0, "crack_fraction": 0.8},
    "needles": {"needles": 0.06},
    "real": {
        "groundmass": "glass",
        "n_vesicles": 10,
        "vesicle_contact": 0.3,
        "epoxy_fraction": 0.06,
        "plucked_holes": 10.0,
        "faint_rims": 0.6,
        "edge_halo": 0.3,
        "touching_fraction": 0.35,
        "crack_contacts": 0.7,
        "needles": 0.03,
        "scan_lines": 4,
        "data_bar": True,
        "jpeg_quality": 80,
    },
}


def make_thin_section(
    shape: tuple[int, int] = (768, 768),
    *,
    n_crystals: int = 20,
    pixel_size_um: float = 1.0,
    noise: float = 0.02,
    bit_depth: int = 8,
    seed: int = 0,
    phases: tuple[str, ...] = PHASES,
    zoning_types: tuple[str, ...] = ZONING_TYPES,
    size_um: tuple[float, float] = (90.0, 260.0),
    touching_fraction: float = 0.25,
    crack_fraction: float = 0.5,
    inclusion_fraction: float = 0.3,
    n_vesicles: int | None = None,
    microlite_fraction: float = 0.2,
    probe_fwhm_um: float = 1.2,
    drift: float = 0.03,
    groundmass: str = "microlite",
    glass_grey: float | None = None,
    glass_texture: float = 0.0,
    vesicle_style: str = "auto",
    vesicle_contact: float = 0.0,
    epoxy_fraction: float = 0.0,
    plucked_holes: float = 0.0,
    faint_rims: float = 0.0,
    glass_zoned_laths: float = 0.0,
    thin_rims: float = 0.0,
    edge_halo: float = 0.0,
    crack_contacts: float = 0.0,
    needles: float = 0.0,
    scan_lines: int = 0,
    data_bar: bool = False,
    jpeg_quality: int | None = None,
) -> SyntheticSample:
    """Make a seeded synthetic BSE image of a porphyritic volcanic thin section.

    The options after ``drift`` add what real BSE images carry (``docs/synthetic.md``); they
    are all off by default, so a seed gives the same image whether or not they exist. Each
    draws from its own random stream: the same seed with and without an option gives the same
    crystals (the groundmass option included), only what the option adds differs.
    :data:`SCENE_KINDS` holds ready-made sets of them.

    Parameters
    ----------
    shape : (int, int)
        Image shape in pixels (rows, cols).
    n_crystals : int
        Phenocrysts to place (some are dropped if no room is found).
    pixel_size_um : float
        Micrometres per pixel; crystal, microlite and vesicle sizes are physical.
    noise : float
        Detector noise, 1-sigma as a fraction of full scale.
    bit_depth : {8, 16}
        Output dtype uint8 or uint16.
    seed : int
        Seed; the same seed gives the same image.
    phases, zoning_types : tuple of str
        Phases and zoning types to draw from.
    size_um : (float, float)
        Range of crystal lengths (um).
    touching_fraction : float
        Fraction of crystals placed touching an earlier one (glomerocrysts).
    crack_fraction : float
        Probability that an olivine (half of it for pyroxene and plagioclase) is cracked.
    inclusion_fraction : float
        Probability that a crystal carries melt or oxide inclusions.
    n_vesicles : int, optional
        Vesicles to place (default scales with the image area).
    microlite_fraction : float
        Area fraction of the groundmass covered by microlites (``groundmass="microlite"``).
    probe_fwhm_um : float
        Full width at half maximum of the Gaussian probe blur (um).
    drift : float
        Largest relative change of brightness across the field (beam-current drift).
    groundmass : {"microlite", "glass"}
        A glass with a mat of plagioclase, pyroxene and oxide microlites (default), or smooth
        glass with faint schlieren and no microlite mat.
    glass_grey : float, optional
        Grey of the glass (fraction of full scale). Default 0.42; 0.62 (an Fe-rich basaltic
        glass, as bright as Fo83 olivine) with ``faint_rims``; 0.33 (a dacitic glass inside
        plagioclase's range) with ``glass_zoned_laths``. A crystal not drawn for those two
        options has its zoning shifted when its core would lie within 0.03 of the glass.
    glass_texture : float
        1-sigma amplitude (fraction of full scale) of a fine speckle of ~1.5 um quench
        crystallites in the glass: a change of texture at a crystal's edge (default 0: none).
    vesicle_style : {"auto", "disc", "real"}
        ``"disc"``: near-black discs with a bright crescent; ``"real"``: a dark interior, the
        bright floor of the cavity seen through the section (a ramp over every grey level),
        a polished wall and a bright halo one or two pixels wide outside the rim.
        ``"auto"``: real in a glass groundmass, disc otherwise.
    vesicle_contact : float
        Fraction of the vesicles placed against a crystal (the crystal loses the pixels the
        disc covers, at most about a pixel deep).
    epoxy_fraction : float
        Area fraction of black mounting epoxy (grey 0-0.03), in smooth regions a few hundred
        micrometres across that cut the crystals they cover.
    plucked_holes : float
        Plucked holes (near-black, 2-12 um radius, irregular) per square millimetre, each in
        the groundmass or wholly inside a crystal (where it keeps the crystal's label, as an
        inclusion does).
    faint_rims : float
        Fraction of olivine and clinopyroxene crystals whose Fe-rich rim zone has the glass's
        grey within 0.5-4 DN (8 bits): the boundary shows only as that faint step, a thin dark
        line just outside the crystal, a thin bright line on its outermost pixel, the facet's
        straight edge or the glass's texture (``glass_texture``).
    glass_zoned_laths : float
        Fraction of plagioclase crystals zoned across the glass's grey: a rim darker than the
        glass over a brighter core, an outer zone at the glass grey over a darker core, or
        both (see :func:`rim_at_glass_zoning`).
    thin_rims : float
        Fraction of crystals (not drawn for the two options above) whose zoning is a real
        rim zone one to two pixels wide over an unzoned core, 0.03-0.07 of full scale
        brighter or darker, with a sharp step (``sqrt_dt_um`` a quarter pixel): what an edge
        halo must not be taken for (truth column ``thin_rim``).
    edge_halo : float
        Amplitude (fraction of full scale) of the bright edge halo on the outermost one or two
        pixels of every crystal at its free faces (0.5-1 x this per crystal); the halo lies
        inside the true outline. Real images: about 0.25-0.5.
    crack_contacts : float
        Fraction of the grain contacts between touching crystals drawn as an epoxy-filled crack
        (grey 0.04-0.14, two pixels wide at 1 um/px or finer) instead of the thin seam.
    needles : float
        Area fraction of the field covered by needle microlites and microlite clusters
        (sprays and clumps up to ~70 um across), which are groundmass, not crystals.
    scan_lines : int
        Number of bright horizontal scan-line or charging bands (1-4 rows, +3-18 % of full
        scale), with a 0.3 % gain jitter per row.
    data_bar : bool
        Burn the instrument's data bar into the bottom rows (about 6 % of the height):
        crystals and vesicles under it are cut from the truth.
    jpeg_quality : int, optional
        Compress the image as a baseline JPEG of this quality (1-100) would: 8 x 8 block
        artefacts and lost fine detail (default: none).

    Returns
    -------
    SyntheticSample
    """
    if bit_depth not in (8, 16):
        raise ValueError("bit_depth must be 8 or 16")
    if groundmass not in ("microlite", "glass"):
        raise ValueError("groundmass must be 'microlite' or 'glass'")
    if vesicle_style not in ("auto", "disc", "real"):
        raise ValueError("vesicle_style must be 'auto', 'disc' or 'real'")
    if glass_grey is None:
        if faint_rims > 0 and glass_zoned_laths > 0:
            raise ValueError(
                "faint_rims needs a bright glass (olivine rims, about 0.62) and "
                "glass_zoned_laths a dark one (inside plagioclase's 0.28-0.37): give "
                "glass_grey, or use one of the two options"
            )
        glass_grey = 0.62 if faint_rims > 0 else 0.33 if glass_zoned_laths > 0 else GREY["glass"]
    glass = float(glass_grey)
    if vesicle_style == "auto":
        vesicle_style = "real" if groundmass == "glass" else "disc"
    rng = np.random.default_rng(seed)
    H, W = int(shape[0]), int(shape[1])
    px = float(pixel_size_um)
    full_scale = 255.0 if bit_depth == 8 else 65535.0
    if groundmass == "glass" or glass_texture > 0:
        canvas = glass_canvas((H, W), glass, px, feat.stream(seed, "glass"), glass_texture)
    else:
        canvas = np.full((H, W), glass, dtype=np.float64)

    # --- groundmass microlites (drawn first; crystals and vesicles cover them). A glass
    # groundmass draws them on a scratch canvas, so that the crystals stay the same.
    area_um2 = H * W * px * px
    n_plag = int(microlite_fraction * 0.6 * area_um2 / (2.5 * 15.0))
    n_px = int(microlite_fraction * 0.25 * area_um2 / 12.0)
    n_ox = int(microlite_fraction * 0.15 * area_um2 / 9.0)
    mat = canvas if groundmass == "microlite" else np.empty_like(canvas)
    _draw_shapes(
        mat,
        rng,
        n_plag,
        lambda: _lath(rng, rng.uniform(8, 22) / px, rng.uniform(1.5, 3.5) / px),
        GREY["plagioclase_microlite"],
    )
    _draw_shapes(
        mat,
        rng,
        n_px,
        lambda: _lath(rng, rng.uniform(3, 6) / px, rng.uniform(2, 4) / px),
        GREY["pyroxene_microlite"],
    )
    _draw_shapes(
        mat,
        rng,
        n_ox,
        lambda: _lath(rng, rng.uniform(2, 4) / px, rng.uniform(2, 4) / px),
        GREY["oxide"],
    )
    del mat
    needle_mask = None
    if needles > 0:
        needle_mask = feat.draw_needles(
            canvas,
            px,
            needles,
            (GREY["plagioclase_microlite"], GREY["pyroxene_microlite"]),
            feat.stream(seed, "needles"),
        )

    # --- place phenocrysts
    rng_z = feat.stream(seed, "zoning")
    rng_t = feat.stream(seed, "thin")
    labels = np.zeros((H, W), dtype=np.int32)
    occupied = np.zeros((H, W), dtype=bool)
    gap = max(1, int(round(8.0 / px)))
    crystals = []  # (label, phase, zoning, rr, cc, values, cracked, n_incl)
    lo, hi = size_um
    hi = min(hi, 0.6 * min(H, W) * px)
    lo = min(lo, 0.8 * hi)
    weights = np.array([_PHASE_WEIGHTS.get(p, 1.0) for p in phases])
    weights = weights / weights.sum()
    next_label = 1
    attempts = 0
    while len(crystals) < n_crystals and attempts < 60 * n_crystals:
        attempts += 1
        phase = str(rng.choice(phases, p=weights))
        length = rng.uniform(lo, hi) / px
        verts = _crystal_polygon(phase, length, rng)
        touching = bool(crystals) and rng.random() < touching_fraction
        if touching:
            host = crystals[int(rng.integers(len(crystals)))]
            hc = np.array([host["rr"].mean(), host["cc"].mean()])
            ang = rng.uniform(0, 2 * np.pi)
            direction = np.array([np.sin(ang), np.cos(ang)])
            ext_h = np.max(np.abs((np.stack([host["rr"], host["cc"]], 1) - hc) @ direction))
            ext_n = np.max(np.abs(verts @ direction))
            centre = hc + direction * (ext_h + ext_n) * rng.uniform(0.8, 0.9)
        else:
            centre = rng.uniform([0, 0], [H, W])
        v = verts + centre
        r0, c0 = np.floor(v.min(0)).astype(int) - 2
        r1, c1 = np.ceil(v.max(0)).astype(int) + 3
        local = np.zeros((r1 - r0, c1 - c0), dtype=bool)
        rr, cc = polygon(v[:, 0] - r0, v[:, 1] - c0, shape=local.shape)
        local[rr, cc] = True
        rr_g, cc_g = rr + r0, cc + c0
        inside = (rr_g >= 0) & (rr_g < H) & (cc_g >= 0) & (cc_g < W)
        if inside.sum() < 0.3 * rr.size or inside.sum() * px * px < 1500:
            continue
        rr_l, cc_l = rr[inside], cc[inside]
        rr_g, cc_g = rr_g[inside], cc_g[inside]
        occ = occupied[rr_g, cc_g]
        if touching:
            # must overlap its host a little and nothing else
            host_hit = labels[rr_g, cc_g] == host["label"]
            other = occ & ~host_hit
            frac = host_hit.mean()
            if other.any() or not (0.01 < frac < 0.2):
                continue
            # host must keep a good part of itself
            if host_hit.sum() > 0.3 * host["rr"].size:
                continue
        else:
            if occ.any():  # cheap test first: the crystal itself overlaps another
                continue
            grown = ndi.binary_dilation(local, iterations=gap)
            gr, gc = np.nonzero(grown)
            gr, gc = gr + r0, gc + c0
            ok = (gr >= 0) & (gr < H) & (gc >= 0) & (gc < W)
            if occupied[gr[ok], gc[ok]].any():
                continue
        # distance to this crystal's own boundary, on its full polygon (also beyond the edge)
        dist_um = ndi.distance_transform_edt(local) * px
        zt = str(rng.choice(zoning_types))
        depth = float(dist_um.max())
        z = random_zoning(zt, phase, depth, rng)
        rim_at_glass = False
        share = glass_zoned_laths if phase == "plagioclase" else faint_rims
        if share > 0 and rng_z.random() < share:
            special = rim_at_glass_zoning(phase, depth, glass, rng_z)
            if special is not None:
                z, rim_at_glass = special, True
        thin = False
        if not rim_at_glass and thin_rims > 0 and rng_t.random() < thin_rims:
            z, thin = _thin_rim_zoning(phase, z.core_grey, px, rng_t), True
        if not rim_at_glass:
            z = _keep_contrast(z, phase, glass)
        values = z.grey(dist_um[rr_l, cc_l])
        lab = next_label
        next_label += 1
        labels[rr_g, cc_g] = lab
        occupied[rr_g, cc_g] = True
        canvas[rr_g, cc_g] = values
        if touching:  # the newcomer overlaps its host: the host loses those pixels
            host["rr"], host["cc"] = np.nonzero(labels == host["label"])
        crystals.append(
            {
                "label": lab,
                "phase": phase,
                "zoning": z,
                "rr": rr_g,
                "cc": cc_g,
                "depth": depth,
                "touching_host": host["label"] if touching else 0,
                "cracked": False,
                "n_incl": 0,
                "local": (local, dist_um, r0, c0),
                "rim_at_glass": rim_at_glass,
                "rim_cue": "",
                "thin_rim": thin,
            }
        )

    # --- inclusions and cracks, inside their crystal (they keep its label)
    for cr in crystals:
        local, dist_um, r0, c0 = cr["local"]
        lab = cr["label"]
        if rng.random() < inclusion_fraction:
            n_incl = int(rng.integers(1, 4))
            deep = np.argwhere(dist_um > 12.0)
            for _ in range(n_incl):
                if deep.size == 0:
                    break
                r, c = deep[int(rng.integers(len(deep)))] + [r0, c0]
                rad = rng.uniform(2.5, 6.0) / px
                dr, dc = disk((r, c), rad, shape=(H, W))
                inside = labels[dr, dc] == lab
                val = glass if rng.random() < 0.7 else GREY["oxide"]
                canvas[dr[inside], dc[inside]] = val
                cr["n_incl"] += 1
        p_crack = crack_fraction if cr["phase"] == "olivine" else 0.5 * crack_fraction
        if rng.random() < p_crack:
            n_cracks = int(rng.integers(1, 3))
            for _ in range(n_cracks):
                # a straight crack across the crystal, through a random interior point
                k = int(rng.integers(cr["rr"].size))
                pr, pc = cr["rr"][k], cr["cc"][k]
                ang = rng.uniform(0, np.pi)
                t = np.arange(-400, 400) / max(px, 0.25) * 0.5
                lr = np.round(pr + t * np.sin(ang)).astype(int)
                lc = np.round(pc + t * np.cos(ang)).astype(int)
                ok = (lr >= 0) & (lr < H) & (lc >= 0) & (lc < W)
                lr, lc = lr[ok], lc[ok]
                on = labels[lr, lc] == lab
                mine = np.zeros((H, W), dtype=bool)
                mine[lr[on], lc[on]] = True
                if px < 1.0:  # cracks are ~1-1.5 um wide
                    mine = ndi.binary_dilation(mine, iterations=max(1, int(0.5 / px)))
                mine &= labels == lab
                canvas[mine] = GREY["crack"]
                cr["cracked"] = True

    # --- grain boundaries between touching crystals: a thin darker seam, or a crack
    seam = np.zeros((H, W), dtype=bool)
    crack_pairs: set[tuple[int, int]] = set()
    crack_seam = np.zeros((H, W), dtype=np.float64) if crack_contacts > 0 else None
    pair_keys = []
    for axis in (0, 1):
        a = labels
        b = np.roll(labels, 1, axis=axis)
        diff = (a != b) & (a > 0) & (b > 0)
        if axis == 0:
            diff[0, :] = False
        else:
            diff[:, 0] = False
        seam |= diff
        if crack_seam is not None:
            pair_keys.append((axis, diff, np.minimum(a, b), np.maximum(a, b)))
    canvas[seam] = GREY["grain_boundary"]
    if crack_seam is not None:
        rng_c = feat.stream(seed, "contacts")
        n = int(labels.max()) + 1
        pairs = np.unique(np.concatenate([(lo_ * n + hi_)[d] for _, d, lo_, hi_ in pair_keys]))
        grey_of_pair = {}
        for key in pairs.tolist():
            if rng_c.random() < crack_contacts:
                grey_of_pair[key] = rng_c.uniform(0.04, 0.14)
                crack_pairs.add(divmod(key, n))
        keys = np.array(sorted(grey_of_pair), dtype=np.int64)
        greys = np.array([grey_of_pair[k] for k in keys.tolist()])
        for axis, diff, lo_, hi_ in pair_keys:
            if not keys.size:
                break
            at = np.flatnonzero(diff)
            key = (lo_.ravel()[at] * n + hi_.ravel()[at]).astype(np.int64)
            i = np.minimum(np.searchsorted(keys, key), keys.size - 1)
            crack = keys[i] == key
            at, g = at[crack], greys[i[crack]]
            canvas.ravel()[at] = g
            if px <= 1.0:  # the crack's other side: two pixels wide
                step = W if axis == 0 else 1
                canvas.ravel()[at - step] = g

    # --- vesicles in the groundmass
    if n_vesicles is None:
        n_vesicles = max(2, int(round(area_um2 / 1.2e5)))
    n_against = int(round(vesicle_contact * n_vesicles))
    rng_v = feat.stream(seed, "vesicles")
    ves_mask = np.zeros((H, W), dtype=bool)
    crystal_zone = ndi.binary_dilation(labels > 0, iterations=max(1, int(round(5.0 / px))))
    placed, tries = 0, 0
    while placed < n_vesicles - n_against and tries < 50 * n_vesicles:
        tries += 1
        rad = rng.uniform(10.0, 45.0) / px
        c = rng.uniform([0, 0], [H, W])
        dr, dc = disk(tuple(c), rad, shape=(H, W))
        if dr.size == 0 or crystal_zone[dr, dc].any() or ves_mask[dr, dc].any():
            continue
        phi0 = rng.uniform(-np.pi, np.pi)
        placed += 1
        if vesicle_style == "real":
            inside, _, sl = feat.render_vesicle(canvas, c, rad, glass, px, rng_v)
            ves_mask[sl] |= inside
            continue
        canvas[dr, dc] = GREY["epoxy"]
        ves_mask[dr, dc] = True
        # polished wall: a bright crescent on one side of the rim
        rr_, cc_ = dr - c[0], dc - c[1]
        rho = np.hypot(rr_, cc_)
        phi = np.arctan2(rr_, cc_)
        ring = (rho > rad - max(1.5, 2.0 / px)) & (np.cos(phi - phi0) > 0.5)
        canvas[dr[ring], dc[ring]] = GREY["vesicle_wall"]
    against_vesicle: set[int] = set()
    if n_against > 0 and labels.any():
        outside = ndi.distance_transform_edt(labels == 0)
        for _ in range(50 * n_against):
            if len(against_vesicle) >= n_against:
                break
            rad = rng_v.uniform(10.0, 35.0) / px
            cand = np.flatnonzero(np.abs(outside.ravel() - (rad - 0.75)) < 0.75)
            if cand.size == 0:
                continue
            c = np.array(np.unravel_index(cand[int(rng_v.integers(cand.size))], (H, W)), float)
            dr, dc = disk(tuple(c), rad + 2, shape=(H, W))
            if ves_mask[dr, dc].any() or dr.size < 0.6 * np.pi * (rad + 2) ** 2:
                continue
            hit = labels[dr, dc]
            hit = hit[hit > 0]
            if hit.size == 0 or np.unique(hit).size > 1:  # against one crystal only
                continue
            inside, _, sl = (
                feat.render_vesicle(canvas, c, rad, glass, px, rng_v)
                if vesicle_style == "real"
                else _disc_vesicle(canvas, c, rad, px, rng_v)
            )
            ves_mask[sl] |= inside
            labels[sl][inside] = 0
            against_vesicle.add(int(hit[0]))

    # --- black epoxy regions and plucked holes
    epoxy = feat.epoxy_regions((H, W), px, epoxy_fraction, feat.stream(seed, "epoxy"))
    cut_by_epoxy = set(np.unique(labels[epoxy]).tolist()) - {0}
    if epoxy.any():
        rng_e = feat.stream(seed, "epoxy")
        canvas[epoxy] = rng_e.uniform(*feat.EPOXY_GREY) + 0.004 * rng_e.random(int(epoxy.sum()))
        labels[epoxy] = 0
        ves_mask &= ~epoxy
        if needle_mask is not None:
            needle_mask &= ~epoxy
    n_holes = int(round(plucked_holes * area_um2 / 1e6))
    if n_holes > 0:
        rng_h = feat.stream(seed, "holes")
        margin = max(2, int(round(3.0 / px)))
        free = (labels == 0) & ~ves_mask & ~epoxy
        for _ in range(20 * n_holes):
            if n_holes == 0:
                break
            rad = rng_h.uniform(2.0, 12.0) / px
            c = rng_h.uniform([0, 0], [H, W])
            hr, hc = polygon(*feat.hole_polygon(c, rad, rng_h).T, shape=(H, W))
            br, bc = disk(tuple(c), 1.4 * rad + margin, shape=(H, W))
            if hr.size < 3 or br.size < 0.9 * np.pi * (1.4 * rad + margin) ** 2:
                continue
            under = labels[br, bc]
            if not ((under == under[0]).all() and (under[0] > 0 or free[br, bc].all())):
                continue
            canvas[hr, hc] = rng_h.uniform(*feat.EPOXY_GREY)
            epoxy[hr, hc] = True
            n_holes -= 1

    # --- faint rims: a thin dark line just outside, or a thin bright line on the outermost
    # pixel, for some of the crystals whose rim has the glass's grey
    rng_z2 = feat.stream(seed, "halo")
    # (every label ever placed: epoxy or a vesicle may have erased the last ones)
    cue_of = np.zeros(next_label, dtype=np.int8)  # 1 dark line, 2 bright line
    for cr in crystals:
        if cr["rim_at_glass"]:
            cr["rim_cue"] = str(rng_z2.choice(["step", "dark_line", "bright_line"]))
            cue_of[cr["label"]] = {"step": 0, "dark_line": 1, "bright_line": 2}[cr["rim_cue"]]
    if cue_of.any():
        first, _ = feat.halo_rings(labels)
        bright = first & (cue_of[labels] == 2)
        canvas[bright] += rng_z2.uniform(0.03, 0.06)
        dark_ids = np.where(cue_of[labels] == 1, labels, 0)
        line = (labels == 0) & (ndi.maximum_filter(dark_ids, size=3) > 0)
        canvas[line] -= rng_z2.uniform(0.03, 0.08)

    # --- bright edge halos at the crystals' free faces
    halo_mask, halo_w, halo_amp = None, None, None
    if edge_halo > 0:
        halo_mask, halo_w, halo_amp = feat.add_edge_halos(
            canvas, labels, edge_halo, feat.stream(seed, "halo"), next_label
        )

    # --- probe blur, drift, noise, quantisation
    sigma_px = probe_fwhm_um / 2.355 / px
    blurred = ndi.gaussian_filter(canvas, sigma_px) if sigma_px > 0.05 else canvas
    clean = blurred * full_scale
    yy = np.linspace(-1, 1, H)[:, None]
    xx = np.linspace(-1, 1, W)[None, :]
    gy, gx, q = rng.uniform(-1, 1, size=3)
    field_ = gy * yy + gx * xx + 0.5 * q * (xx**2 + yy**2 - 2 / 3)
    field_ = 1 + drift * field_ / max(np.abs(field_).max(), 1e-9)
    signal = blurred * field_
    if scan_lines > 0:
        feat.add_scan_lines(signal, scan_lines, feat.stream(seed, "scan"))
    noisy = signal + rng.normal(0.0, noise, size=(H, W))
    bar_rows = 0
    if data_bar:
        bar = feat.data_bar((H, W), feat.stream(seed, "bar"))
        bar_rows = bar.shape[0]
        noisy[H - bar_rows :] = bar
        labels[H - bar_rows :] = 0
        ves_mask[H - bar_rows :] = False
        epoxy[H - bar_rows :] = False
        if needle_mask is not None:
            needle_mask[H - bar_rows :] = False
        if halo_mask is not None:
            halo_mask[H - bar_rows :] = False
    dn = noisy * full_scale
    if jpeg_quality is not None:
        dn = feat.jpeg_like(np.clip(dn, 0, full_scale), jpeg_quality, full_scale)
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    image = np.clip(np.round(dn), 0, full_scale).astype(dtype)

    # --- truth, relabelled 1..N over crystals that remain visible
    rows, zonings = [], {}
    new_labels = np.zeros_like(labels)
    min_visible = max(50, int(400.0 / (px * px)))
    new_id = 0
    lab_ids = np.arange(max(int(labels.max()) + 1, next_label))  # (erased labels too)
    counts = np.bincount(labels.ravel(), minlength=lab_ids.size)
    mapping = np.zeros(lab_ids.size, dtype=np.int32)
    for cr in crystals:
        if counts[cr["label"]] < min_visible:
            continue
        new_id += 1
        mapping[cr["label"]] = new_id
    new_labels = mapping[labels]
    border = np.zeros(new_id + 1, dtype=bool)
    edges = [new_labels[0], new_labels[-1], new_labels[:, 0], new_labels[:, -1]]
    if 0 < bar_rows < H:
        edges.append(new_labels[H - bar_rows - 1])
    for edge in edges:
        border[np.unique(edge)] = True
    touching_ids = set()
    for axis in (0, 1):
        a = np.moveaxis(new_labels, axis, 0)
        u, v = a[1:], a[:-1]
        m = (u != v) & (u > 0) & (v > 0)
        touching_ids.update(u[m].tolist())
        touching_ids.update(v[m].tolist())
    crack_ids = {int(mapping[i]) for pair in crack_pairs for i in pair}
    for cr in crystals:
        nid = int(mapping[cr["label"]])
        if nid == 0:
            continue
        z = cr["zoning"]
        zonings[nid] = z
        row = _truth_row(nid, cr["phase"], z, full_scale, "grey")
        mask = new_labels == nid
        rr, cc = np.nonzero(mask)
        row.update(
            area_um2=float(mask.sum() * px * px),
            touches_border=bool(border[nid]),
            touching=nid in touching_ids,
            cracked=bool(cr["cracked"]),
            n_inclusions=int(cr["n_incl"]),
            centroid_row=float(rr.mean()),
            centroid_col=float(cc.mean()),
            depth_um=float(cr["depth"]),
            rim_at_glass=bool(cr["rim_at_glass"]),
            rim_cue=cr["rim_cue"],
            thin_rim=bool(cr["thin_rim"]),
            halo_px=int(halo_w[cr["label"]]) if halo_w is not None else 0,
            halo_dn=float(halo_amp[cr["label"]] * full_scale) if halo_amp is not None else 0.0,
            crack_contact=nid in crack_ids and nid in touching_ids,
            vesicle_contact=cr["label"] in against_vesicle,
            cut_by_epoxy=cr["label"] in cut_by_epoxy,
        )
        rows.append(row)
    truth = pd.DataFrame(rows)
    if needle_mask is not None:  # what crystals and vesicles cover is not a needle
        needle_mask &= (new_labels == 0) & ~ves_mask
    return SyntheticSample(
        image=image,
        labels=new_labels.astype(np.int32),
        truth=truth,
        pixel_size_um=px,
        clean=clean,
        noise_dn=noise * full_scale,
        zonings=zonings,
        full_scale=full_scale,
        vesicles=ves_mask,
        glass_grey=glass,
        epoxy=epoxy,
        halo=halo_mask,
        needles=needle_mask,
        data_bar_rows=bar_rows,
    )


def _disc_vesicle(canvas, centre, radius, px, rng) -> tuple:
    """A near-black disc with a bright crescent (``vesicle_style="disc"``) on its box."""
    H, W = canvas.shape
    m = int(np.ceil(radius)) + 1
    r0, r1 = max(int(centre[0]) - m, 0), min(int(centre[0]) + m + 1, H)
    c0, c1 = max(int(centre[1]) - m, 0), min(int(centre[1]) + m + 1, W)
    sl = (slice(r0, r1), slice(c0, c1))
    yy, xx = np.mgrid[r0:r1, c0:c1]
    rho = np.hypot(yy - centre[0], xx - centre[1])
    phi = np.arctan2(yy - centre[0], xx - centre[1])
    inside = rho < radius
    ring = inside & (rho > radius - max(1.5, 2.0 / px))
    ring &= np.cos(phi - rng.uniform(-np.pi, np.pi)) > 0.5
    box = canvas[sl]
    box[inside] = GREY["epoxy"]
    box[ring] = GREY["vesicle_wall"]
    return inside, ring, sl


def _inner_distance(mask_of: np.ndarray, sl: tuple[slice, slice], shape) -> tuple:
    """Distance transform of a boolean region on its bounding box grown by one pixel (equal to
    the whole image's transform there) and the box's origin."""
    r0, r1 = max(sl[0].start - 1, 0), min(sl[0].stop + 1, shape[0])
    c0, c1 = max(sl[1].start - 1, 0), min(sl[1].stop + 1, shape[1])
    return ndi.distance_transform_edt(mask_of[r0:r1, c0:c1]), r0, c0


def strokes_from_truth(sample: SyntheticSample, per_phase: bool = True) -> np.ndarray:
    """A few scribble strokes drawn from a synthetic section's truth, as a person paints them.

    One short horizontal line through the innermost point of the biggest crystal of each
    phase (class 3, 4, 5 for the phases in alphabetical order, or 3 for every crystal with
    ``per_phase=False``), four 21-pixel lines in the groundmass at least 8 pixels from any
    crystal and vesicle (class 1), and one line across each of the first two vesicles
    (class 2): a few hundred painted pixels, for :func:`napari_zonation.scribble.
    train_scribbles`, its tests and benchmark.

    Parameters
    ----------
    sample : SyntheticSample
        From :func:`make_thin_section`.
    per_phase : bool
        One stroke class per phase (default) or one class for all crystals.

    Returns
    -------
    numpy.ndarray
        int32 strokes of the image's shape, 0 where nothing is painted.
    """
    lab, truth = sample.labels, sample.truth
    scr = np.zeros(lab.shape, np.int32)
    phases = sorted(truth["phase"].unique())
    objects = ndi.find_objects(lab)
    picks = truth.sort_values("area_um2", ascending=False).drop_duplicates("phase")
    for _, row in picks.iterrows():
        label = int(row["label"])
        inner, r0, c0 = _inner_distance(lab == label, objects[label - 1], lab.shape)
        r, c = np.unravel_index(np.argmax(inner), inner.shape)
        half = int(0.5 * inner[r, c])
        cc = np.arange(c - half, c + half + 1)
        cc = cc[(cc >= 0) & (cc < inner.shape[1])]
        scr[r0 + r, c0 + cc[inner[r, cc] > 3]] = 3 + phases.index(row["phase"]) if per_phase else 3
    vesicle = (lab == 0) & (sample.clean < 0.15 * 255)
    gm = (ndi.distance_transform_edt(lab == 0) > 8) & ~ndi.binary_dilation(vesicle, iterations=8)
    rr, cc = np.nonzero(gm)
    for i in np.random.default_rng(0).choice(rr.size, 4, replace=False):
        seg = np.arange(cc[i] - 10, cc[i] + 11)
        seg = seg[(seg >= 0) & (seg < lab.shape[1])]
        scr[rr[i], seg[gm[rr[i], seg]]] = 1
    vl, _ = ndi.label(vesicle)
    for v, sl in enumerate(ndi.find_objects(vl)[:2], start=1):
        d, r0, c0 = _inner_distance(vl == v, sl, lab.shape)
        r, c = np.unravel_index(np.argmax(d), d.shape)
        h = int(max(1, d[r, c] - 2))
        scr[r0 + r, max(0, c0 + c - h) : c0 + c + h + 1] = 2
    return scr
