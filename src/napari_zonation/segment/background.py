"""What is surely not crystal, found on its own: vesicles (round near-black holes, with the
bright floor seen through them and their polished walls) and epoxy (near-black regions of any
shape)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage import measure
from skimage.draw import disk as draw_disk

from .state import Levels


def near_black_blocks(
    smooth_c: np.ndarray,
    lv: Levels,
    fin_c: np.ndarray | None = None,
    min_solidity: float = 0.85,
) -> np.ndarray:
    """Blocks that are near-black holes: epoxy, plucked holes, vesicles and their dark rims.

    A connected part of the blocks below the near-black level ``lv.dark_thr`` (with the
    blocks less than one contrast ``lv.c`` above it that join it) is a hole when
    it reaches the image's own black (a block below ``lv.black_thr``, the darkest mode and its
    spread), is round (a disc or an arc of one, :func:`vesicle_discs`: a vesicle whose floor
    is not black) or is not solid (its holes filled, under ``min_solidity`` of its convex
    hull: a crescent of shading). Shapes are judged on parts of a 10 um disc or more. Any
    other part is the dark zone of a crystal (a plagioclase lath darker than the glass, solid
    and straight-sided), not a hole. Non-finite blocks are no hole here.
    """
    dark = smooth_c < lv.dark_thr
    if fin_c is not None:
        dark &= fin_c
    if not dark.any() or not np.isfinite(lv.black_thr) or lv.black_thr >= lv.dark_thr:
        return dark
    # the parts, with the blocks up to one contrast above the level (hysteresis): a zone
    # whose grey sits at the level is judged whole, not as the specks the noise cuts it into
    wide = smooth_c < lv.dark_thr + (lv.c if np.isfinite(lv.c) else 0.0)
    if fin_c is not None:
        wide &= fin_c
    parts, n = ndi.label(wide)
    black = np.zeros(n + 1, dtype=bool)
    black[np.unique(parts[dark & (smooth_c < lv.black_thr)])] = True
    black[0] = False
    # a part that is not a solid, straight-sided lath is a vesicle even when its floor,
    # seen through it, is not black: a disc, an arc of one, a crescent; a speck smaller than
    # a 10 um disc that never reaches black is a crystal's dark zone seen through the noise
    asked = np.zeros(n + 1, dtype=bool)
    asked[np.unique(parts[dark])] = True
    asked[0] = False
    rest = (asked & ~black)[parts]
    min_px = np.pi * (5.0 / lv.pc) ** 2
    if rest.any():
        discs = vesicle_discs(rest, min_px)
        black[np.unique(parts[rest & discs])] = True
        for region in measure.regionprops(np.where(rest, parts, 0)):
            if black[region.label] or region.area < min_px:
                continue
            filled = ndi.binary_fill_holes(region.image)
            hull = region.image_convex
            if filled.sum() < min_solidity * hull.sum():
                black[region.label] = True
        black[0] = False
    return dark & black[parts]


def vesicle_discs(
    dark: np.ndarray,
    min_area_px: float,
    min_roundness: float = 0.7,
    max_residual: float = 0.12,
    min_arc: float = 0.35,
) -> np.ndarray:
    """The vesicles of a near-black mask: each near-black part that is a disc or an arc of
    one, filled to its circle.

    A vesicle shows as a near-black disc whose inside may hold the bright floor of the cavity
    below the section and whose wall is bright on one side: its near-black part can be a
    crescent, whose outer edge is an arc of the vesicle's circle. For each part of ``dark`` of
    at least ``min_area_px`` pixels: a circle is fitted (least squares) to the part's pixels on
    its hull's outline (the outer arc), and when they lie within ``max_residual`` of its
    radius and span at least ``min_arc`` of a turn, the disc is the vesicle; otherwise, when
    the part's convex hull fills ``min_roundness`` of the circle of its largest diameter, the
    hull is (a hull filling nine tenths of that circle is taken as it is). Epoxy regions and
    plucked holes are irregular and stay as they are. Returns
    the mask of the vesicles.
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
    h, w = dark.shape
    for region in measure.regionprops(parts):
        hull = region.image_convex
        diameter = region.feret_diameter_max
        if diameter <= 0:
            continue
        r0, c0, r1, c1 = region.bbox
        roundness = hull.sum() / (np.pi * (0.5 * diameter + 0.5) ** 2)
        circle = (
            None if roundness >= 0.9 else _arc_circle(region.image, hull, max_residual, min_arc)
        )
        if circle is None:
            if roundness >= min_roundness:
                out[r0:r1, c0:c1] |= hull
            continue
        cy, cx, radius = circle
        if radius > 2.0 * diameter:
            continue
        rr, cc = draw_disk((cy + r0, cx + c0), radius, shape=(h, w))
        out[rr, cc] = True
    return out


def _arc_circle(part: np.ndarray, hull: np.ndarray, max_residual: float, min_arc: float):
    """The circle through the outer arc of a crescent-like part (its pixels on its hull's
    outline), as ``(row, col, radius)`` in the part's box; None when they are no arc."""
    rim = hull & ~ndi.binary_erosion(hull, border_value=0)
    rows, cols = np.nonzero(rim & part)
    if rows.size < 8:
        return None
    y, x = rows.astype(np.float64), cols.astype(np.float64)
    a = np.column_stack([2.0 * x, 2.0 * y, np.ones_like(x)])
    (cx, cy, c), *_ = np.linalg.lstsq(a, x * x + y * y, rcond=None)
    radius2 = c + cx * cx + cy * cy
    if not radius2 > 0:
        return None
    radius = float(np.sqrt(radius2))
    d = np.hypot(x - cx, y - cy)
    if np.sqrt(np.mean((d - radius) ** 2)) > max_residual * radius:
        return None
    angle = np.arctan2(y - cy, x - cx)
    turns = np.unique(np.floor((angle + np.pi) / (2 * np.pi) * 36)).size / 36.0
    if turns < min_arc:
        return None
    return cy, cx, radius


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


def data_bar_rows(src, shape: tuple[int, int], lo: float, span: float, dark: float) -> int:
    """Rows of an instrument's data bar burned into the bottom of the image (0: none).

    A data bar is a black band across the whole width at the bottom, with bright text and a
    scale bar on it: from the last row up, the rows whose median grey (normalised: ``lo`` and
    ``span``) is below ``dark``. It counts when it is at least 8 rows and at most 15 % of the
    image tall; the two rows above it (its bright top line) go with it.
    """
    h, w = shape
    k = min(h, max(8, int(0.15 * h)) + 2)
    step = max(1, w // 2048)
    window = np.asarray(src[h - k :, ::step]).astype(np.float64)
    with np.errstate(invalid="ignore"):
        # (np.median when there is no NaN: the same values, without nanmedian's row loop)
        rows = np.nanmedian(window, axis=1) if np.isnan(window).any() else np.median(window, axis=1)
        med = (rows - lo) / span
    black = med < dark
    if not black[-1]:
        return 0
    run = int(np.argmin(black[::-1])) if not black.all() else black.size
    if run < 8 or run > 0.15 * h:
        return 0
    return min(h, run + 2)
