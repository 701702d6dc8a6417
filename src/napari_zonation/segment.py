"""Crystal segmentation of BSE images: image -> int32 crystal labels, and the crystal table.

Every length is in micrometres and converted with the pixel size, so a section imaged at
another pixel size gives the same crystals. The steps of :func:`segment_crystals`:

1. Input: a 2D image (numpy, or a dask/zarr-like array read by slicing) is read window by
   window as it is; element maps ``(channels, y, x)`` are combined in memory into their first
   principal component (robustly standardised channels, oriented like the first channel), RGB
   into grey. NaN pixels are never crystals. Grey is normalised robustly (0.1 and 99.9
   percentiles of a regular sample).
2. Coarse stage, on blocks of about ``work_um`` (3 um): block means, and the grey variance
   inside each block (texture: microlite-rich groundmass is rough, crystals are smooth).
3. Reference level from the histogram: the groundmass is the mode of the most textured half of
   the image (so it is found even when crystals cover most of it); a near-black dominant mode
   means the background was masked black (``background="auto"`` decides). Every such level
   (range, noise, reference, contrast, texture threshold) comes from regular samples of the
   whole image, so it is the same whether the image is segmented whole or in tiles.
4. Crystal cores: deviation from the reference beyond ``contrast`` (automatic: three widths
   of the groundmass peak, at least four noise sigmas) on the detection-smoothed image, bright
   and dark separately, not near-black (vesicles, epoxy); opened (microlites), closed and
   hole-filled (cracks, inclusions); kept when large enough, smooth enough (microlite clusters
   are textured) and not hugging a near-black disc (vesicle walls).
5. Touching crystals: the cores are cut by a watershed of their distance transform from its
   h-maxima; the pieces grow back to the edges by a gradient watershed against a background
   marker (groundmass-level or near-black blocks).
6. Full resolution: each crystal's edge is placed where the smoothed grey (``smooth_um``)
   crosses the midpoint between its rim grey and the reference (where a blurred step crosses
   the true edge); cracks that reach the edge are closed, stray microlite specks dropped.
7. Pieces are joined again when the grey just behind their contact agrees, their union is
   as convex as they are and their rims (the grey just inside their free faces) agree (a crack
   through one crystal, not a grain boundary between two: one crystal has one rim);
   within a round of joins, a piece accepted by two neighbours joins only one of them when
   their own pair was rejected or their rims differ (the other join is judged again on the
   joined pieces); holes (inclusions) are filled; the boundaries between the crystals that
   still touch are moved onto their grain boundary (within ``contact_um``: a marker watershed
   of the full-resolution image over its dark-line strength and gradient, from the rest of
   each crystal) and the pieces are judged once more (a cut that now runs along a crack
   joins); each crystal is opened with a disc of ``trim_um``: what sticks out of its outline
   narrower than the disc's diameter (an oxide or microlite speck at the rim, a bump of
   groundmass the blur joined to it) is not crystal; crystals under ``min_area_um2`` are
   dropped.
8. Large images (``tile_size``; automatic above 4096 x 4096): steps 2 and 4-7 run on
   overlapping tiles with the levels of step 3, and the labels are stitched by ownership
   (:mod:`napari_zonation.tiling`): no crystal is cut or counted twice at a seam.
9. Threads (``threads``; automatic: up to four): tiles are segmented several at a time; an
   image segmented whole runs its independent stages concurrently. The labels are the same
   for every thread count.

:func:`crystal_table` measures each crystal and guesses its phase from grey levels (a
heuristic, documented there).
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable

import edt
import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from skimage import measure, morphology, segmentation

from ._sortkeys import sortable_bits
from ._threads import SERIAL, Workers, resolve_threads
from ._validation import ZonationInputError, as_image, check_labels, check_pixel_size
from .tiling import Tile, stitch_tiles, tile_grid

__all__ = ["crystal_table", "segment_crystals", "DEFAULT_PHASE_NAMES"]

#: Default names of the grey-level classes used by :func:`crystal_table` (a heuristic).
DEFAULT_PHASE_NAMES = {
    "darker": "plagioclase",
    "brighter_low": "clinopyroxene",
    "brighter_high": "olivine",
    "very_bright": "oxide",
}

_BACKGROUNDS = ("auto", "groundmass", "masked")

# Options accepted through **options, with their defaults (lengths in um).
_DEFAULT_OPTIONS = {
    "work_um": 3.0,  # block size of the coarse stages (detection, splitting, growing)
    "detect_um": None,  # smoothing (sigma, um) of the detection image; None = 2 x smooth_um
    "open_um": 3.0,  # opening radius that removes microlites from the crystal cores
    "grow_um": None,  # how far cores grow back to the crystal edge; None = open_um + 3
    "split_h_um": 3.0,  # h of the distance-transform h-maxima used as watershed markers
    "max_deficit": 0.1,  # convex-hull excess (of the smaller piece) that still joins two pieces
    "merge_grey": None,  # grey step across a cut that keeps pieces apart; None = contrast
    "max_hole_fraction": 0.5,  # holes up to this fraction of their crystal are filled
    "texture": True,  # reject textured (microlite-rich) cores when a groundmass is found
    "smooth_texture": 0.75,  # a block is smooth below this x the groundmass texture
    "min_smooth_share": 0.25,  # share of a core that must be smooth (crystal, not microlites)
    "max_vesicle_share": 0.6,  # cores mostly within 6 um of near-black pixels are vesicle walls
    "dark_fraction": 0.2,  # near-black share of the image above which background may be masked
    "tile_halo_um": 400.0,  # crystal extent a tile surely holds whole (larger: a second look)
    "merge_rim": None,  # rim grey step that keeps pieces apart; None = 0.4 x contrast; 0 = off
    "contact_um": 24.0,  # how far a contact may move onto the grain boundary; 0 = off
    "trim_um": 4.0,  # outline protrusions narrower than 2 x this are not crystal; 0 = off
}


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------
def _full_scale(values: np.ndarray, dtype: np.dtype) -> float:
    """Full scale of the detector for an image: 2**k - 1 for the smallest usual bit depth."""
    finite = values[np.isfinite(values)]
    vmax = float(finite.max()) if finite.size else 1.0
    if np.issubdtype(dtype, np.floating) and vmax <= 1.0:
        return 1.0
    for bits in (8, 10, 12, 14, 16, 32):
        full = float(2**bits - 1)
        if vmax <= full:
            return full
    return vmax


def _subsample(arr: np.ndarray, n: int = 250_000) -> np.ndarray:
    """A regular subsample of a flat array (fast, deterministic)."""
    flat = arr.ravel()
    step = max(1, flat.size // n)
    return flat[::step]


def _combine_channels(stack: np.ndarray) -> np.ndarray:
    """First principal component of robustly standardised channels, as one grey image.

    The sign is chosen so that the result grows with the first channel (put the BSE image or
    the map that is bright where BSE is bright first). NaNs stay NaN.
    """
    n_ch = stack.shape[0]
    z = np.empty(stack.shape, dtype=np.float64)
    for c in range(n_ch):
        ch = stack[c]
        fin = ch[np.isfinite(ch)]
        if fin.size == 0:
            z[c] = 0.0
            continue
        med = np.median(_subsample(fin))
        q1, q3 = np.percentile(_subsample(fin), [25, 75])
        scale = (q3 - q1) / 1.349
        if not scale > 0:
            scale = float(np.std(fin)) or 1.0
        z[c] = (ch - med) / scale
    valid = np.all(np.isfinite(z), axis=0)
    if n_ch == 1 or valid.sum() < 3:
        out = z[0] if n_ch == 1 else np.nansum(z, axis=0)
        out[~valid] = np.nan
        return out
    samples = np.stack([_subsample(z[c][valid]) for c in range(n_ch)], axis=1)
    samples = samples - samples.mean(axis=0)
    cov = np.cov(samples, rowvar=False)
    cov = np.atleast_2d(cov)
    evals, evecs = np.linalg.eigh(cov)
    w = evecs[:, np.argmax(evals)]
    if w[0] < 0:  # the first channel sets the orientation
        w = -w
    out = np.tensordot(w, np.where(np.isfinite(z), z, 0.0), axes=1)
    out[~valid] = np.nan
    return out


def _nonzero(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.nonzero`` of a 2D array, from the flat indices (many times faster in numpy)."""
    return np.divmod(np.flatnonzero(mask), mask.shape[1])


def _quantiles(values: np.ndarray, qs, integer: bool = False) -> np.ndarray:
    """``np.percentile(values, qs)`` (linear interpolation); from a histogram for integers.

    With ``integer`` (the values are whole numbers of a moderate range, e.g. an 8- or 16-bit
    image) the order statistics are read from cumulative counts instead of a sort.
    """
    qs = np.atleast_1d(np.asarray(qs, dtype=np.float64))
    if not integer or values.size == 0:
        return np.percentile(values, qs)
    if np.issubdtype(values.dtype, np.integer):  # no float copy
        vmin_i = values.min()
        shifted = np.subtract(values, vmin_i, dtype=np.int64)
        vmin = float(vmin_i)
    else:
        vmin = float(values.min())
        shifted = (values - vmin).astype(np.int64)
    if shifted.max() >= 1 << 22:
        return np.percentile(values, qs)
    cum = np.cumsum(np.bincount(shifted))
    pos = qs / 100.0 * (values.size - 1)
    lo = np.floor(pos)
    a = np.searchsorted(cum, lo, side="right").astype(np.float64)
    b = np.searchsorted(cum, np.minimum(lo + 1, values.size - 1), side="right")
    t = pos - lo
    return vmin + a + (b - a) * t


def _noise_sigma(img: np.ndarray) -> float:
    """Robust pixel-noise sigma from neighbour differences (median absolute deviation)."""
    d = np.diff(img[:, : min(img.shape[1], 4096)], axis=1)
    d = _subsample(d)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return 0.0
    mad = np.median(np.abs(d - np.median(d)))
    return float(1.4826 * mad / np.sqrt(2.0))


def _histogram_mode(values: np.ndarray, lo: float, hi: float, bins: int = 256, near=None):
    """Mode of a 1D sample and the half width at half maximum of its peak (narrower side).

    With ``near`` = (centre, radius), the mode is the highest bin within that window: the local
    peak of the full sample nearest to a level found another way.
    """
    hist, edges = np.histogram(values, bins=bins, range=(lo, hi))
    hist = ndi.uniform_filter1d(hist.astype(float), 3)
    centres = 0.5 * (edges[1:] + edges[:-1])
    if near is None:
        k = int(np.argmax(hist))
    else:
        window = np.nonzero(np.abs(centres - near[0]) <= near[1])[0]
        k = int(window[np.argmax(hist[window])]) if window.size else int(np.argmax(hist))
    half = hist[k] / 2.0
    left = k
    while left > 0 and hist[left] > half:
        left -= 1
    right = k
    while right < bins - 1 and hist[right] > half:
        right += 1
    width = (edges[1] - edges[0]) * max(0.5, min(k - left, right - k))
    return float(centres[k]), float(width), hist, centres


