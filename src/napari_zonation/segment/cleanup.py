"""Holes and trimming: enclosed holes filled by their crystal, outlines opened, pieces below
the size limit adopted by the crystal around them or dropped, and the final renumbering."""

from __future__ import annotations

import numpy as np

from .labelops import index_lut
from .morphology import gather_max, open_mask
from .runs import find_holes
from .state import Levels, Options


def open_labels(labels: np.ndarray, radius_px: float) -> np.ndarray:
    """The crystals' outline against the background opened (:func:`open_mask`) with a disc of
    ``radius_px``.

    What sticks out into the groundmass narrower than the disc's diameter goes; the image edge
    is not background (crystals cut by it keep their cut) and the contacts between touching
    crystals stay where they are (the opening is of the union of the crystals). A label with
    no pixel left (thinner than the disc everywhere) is kept as it was.
    """
    if not labels.any():
        return labels
    keep = open_mask(labels != 0, radius_px)
    gone = np.bincount(labels[keep], minlength=int(labels.max()) + 1) == 0
    gone[0] = False
    keep |= index_lut(gone, labels)
    return np.where(keep, labels, 0).astype(labels.dtype, copy=False)


def adopt_enclosed(
    labels: np.ndarray, area: np.ndarray, min_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """Join each piece below the size limit to the crystal that holds most of its outline.

    A piece smaller than a crystal, more than half of whose outline (side-neighbour edges to
    other labels or to the background) runs along one crystal of at least ``min_px`` pixels,
    is part of that crystal cut off around an inclusion or a crack at its edge: dropping it
    would leave a notch. Pieces mostly surrounded by groundmass are left to be dropped.
    ``labels`` is changed in place; returns it and the updated areas.
    """
    small = (area < min_px) & (area > 0)
    big = area >= min_px
    small[0] = big[0] = False
    if not small.any() or not big.any():
        return labels, area
    rows, cols = labels.shape
    flat = labels.ravel()
    in_small = index_lut(small, labels)
    idx = np.flatnonzero(in_small)  # pixels of small pieces only: few
    own = flat[idx]
    r, c = np.divmod(idx, cols)
    pieces, others = [], []
    for ok, step in ((c > 0, -1), (c < cols - 1, 1), (r > 0, -cols), (r < rows - 1, cols)):
        nb = flat[idx[ok] + step]
        edge = nb != own[ok]
        pieces.append(own[ok][edge])
        others.append(nb[edge])
    piece, other = np.concatenate(pieces), np.concatenate(others)
    outline = np.bincount(piece, minlength=area.size)
    sel = index_lut(big, other)
    pair = piece[sel].astype(np.int64) * area.size + other[sel]
    keys, counts = np.unique(pair, return_counts=True)
    p, q = np.divmod(keys, area.size)
    adopt = counts > 0.5 * outline[p]
    if not adopt.any():
        return labels, area
    target = np.arange(area.size, dtype=labels.dtype)
    target[p[adopt]] = q[adopt]
    labels[in_small] = index_lut(target, labels[in_small])
    area = area.copy()
    np.add.at(area, q[adopt], area[p[adopt]])
    area[p[adopt]] = 0
    return labels, area


def fill_label_holes(
    labels: np.ndarray,
    max_fraction: float,
    areas: np.ndarray | None = None,
    in_place: bool = False,
):
    """Give enclosed holes (inclusions, cracks) the label of the crystal around them.

    A hole is a connected part of the background that does not reach the image border; it is
    filled when it is at most ``max_fraction`` of the region it lies in (the connected part
    of crystals and holes around it), by the label on its rim (the largest, where several
    meet). With ``areas`` (pixels per label) ``(labels, areas)`` is returned, the areas with
    the filled holes added. With ``in_place``, int32 ``labels`` are filled in place (no copy).
    """
    found = find_holes(labels > 0)
    if found is None:
        return labels if areas is None else (labels, areas)
    at, hl, hole_area, region, _ = found
    hr, hc = np.divmod(at, labels.shape[1])
    fill = hole_area <= max_fraction * region
    sel = fill[hl]
    hr, hc, hl = hr[sel], hc[sel], hl[sel]
    # the crystal on the rim of each hole (any rim pixel tells)
    ring = gather_max(labels, hr, hc, 3)
    at = ring > 0
    owner = np.zeros(hole_area.size, dtype=np.int64)
    owner[hl[at]] = ring[at]
    out = labels if in_place and labels.dtype == np.int32 else labels.astype(np.int32)
    out[hr, hc] = owner[hl]
    if areas is None:
        return out
    n = max(int(out.max()) + 1, areas.size)
    grown = np.zeros(n, dtype=np.int64)
    grown[: areas.size] = areas
    grown += np.bincount(owner[hl], minlength=n)
    grown[0] = 0
    return out, grown


def final_labels(
    labels: np.ndarray,
    area: np.ndarray,
    smooth: np.ndarray,
    finite: np.ndarray | None,
    lv: Levels,
    opts: Options,
    *,
    min_area_um2: float,
) -> np.ndarray:
    """The last cleaning of the full-resolution labels, renumbered 1..n.

    Each crystal's outline is opened (``trim_um``, :func:`open_labels`); NaN pixels are no
    crystal; pieces below the size limit join the crystal that holds most of their outline
    (:func:`adopt_enclosed`), others are dropped; near-black labels that reach the image's
    own black (the filled interiors of vesicles) are dropped. ``area`` holds the pixels of
    each label.
    """
    px, dark_thr = lv.px, lv.dark_thr
    if opts.trim_um > 0:
        labels = open_labels(labels, opts.trim_um / px)
        area = np.bincount(labels.ravel(), minlength=area.size)
    if finite is not None and not finite.all():
        labels[~finite] = 0
        area = np.bincount(labels.ravel())
    min_px = min_area_um2 / (px * px)
    labels, area = adopt_enclosed(labels, area, min_px)
    keep = (area >= min_px) & (area > 0)
    keep[0] = False
    if lv.mode != "masked" and keep.any():
        # no crystal is near-black: such labels are the filled interiors of vesicles whose
        # bright polished walls passed as a core and were then trimmed by the edge refinement
        # (only labels with a pixel below the level can be below it on average: their
        # pixels' sums, in the same order as over the whole image)
        low = labels[(smooth < np.float64(dark_thr)) & (labels > 0)]
        if low.size:
            asked = np.zeros(area.size, dtype=bool)
            asked[low] = True
            sel = index_lut(asked, labels)
            grey = np.bincount(labels[sel], weights=smooth[sel], minlength=area.size)
            lit = ~asked | (grey >= dark_thr * area)
            if np.isfinite(lv.black_thr) and lv.black_thr < dark_thr:
                # a crystal's dark zone never reaches the image's own black; a vesicle does
                # (judged on pixels: the black level plus three sigmas of the pixel noise)
                level = lv.black_thr + 3.0 * (lv.noise or 0.0)
                black = labels[(smooth < np.float64(level)) & (labels > 0)]
                reached = np.zeros(area.size, dtype=bool)
                reached[black] = True
                lit |= ~reached
            keep &= lit
    # the kept labels, renumbered 1..n in order, in one look-up
    lut = (np.cumsum(keep) * keep).astype(np.int32)
    return index_lut(lut, labels)
