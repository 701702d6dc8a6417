"""Thin sections whose crystals carry randomised zoning shapes, for the zoning benchmark.

``make_thin_section`` gives the geometry (crystals, touching glomerocrysts, cracks,
inclusions, vesicles, groundmass, probe blur, drift, noise, 8-bit quantisation) and its true
labels; :func:`repaint` then replaces every crystal's zoning by a shape drawn from the
randomised families of :mod:`napari_zonation.synthetic_profiles`, laid out in one of two
geometries:

- ``distance``: the value depends on the distance to the crystal's own outline (relative to
  its deepest point), as the project's generator does;
- ``scaled``: the value depends on the relative radius of the crystal's outline scaled about
  its centroid (concentric copies of the outline, as drawing programs and other generators
  make zoned crystals), so that bands and slopes are thinner along the short axis than along
  the long one and a shell profile (distance to the rim) sees them distorted.

The crystal's cracks and inclusions are kept (what departs from the shell median of the old
canvas by more than 0.025 of full scale), the new canvas is blurred with the same probe and
the image is re-quantised; the noise, drift and background are those of the original image.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from napari_zonation.synthetic import GREY_MODEL, SyntheticSample, make_thin_section
from napari_zonation.synthetic_profiles import MIN_POINTS, random_shape


def _grey_range(phase: str) -> tuple[float, float]:
    _, a, b, (cmin, cmax) = GREY_MODEL[phase]
    lo, hi = sorted((a + b * cmin, a + b * cmax))
    return lo, hi


def _relative_depth(mask: np.ndarray, geometry: str, px: float) -> tuple[np.ndarray, float]:
    """Relative depth (0 at the rim, 1 at the deepest point / the centroid) of the mask's
    pixels, and the crystal's depth in um."""
    dist = ndi.distance_transform_edt(mask)
    depth_px = float(dist.max())
    if geometry == "distance":
        return dist[mask] / depth_px, depth_px * px
    rr, cc = np.nonzero(mask)
    r0, c0 = rr.mean(), cc.mean()
    edge = mask & ~ndi.binary_erosion(mask)
    er, ec = np.nonzero(edge)
    ang_e = np.arctan2(er - r0, ec - c0)
    rad_e = np.hypot(er - r0, ec - c0) + 0.5
    nb = 720
    bins = ((ang_e + np.pi) / (2 * np.pi) * nb).astype(int) % nb
    rmax = np.zeros(nb)
    np.maximum.at(rmax, bins, rad_e)
    have = rmax > 0
    idx = np.arange(nb)
    rmax = np.interp(idx, idx[have], rmax[have], period=nb)
    ang = np.arctan2(rr - r0, cc - c0)
    b = ((ang + np.pi) / (2 * np.pi) * nb).astype(int) % nb
    rho = np.clip(np.hypot(rr - r0, cc - c0) / rmax[b], 0.0, 1.0)
    return 1.0 - rho, depth_px * px