def _edt(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of each True pixel to the nearest False one (float32).

    The same as ``scipy.ndimage.distance_transform_edt`` on a binary mask (pixels beyond the
    border are not False), from seung-lab's ``edt`` (fast C++).
    """
    return edt.edt(np.ascontiguousarray(mask, dtype=bool), black_border=False, parallel=1)


def _mask_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row runs of the True pixels of a 2D mask: (row, first col, end col + 1), row by row.

    Read from the pixels where a row changes value (few), not from every pixel.
    """
    h, w = mask.shape
    stride = w + 1  # a run's start and end as keys row * stride + col
    r, c = _nonzero(mask[:, 1:] != mask[:, :-1])
    first, last = np.flatnonzero(mask[:, 0]), np.flatnonzero(mask[:, -1])
    keys = np.sort(
        np.concatenate([r * stride + c + 1, first * stride, last * stride + w])
    )  # starts and ends alternate along each row
    row, col = np.divmod(keys, stride)
    return row[0::2], col[0::2], col[1::2]


def _run_components(row: np.ndarray, c0: np.ndarray, c1: np.ndarray, width: int):
    """Connected components (side neighbours) of the row runs of a mask (:func:`_mask_runs`).

    Two runs of consecutive rows are connected when they share a column. Returns the
    component of each run (0..k-1) and k: the same partition as ``ndi.label`` of the mask.
    """
    n = row.size
    if n == 0:
        return np.zeros(0, dtype=np.int32), 0
    stride = width + 1
    key0, key1 = row * stride + c0, row * stride + c1
    # the runs of the row above that overlap each run: a range of the row-major order
    lo = np.searchsorted(key1, key0 - stride, side="right")
    hi = np.searchsorted(key0, key1 - stride, side="left")
    cnt = np.maximum(hi - lo, 0)
    total = int(cnt.sum())
    dst = np.repeat(lo - np.cumsum(cnt) + cnt, cnt) + np.arange(total)
    graph = sparse.csr_matrix(
        (np.ones(total, dtype=np.int8), dst, np.r_[0, np.cumsum(cnt)]), shape=(n, n)
    )
    k, comp = connected_components(graph, directed=False)
    return comp, int(k)


def _run_pixels(row: np.ndarray, c0: np.ndarray, c1: np.ndarray, width: int) -> np.ndarray:
    """Flat indices of the pixels of row runs (in the order of the runs)."""
    length = c1 - c0
    start = row * width + c0
    return np.repeat(start - np.cumsum(length) + length, length) + np.arange(int(length.sum()))


def _on_border(row, c0, c1, comp, n: int, shape: tuple[int, int]) -> np.ndarray:
    """Which of the ``n`` components of row runs reach the image border."""
    border = np.zeros(n, dtype=bool)
    border[comp[(row == 0) | (row == shape[0] - 1) | (c0 == 0) | (c1 == shape[1])]] = True
    return border


def _lut(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``table[index]`` for an array of integer indices (labels, ids) in range.

    The same values as the fancy indexing, from ``np.take``: several times faster for int32
    indices (label images), which fancy indexing first converts.
    """
    return np.take(table, index)


_ROWS_DISK = 24.0  # radii (pixels) up to which the disk's rows beat a distance transform


@functools.lru_cache(maxsize=64)
def _disk(radius: float, strict: bool = False) -> np.ndarray:
    """Footprint of the pixel offsets within ``radius`` (closer than it with ``strict``).

    Cached (the same few radii recur): the array is read-only.
    """
    k = int(np.floor(radius))
    i, j = np.mgrid[-k : k + 1, -k : k + 1]
    d2 = i * i + j * j
    r2 = radius * radius
    foot = d2 < r2 - 1e-9 if strict else d2 <= r2 + 1e-9
    foot.flags.writeable = False
    return foot


def _near(mask: np.ndarray, radius: float, strict: bool = False) -> np.ndarray:
    """Pixels within ``radius`` of a True pixel of ``mask`` (Euclidean; closer with ``strict``).

    The same as ``_edt(~mask) <= radius`` (``< radius``), and as a binary dilation by
    :func:`_disk` (pixels beyond the border are False). Up to ``_ROWS_DISK`` pixels the disk
    is taken row by row: the mask is widened along the rows to the half-width of each of the
    disk's rows, from the outermost row (the narrowest) in, and each widening is ORed in
    shifted by its row's offset (about 4 x radius whole-image ORs, several times faster than
    the distance transform there); beyond it, the distance transform.
    """
    if radius > _ROWS_DISK:
        d = _edt(~mask)
        return d < radius if strict else d <= radius
    foot = _disk(float(radius), strict)
    k = foot.shape[0] // 2
    width = foot.sum(axis=1)[k:]  # pixels in the disk's rows at offsets 0..k (odd, or 0)
    h, w = mask.shape
    out = np.zeros_like(mask)
    wide, half = mask.copy(), 0
    for i in range(k, -1, -1):
        if not width[i]:
            continue
        while half < width[i] // 2:
            half += 1
            if half < w:
                wide[:, half:] |= mask[:, :-half]
                wide[:, :-half] |= mask[:, half:]
        if i == 0:
            out |= wide
        elif i < h:
            out[i:] |= wide[:-i]
            out[:-i] |= wide[i:]
    return out


def _dilate_square(arr: np.ndarray, k: int) -> np.ndarray:
    """Maximum over a (2k + 1) square (a binary dilation for masks), rows then columns.

    Only pixels inside the image count: the same as ``ndi.maximum_filter`` (reflected border)
    and ``ndi.binary_dilation`` (border False).
    """
    out = arr.copy()
    for d in range(1, k + 1):
        np.maximum(out[d:], arr[:-d], out=out[d:])
        np.maximum(out[:-d], arr[d:], out=out[:-d])
    rows = out.copy()
    for d in range(1, k + 1):
        np.maximum(out[:, d:], rows[:, :-d], out=out[:, d:])
        np.maximum(out[:, :-d], rows[:, d:], out=out[:, :-d])
    return out


def _open(mask: np.ndarray, radius: float) -> np.ndarray:
    """Binary opening by a disk of ``radius`` pixels (pixels beyond the border are inside)."""
    if radius < 0.5:
        return mask
    eroded = ~_near(~mask, radius)
    if not eroded.any():
        return eroded
    return _near(eroded, radius)


def _close(mask: np.ndarray, radius: float) -> np.ndarray:
    """Binary closing by a disk of ``radius`` pixels (pixels beyond the border are inside)."""
    if radius < 0.5 or not mask.any():
        return mask
    return ~_near(~_near(mask, radius), radius)


def _holes(fg: np.ndarray, regions: bool = True):
    """The holes of a mask: background parts (side-connected) that do not reach the border.

    From the row runs of the background and of the filled mask (faster than labelling the
    image). Returns None without holes, else ``(at, ids, area, region, filled)``: the flat
    indices of the hole pixels (raster order), the hole of each (ids ``0..k-1``), the pixels
    of each hole, the pixels of the region each hole lies in (the connected part of the mask
    and its holes; with ``regions``, else None) and the mask with every hole filled.
    """
    w = fg.shape[1]
    row, c0, c1 = _mask_runs(~fg)
    comp, n = _run_components(row, c0, c1, w)
    border = _on_border(row, c0, c1, comp, n, fg.shape)
    if border.all():
        return None
    hole = ~border[comp]
    row, c0, c1, comp = row[hole], c0[hole], c1[hole], comp[hole]
    at = _run_pixels(row, c0, c1, w)
    ids = np.repeat(comp, c1 - c0)
    area = np.bincount(ids, minlength=n)
    filled = fg.copy()
    filled.ravel()[at] = True
    if not regions:
        return at, ids, area, None, filled
    # the region of each hole: the component of the run of the filled mask holding its runs
    f_row, f_c0, f_c1 = _mask_runs(filled)
    f_comp, n_reg = _run_components(f_row, f_c0, f_c1, w)
    reg_area = np.bincount(f_comp, weights=f_c1 - f_c0, minlength=n_reg)
    stride = w + 1
    run_at = np.searchsorted(f_row * stride + f_c0, row * stride + c0, side="right") - 1
    region = np.zeros(n, dtype=np.float64)
    region[comp] = reg_area[f_comp[run_at]]
    return at, ids, area, region, filled


def _fill_holes(labels_or_mask: np.ndarray, max_fraction: float) -> np.ndarray:
    """Fill holes of a mask that are smaller than ``max_fraction`` of the enclosing region."""
    mask = labels_or_mask > 0
    # holes: background components that do not reach the image border (their runs are much
    # faster than scipy's iterated dilation on large images)
    found = _holes(mask, regions=max_fraction < 1.0)
    if found is None:
        return mask
    at, ids, area, region, filled = found
    if max_fraction >= 1.0:
        return filled
    keep = area <= max_fraction * region
    mask.ravel()[at[keep[ids]]] = True
    return mask


# ----------------------------------------------------------------------------------------------
# splitting touching crystals
# ----------------------------------------------------------------------------------------------
def _row_changes(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) of the pixels whose right neighbour has another label."""
    return _nonzero(lab[:, :-1] != lab[:, 1:])


def _adjacent_pairs(lab: np.ndarray, diagonal: bool = False, row_changes=None):
    """Pixel pairs across label boundaries: label_a < label_b, and their flat indices.

    Side neighbours, and with ``diagonal`` also corner neighbours. ``row_changes``: the
    result of :func:`_row_changes` for ``lab``, if at hand.
    """
    cols = lab.shape[1]
    parts = []
    shifts = [(lab[:, :-1], lab[:, 1:], 1), (lab[:-1, :], lab[1:, :], cols)]
    if diagonal:
        shifts += [(lab[:-1, :-1], lab[1:, 1:], cols + 1), (lab[:-1, 1:], lab[1:, :-1], cols - 1)]
    for a, b, step in shifts:
        if step == 1 and row_changes is not None:
            r, c = row_changes
        else:
            r, c = _nonzero(a != b)  # few pixels: the zero/non-zero test runs on them only
        va, vb = a[r, c], b[r, c]
        sel = (va > 0) & (vb > 0)
        r, c, va, vb = r[sel], c[sel], va[sel], vb[sel]
        ia = r.astype(np.int64) * cols + c + (1 if step == cols - 1 else 0)
        parts.append((va, vb, ia, ia + step))
    la, lb, pa, pb = (np.concatenate([p[i] for p in parts]) for i in range(4))
    swap = la > lb
    la, lb = np.where(swap, lb, la), np.where(swap, la, lb)
    pa, pb = np.where(swap, pb, pa), np.where(swap, pa, pb)
    return la, lb, pa, pb


def _packed_order(keys: tuple, spans: tuple) -> np.ndarray:
    """``np.lexsort(keys)`` of non-negative integer keys (``keys[i] < spans[i]``), from one sort.

    The keys are packed into one int64 (the last key most significant) and argsorted stably:
    the same order as the lexsort's (also for repeated rows), several times faster. Falls back
    to the lexsort when the packed key would not fit.
    """
    total = 1
    for span in spans:
        total *= max(1, int(span))
    if total >= 2**62:
        return np.lexsort(keys)
    packed = np.zeros(keys[0].shape, dtype=np.int64)
    for key, span in zip(keys[::-1], spans[::-1], strict=True):
        packed *= max(1, int(span))
        packed += key.astype(np.int64, copy=False)
    return np.argsort(packed, kind="stable")


def _find(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _cut_cores(cores: np.ndarray, h_px: float) -> np.ndarray:
    """Cut core regions by a watershed of their distance transform from its h-maxima.

    ``cores`` is a label image of connected core regions; where two cores touch (a bright
    crystal against a dark one) the contact counts as an edge. The markers are the h-maxima of
    the distance transform in quarter pixels (one per crystal body: a maximum standing at
    least ``h_px`` above the highest pass to any higher one). They are found without the grey
    reconstruction of ``skimage.morphology.h_maxima`` (slow): every regional maximum floods
    its basin, and the basins are joined from the highest pass down while the dynamics of
    their maxima are read off (equal maxima both stay, as in ``h_maxima``); the surviving
    maxima then flood the cores. A core too thin to hold an h-maximum stays one piece.
    """
    inner = cores > 0
    if not inner.any():
        return cores
    contact = _contact(cores)
    dist = _edt(inner & ~contact)
    q = np.where(inner, np.round(dist * 4).astype(np.int32), -1)
    peaks = morphology.local_maxima(q, allow_borders=True) & inner
    # one marker per maximum plateau and core (a plateau never spans two cores)
    plat, _ = ndi.label(peaks)
    big = np.int64(int(cores.max()) + 1)
    key = plat[peaks].astype(np.int64) * big + cores[peaks]
    _, marker_ids = np.unique(key, return_inverse=True)
    markers = np.zeros(cores.shape, dtype=np.int32)
    markers[peaks] = marker_ids.astype(np.int32) + 1
    n = int(marker_ids.max()) + 2
    height = np.zeros(n, dtype=np.int64)
    height[markers[peaks]] = q[peaks]
    core_of = np.zeros(n, dtype=np.int64)
    core_of[markers[peaks]] = cores[peaks]
    h = max(1, int(round(h_px * 4)))
    # a maximum lower than h joins every other through the zero distance of the background
    # and of the contacts: never an h-maximum
    dead = height < h
    # only cores with several maxima need their basins (corner neighbours too: then each
    # pixel joins its basin through pixels at least as high as itself)
    multi = np.bincount(core_of[1:], minlength=int(big) + 1) > 1
    multi[0] = False
    if multi.any():
        some = inner & _lut(multi, cores)
        basins = segmentation.watershed(-dist, markers, mask=some, connectivity=2)
        la, lb, pa, pb = _adjacent_pairs(basins, diagonal=True)
        same = core_of[la] == core_of[lb]
        if same.any():
            _dead_maxima(la[same], lb[same], q, pa[same], pb[same], height, dead, h)
    # the surviving maxima flood the cores again, as the h-maxima markers would (with the same
    # order of the queue: the flooding is not restricted to the cores that need it, as that
    # changes how ties are broken); a core with no maximum of its own (all of it in contact
    # with another) is one piece
    markers = np.where(_lut(dead, markers), 0, markers)
    alive_per_core = np.bincount(core_of[~dead], minlength=int(big) + 1)
    alive_per_core[0] = 0
    lonely = inner & (_lut(alive_per_core, cores) == 0)
    if lonely.any():
        markers = np.where(lonely, cores + n, markers)
    return _relabel(segmentation.watershed(-dist, markers, mask=inner))


def _dead_maxima(la, lb, q, pa, pb, height, dead, h: int) -> None:
    """Mark (in ``dead``) the maxima whose dynamic is below ``h`` (in the units of ``q``).

    ``la``, ``lb`` are adjacent basins (one pair per boundary pixel pair ``pa``, ``pb``) and
    ``height`` the value of each basin's maximum. The pass between two basins is the highest
    boundary pair (the lower pixel of it); from the highest pass down, the basins are joined;
    the one with the lower top dies if its top stands less than h above the pass.
    """
    n = height.size
    qf = q.ravel()
    level = np.minimum(qf[pa], qf[pb])
    key = la.astype(np.int64) * n + lb
    order = np.lexsort((-level, key))
    key, level = key[order], level[order]
    first = np.r_[True, key[1:] != key[:-1]]
    key, level = key[first], level[first]
    parent = np.arange(n)
    top = height.copy()
    members = {i: [i] for i in range(n)}
    for k in np.argsort(-level, kind="stable"):
        a, b = divmod(int(key[k]), n)
        ra, rb = _find(parent, a), _find(parent, b)
        if ra == rb:
            continue
        low, high = (ra, rb) if top[ra] < top[rb] else (rb, ra)
        if top[low] < top[high] and top[low] - int(level[k]) < h:
            dead[members[low]] = True
        parent[low] = high
        members[high].extend(members.pop(low))


def _runs(lab: np.ndarray, row_changes=None):
    """Row runs of every label: (label, row, first col, last col), sorted by label then row.

    Read from the pixels where a row changes label (few, ``row_changes``: from
    :func:`_row_changes`), not from every pixel.
    """
    h, w = lab.shape
    r, c = _row_changes(lab) if row_changes is None else row_changes
    left, right = lab[r, c], lab[r, c + 1]
    first_col = np.flatnonzero(lab[:, 0])
    last_col = np.flatnonzero(lab[:, -1])
    end_sel, start_sel = left > 0, right > 0
    s_lab = np.concatenate([lab[first_col, 0], right[start_sel]])
    s_row = np.concatenate([first_col, r[start_sel]])
    s_col = np.concatenate([np.zeros(first_col.size, np.int64), c[start_sel] + 1])
    e_lab = np.concatenate([left[end_sel], lab[last_col, -1]])
    e_row = np.concatenate([r[end_sel], last_col])
    e_col = np.concatenate([c[end_sel], np.full(last_col.size, w - 1, np.int64)])
    # the k-th start of a label in a row goes with its k-th end: sort both the same way
    n_lab = int(max(s_lab.max(), e_lab.max())) + 1 if s_lab.size else 1
    so = _packed_order((s_col, s_row, s_lab), (w, h, n_lab))
    eo = _packed_order((e_col, e_row, e_lab), (w, h, n_lab))
    return s_lab[so], s_row[so], s_col[so], e_col[eo]


def _hull_chains(gid: np.ndarray, side: np.ndarray, row: np.ndarray, col: np.ndarray):
    """Convex hulls of sets of points given as row extremes, all sets at once.

    Each set (``gid``) holds left points (``side`` 0: the leftmost pixel corner of a row) and
    right points (``side`` 1). The hull's left chain is the lower convex envelope of the left
    points along the rows (the right chain the upper envelope of the right points): points
    strictly inside a chord of their neighbours are dropped, all at once, until none is. Every
    dropped point is inside the hull of the set, so the result is exact. Returns the kept
    points ``(gid, side, row, col)``, sorted by set, then left chain top to bottom and right
    chain bottom to top (the hull's outline), and the hull area of each set.
    """
    sgn = np.where(side == 0, 1, -1)
    rs, cs = row * sgn, col * sgn
    whole = bool(gid.size) and np.all(rs == np.round(rs)) and np.all(cs == np.round(cs))
    if whole:
        # whole-number corner coordinates (always, from pixel runs): one packed sort
        r0, c0 = rs.min(), cs.min()
        spans = (cs.max() - c0 + 1, rs.max() - r0 + 1, 2, int(gid.max()) + 1)
        order = _packed_order((cs - c0, rs - r0, side, gid), spans)
    else:
        order = np.lexsort((cs, rs, side, gid))
    gid, side, row, col = gid[order], side[order], row[order], col[order]
    # repeated points (corners shared by two sets of a union) would drop each other
    dup = np.r_[
        False,
        (gid[1:] == gid[:-1])
        & (side[1:] == side[:-1])
        & (row[1:] == row[:-1])
        & (col[1:] == col[:-1]),
    ]
    if dup.any():
        gid, side, row, col = gid[~dup], side[~dup], row[~dup], col[~dup]
    if whole:
        gid, side, row, col = _off_envelope(gid, side, row, col)
    while True:
        chain = gid.astype(np.int64) * 2 + side
        m = chain.size
        inner = np.zeros(m, dtype=bool)
        if m > 2:
            inner[1:-1] = (chain[1:-1] == chain[:-2]) & (chain[1:-1] == chain[2:])
        i = np.flatnonzero(inner)
        if i.size == 0:
            break
        r0, c0, r1, c1, r2, c2 = row[i - 1], col[i - 1], row[i], col[i], row[i + 1], col[i + 1]
        cross = (r1 - r0) * (c2 - c0) - (c1 - c0) * (r2 - r0)
        # left chain (rows going down): a hull vertex bulges to the left, cross > 0; the right
        # chain runs the other way round
        drop = cross <= 0
        if not drop.any():
            break
        keep = np.ones(m, dtype=bool)
        keep[i[drop]] = False
        gid, side, row, col = gid[keep], side[keep], row[keep], col[keep]
    # shoelace over each outline (consecutive points, and the closing edge)
    nxt = np.r_[1 : gid.size, 0]
    last = np.r_[gid[1:] != gid[:-1], True]
    first_of = np.flatnonzero(np.r_[True, gid[1:] != gid[:-1]])
    nxt[last] = first_of
    term = row * col[nxt] - row[nxt] * col
    n_sets = int(gid.max()) + 1 if gid.size else 0
    area = 0.5 * np.abs(np.bincount(gid, weights=term, minlength=n_sets))
    return (gid, side, row, col), area


def _off_envelope(gid: np.ndarray, side: np.ndarray, row: np.ndarray, col: np.ndarray):
    """Drop the chain points of :func:`_hull_chains` that cannot be envelope vertices.

    Along a chain (sorted, without repeats, whole-number coordinates) a point with an earlier
    point and a later one at least as far out (left for the left chain, right for the right
    one) lies on or inside their chord: the dropping of the concave points would remove it
    too. Found with running extremes from both ends (restarting at each chain), all at once.
    """
    if gid.size < 3:
        return gid, side, row, col
    chain = gid.astype(np.int64) * 2 + side
    cs = np.where(side == 0, col, -col)  # smaller is further out, on both chains
    start = np.r_[True, chain[1:] != chain[:-1]]
    end = np.r_[chain[1:] != chain[:-1], True]
    k = np.cumsum(start) - 1  # chain number, 0.. in order
    big = float(cs.max() - cs.min() + 1)
    # running minimum of the points before each point (restarting at each chain: the
    # offsets make every chain's values smaller than all earlier ones)
    before = np.minimum.accumulate(cs - k * big) + k * big
    after = (np.minimum.accumulate((cs + k * big)[::-1]) - (k * big)[::-1])[::-1]
    inside = np.zeros(gid.size, dtype=bool)
    inside[1:-1] = (before[:-2] <= cs[1:-1]) & (after[2:] <= cs[1:-1])
    inside &= ~start & ~end
    if not inside.any():
        return gid, side, row, col
    keep = ~inside
    return gid[keep], side[keep], row[keep], col[keep]


def _row_extremes(run_lab, run_row, run_c0, run_c1, ids):
    """Corner points of the row extremes of labels ``ids`` (set index = position in ``ids``)."""
    sel = np.isin(run_lab, ids)
    lab, row, c0, c1 = run_lab[sel], run_row[sel], run_c0[sel], run_c1[sel]
    new = np.r_[True, (lab[1:] != lab[:-1]) | (row[1:] != row[:-1])]
    first = np.flatnonzero(new)
    last = np.r_[first[1:] - 1, lab.size - 1]
    g = np.searchsorted(ids, lab[first])
    row = row[first].astype(np.float64)
    left, right = c0[first].astype(np.float64), c1[last] + 1.0
    gid = np.concatenate([g, g, g, g])
    side = np.repeat(np.array([0, 0, 1, 1]), g.size)
    rows = np.concatenate([row, row + 1, row, row + 1])
    cols = np.concatenate([left, left, right, right])
    return gid, side, rows, cols


def _union_hulls(points, groups_a, groups_b):
    """Hull areas of the unions of point sets ``groups_a[k]`` and ``groups_b[k]``, for all k."""
    gid, side, row, col = points
    starts = np.searchsorted(gid, np.arange(int(gid.max()) + 2 if gid.size else 1))
    parts = []
    for groups in (groups_a, groups_b):
        lo, hi = starts[groups], starts[groups + 1]
        size = hi - lo
        pair = np.repeat(np.arange(groups.size), size)
        idx = np.repeat(lo - np.r_[0, np.cumsum(size)[:-1]], size) + np.arange(size.sum())
        parts.append((pair, idx))
    pair = np.concatenate([parts[0][0], parts[1][0]])
    idx = np.concatenate([parts[0][1], parts[1][1]])
    _, area = _hull_chains(pair, side[idx], row[idx], col[idx])
    return area


def _rim_band(lab: np.ndarray, smooth: np.ndarray, band: tuple, close_px: float):
    """Labels and grey of the pixels in the rim band of every label: its free faces, inside.

    The band holds the pixels ``band`` = (near, far) pixels from the outside, the outside being
    the background once cracks and gaps narrower than about ``2 * close_px`` are closed and
    enclosed holes (inclusions) filled; pixels within ``near`` of another label (whose grey,
    or the grain-boundary seam's, the smoothing carries over) are left out.
    """
    closed = _close(lab > 0, close_px)
    # the parts of the background that reach the border, from their row runs
    row, c0, c1 = _mask_runs(~closed)
    comp, n = _run_components(row, c0, c1, lab.shape[1])
    sel = _on_border(row, c0, c1, comp, n, lab.shape)[comp]
    out_px = np.zeros(lab.shape, dtype=bool)
    out_px.ravel()[_run_pixels(row[sel], c0[sel], c1[sel], lab.shape[1])] = True
    if band[1] <= _ROWS_DISK:  # two dilations are cheaper than the distance transform
        sel = _near(out_px, band[1]) & ~_near(out_px, band[0], strict=True) & (lab > 0)
    else:
        depth = _edt(~out_px)
        sel = (depth >= band[0]) & (depth <= band[1]) & (lab > 0)
    sel &= ~_near(_contact(lab), band[0])
    return lab[sel], smooth[sel]


def _merge_regions(
    lab: np.ndarray,
    smooth: np.ndarray,
    *,
    merge_grey: float,
    max_deficit: float,
    band_px: int,
    lenient: bool,
    small_px: float = 0.0,
    max_rounds: int = 6,
    return_areas: bool = False,
    rim: tuple | None = None,
    return_map: bool = False,
):
    """Join adjacent regions that are one crystal cut by a crack or by the splitting.

    Two regions are joined when the grey just behind their shared boundary agrees (median of
    the paired differences below ``merge_grey``) and their union is about as convex as they are
    (the convex hull of the union adds less than ``max_deficit`` of the smaller region beyond
    what their own hulls add): a crack through one crystal, not two crystals touching. A region
    smaller than ``small_px`` (too small to be a crystal of its own) needs only the grey. With
    ``lenient`` (background masked black), equal grey alone is enough. Rounds repeat on the
    joined regions until nothing changes. The boundary pixels, the grey behind them and the
    regions' row runs (their areas, and the exact convex hulls of their pixel corners) are
    measured once on the image; later rounds map them to the joined regions (the hull of a
    union is the hull of its parts' hull points), and all pairs of a round are judged at once.
    The accepted pairs of a round are then joined in order (closest rims first, then closest
    grey), and a join between groups already grown in the round is left to the next round
    when a rejected pair lies between them or their rims differ (:func:`_may_join`).
    With ``return_areas`` the areas of the joined labels (index = label) come back too, and
    with ``return_map`` also each input label's output label (index = input label).

    ``rim`` = ``(rim_labels, rim_grey, max_step, min_count, noise)`` adds a test on the
    crystals' free faces: one crystal has one rim, so two regions whose rims (the median of
    ``rim_grey`` over the samples of their ``rim_labels``, from :func:`_rim_band`) differ by
    ``max_step`` plus two standard errors of the difference (from the ``noise`` of one sample)
    or more are two crystals (unless either has fewer than ``min_count`` rim samples, or is
    smaller than ``small_px``: a piece too small to be a crystal of its own is judged by the
    grey alone).
    """
    changes = _row_changes(lab)
    la0, lb0, pa, pb = _adjacent_pairs(lab, row_changes=changes)
    if la0.size == 0:
        if return_areas and return_map:
            out, lut = _relabel(lab, return_lut=True)
            return out, np.bincount(out.ravel()), lut
        out = _relabel(lab)
        return (out, np.bincount(out.ravel())) if return_areas else out
    n = int(lab.max()) + 1
    rows, cols = lab.shape
    ra, ca = np.divmod(pa, cols)
    rb, cb = np.divmod(pb, cols)
    # k pixels behind each side of the boundary, away from the other side
    rra, cca = (
        np.clip(ra + (ra - rb) * band_px, 0, rows - 1),
        np.clip(ca + (ca - cb) * band_px, 0, cols - 1),
    )
    rrb, ccb = (
        np.clip(rb + (rb - ra) * band_px, 0, rows - 1),
        np.clip(cb + (cb - ca) * band_px, 0, cols - 1),
    )
    lab_fa, lab_fb = lab[rra, cca], lab[rrb, ccb]
    va_far, va_near = smooth[rra, cca], smooth[ra, ca]
    vb_far, vb_near = smooth[rrb, ccb], smooth[rb, cb]
    del ra, ca, rb, cb, rra, cca, rrb, ccb
    run_lab, run_row, run_c0, run_c1 = _runs(lab, changes)
    areas0 = np.bincount(run_lab, weights=run_c1 - run_c0 + 1, minlength=n)
    # exact convex hulls of the labels that touch another (their outline points), and of
    # the groups joined in later rounds (from their members' hull points)
    touching = np.unique(np.concatenate([la0, lb0]))
    set_of = np.full(n, -1)
    set_of[touching] = np.arange(touching.size)
    pts0, hull0 = _hull_chains(*_row_extremes(run_lab, run_row, run_c0, run_c1, touching))
    pts, hull = pts0, hull0
    roots = np.arange(n)
    if rim is not None:
        # only the rims of labels that touch another can be asked for (labels the image
        # has lost have none)
        on = rim[0] < n
        on[on] = set_of[rim[0][on]] >= 0
        rim = (rim[0][on], rim[1][on], *rim[2:])
    for _ in range(max_rounds):
        a_id, b_id = roots[la0], roots[lb0]
        live = a_id != b_id
        if not live.any():
            break
        a_id, b_id = a_id[live], b_id[live]
        va = np.where(roots[lab_fa[live]] == a_id, va_far[live], va_near[live])
        vb = np.where(roots[lab_fb[live]] == b_id, vb_far[live], vb_near[live])
        lo_id, hi_id = np.minimum(a_id, b_id), np.maximum(a_id, b_id)
        diff = np.where(a_id < b_id, va - vb, vb - va)
        keys, inv = np.unique(lo_id.astype(np.int64) * n + hi_id, return_inverse=True)
        steps = np.abs(_label_medians(diff, inv + 1, keys.size))  # pairs 1..n, all present
        a, b = np.divmod(keys[steps < merge_grey], n)
        if a.size == 0:
            break
        areas = np.bincount(roots, weights=areas0, minlength=n)
        small = np.minimum(areas[a], areas[b])
        ok = np.ones(a.size, dtype=bool)
        test = (small >= small_px) if not lenient else np.zeros(a.size, dtype=bool)
        if test.any():
            at, bt = a[test], b[test]
            sa, sb = set_of[at], set_of[bt]
            hull_a, hull_b = hull[sa], hull[sb]
            union = _union_hulls(pts, sa, sb)
            extra = (union - areas[at] - areas[bt]) - (hull_a - areas[at]) - (hull_b - areas[bt])
            ok[test] = extra < max_deficit * small[test]
        if rim is not None and (ok & test).any():
            rl = roots[rim[0]]
            rim_med = np.r_[np.nan, _label_medians(rim[1], rl, n - 1)]
            rim_n = np.bincount(rl, minlength=n)
            has = test & (rim_n[a] >= rim[3]) & (rim_n[b] >= rim[3])
            # the step must stand out of the noise of the two medians (2 standard errors)
            se = (
                1.2533
                * rim[4]
                * np.sqrt(1.0 / np.maximum(rim_n[a], 1) + 1.0 / np.maximum(rim_n[b], 1))
            )
            ok &= ~(has & (np.abs(rim_med[a] - rim_med[b]) >= rim[2] + 2.0 * se))
        parent = np.arange(n)
        changed = False
        rejected = np.sort(keys[~np.isin(keys, a[ok] * n + b[ok])])
        group_rim = None
        if rim is not None and not lenient:
            rl = roots[rim[0]]
            by = np.argsort(rl, kind="stable")
            ids = np.arange(n)
            group_rim = (
                np.searchsorted(rl[by], ids),
                np.searchsorted(rl[by], ids, side="right"),
                rim[1][by],
                *rim[2:5],
                areas,
                small_px,
            )
        # the pairs whose rims agree best (then whose grey agrees best) are joined first
        step_ok = steps[steps < merge_grey][ok]
        if group_rim is not None:
            med = np.r_[np.nan, _label_medians(rim[1], roots[rim[0]], n - 1)]
            rim_diff = np.abs(med[a[ok]] - med[b[ok]])
            order = np.lexsort((step_ok, np.where(np.isnan(rim_diff), np.inf, rim_diff)))
        else:
            order = np.argsort(step_ok, kind="stable")
        groups: dict = {}
        for a_k, b_k in zip(a[ok][order].tolist(), b[ok][order].tolist(), strict=True):
            ra_, rb_ = _find(parent, a_k), _find(parent, b_k)
            if ra_ != rb_ and _may_join(groups, ra_, rb_, rejected, n, group_rim):
                keep_, gone = min(ra_, rb_), max(ra_, rb_)
                parent[gone] = keep_
                groups[keep_] = groups.get(keep_, [keep_]) + groups.pop(gone, [gone])
                changed = True
        if not changed:
            break
        new = np.array([_find(parent, i) for i in range(n)])
        roots = new[roots]
        # hulls of the joined groups, one set per root (members' sets map to their root's)
        set_of = np.full(n, -1)
        group_roots = np.unique(roots[touching])
        set_of[group_roots] = np.arange(group_roots.size)
        g0 = set_of[roots[touching]][pts0[0]]
        pts, hull = _hull_chains(g0, pts0[1], pts0[2], pts0[3])
    # one look-up: consecutive ids in the order of the joined regions' roots
    present = np.zeros(n, dtype=bool)
    present[roots[areas0 > 0]] = True
    present[0] = False
    rank = np.cumsum(present).astype(np.int32) * present
    out = _lut(rank[roots], lab)
    if not return_areas:
        return out
    areas = np.bincount(rank[roots], weights=areas0, minlength=int(rank.max()) + 1)
    if return_map:
        return out, areas.astype(np.int64), rank[roots]
    return out, areas.astype(np.int64)


def _may_join(groups: dict, ra: int, rb: int, rejected: np.ndarray, n: int, rim) -> bool:
    """Whether the groups of regions with roots ``ra`` and ``rb`` may be joined in a round.

    The pairs of a round are judged on the regions as they were at its start, so a region
    accepted on its own by two neighbours would join them although their own pair was
    rejected (a small piece between two crystals; a piece of a crystal with too little rim
    of its own to be compared, next to its neighbour). Such a join is left to the next round
    (where the joined groups are judged) when a rejected pair (``rejected``: sorted keys
    ``lo * n + hi``) lies between the two groups, or when the groups' rims differ as the
    pairwise rim test would reject: ``rim`` = ``(start, end, grey, max_step, min_count,
    noise, areas, small_px)``, the rim samples of each region of the round being
    ``grey[start[i]:end[i]]``. ``groups`` maps each root to its members (absent: itself).
    """
    members, others = groups.get(ra, [ra]), groups.get(rb, [rb])
    if len(members) == 1 and len(others) == 1:
        return True  # judged as a pair already
    if rejected.size:
        ma, mb = np.asarray(members), np.asarray(others)
        lo, hi = np.minimum.outer(ma, mb), np.maximum.outer(ma, mb)
        at = np.searchsorted(rejected, (lo * n + hi).ravel())
        if (rejected[np.minimum(at, rejected.size - 1)] == (lo * n + hi).ravel()).any():
            return False
    if rim is None:
        return True
    start, end, grey, max_step, min_count, noise, areas, small_px = rim
    if min(areas[members].sum(), areas[others].sum()) < small_px:
        return True
    ga = np.concatenate([grey[start[i] : end[i]] for i in members])
    gb = np.concatenate([grey[start[i] : end[i]] for i in others])
    if ga.size < min_count or gb.size < min_count:
        return True
    se = 1.2533 * noise * np.sqrt(1.0 / ga.size + 1.0 / gb.size)
    return bool(abs(np.median(ga) - np.median(gb)) < max_step + 2.0 * se)


def _contact(lab: np.ndarray) -> np.ndarray:
    """Pixels of a label image that touch a different non-zero label (8-neighbourhood)."""
    out = np.zeros(lab.shape, dtype=bool)
    pos = lab > 0
    for sa, sb in _NEIGHBOUR_SLICES_8:
        d = lab[sa] != lab[sb]
        d &= pos[sa]
        d &= pos[sb]
        out[sa] |= d
        out[sb] |= d
    return out


def _inner_boundary(lab: np.ndarray) -> np.ndarray:
    """Labelled pixels with a side neighbour of another label (``find_boundaries``, inner)."""
    out = np.zeros(lab.shape, dtype=bool)
    for sa, sb in _NEIGHBOUR_SLICES_8[:2]:
        d = lab[sa] != lab[sb]
        out[sa] |= d
        out[sb] |= d
    return out & (lab != 0)


#: Pairs of views of an image shifted by one pixel: right, down, down-right, down-left.
_NEIGHBOUR_SLICES_8 = (
    ((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
    ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
    ((slice(None, -1), slice(None, -1)), (slice(1, None), slice(1, None))),
    ((slice(None, -1), slice(1, None)), (slice(1, None), slice(None, -1))),
)


def _watershed(image: np.ndarray, markers: np.ndarray, mask: np.ndarray | None = None):
    """``skimage.segmentation.watershed`` that leaves out the inside of the markers.

    A marker pixel whose four neighbours are all marker pixels or outside the mask floods
    nothing; scikit-image would still queue it. Large markers (pieces eroded by a pixel, a
    background marker) are mostly such pixels, so they are taken out of the flooding and put
    back in the result. The result is the same except where equal grey levels meet (the queue
    breaks such ties by age, which the shorter queue changes): rare on a float gradient.
    """
    seeded = markers > 0
    blocked = seeded if mask is None else seeded | ~mask
    p = np.ones((blocked.shape[0] + 2, blocked.shape[1] + 2), dtype=bool)
    p[1:-1, 1:-1] = blocked  # np.pad's result, without its overhead (many small calls)
    inside = seeded & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    if mask is not None:
        inside &= mask
    if not inside.any():
        return segmentation.watershed(image, markers, mask=mask)
    flood = ~inside if mask is None else mask & ~inside
    out = segmentation.watershed(image, np.where(inside, 0, markers), mask=flood)
    out[inside] = markers[inside]
    return out


def _grow(
    pieces: np.ndarray,
    grad: np.ndarray,
    background: np.ndarray,
    erode_px: float,
    cut_px: float,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Marker watershed on the gradient from eroded pieces and a background marker.

    Pixels outside ``mask`` (if given) are background; the mask must hold every background
    marker pixel next to the pixels it floods (then the result inside it is unchanged).

    The markers step back ``erode_px`` from the outer edge of each piece and ``cut_px`` from
    where two pieces meet, so the watershed, not the cut, places the boundary between them
    (on the grain-boundary line).
    """
    n = int(pieces.max())
    if n == 0:
        return pieces
    edge = _inner_boundary(pieces) | (pieces == 0)
    keep = ~_near(edge, erode_px)
    contact = _contact(pieces)
    if contact.any():
        keep &= ~_near(contact, cut_px)
    markers = np.where(keep, pieces, 0)
    # pieces too small to survive the erosion keep their original marker
    present = np.zeros(n + 1, dtype=bool)
    present[markers.ravel()] = True
    missing = ~present
    missing[0] = False
    if missing.any():
        markers = np.where((markers == 0) & _lut(missing, pieces), pieces, markers)
    markers = np.where(background & (markers == 0), n + 1, markers)
    out = _watershed(grad, markers, mask=mask)
    out[out == n + 1] = 0
    return out.astype(np.int32)


def _fill_label_holes(
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
    found = _holes(labels > 0)
    if found is None:
        return labels if areas is None else (labels, areas)
    at, hl, hole_area, region, _ = found
    hr, hc = np.divmod(at, labels.shape[1])
    fill = hole_area <= max_fraction * region
    sel = fill[hl]
    hr, hc, hl = hr[sel], hc[sel], hl[sel]
    # the crystal on the rim of each hole (any rim pixel tells)
    ring = _gather_max(labels, hr, hc, 3)
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


def _texture(norm: np.ndarray, fine_px: float, window_px: float) -> np.ndarray:
    """Local standard deviation of the lightly smoothed image (microlites make it high)."""
    a = ndi.gaussian_filter(norm, fine_px) if fine_px > 0.3 else norm
    m1 = ndi.gaussian_filter(a, window_px)
    m2 = ndi.gaussian_filter(a * a, window_px)
    return np.sqrt(np.clip(m2 - m1 * m1, 0, None))


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------
def _to_grey(image) -> tuple[np.ndarray, np.dtype]:
    """Checked image as a 2D float grey image (element maps combined), and its input dtype."""
    raw = image if isinstance(image, np.ndarray) else np.asarray(image)
    arr = as_image(raw, allow_channels=True)
    is_rgb = raw.ndim == 3 and raw.shape[-1] in (3, 4) and raw.shape[0] > 4
    if arr.ndim == 3 and not is_rgb:
        return _combine_channels(arr), np.dtype(np.float64)
    dtype = raw.dtype if not is_rgb else np.dtype(np.float64)
    return arr, dtype


def _work_factor(px: float, work_um: float) -> int:
    """Integer block size that brings the pixel size near ``work_um`` for the coarse stages."""
    if work_um is None or work_um <= 0:
        return 1
    return max(1, int(round(work_um / px)))


def _block_mean(img: np.ndarray, f: int, square: bool = False) -> np.ndarray:
    """Mean over f x f blocks (the last partial blocks are padded by edge values), float32.

    Sums of strided views (f + f additions of whole rows): much faster than a reduction over
    the axes of a 4D reshape. With ``square``, the mean of ``img * img`` (float32 ``img``),
    without the squared image.
    """
    if f == 1:
        return img * img if square else img
    h, w = img.shape
    hp, wp = -(-h // f) * f, -(-w // f) * f
    if (hp, wp) != (h, w):
        img = np.pad(img, ((0, hp - h), (0, wp - w)), mode="edge")
    if square:
        cols = np.square(img[:, 0::f])
        for j in range(1, f):
            cols += np.square(img[:, j::f])
    else:
        cols = img[:, 0::f].astype(np.float32)
        for j in range(1, f):
            cols += img[:, j::f]
    out = cols[0::f].copy()
    for i in range(1, f):
        out += cols[i::f]
    out *= np.float32(1.0 / (f * f))
    return out


def _upsample(arr: np.ndarray, f: int, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upsampling of a block image back to ``shape``."""
    if f == 1:
        return arr
    # two repeats (a new C-contiguous array): several times faster than a copy of a
    # broadcast 4D view
    return np.repeat(np.repeat(arr, f, axis=1)[:, : shape[1]], f, axis=0)[: shape[0]]


def _label_medians(values: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Median of ``values`` per label 1..n (NaN for absent labels), from one sort."""
    sel = labels > 0
    lv, vv = labels[sel], values[sel]
    if vv.dtype == np.float32 and lv.size and int(lv.max()) < 2**31 and not np.isnan(vv).any():
        # one sort of (label, order-preserving float bits) packed into a uint64
        packed = (lv.astype(np.uint64) << np.uint64(32)) | sortable_bits(vv).astype(np.uint64)
        order = np.argsort(packed, kind="stable")
    else:
        order = np.lexsort((vv, lv))
    lv, vv = lv[order], vv[order]
    ids = np.arange(1, n + 1)
    start, end = np.searchsorted(lv, ids), np.searchsorted(lv, ids, side="right")
    out = np.full(n, np.nan)
    has = end > start
    lo_i, hi_i = start + (end - start - 1) // 2, start + (end - start) // 2
    out[has] = 0.5 * (vv[lo_i[has]] + vv[hi_i[has]])
    return out


def _rim_thresholds(labels: np.ndarray, smooth: np.ndarray, ref: float, band: tuple):
    """Per-label midpoint between the rim grey and the reference, and the crystal's sign."""
    n = int(labels.max())
    edge = _inner_boundary(labels)
    in_band = (labels > 0) & _near(edge, band[1]) & ~_near(edge, band[0], strict=True)
    rim = _label_medians(smooth, np.where(in_band, labels, 0), n)
    missing = ~np.isfinite(rim)
    if missing.any():
        # labels without a band: the median of the whole label (of those labels only)
        lut = np.zeros(n + 1, dtype=bool)
        lut[1:] = missing
        sel = _lut(lut, labels)
        rim[missing] = _label_medians(smooth[sel], labels[sel], n)[missing]
    thr = np.concatenate([[0.0], ref + 0.5 * (rim - ref)]).astype(np.float32)
    sign = np.concatenate([[0.0], np.sign(rim - ref)]).astype(np.float32)
    return thr, sign


def _shifted_indices(n: int, idx: np.ndarray, k: int) -> list[np.ndarray]:
    """``idx + d`` for d in -k..k, clipped to 0..n-1 (a clipped index stays in the window)."""
    return [np.clip(idx + d, 0, n - 1) for d in range(-k, k + 1)]


def _gather_any(
    mask: np.ndarray, rows: np.ndarray, cols: np.ndarray, foot: np.ndarray, border: bool = False
):
    """For pixels (rows, cols): whether ``mask`` is True at any offset of ``foot`` (centred).

    Pixels beyond the image border count as ``border``. (Offsets beyond the border are read
    at the nearest pixel inside, which is in the footprint's bounding square too: for a
    footprint that holds its square's middle row and column, as disks do, the answer is the
    same as with a padded copy, without the copy.)
    """
    k = foot.shape[0] // 2
    h, w = mask.shape
    rr, cc = _shifted_indices(h, rows, k), _shifted_indices(w, cols, k)
    out = np.zeros(rows.shape, dtype=bool)
    for di, dj in np.argwhere(foot):
        out |= mask[rr[di], cc[dj]]
    if border:
        out |= (rows < k) | (rows >= h - k) | (cols < k) | (cols >= w - k)
    return out


def _gather_max(arr: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int):
    """Maximum of ``arr`` (>= 0) over the ``size`` x ``size`` square around pixels (rows, cols).

    Offsets beyond the border are read at the nearest pixel inside (in the square too).
    """
    k = size // 2
    h, w = arr.shape
    rr, cc = _shifted_indices(h, rows, k), _shifted_indices(w, cols, k)
    out = np.zeros(rows.shape, dtype=arr.dtype)
    for di in range(size):
        for dj in range(size):
            np.maximum(out, arr[rr[di], cc[dj]], out=out)
    return out


def _full_labels(coarse: np.ndarray, f: int, shape: tuple[int, int]) -> np.ndarray:
    """Coarse labels upsampled to ``shape``: a writable, C-contiguous array of their own."""
    return coarse.copy() if f == 1 else _upsample(coarse, f, shape)


def _refine_edges(
    coarse: np.ndarray,
    f: int,
    smooth: np.ndarray,
    thr: np.ndarray,
    sign: np.ndarray,
    line_px: int = 1,
    run: Workers = SERIAL,
) -> np.ndarray:
    """Full-resolution labels from coarse ones: edges placed by each crystal's midpoint grey.

    Pixels in blocks within two blocks of a coarse boundary take the label of their block (or,
    in background blocks, of the neighbouring crystal) when their grey is on the crystal's side
    of the midpoint between its rim and the reference; the other pixels keep their block's label.
    Only the pixels of those blocks are visited. (``run`` upsamples the coarse labels while
    the pixels of the band are tested.)
    """
    shape = smooth.shape
    labels_job = run.submit(_full_labels, coarse, f, shape)
    crystal = coarse > 0
    # crystal blocks next to the background, background blocks up to two blocks out, and the
    # blocks where two crystals meet (whose pixels keep their block's label)
    outer = crystal & _dilate_square(~crystal, 1)
    ring = ~crystal & _dilate_square(crystal, 2)
    band_c = outer | ring
    cand_c = np.where(crystal, coarse, _dilate_square(coarse, 2))
    # the pixels of the band blocks, block by block (no full-resolution mask)
    bi, bj = _nonzero(band_c)
    if bi.size == 0:
        return labels_job.result()
    # one row per band block, one column per pixel of the block; the tests run on the block's
    # candidate label, threshold and sign, broadcast over its pixels (no per-pixel look-ups)
    h, w = shape
    d = np.arange(f)
    within = ((d * w)[:, None] + d[None, :]).ravel()
    idx = (bi * (f * w) + bj * f)[:, None] + within[None, :]
    valid = None  # pixels of the blocks inside the image (None: all)
    if h % f or w % f:
        valid = ((bi * f)[:, None] + d.repeat(f)[None, :] < h) & (
            (bj * f)[:, None] + np.tile(d, f)[None, :] < w
        )
        idx = np.where(valid, idx, 0)
    cand = cand_c[bi, bj]
    in_crystal = crystal[bi, bj][:, None]
    v = smooth.ravel()[idx]
    keep = (v - _lut(thr, cand)[:, None]) * _lut(sign, cand)[:, None] > 0
    keep &= (cand > 0)[:, None]
    if valid is not None:
        keep &= valid
    # inside crystal blocks only pixels near the failing pixels of background blocks (the
    # outside) are removed: an inclusion close to the edge is not the outside
    test = in_crystal & ~keep
    if valid is not None:
        test &= valid
    if test.any():
        outside = np.zeros(shape, dtype=bool)
        failed = ~keep & ~in_crystal
        if valid is not None:
            failed &= valid
        outside.ravel()[idx[failed]] = True
        # within a square of 2 * max(1, f // 2) + 1 pixels of the outside: one dilation of
        # the whole (sparse, boolean) image is cheaper than gathering the square's offsets
        at = np.flatnonzero(test)
        near_out = _dilate_square(outside, max(1, f // 2)).ravel()[idx.ravel()[at]]
        keep.ravel()[at[~near_out]] = True
    labels = labels_job.result()
    new = np.where(keep, cand[:, None], 0).astype(labels.dtype, copy=False)
    if valid is None:
        labels.ravel()[idx] = new
    else:
        labels.ravel()[idx[valid]] = new[valid]
    # cracks that reach the edge must not notch their crystal: a small closing, inside
    # crystal blocks only (only removed pixels of crystal blocks can be such gaps)
    gap = in_crystal & ~keep
    if valid is not None:
        gap &= valid
    if line_px >= 1 and gap.any():
        foot = morphology.disk(line_px).astype(bool)
        dilated = _near(labels > 0, float(line_px))  # the dilation by the same disk
        gr, gc = np.divmod(idx[gap], w)
        # the erosion (beyond the border is outside), at the removed pixels only
        closed = ~_gather_any(~dilated, gr, gc, foot, border=True)
        if closed.any():
            gr, gc = gr[closed], gc[closed]
            labels[gr, gc] = _gather_max(labels, gr, gc, 2 * line_px + 1)
    # specks (microlites) in background blocks that do not touch their crystal are dropped:
    # a part of the labels with pixels in background blocks is anchored when it also holds a
    # pixel of a crystal block of the band (a crystal block next to a background block); the
    # closing changed crystal blocks only, so the kept pixels of background blocks are these
    if (keep & ~in_crystal).any():
        _drop_unanchored(labels, f, outer, ring)
    return labels


def _drop_unanchored(labels: np.ndarray, f: int, outer: np.ndarray, ring: np.ndarray) -> None:
    """Zero (in place) the parts of ``labels > 0`` that lie in ``ring`` blocks only.

    ``outer`` and ``ring`` are the crystal and background blocks (``f`` x ``f`` pixels) of the
    edge band; the other blocks hold their block's label (0 in background blocks). A part
    (side-connected) with a pixel in a ring block is kept when it also holds a pixel of an
    outer block; any path from a ring block to a crystal block passes through an outer one,
    so a part that is not kept lies in ring blocks only. Judged on the row runs of the parts.
    """
    row, c0, c1 = _mask_runs(labels > 0)
    comp, n_comp = _run_components(row, c0, c1, labels.shape[1])
    b_row, j0, j1 = row // f, c0 // f, (c1 - 1) // f

    def crosses(blocks: np.ndarray) -> np.ndarray:
        # whether each run crosses a block of ``blocks`` (counts along its block row)
        cum = np.zeros((blocks.shape[0], blocks.shape[1] + 1), dtype=np.int32)
        np.cumsum(blocks, axis=1, out=cum[:, 1:])
        return cum[b_row, j1 + 1] > cum[b_row, j0]

    anchored = np.zeros(n_comp, dtype=bool)
    anchored[comp[crosses(outer)]] = True
    drop = ~anchored[comp] & crosses(ring)
    if drop.any():
        labels.ravel()[_run_pixels(row[drop], c0[drop], c1[drop], labels.shape[1])] = 0


# ----------------------------------------------------------------------------------------------
# input: a 2D grey source read window by window
# ----------------------------------------------------------------------------------------------
#: Images with more pixels than this are tiled when ``tile_size`` is None.
TILE_AUTO_PIXELS = 4096 * 4096
#: Core side (pixels) of the tiles used when tiling is automatic.
TILE_AUTO_SIZE = 2048
_SAMPLE = 250_000  # pixels in the regular samples that set the global levels


def _is_lazy(image) -> bool:
    """An array-like read by slicing (dask, zarr, h5py, memmap-like), not a numpy array."""
    return (
        not isinstance(image, np.ndarray)
        and all(hasattr(image, a) for a in ("shape", "dtype", "ndim", "__getitem__"))
        and not isinstance(image, (list, tuple))
    )


def _grey_source(image):
    """The image as a 2D array-like to read by windows, and its dtype.

    2D numpy and lazy (dask, ...) arrays are read as they are, window by window (no whole-image
    float copy); RGB(A) and element-map stacks are first combined into one float64 grey image
    in memory.
    """
    if (isinstance(image, np.ndarray) or _is_lazy(image)) and image.ndim == 2:
        shape = tuple(int(s) for s in image.shape)
        if 0 in shape:
            as_image(np.zeros(shape))  # raises the 'empty' error
        as_image(np.asarray(image[:1, :1]))  # raises for non-numeric dtypes
        return image, np.dtype(image.dtype)
    raw = np.asarray(image)
    if raw.ndim == 2:  # e.g. nested lists
        arr = as_image(raw)
        return arr, np.dtype(arr.dtype)
    return _to_grey(raw)


def _read(src, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """One window of the source as a numeric numpy array."""
    w = np.asarray(src[r0:r1, c0:c1])
    if w.dtype == bool:
        w = w.astype(np.uint8)
    return w


def _normalise(w: np.ndarray, lo: float, span: float, fill: float):
    """Window -> (float32 grey in units of the robust range, finite mask or None)."""
    finite = None
    if np.issubdtype(w.dtype, np.floating):
        fin = np.isfinite(w)
        if not fin.all():
            finite = fin
            w = np.where(fin, w, fill)
    if w.dtype.itemsize <= 2 or w.dtype == np.float32:
        norm = w.astype(np.float32)
        norm -= np.float32(lo)
        norm *= np.float32(1.0 / span)
        return norm, finite
    return ((w - lo) * (1.0 / span)).astype(np.float32), finite


# ----------------------------------------------------------------------------------------------
# levels of the whole image (fixed for every tile)
# ----------------------------------------------------------------------------------------------
def _coarse_texture(norm: np.ndarray, cm: np.ndarray, lv: dict) -> np.ndarray:
    """Texture of the blocks: grey standard deviation in each (smoothed), or of the pixels."""
    f = lv["f"]
    if f > 1:
        var = _block_mean(norm, f, square=True) - cm.astype(np.float32) ** 2
        return np.sqrt(np.clip(ndi.gaussian_filter(var, lv["tex_c"]), 0, None))
    px = lv["px"]
    return _texture(norm, max(0.5, 1.0 / px), max(1.5, 2.0 / px))


def _coarse_fields(norm: np.ndarray, finite, lv: dict, run: Workers = SERIAL) -> dict:
    """Block means and the fields derived from them, for one window (or the whole image).

    The three smoothed fields are independent: ``run`` computes them concurrently.
    """
    f = lv["f"]
    cm = _block_mean(norm, f)
    fin_c = None if finite is None else _block_mean(finite.astype(np.float32), f) > 0.5
    sig_c = lv["sig_c"]
    smooth_c, det, tex = run.calls(
        lambda: ndi.gaussian_filter(cm, sig_c) if sig_c > 0.3 else cm,
        lambda: ndi.gaussian_filter(cm, lv["det_c"]),
        lambda: _coarse_texture(norm, cm, lv),
    )
    return {"cm": cm, "fin_c": fin_c, "smooth_c": smooth_c, "det": det, "tex": tex}


def _coarse_halo(lv: dict) -> int:
    """Pixels of context that make a window's coarse fields equal the whole image's."""
    sig = max(lv["sig_c"], lv["det_c"], lv["tex_c"], 2.0 / lv["pc"])
    return int(np.ceil(4.0 * sig + 3)) * lv["f"]


def _sample_levels(
    src,
    shape,
    px: float,
    f: int,
    opts: dict,
    smooth_um: float,
    tile_size: int | None,
    run: Workers = SERIAL,
):
    """First pass: robust range, noise, and the coarse-field samples of the whole image.

    Returns ``(lv, fields)``: the levels dict (grey range, noise, smoothing scales, the samples
    of the detection image, texture and smoothed image at a regular grid of blocks) and, when
    the image was read in one window, its coarse fields (reused by the segmentation).
    ``run`` reads and samples the tiles of a tiled image concurrently (the fields of one
    window, of an image read whole).
    """
    h, w = shape
    s = max(1, int(np.ceil(np.sqrt(h * w / _SAMPLE))))
    integer = np.issubdtype(np.dtype(src.dtype), np.integer) or src.dtype == bool
    # integer images stay integers (exact, and their order statistics need no float copies)
    rows = np.asarray(src[::s, :]).astype(np.int64 if integer else np.float64)
    sample = rows[:, ::s].ravel()
    lv: dict = {"px": px, "f": f, "pc": px * f, "stride": s}
    if not integer:
        fin = np.isfinite(sample)
        if not fin.all():
            sample = sample[fin]
    if sample.size == 0:
        return None, None
    lo, med, hi = (float(v) for v in _quantiles(sample, [0.1, 50, 99.9], integer))
    if not hi - lo > 1e-12 * max(1.0, abs(hi)):
        lo, hi = float(np.min(sample)), float(np.max(sample))
    lv.update(lo=lo, hi=hi, span=hi - lo, fill=med, sample=sample)
    if not hi - lo > 1e-12 * max(1.0, abs(hi)):
        return lv, None
    span = hi - lo
    noise_job = run.submit(_pixel_noise, rows, s, w, integer, span)
    pc = px * f
    detect_um = opts["detect_um"] if opts["detect_um"] is not None else 2.0 * smooth_um
    det_c = max(detect_um / pc, 1.0)
    lv.update(sig_c=smooth_um / pc, det_c=det_c, tex_c=max(0.7, 1.0 / pc))
    # coarse fields, sampled on a regular grid of blocks (the same grid in every window)
    hc, wc = -(-h // f), -(-w // f)
    sc = max(1, int(np.ceil(np.sqrt(hc * wc / _SAMPLE))))
    keys = ("det", "tex", "smooth_c")
    parts: dict = {k: [] for k in keys}
    one = tile_size is None or (h <= tile_size and w <= tile_size)
    tiles = (
        [Tile((0, h, 0, w), (0, h, 0, w))]
        if one
        else tile_grid(shape, tile_size, before=_coarse_halo(lv), after=_coarse_halo(lv), align=f)
    )

    def sample(tile: Tile):
        r0, r1, c0, c1 = tile.window
        norm, finite = _normalise(_read(src, r0, r1, c0, c1), lo, span, lv["fill"])
        fl = _coarse_fields(norm, finite, lv, run if one else SERIAL)
        if one:  # the whole image in one window: kept for the segmentation
            fl.update(norm=norm, finite=finite)
        del norm
        # the core's blocks on the global sampling grid
        i0, i1 = tile.core[0] // f, -(-tile.core[1] // f)
        j0, j1 = tile.core[2] // f, -(-tile.core[3] // f)
        ii = np.arange(_round_up(i0, sc), i1, sc) - r0 // f
        jj = np.arange(_round_up(j0, sc), j1, sc) - c0 // f
        sel = np.ix_(ii, jj)
        ok = np.ones((ii.size, jj.size), bool) if fl["fin_c"] is None else fl["fin_c"][sel]
        return {k: fl[k][sel][ok] for k in keys}, (fl if one else None)

    fields = None
    for got, fl in run.map(sample, tiles):
        for k in keys:
            parts[k].append(got[k])
        if fl is not None:
            fields = fl
    for k in keys:
        lv["s_" + k] = np.concatenate(parts[k]).astype(np.float64)
    noise = noise_job.result()
    lv.update(noise=noise, noise_d=noise / f / max(1.0, 2.0 * np.sqrt(np.pi) * det_c))
    return lv, fields


def _pixel_noise(rows: np.ndarray, s: int, w: int, integer: bool, span: float) -> float:
    """Pixel noise (robust sigma, in units of ``span``) from neighbour differences along the
    rows sampled every ``s`` rows of an image ``w`` pixels wide."""
    d = (rows[:, 1:w:s] - rows[:, 0 : w - 1 : s]).ravel()  # columns 0, s, 2s, ... < w - 1
    if not integer:
        d = d[np.isfinite(d)]
    if not d.size:
        return 0.0
    # twice the differences: whole numbers for integer images, so is twice their median
    d2 = 2 * d
    m2 = _quantiles(d2, 50, integer)[0]
    dev = np.abs(d2 - np.int64(m2)) if integer and m2 == np.round(m2) else np.abs(d2 - m2)
    mad2 = _quantiles(dev, 50, integer)[0]
    return float(1.4826 * 0.5 * mad2 / span / np.sqrt(2.0))


def _round_up(value: int, step: int) -> int:
    return -(-int(value) // step) * step


def _levels(lv: dict, opts: dict, contrast, background: str, info: dict) -> None:
    """Reference level, contrast and texture threshold from the samples (updates ``lv``)."""
    s_fin, t_fin, sm_fin = lv["s_det"], lv["s_tex"], lv["s_smooth_c"]
    lo, span = lv["lo"], lv["span"]
    mode_all, width_all, _, _ = _histogram_mode(s_fin, -0.05, 1.05)
    if background == "auto":
        dark_share = float(np.mean(s_fin < mode_all + 0.1))
        masked = mode_all < 0.15 and dark_share > opts["dark_fraction"]
        mode = "masked" if masked else "groundmass"
    else:
        mode = background
    lv["mode"] = mode
    info["background"] = mode
    lv["tex_thr"] = None
    if mode == "masked":
        ref = mode_all
        c = (
            contrast
            if contrast is not None
            else max(0.05, 4.0 * max(width_all / 1.1774, lv["noise_d"]))
        )
        lv.update(ref=ref, c=c, dark_thr=-np.inf)
        info.update(reference=ref * span + lo, contrast=c)
        return
    # the groundmass is the textured mode: histogram of the most textured half of the image
    # (smooth crystal interiors drop out, whatever their share of the image), then the peak of
    # the full histogram near that level gives its level and width
    tex_low, tex_mid = (float(v) for v in np.percentile(t_fin, [5, 50]))
    rough = t_fin >= tex_mid
    not_black = s_fin > mode_all + 0.1 if mode_all < 0.15 else np.ones(s_fin.shape, bool)
    ref, _, _, _ = _histogram_mode(s_fin[rough & not_black], -0.05, 1.05)
    ref, ref_w, _, _ = _histogram_mode(s_fin[not_black], -0.05, 1.05, near=(ref, 0.04))
    c = contrast if contrast is not None else max(3.0 * ref_w / 1.1774, 4.0 * lv["noise_d"], 0.03)
    dark_thr = 0.45 * ref
    lv.update(ref=ref, c=c, dark_thr=dark_thr)
    info.update(reference=ref * span + lo, contrast=c, dark_level=dark_thr * span + lo)
    if opts["texture"]:
        # smooth crystal interiors set the low texture level, the groundmass the high one
        gm = (np.abs(sm_fin - ref) < 0.5 * c) & (sm_fin > dark_thr)
        tex_gm = float(np.median(t_fin[gm])) if gm.any() else np.inf
        tex_thr = float(max(opts["smooth_texture"] * tex_gm, 2.0 * tex_low))
        lv["tex_thr"] = tex_thr
        info.update(texture_threshold=tex_thr * span, texture_groundmass=tex_gm * span)


# ----------------------------------------------------------------------------------------------
# one window with fixed levels
# ----------------------------------------------------------------------------------------------
def _segment_window(
    norm: np.ndarray,
    finite,
    lv: dict,
    opts: dict,
    *,
    min_area_um2: float,
    smooth_um: float,
    close_um: float,
    split_touching: bool,
    fields: dict | None = None,
    run: Workers = SERIAL,
) -> np.ndarray:
    """Crystal labels of one window (or the whole image) with the image's fixed levels.

    ``run`` computes independent stages concurrently: the full-resolution smoothing (needed
    only by the edge refinement) alongside the coarse stages, the coarse fields, the bright
    and dark cores, the gradient alongside the cutting, the rim band and the upsampling of the
    coarse labels alongside the edge refinement. Each stage computes what it would serially:
    the labels are the same.
    """
    sigma_px = smooth_um / lv["px"]
    smooth_job = run.submit(_smoothed, norm, sigma_px)
    try:
        return _segment_stages(
            norm,
            finite,
            lv,
            opts,
            smooth_job,
            min_area_um2=min_area_um2,
            smooth_um=smooth_um,
            close_um=close_um,
            split_touching=split_touching,
            fields=fields,
            run=run,
        )
    finally:
        smooth_job.cancel()


def _smoothed(norm: np.ndarray, sigma_px: float) -> np.ndarray:
    """The full-resolution image smoothed at ``sigma_px`` (edges and merging are judged on it)."""
    return ndi.gaussian_filter(norm, sigma_px) if sigma_px > 0.3 else norm


def _core_labels(part: np.ndarray, open_px: float, close_px: float, max_hole: float):
    """Labels of the cores of one sign: opened, closed, hole-filled; (labels, n)."""
    m = _open(part, open_px)
    m = _close(m, close_px)
    m = _fill_holes(m, max_hole)
    return ndi.label(m)


def _segment_stages(
    norm: np.ndarray,
    finite,
    lv: dict,
    opts: dict,
    smooth_job,
    *,
    min_area_um2: float,
    smooth_um: float,
    close_um: float,
    split_touching: bool,
    fields: dict | None,
    run: Workers,
) -> np.ndarray:
    """The stages of :func:`_segment_window` (``smooth_job``: the full-resolution smoothing)."""
    px, f, pc = lv["px"], lv["f"], lv["pc"]
    ref, c, dark_thr = lv["ref"], lv["c"], lv["dark_thr"]
    fl = fields if fields is not None else _coarse_fields(norm, finite, lv, run)
    cm, fin_c, smooth_c, det, tex = fl["cm"], fl["fin_c"], fl["smooth_c"], fl["det"], fl["tex"]
    empty = np.zeros(norm.shape, dtype=np.int32)
    if lv["mode"] == "masked":
        pos = det > ref + c
        neg = np.zeros_like(pos)
        bg_marker = smooth_c < ref + 0.5 * c
    else:
        dev = det - ref
        pos = dev > c
        neg = (dev < -c) & (det > dark_thr)
        bg_marker = (np.abs(smooth_c - ref) < 0.5 * c) | (smooth_c < dark_thr)
    if fin_c is not None:
        pos &= fin_c
        neg &= fin_c
        bg_marker |= ~fin_c

    # ---- crystal cores: open away microlites, bridge cracks, fill inclusions; sign by sign
    open_um = opts["open_um"]
    grow_um = opts["grow_um"] if opts["grow_um"] is not None else open_um + 3.0
    open_px, close_px = open_um / pc, close_um / pc
    min_px_c = min_area_um2 / (pc * pc)
    cores = np.zeros(cm.shape, dtype=np.int32)
    n_cores = 0
    parts = [part for part in (pos, neg) if part.any()]
    found = run.map(
        lambda part: _core_labels(part, open_px, close_px, opts["max_hole_fraction"]), parts
    )
    for lab, n in found:
        cores = np.where(lab > 0, lab + n_cores, cores)
        n_cores += n
    if n_cores:
        area = np.bincount(cores.ravel(), minlength=n_cores + 1)
        keep = area >= 0.25 * min_px_c
        keep[0] = False
        if lv["tex_thr"] is not None and keep.any():
            smooth_share = np.bincount(
                cores.ravel(), weights=(tex < lv["tex_thr"]).ravel(), minlength=n_cores + 1
            ) / np.maximum(area, 1)
            keep &= smooth_share >= opts["min_smooth_share"]
            # the bright polished walls of vesicles hug a near-black disc: not crystals
            dark = smooth_c < dark_thr
            if fin_c is not None:
                dark &= fin_c
            if dark.any():
                near_dark = _near(dark, max(1.0, 6.0 / pc))
                dark_share = np.bincount(
                    cores.ravel(), weights=near_dark.ravel(), minlength=n_cores + 1
                ) / np.maximum(area, 1)
                keep &= dark_share <= opts["max_vesicle_share"]
        cores = np.where(_lut(keep, cores), cores, 0)
    if not cores.any():
        return empty

    # ---- cut, grow back to the edges, join what one crystal lost to a cut or a crack
    grad_job = run.submit(ndi.gaussian_gradient_magnitude, cm, 0.7)
    pieces = _cut_cores(cores, max(opts["split_h_um"] / pc, 1.0)) if split_touching else cores
    grad = grad_job.result()
    far = ~_near(pieces > 0, grow_um / pc)
    coarse = _grow(
        pieces,
        grad,
        (bg_marker & (pieces == 0)) | far,
        erode_px=1.0,
        cut_px=1.0,
        mask=_near(pieces > 0, grow_um / pc + 1.5),
    )
    coarse = _relabel(coarse)
    coarse = _fill_label_holes(coarse, opts["max_hole_fraction"])

    # ---- full resolution: each crystal's edge at the midpoint of its rim and the reference
    band = (max(1.0, (smooth_um + 1.5) / pc), max(2.0, (smooth_um + 5.0) / pc))
    thr, sign = _rim_thresholds(coarse, smooth_c, ref, band)
    smooth = smooth_job.result()
    # the rims of the pieces for the merging (below), while the edges are refined
    rim_job = None
    if lv["mode"] != "masked" and (opts["merge_rim"] is None or opts["merge_rim"] > 0):
        # the block means of a band of the rim beyond the blur's reach of the outside (and
        # beyond the blocks on the edge), one block or 3 um wide; judged on at least 20 um
        # of a free face
        near, width = max(1.5, (2.0 * smooth_um + px) / pc), max(1.0, 3.0 / pc)
        rim_job = run.submit(_rim_band, coarse, cm, (near, near + width), close_um / pc)
    labels = _refine_edges(coarse, f, smooth, thr, sign, line_px=int(np.ceil(1.0 / px)), run=run)
    # join what one crystal lost to a cut or a crack (judged at full resolution; the rims of
    # the pieces, on the coarse blocks, which carry the same labels)
    rim = None
    if rim_job is not None:
        rim_lab, rim_val = rim_job.result()
        rim = (
            rim_lab,
            rim_val,
            opts["merge_rim"] if opts["merge_rim"] is not None else 0.4 * c,
            width * 20.0 / pc,
            lv["noise"] / f,  # of a block mean
        )
    merge = functools.partial(
        _merge_regions,
        small_px=2.0 * min_area_um2 / (px * px),
        merge_grey=opts["merge_grey"] if opts["merge_grey"] is not None else c,
        max_deficit=opts["max_deficit"] if split_touching else np.inf,
        band_px=max(2, int(round(3.0 / px))),
        lenient=lv["mode"] == "masked",
        return_areas=True,
        return_map=True,
    )
    labels, area, new_id = merge(labels, smooth, rim=rim)
    labels, area = _fill_label_holes(labels, opts["max_hole_fraction"], area, in_place=True)
    # the contacts between the crystals that still touch, onto their grain boundaries; then
    # the pieces of one crystal whose cut now runs along its crack (where the grey just
    # behind the contact agrees) are joined
    if (
        split_touching
        and opts["contact_um"] > 0
        and _refine_contacts(labels, smooth, opts["contact_um"] / px)
    ):
        if rim is not None:
            top = int(rim[0].max()) + 1 if rim[0].size else 0
            lut = np.zeros(max(top, new_id.size), dtype=np.int32)
            lut[: new_id.size] = new_id
            rim = (lut[rim[0]], *rim[1:])
        labels, area, _ = merge(labels, smooth, rim=rim)
    if opts["trim_um"] > 0:
        labels = _open_labels(labels, opts["trim_um"] / px)
        area = np.bincount(labels.ravel(), minlength=area.size)
    if finite is not None and not finite.all():
        labels[~finite] = 0
        area = np.bincount(labels.ravel())
    min_px = min_area_um2 / (px * px)
    labels, area = _adopt_enclosed(labels, area, min_px)
    keep = (area >= min_px) & (area > 0)
    keep[0] = False
    if lv["mode"] != "masked" and keep.any():
        # no crystal is near-black: such labels are the filled interiors of vesicles whose
        # bright polished walls passed as a core and were then trimmed by the edge refinement
        # (only labels with a pixel below the level can be below it on average: their
        # pixels' sums, in the same order as over the whole image)
        low = labels[(smooth < np.float64(dark_thr)) & (labels > 0)]
        if low.size:
            asked = np.zeros(area.size, dtype=bool)
            asked[low] = True
            sel = _lut(asked, labels)
            grey = np.bincount(labels[sel], weights=smooth[sel], minlength=area.size)
            keep &= ~asked | (grey >= dark_thr * area)
    # the kept labels, renumbered 1..n in order, in one look-up
    lut = (np.cumsum(keep) * keep).astype(np.int32)
    return _lut(lut, labels)


def _boundary_relief(smooth: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Where grain boundaries run, at the pixels ``at`` (flat indices) of a smoothed grey
    image: the dark-line strength (the larger Hessian eigenvalue, positive across a thin
    dark seam) plus half the gradient magnitude (a grey step between two phases), from
    central differences (edges repeated)."""
    h, w = smooth.shape
    r, c = np.divmod(at, w)
    up, down = np.maximum(r - 1, 0) * w, np.minimum(r + 1, h - 1) * w
    left, right = np.maximum(c - 1, 0), np.minimum(c + 1, w - 1)
    f = smooth.ravel()
    mid = f[at].astype(np.float32)
    vu, vd, vl, vr = f[up + c], f[down + c], f[r * w + left], f[r * w + right]
    hrr = vu + vd - 2 * mid
    hcc = vl + vr - 2 * mid
    hrc = 0.25 * (f[down + right] - f[down + left] - f[up + right] + f[up + left])
    gr, gc = 0.5 * (vd - vu), 0.5 * (vr - vl)
    lam = 0.5 * (hrr + hcc) + np.sqrt(0.25 * (hrr - hcc) ** 2 + hrc * hrc)
    return np.maximum(lam, 0) + 0.5 * np.sqrt(gr * gr + gc * gc)


_CONTACT_BLOCK = 16  # side (pixels) of the blocks that group the contacts into boxes


def _overlapping_pairs(b: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)``, ``i < j``, of the boxes (rows ``r0, r1, c0, c1`` of ``b``, ends
    excluded) that share a pixel; compared ``chunk`` boxes against all at a time."""
    ii, jj = [], []
    for s in range(0, len(b), chunk):
        x = b[s : s + chunk, :, None]
        ov = (x[:, 0] < b[:, 1]) & (b[:, 0] < x[:, 1]) & (x[:, 2] < b[:, 3]) & (b[:, 2] < x[:, 3])
        i, j = np.nonzero(ov)
        i += s
        ii.append(i[i < j])
        jj.append(j[i < j])
    return np.concatenate(ii), np.concatenate(jj)


def _merge_overlapping(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Boxes ``(r0, r1, c0, c1)`` (ends excluded), each group of boxes that overlap (directly
    or through others) replaced by the box around it, until no two boxes overlap."""
    b = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    while len(b) > 1:
        i, j = _overlapping_pairs(b)
        if not i.size:
            break
        graph = sparse.coo_matrix((np.ones(i.size, np.int8), (i, j)), shape=(len(b), len(b)))
        n, group = connected_components(graph, directed=False)
        out = np.empty((n, 4), dtype=np.int64)
        out[:, 0::2], out[:, 1::2] = np.iinfo(np.int64).max, np.iinfo(np.int64).min
        for col in (0, 2):
            np.minimum.at(out[:, col], group, b[:, col])
            np.maximum.at(out[:, col + 1], group, b[:, col + 1])
        b = out
    return [tuple(int(v) for v in row) for row in b]


def _contact_boxes(contact: np.ndarray, margin: int) -> list[tuple[slice, slice]]:
    """Disjoint boxes holding every pixel within ``margin`` (on each axis) of a True pixel.

    The True pixels are grouped by the blocks of :data:`_CONTACT_BLOCK` pixels that hold
    them, grown by ``margin`` pixels' worth of blocks (connected groups, 8-neighbourhood);
    each group gives the box around its pixels grown by ``margin``, and boxes that overlap
    are replaced by the box around both until none do. A pixel within ``margin`` of True
    pixels lies in the box of their group, with all of them: what is computed from them on
    its box (a distance within ``margin``, a connected set of such pixels) is the same as on
    the whole image.
    """
    b = _CONTACT_BLOCK
    h, w = contact.shape
    r, c = _nonzero(contact)
    blocks = np.zeros((-(-h // b), -(-w // b)), dtype=bool)
    blocks[r // b, c // b] = True
    groups, k = ndi.label(
        _dilate_square(blocks, -(-margin // b)), structure=np.ones((3, 3), dtype=bool)
    )
    gid = groups[r // b, c // b] - 1
    r0, c0 = np.full(k, h), np.full(k, w)
    r1, c1 = np.zeros(k, dtype=r.dtype), np.zeros(k, dtype=c.dtype)
    np.minimum.at(r0, gid, r)
    np.minimum.at(c0, gid, c)
    np.maximum.at(r1, gid, r)
    np.maximum.at(c1, gid, c)
    boxes = [
        (max(a0 - margin, 0), min(a1 + margin + 1, h), max(b0 - margin, 0), min(b1 + margin + 1, w))
        for a0, a1, b0, b1 in zip(r0.tolist(), r1.tolist(), c0.tolist(), c1.tolist(), strict=True)
    ]
    return [(slice(a0, a1), slice(b0, b1)) for a0, a1, b0, b1 in _merge_overlapping(boxes)]


def _refine_contacts(labels: np.ndarray, smooth: np.ndarray, reach_px: float) -> bool:
    """Move (in place) the boundaries between touching crystals onto the grain boundary.

    Within ``reach_px`` of a contact, the crystals' pixels are flooded again from the rest of
    each crystal over :func:`_boundary_relief`: the contact then follows the thin dark seam or
    the grey step between the two crystals, not the cut that separated their cores (a
    watershed of their shapes, which can lie tens of micrometres inside one of them). A
    crystal lying wholly within reach has no marker left and goes to its neighbours: on the
    benchmark scenes such labels are pieces cut off a crystal (keeping them lowers F1 on 5 of
    the 54 scenes and raises it on none). Returns whether any crystal touches another (else
    nothing was done).

    The work is done on the disjoint boxes of :func:`_contact_boxes` (margin: the reach and 2
    pixels) rather than on one crop around all the contacts, with the same result: a pixel
    within reach of contacts lies in their group's box with all of them (the same band), and
    each connected part of the band, grown by a pixel, and the neighbours the relief reads
    there lie in one box (the same floodings).
    """
    contact = _contact(labels)
    rows = np.flatnonzero(contact.any(axis=1))
    if not rows.size:
        return False
    cols = np.flatnonzero(contact.any(axis=0))
    h, w = labels.shape
    m = int(np.ceil(reach_px)) + 2
    r0, r1 = max(int(rows[0]) - m, 0), min(int(rows[-1]) + m + 1, h)
    c0, c1 = max(int(cols[0]) - m, 0), min(int(cols[-1]) + m + 1, w)
    crop, smooth_crop, contact = labels[r0:r1, c0:c1], smooth[r0:r1, c0:c1], contact[r0:r1, c0:c1]
    for box in _contact_boxes(contact, m):
        lab = crop[box]
        _flood_band(lab, smooth_crop[box], _near(contact[box], reach_px) & (lab > 0))
    return True


def _flood_band(lab: np.ndarray, smooth: np.ndarray, band: np.ndarray) -> None:
    """Flood (in place) the pixels of the ``band`` of a label image from its other pixels
    over :func:`_boundary_relief` of ``smooth``.

    One watershed floods every connected part of the band (8-connected) at once, on the band
    grown by a pixel: no two parts are 4-neighbours, each is reached only from the marker
    pixels next to it, and the flooding queue orders each part's own pixels as before (by
    relief, then by when they were queued), so each part gets what a flooding of it alone,
    on its own box, would give. That holds where no two markers of equal relief compete:
    scikit-image queues all markers at once, and the order among equal ones depends on
    everything in its queue. The relief is a continuous grey, so they do not tie; the labels
    were the same on the 54 benchmark scenes, the real image and 327 random stage inputs.
    """
    # the marker pixels next to the band too: the flooding starts from the lowest of them
    reach = _dilate_square(band, 1) & (lab > 0)
    at = np.flatnonzero(reach)
    relief = np.zeros(lab.shape, dtype=np.float32)
    relief.ravel()[at] = _boundary_relief(smooth, at)
    out = segmentation.watershed(relief, np.where(band, 0, lab), mask=reach)
    fix = band & (out > 0)
    lab[fix] = out[fix]


def _open_labels(labels: np.ndarray, radius_px: float) -> np.ndarray:
    """The crystals' outline against the background opened (:func:`_open`) with a disc of
    ``radius_px``.

    What sticks out into the groundmass narrower than the disc's diameter goes; the image edge
    is not background (crystals cut by it keep their cut) and the contacts between touching
    crystals stay where they are (the opening is of the union of the crystals). A label with
    no pixel left (thinner than the disc everywhere) is kept as it was.
    """
    if not labels.any():
        return labels
    keep = _open(labels != 0, radius_px)
    gone = np.bincount(labels[keep], minlength=int(labels.max()) + 1) == 0
    gone[0] = False
    keep |= _lut(gone, labels)
    return np.where(keep, labels, 0).astype(labels.dtype, copy=False)


def _adopt_enclosed(
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
    in_small = _lut(small, labels)
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
    sel = _lut(big, other)
    pair = piece[sel].astype(np.int64) * area.size + other[sel]
    keys, counts = np.unique(pair, return_counts=True)
    p, q = np.divmod(keys, area.size)
    adopt = counts > 0.5 * outline[p]
    if not adopt.any():
        return labels, area
    target = np.arange(area.size, dtype=labels.dtype)
    target[p[adopt]] = q[adopt]
    labels[in_small] = _lut(target, labels[in_small])
    area = area.copy()
    np.add.at(area, q[adopt], area[p[adopt]])
    area[p[adopt]] = 0
    return labels, area


def _relabel(labels: np.ndarray, return_lut: bool = False):
    """Consecutive ids 1..n in the order of the old ids (0 stays 0), as int32 (with
    ``return_lut`` also the look-up table, index = old id)."""
    n = int(labels.max()) if labels.size else 0
    present = np.zeros(n + 1, dtype=bool)
    present[labels.ravel()] = True
    present[0] = False
    lut = np.zeros(n + 1, dtype=np.int32)
    lut[present] = np.arange(1, int(present.sum()) + 1, dtype=np.int32)
    return (_lut(lut, labels), lut) if return_lut else _lut(lut, labels)


def _context_px(lv: dict, opts: dict, smooth_um: float, close_um: float) -> int:
    """Pixels of context around a crystal that make its labels in a window equal the whole's.

    The reach of every stage, in um: the detection and texture smoothing (4 sigma), the
    opening, closing and growth radii, the edge band of the refinement, the merging's look
    behind a cut, the outline's opening (``trim_um``); doubled for safety, and at least 32 blocks.
    """
    pc = lv["pc"]
    grow_um = opts["grow_um"] if opts["grow_um"] is not None else opts["open_um"] + 3.0
    reach_um = (
        4.0 * max(lv["det_c"], lv["tex_c"], lv["sig_c"]) * pc
        + opts["open_um"]
        + close_um
        + grow_um
        + 4.0 * smooth_um
        + 3.0 * pc
        + 3.0
        + 2.0 * opts["trim_um"]
    )
    return max(int(np.ceil(2.0 * reach_um / lv["px"])), 32 * lv["f"])


def segment_crystals(
    image,
    pixel_size_um: float = 1.0,
    *,
    min_area_um2: float = 400.0,
    smooth_um: float = 1.5,
    contrast: float | None = None,
    close_um: float = 3.0,
    split_touching: bool = True,
    background: str = "auto",
    tile_size: int | None = None,
    return_info: bool = False,
    progress: Callable[[int, int], None] | None = None,
    threads: int | None = None,
    **options,
):
    """Segment phenocrysts in a BSE image (or element maps) into integer labels.

    Parameters
    ----------
    image : array-like
        2D greyscale image of any integer or float dtype, RGB(A) (converted to grey with a
        warning), or a ``(channels, y, x)`` stack of element maps (combined into their first
        principal component). NaN pixels are never crystals. A 2D dask array (or any array
        read by slicing: zarr, h5py, memory maps) and a 2D numpy array are read one tile at a
        time, never copied whole as floats; RGB(A) and element maps are combined in memory
        first.
    pixel_size_um : float
        Micrometres per pixel. Every size parameter below is in micrometres and is converted
        with it, so the same section imaged at another pixel size gives the same crystals.
    min_area_um2 : float
        Smallest crystal area kept, in square micrometres.
    smooth_um : float
        Gaussian smoothing scale (sigma) in micrometres, against pixel noise; the edges are
        placed on the image smoothed at this scale.
    contrast : float or None
        Smallest grey deviation from the groundmass (or from the masked background) that counts
        as crystal, as a fraction of the robust grey range (0.1 to 99.9 percentiles). ``None``
        sets it from the width of the groundmass mode and the noise.
    close_um : float
        Closing radius in micrometres: cracks and gaps narrower than about twice this are
        bridged so they neither split a crystal nor cut into it.
    split_touching : bool
        Split crystals that touch: a watershed of the distance transform from its h-maxima cuts
        the crystal regions, a gradient watershed moves each cut onto the grain boundary, and two
        pieces are joined again when the grey just behind the cut is the same on both sides and
        their union is convex (a crack, not a grain boundary).
    background : {"auto", "groundmass", "masked"}
        ``"groundmass"``: crystals are brighter or darker than a dominant, textured groundmass
        mode. ``"masked"``: the background was masked black and everything clearly brighter is
        crystal. ``"auto"`` picks ``"masked"`` when the dominant smoothed grey mode is near black
        and covers a large share of the image.
    tile_size : int or None
        Side in pixels of the tiles a large image is segmented in (rounded to a multiple of
        the coarse block). ``None`` (default): images of more than 4096 x 4096 pixels are cut
        into tiles of 2048 pixels, smaller ones are segmented whole. Every level (grey range,
        noise, groundmass mode, contrast, texture threshold) is set once from the whole image;
        each tile is then segmented with a halo around it and keeps the crystals whose bounding
        box starts in it and that stay away from the halo's cut sides, so no crystal is cut
        or counted twice at a seam. A crystal larger than the halo (``tile_halo_um``) is
        segmented again in a window grown around it until it fits (up to four times the tile
        window; beyond that it is kept as cut, and ``info["n_truncated"]`` counts it).
    return_info : bool
        Also return a dict with the levels and parameters used.
    progress : callable, optional
        ``progress(done, total)`` after each tile of a tiled image (``total`` tiles), and
        ``progress(1, 1)`` when an image segmented whole is done. An exception it raises (a
        Cancel button's) stops the segmentation and propagates.
    threads : int or None
        Worker threads. ``None`` (default): ``min(4, CPUs available)``; 1: everything in the
        calling thread. A tiled image is segmented several tiles at a time; an image
        segmented whole runs independent stages concurrently (the full-resolution smoothing
        alongside the coarse stages, the bright and dark cores, ...). The labels are the same
        for every thread count.
    **options
        Fine control (lengths in um): ``work_um`` (3.0: detection, splitting and growing run
        on blocks of about this size, edges and merging at full resolution), ``detect_um``
        (smoothing of the detection image, default ``2 * smooth_um``), ``open_um`` (3.0,
        opening that removes microlites from the crystal cores), ``grow_um`` (``open_um + 3``,
        how far cores grow back to the crystal edge), ``split_h_um`` (3.0, depth of a neck that
        separates two crystal bodies), ``max_deficit`` (0.1, convex-hull excess, as a fraction
        of the smaller piece, under which two pieces may be one crystal), ``merge_grey`` (grey
        step across a cut that keeps two pieces apart; default the contrast), ``merge_rim``
        (difference of the pieces' rim greys, on their free faces, that keeps them apart;
        default 0.4 x the contrast; 0 turns the rim test off), ``contact_um`` (24: how far
        the boundary between two touching crystals may move onto their grain boundary, the
        thin dark seam or grey step between them; 0 keeps the cut of their cores),
        ``max_hole_fraction`` (0.5), ``texture`` (True: reject textured, microlite-rich cores),
        ``smooth_texture`` (0.75), ``min_smooth_share`` (0.25), ``max_vesicle_share`` (0.6:
        cores mostly within 6 um of near-black pixels are vesicle walls), ``dark_fraction``
        (0.2: near-black share above which the background may be a black mask),
        ``trim_um`` (4: each crystal is opened with a disc of this radius, so that specks
        and bumps narrower than its diameter stuck to the rim are left out; 0 = off),
        ``tile_halo_um`` (400: extent of a crystal that a tile surely holds whole; larger ones
        are segmented again in a larger window).

    Returns
    -------
    numpy.ndarray or (numpy.ndarray, dict)
        int32 labels of the image's (y, x) shape, 0 = not a crystal, 1..n crystals; with
        ``return_info=True`` also a dict (``background``, ``reference``, ``contrast``,
        ``noise``, ``full_scale``, ``n_tiles``, ``threads``, ...; grey levels in the image's
        own units).

    Raises
    ------
    ZonationInputError
        Bad image (1D, empty, 4D, 3D that is neither channels nor RGB), bad pixel size, bad
        tile size or thread count, unknown option or background mode.

    Warns
    -----
    UserWarning
        RGB input (converted to grey), constant or all-NaN image (no crystals), crystals still
        cut by a tile seam after the largest window tried.

    Notes
    -----
    Steps: robust normalisation; block means of about ``work_um`` (and the grey variance in
    each block, the texture); the reference level from the histogram (the groundmass is the
    mode of the most textured half of the image; a near-black dominant mode means a masked
    background); crystal cores = deviation from the reference beyond the contrast on the
    detection-smoothed image, split by sign, opened, closed and hole-filled, kept when large
    enough and smooth enough (microlite clusters are textured); cores cut at the h-maxima of
    their distance transform; a gradient watershed grows the pieces against a background marker
    (groundmass-level or near-black blocks); pieces joined when the grey behind their contact
    agrees and their union stays convex; finally each crystal's edge is placed at full
    resolution where the smoothed grey crosses the midpoint between its rim and the reference
    (where a blurred step crosses the true edge). The levels come from regular samples of the
    image (about 250,000 pixels and coarse blocks), the same whether or not it is tiled.
    """
    unknown = set(options) - set(_DEFAULT_OPTIONS)
    if unknown:
        raise ZonationInputError(
            f"segment_crystals got unknown option(s) {sorted(unknown)}; known options are "
            f"{sorted(_DEFAULT_OPTIONS)} besides the named keywords."
        )
    opts = {**_DEFAULT_OPTIONS, **options}
    if background not in _BACKGROUNDS:
        raise ZonationInputError(
            f"background={background!r} is not one of {_BACKGROUNDS}; use 'auto' unless you "
            "know whether the image shows groundmass or a background masked black."
        )
    px = check_pixel_size(pixel_size_um)
    for name, val in (
        ("min_area_um2", min_area_um2),
        ("smooth_um", smooth_um),
        ("close_um", close_um),
        ("tile_halo_um", opts["tile_halo_um"]),
    ):
        if not (isinstance(val, (int, float, np.number)) and np.isfinite(val) and val >= 0):
            raise ZonationInputError(f"{name}={val!r} must be a non-negative number (um).")
    if contrast is not None and not (np.isfinite(contrast) and contrast > 0):
        raise ZonationInputError(
            f"contrast={contrast!r} must be a positive fraction of the grey range, or None."
        )
    if tile_size is not None and not (
        isinstance(tile_size, (int, np.integer))
        and not isinstance(tile_size, bool)
        and tile_size >= 64
    ):
        raise ZonationInputError(
            f"tile_size={tile_size!r} must be an integer number of pixels >= 64, or None "
            "(automatic: tiles of 2048 pixels above 4096 x 4096)."
        )
    n_threads = resolve_threads(threads)
    src, dtype = _grey_source(image)
    shape = tuple(int(s) for s in src.shape)
    info: dict = {
        "background": None,
        "pixel_size_um": px,
        "n_crystals": 0,
        "n_tiles": 1,
        "threads": n_threads,
    }
    if tile_size is None and shape[0] * shape[1] > TILE_AUTO_PIXELS:
        tile_size = TILE_AUTO_SIZE
    tiled = tile_size is not None and (shape[0] > tile_size or shape[1] > tile_size)
    if n_threads > 1 and not isinstance(src, np.ndarray):
        src = _Serialised(src)  # lazy sources are read by one thread at a time
    with Workers(n_threads) as run:
        return _segment_source(
            src,
            shape,
            dtype,
            px,
            opts,
            info,
            run,
            min_area_um2=min_area_um2,
            smooth_um=smooth_um,
            close_um=close_um,
            split_touching=split_touching,
            contrast=contrast,
            background=background,
            tile_size=tile_size if tiled else None,
            return_info=return_info,
            progress=progress,
        )


class _Serialised:
    """An array-like whose windows are read under a lock (one reading thread at a time)."""

    def __init__(self, src) -> None:
        self._src = src
        self._lock = threading.Lock()
        self.shape, self.dtype, self.ndim = src.shape, src.dtype, src.ndim

    def __getitem__(self, key) -> np.ndarray:
        with self._lock:
            return np.asarray(self._src[key])


def _segment_source(
    src,
    shape: tuple[int, int],
    dtype: np.dtype,
    px: float,
    opts: dict,
    info: dict,
    run: Workers,
    *,
    min_area_um2: float,
    smooth_um: float,
    close_um: float,
    split_touching: bool,
    contrast,
    background: str,
    tile_size: int | None,
    return_info: bool,
    progress,
):
    """:func:`segment_crystals` after the checks: levels, then the image whole or tiled."""
    tiled = tile_size is not None

    def empty():
        out = np.zeros(shape, dtype=np.int32)
        return (out, info) if return_info else out

    f = _work_factor(px, opts["work_um"])
    lv, fields = _sample_levels(src, shape, px, f, opts, smooth_um, tile_size, run)
    if lv is None:
        warnings.warn(
            "the image has no finite pixels; no crystals found.", UserWarning, stacklevel=3
        )
        return empty()
    info.update(full_scale=_full_scale(lv["sample"], dtype), grey_lo=lv["lo"], grey_hi=lv["hi"])
    if fields is None and "noise" not in lv:
        warnings.warn(
            "the image is constant (no grey contrast); no crystals found. Check that the right "
            "image or channel was passed.",
            UserWarning,
            stacklevel=3,
        )
        return empty()
    info.update(noise=lv["noise"] * lv["span"], work_factor=f)
    _levels(lv, opts, contrast, background, info)
    kwargs = dict(
        min_area_um2=min_area_um2,
        smooth_um=smooth_um,
        close_um=close_um,
        split_touching=split_touching,
    )
    if not tiled:
        if fields is not None and "norm" in fields:
            norm, finite = fields.pop("norm"), fields.pop("finite")
        else:
            norm, finite = _normalise(
                _read(src, 0, shape[0], 0, shape[1]), lv["lo"], lv["span"], lv["fill"]
            )
        labels = _segment_window(norm, finite, lv, opts, fields=fields, run=run, **kwargs)
        if progress is not None:
            progress(1, 1)
    else:
        margin = _context_px(lv, opts, smooth_um, close_um)
        after = margin + int(np.ceil(opts["tile_halo_um"] / px))
        tiles = tile_grid(shape, int(tile_size), before=margin, after=after, align=f)

        def segment_window(win):
            r0, r1, c0, c1 = win
            norm, finite = _normalise(_read(src, r0, r1, c0, c1), lv["lo"], lv["span"], lv["fill"])
            return _segment_window(norm, finite, lv, opts, **kwargs)

        # several tiles at a time, each segmented in its worker's thread
        labels, stats = stitch_tiles(
            shape,
            tiles,
            segment_window,
            margin=margin,
            align=f,
            progress=progress,
            threads=run.n,
        )
        info.update(
            stats,
            tile_core_px=_round_up(int(tile_size), f),
            tile_margin_px=margin,
            tile_after_px=after,
        )
        if stats["n_truncated"]:
            warnings.warn(
                f"{stats['n_truncated']} crystal(s) larger than the largest window tried are "
                "cut by a tile seam; pass a larger tile_size or tile_halo_um.",
                UserWarning,
                stacklevel=3,
            )
    info["n_crystals"] = int(labels.max())
    if return_info:
        return labels, info
    return labels


def _groundmass_level(grey: np.ndarray, labels: np.ndarray, px: float):
    """Reference grey of the pixels that are not crystals: (level, width, masked) in grey units.

    The groundmass is the mode of the most textured half of the non-crystal pixels; a
    near-black dominant mode (a background masked black) gives ``masked=True``.
    """
    finite = np.isfinite(grey)
    sample = _subsample(grey[finite])
    lo, hi = np.percentile(sample, [0.1, 99.9])
    span = float(hi - lo) or 1.0
    norm = ((np.where(finite, grey, float(np.median(sample))) - lo) / span).astype(np.float32)
    out = (labels == 0) & finite
    if not out.any():
        return np.nan, np.nan, False
    det = ndi.gaussian_filter(norm, max(1.0, 3.0 / px))
    s_out = _subsample(det[out])
    mode_all, width_all, _, _ = _histogram_mode(s_out, -0.05, 1.05)
    if mode_all < 0.15 and np.mean(s_out < mode_all + 0.1) > 0.5:
        return float(mode_all * span + lo), float(width_all * span), True
    tex = _subsample(_texture(norm, max(0.5, 1.0 / px), max(1.5, 2.0 / px))[out])
    rough = tex >= np.percentile(tex, 50)
    not_black = s_out > mode_all + 0.1 if mode_all < 0.15 else np.ones(s_out.shape, bool)
    level, _, _, _ = _histogram_mode(s_out[rough & not_black], -0.05, 1.05)
    level, width, _, _ = _histogram_mode(s_out[not_black], -0.05, 1.05, near=(level, 0.04))
    return float(level * span + lo), float(width * span), False


def _cracked(grey, labels, px, noise, ids):
    """Crystals crossed by thin dark features: a black top-hat inside the crystal, elongated."""
    sig = max(0.5, 0.5 / px)
    s = ndi.gaussian_filter(np.where(np.isfinite(grey), grey, 0.0), sig)
    size = max(3, 2 * int(round(1.5 / px)) + 1)
    bth = ndi.grey_closing(s, size=(size, size)) - s
    noise_l = noise / max(1.0, 2.0 * np.sqrt(np.pi) * sig)
    # away from the crystal's own edge (the closing reaches over it), also where it touches
    # another crystal (their grain boundary is a thin dark line too, not a crack)
    inner = edt.edt(labels, black_border=False, parallel=1) > size
    line = (bth > max(5.0 * noise_l, 1e-12)) & inner
    out = np.zeros(len(ids), dtype=bool)
    if not line.any():
        return out
    comp, n_comp = ndi.label(line, structure=np.ones((3, 3), bool))
    if n_comp == 0:
        return out
    min_len = max(10.0 / px, 5.0)
    # long and thin: a skeleton at least ``min_len`` long, and a mean width (area over
    # skeleton length) within the top-hat's reach; crossing cracks stay line-like, unlike
    # by the components' second moments
    rr, cc = _nonzero(comp)
    lbl = comp[rr, cc]
    cnt = np.bincount(lbl, minlength=n_comp + 1).astype(float)
    skel = morphology.skeletonize(line)
    length = np.bincount(comp[skel], minlength=n_comp + 1).astype(float)
    line_like = (length >= min_len) & (cnt <= size * np.maximum(length, 1.0))
    line_like[0] = False
    owner = np.zeros(n_comp + 1, dtype=np.int64)
    owner[lbl] = labels[rr, cc]
    cracked_ids = np.unique(owner[line_like])
    out[:] = np.isin(np.asarray(ids), cracked_ids)
    return out


def crystal_table(
    image,
    labels,
    pixel_size_um: float = 1.0,
    *,
    phase_names: dict | None = None,
) -> pd.DataFrame:
    """Measure each crystal: size, position, grey, a phase guess and QA flags.

    Parameters
    ----------
    image : array-like
        The image that was segmented (2D grey, RGB(A) or ``(channels, y, x)`` element maps, as
        for :func:`segment_crystals`; element maps are combined the same way).
    labels : array-like of int
        Crystal labels of the image's (y, x) shape, 0 = not a crystal.
    pixel_size_um : float
        Micrometres per pixel.
    phase_names : dict, optional
        Names for the grey-level classes, keyed by class (``"darker"``, ``"brighter_low"``,
        ``"brighter_high"``, ``"very_bright"``) or by the default name they replace
        (``{"olivine": "Ol"}``).

    Returns
    -------
    pandas.DataFrame
        One row per label: ``label``, ``area_um2``, ``phase``, ``touches_border``,
        ``mean_value``, ``median_value`` (image units), ``centroid_row``, ``centroid_col``
        (pixels), ``equivalent_diameter_um``, ``solidity``, ``low_contrast`` (the crystal's grey
        is within three widths of the groundmass mode), ``cracked`` (thin, elongated dark
        features inside), ``touching`` (shares a boundary with another label), ``n_pixels``.

    Notes
    -----
    The phase is a heuristic from BSE grey levels, not a mineral identification. Relative to
    the groundmass mode (glass and microlites): darker -> ``"plagioclase"``; brighter crystals
    are split in two grey modes (Otsu threshold of their medians when the two groups are well
    apart, else a threshold 0.18 of full scale above the groundmass): the lower
    ``"clinopyroxene"``, the higher ``"olivine"``; a median above 0.85 of full scale
    ``"oxide"``. Without a groundmass (a background masked black) the crystal's grey as a
    fraction of full scale is compared with 0.42 (the glass level of the synthetic model)
    instead. Element maps have no such physics: check the phases by hand.
    """
    px = check_pixel_size(pixel_size_um)
    grey, dtype = _to_grey(image)
    lab = check_labels(labels, grey.shape)
    names = {**DEFAULT_PHASE_NAMES}
    if phase_names:
        if not isinstance(phase_names, dict):
            raise ZonationInputError(
                "phase_names must be a dict, e.g. {'olivine': 'Ol'} or {'darker': 'plag'}."
            )
        for key, val in phase_names.items():
            if key in names:
                names[key] = str(val)
            else:
                hit = [k for k, v in DEFAULT_PHASE_NAMES.items() if v == key]
                if not hit:
                    raise ZonationInputError(
                        f"phase_names key {key!r} is neither a class ({sorted(names)}) nor a "
                        f"default name ({sorted(DEFAULT_PHASE_NAMES.values())})."
                    )
                names[hit[0]] = str(val)
    columns = [
        "label",
        "area_um2",
        "phase",
        "touches_border",
        "mean_value",
        "median_value",
        "centroid_row",
        "centroid_col",
        "equivalent_diameter_um",
        "solidity",
        "low_contrast",
        "cracked",
        "touching",
        "n_pixels",
    ]
    ids = np.unique(lab)
    ids = ids[ids > 0]
    if ids.size == 0:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    finite = np.isfinite(grey)
    props = measure.regionprops_table(
        lab,
        properties=("label", "area", "centroid", "equivalent_diameter_area", "solidity"),
    )
    table = pd.DataFrame(
        {
            "label": props["label"].astype(np.int64),
            "n_pixels": props["area"].astype(np.int64),
            "centroid_row": props["centroid-0"],
            "centroid_col": props["centroid-1"],
            "equivalent_diameter_um": props["equivalent_diameter_area"] * px,
            "solidity": props["solidity"],
        }
    )
    table["area_um2"] = table["n_pixels"] * px * px
    # mean and median grey per crystal (NaN pixels ignored)
    n = int(lab.max())
    ids_t = table["label"].to_numpy()
    lab_fin = np.where(finite, lab, 0)
    counts = np.bincount(lab_fin.ravel(), minlength=n + 1)
    sums = np.bincount(
        lab_fin.ravel(), weights=np.where(finite, grey, 0.0).ravel(), minlength=n + 1
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        table["mean_value"] = np.where(counts[ids_t] > 0, sums[ids_t] / counts[ids_t], np.nan)
    table["median_value"] = _label_medians(np.where(finite, grey, 0.0), lab_fin, n)[ids_t - 1]
    # border and contact
    edge_ids = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    table["touches_border"] = table["label"].isin(edge_ids[edge_ids > 0])
    la, lb, _, _ = _adjacent_pairs(lab)
    table["touching"] = table["label"].isin(np.unique(np.concatenate([la, lb])))
    # groundmass (or masked background) and the grey classes
    level, width, masked = _groundmass_level(grey, lab, px)
    sample = _subsample(grey[finite])
    full = _full_scale(sample, dtype)
    black = 0.0 if np.issubdtype(dtype, np.integer) or sample.min() >= 0 else float(sample.min())
    frac = (table["median_value"].to_numpy() - black) / (full - black)
    gm_frac = (level - black) / (full - black) if np.isfinite(level) else np.nan
    noise = _noise_sigma(np.where(finite, grey, 0.0))
    wide = max(width if np.isfinite(width) else 0.0, 2.0 * noise / max(1.0, 2 * np.sqrt(np.pi)))
    if masked or not np.isfinite(level):
        table["low_contrast"] = (table["median_value"] - level).abs() < 3.0 * wide
        darker = frac < 0.42
        ref_frac = 0.42
    else:
        table["low_contrast"] = (table["median_value"] - level).abs() < 3.0 * wide
        darker = frac < gm_frac
        ref_frac = gm_frac
    very = frac > 0.85
    bright = ~darker & ~very
    phase = np.where(darker, names["darker"], names["brighter_low"]).astype(object)
    phase[very] = names["very_bright"]
    vals = frac[bright]
    if vals.size:
        split = ref_frac + 0.18
        if vals.size >= 4 and np.ptp(vals) > 0:
            from skimage.filters import threshold_otsu

            t = float(threshold_otsu(vals))
            low, high = vals[vals <= t], vals[vals > t]
            pooled = np.sqrt((np.var(low) * low.size + np.var(high) * high.size) / vals.size)
            if low.size and high.size and high.mean() - low.mean() > 3.0 * max(pooled, 1e-9):
                split = t
        phase[bright] = np.where(vals > split, names["brighter_high"], names["brighter_low"])
    table["phase"] = phase
    table["cracked"] = _cracked(grey, lab, px, noise, table["label"].to_numpy())
    return table[columns].reset_index(drop=True)
