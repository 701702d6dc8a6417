"""What is surely not crystal, found on its own: vesicles (round near-black holes, with the
bright floor seen through them and their polished walls) and epoxy (near-black regions of any
shape)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage import measure


def vesicle_discs(dark: np.ndarray, min_area_px: float, min_roundness: float = 0.7) -> np.ndarray:
    """The vesicles of a near-black mask: each round near-black part, filled to its convex hull.

    A vesicle shows as a near-black disc whose inside may hold the bright floor of the cavity
    below the section and whose wall is bright on one side: its near-black part can be a
    crescent, but the crescent's convex hull is the disc. A part of ``dark`` of at least
    ``min_area_px`` pixels is a vesicle when its hull fills ``min_roundness`` of the circle
    of its largest diameter (epoxy regions and plucked holes are irregular). Returns the mask
    of the vesicles' hulls.
    """
    out = np.zeros(dark.shape, dtype=bool)
    parts, n = ndi.label(dark)
    if n == 0:
        return out
    area = np.bincount(parts.ravel(), minlength=n + 1)
    big = np.flatnonzero(area >= max(min_area_px, 4.0))
    big = big[big > 0]
    if big.size == 0:
        return out
    keep = np.zeros(n + 1, dtype=bool)
    keep[big] = True
    parts = np.where(keep[parts], parts, 0)
    for region in measure.regionprops(parts):
        hull = region.image_convex
        diameter = region.feret_diameter_max
        if diameter <= 0:
            continue
        roundness = hull.sum() / (np.pi * (0.5 * diameter + 0.5) ** 2)
        if roundness >= min_roundness:
            r0, c0, r1, c1 = region.bbox
            out[r0:r1, c0:c1] |= hull
    return out


def vesicle_cores(
    cores: np.ndarray,
    dark: np.ndarray,
    n: int | None = None,
    reach_px: int = 1,
    min_roundness: float = 0.8,
    min_dark: float = 0.05,
) -> np.ndarray:
    """Which cores (index = core label) are the bright inside of a vesicle.

    The floor of a vesicle seen through the section, with the polished wall beside it, is a
    bright core that the vesicle's near-black part hugs: together they make a disc. A core
    is a vesicle's inside when the convex hull of it and the near-black parts within
    ``reach_px`` (on each axis; the wall's dim side may part them)
    fills ``min_roundness`` of the circle of its largest diameter and the near-black part is
    at least ``min_dark`` of the union (a crystal beside a vesicle makes a union that is not
    round).
    """
    n = int(cores.max()) if n is None else int(n)
    out = np.zeros(n + 1, dtype=bool)
    if not cores.any() or not dark.any():
        return out
    # the near-black parts grown by the reach; their groups, and the cores they overlap
    grown, _ = ndi.label(ndi.binary_dilation(dark, np.ones((2 * reach_px + 1,) * 2, bool)))
    dark_parts = np.where(dark, grown, 0)
    touch = (cores > 0) & (grown > 0)
    if not touch.any():
        return out
    pairs = np.unique(np.stack([cores[touch], grown[touch]], axis=1), axis=0)
    boxes = ndi.find_objects(cores)
    dark_boxes = ndi.find_objects(dark_parts)
    for core in np.unique(pairs[:, 0]):
        parts = pairs[pairs[:, 0] == core, 1]
        sl = [boxes[core - 1]] + [dark_boxes[p - 1] for p in parts]
        r0, r1 = min(s[0].start for s in sl), max(s[0].stop for s in sl)
        c0, c1 = min(s[1].start for s in sl), max(s[1].stop for s in sl)
        mine = cores[r0:r1, c0:c1] == core
        black = np.isin(dark_parts[r0:r1, c0:c1], parts)
        union = mine | black
        if black.sum() < min_dark * union.sum():
            continue
        region = measure.regionprops(union.astype(np.uint8))[0]
        diameter = region.feret_diameter_max
        if diameter > 0 and region.area_convex / (np.pi * (0.5 * diameter + 0.5) ** 2) >= (
            min_roundness
        ):
            out[core] = True
    return out