def repaint(
    sample: SyntheticSample,
    families: tuple[str, ...],
    seed: int,
    scaled_fraction: float = 0.5,
    span: tuple[float, float] = (0.03, 0.08),
    feature: tuple[float, float] = (0.025, 0.05),
) -> tuple[np.ndarray, pd.DataFrame]:
    """New image and truth: each crystal of ``sample`` repainted with a random family.

    Returns the uint8/uint16 image and a truth table (``label``, ``phase``, ``family``,
    ``geometry``, ``zoning_type``, ``n_plateaus``, ``depth_um``, ``touches_border``,
    ``touching``).
    """
    rng = np.random.default_rng(seed)
    fs = sample.full_scale
    px = sample.pixel_size_um
    lab = sample.labels
    clean = sample.clean / fs
    canvas = clean.copy()
    rows = []
    objects = ndi.find_objects(lab)
    truth = sample.truth.set_index("label")
    for label, sl in enumerate(objects, start=1):
        if sl is None or label not in truth.index:
            continue
        t_row = truth.loc[label]
        phase = str(t_row["phase"])
        pad = 3
        r0, r1 = max(sl[0].start - pad, 0), min(sl[0].stop + pad, lab.shape[0])
        c0, c1 = max(sl[1].start - pad, 0), min(sl[1].stop + pad, lab.shape[1])
        box = (slice(r0, r1), slice(c0, c1))
        mask = lab[box] == label
        geometry = "scaled" if rng.random() < scaled_fraction else "distance"
        if bool(t_row["touches_border"]):
            geometry = "distance"  # the outline along the image edge is not a rim
        t, depth_um = _relative_depth(mask, geometry, px)
        # shapes drawn for a sampling of 2 px: the rim shell is blurred and dropped, and a
        # feature of one or two shells is not a zone a shell profile can see
        spacing = 2.0 * px
        fams = [f for f in families if MIN_POINTS.get(f, 12) <= depth_um / spacing]
        family = str(rng.choice(fams or ["flat"]))
        shape = random_shape(family, rng, depth_um, spacing)
        lo, hi = _grey_range(phase)
        fn0 = shape.fn(np.linspace(0.0, 1.0, 501))
        f_lo, f_hi = float(fn0.min()), float(fn0.max())
        width = max(f_hi - f_lo, 1e-9)
        # the whole zoning spans span[0]-span[1] of full scale and its smallest feature (a
        # multi-step's smallest jump) at least `feature` of full scale (1-2 pixel sigmas)
        s_abs = max(float(rng.uniform(*span)), float(rng.uniform(*feature)) * width / shape.feature)
        sign = rng.choice([-1.0, 1.0])
        scale = sign * s_abs / width
        # place the whole zoning inside the phase's grey range (or centred on it)
        z_lo = scale * (f_lo if sign > 0 else f_hi)
        z_hi = scale * (f_hi if sign > 0 else f_lo)
        base_lo, base_hi = lo - z_lo, hi - z_hi
        level = rng.uniform(min(base_lo, base_hi), max(base_lo, base_hi))
        new = level + scale * shape.fn(t)
        # keep cracks and inclusions: departures from the old canvas' shell median
        old = clean[box][mask]
        shells = np.round(ndi.distance_transform_edt(mask)[mask]).astype(int)
        med = np.zeros(shells.max() + 1)
        for k in np.unique(shells):
            med[k] = np.median(old[shells == k])
        defect = old - med[shells]
        keep = np.abs(defect) > 0.025
        sub = canvas[box]
        sub[mask] = np.where(keep, old, new)
        canvas[box] = sub
        rim = float(level + scale * shape.fn(np.array([0.0]))[0])
        core = float(level + scale * shape.fn(np.array([1.0]))[0])
        zt = shape.zoning_type or ("rim_brighter" if rim > core else "rim_darker")
        rows.append(
            {
                "label": label,
                "phase": phase,
                "family": family,
                "geometry": geometry,
                "zoning_type": zt,
                "n_plateaus": shape.n_plateaus,
                "rim_value": rim * fs,
                "core_value": core * fs,
                "depth_um": depth_um,
                "touches_border": bool(t_row["touches_border"]),
                "touching": bool(t_row["touching"]),
            }
        )
    sigma_px = 1.2 / 2.355 / px
    crystals = ndi.binary_dilation(lab > 0, iterations=3)
    blurred = ndi.gaussian_filter(canvas, sigma_px)
    update = np.where(crystals, (blurred - clean) * fs, 0.0)
    image = sample.image.astype(float) + update
    image = np.clip(np.round(image), 0, fs).astype(sample.image.dtype)
    return image, pd.DataFrame(rows)


def make_scene(
    seed: int,
    families: tuple[str, ...],
    shape=(768, 768),
    n_crystals: int = 22,
    noise: float = 0.02,
    px: float = 1.0,
):
    """A thin section (``make_thin_section(seed=seed)``) repainted with random families
    (seeded by ``seed``); returns (image, true labels, truth table)."""
    s = make_thin_section(shape, n_crystals=n_crystals, noise=noise, seed=seed, pixel_size_um=px)
    image, truth = repaint(s, families, seed=10_000 + seed)
    return image, s.labels.astype(np.int32), truth
