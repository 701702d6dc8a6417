"""Crystal segmentation of BSE images: image -> int32 crystal labels, and the crystal table.

Every length is in micrometres and converted with the pixel size, so a section imaged at
another pixel size gives the same crystals. The steps of :func:`segment_crystals`:

1. Input: :func:`napari_zonation._validation.as_image`; element maps ``(channels, y, x)`` are
   combined into their first principal component (robustly standardised channels, oriented
   like the first channel). NaN pixels are never crystals. Grey is normalised robustly
   (0.1 and 99.9 percentiles).
2. Coarse stage, on blocks of about ``work_um`` (3 um): block means, and the grey variance
   inside each block (texture: microlite-rich groundmass is rough, crystals are smooth).
3. Reference level from the histogram: the groundmass is the mode of the most textured half of
   the image (so it is found even when crystals cover most of it); a near-black dominant mode
   means the background was masked black (``background="auto"`` decides).
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
7. Pieces are joined again when the grey just behind their contact agrees and their union is
   as convex as they are (a crack through one crystal, not a grain boundary between two);
   holes (inclusions) are filled; crystals under ``min_area_um2`` are dropped.

:func:`crystal_table` measures each crystal and guesses its phase from grey levels (a
heuristic, documented there).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError
from skimage import measure, morphology, segmentation

from ._validation import ZonationInputError, as_image, check_labels, check_pixel_size

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


def _open(mask: np.ndarray, radius: float) -> np.ndarray:
    """Binary opening by a disk of ``radius`` pixels (distance-transform form, O(N))."""
    if radius < 0.5:
        return mask
    eroded = ndi.distance_transform_edt(mask) > radius
    if not eroded.any():
        return eroded
    return ndi.distance_transform_edt(~eroded) <= radius


def _close(mask: np.ndarray, radius: float) -> np.ndarray:
    """Binary closing by a disk of ``radius`` pixels (distance-transform form, O(N))."""
    if radius < 0.5 or not mask.any():
        return mask
    dilated = ndi.distance_transform_edt(~mask) <= radius
    return ndi.distance_transform_edt(dilated) > radius


def _fill_holes(labels_or_mask: np.ndarray, max_fraction: float) -> np.ndarray:
    """Fill holes of a mask that are smaller than ``max_fraction`` of the enclosing region."""
    mask = labels_or_mask > 0
    # holes: background components that do not reach the image border (a labelling is much
    # faster than scipy's iterated dilation on large images)
    bg_lab, n_bg = ndi.label(~mask)
    if n_bg == 0:
        return mask
    border = np.zeros(n_bg + 1, dtype=bool)
    for edge in (bg_lab[0], bg_lab[-1], bg_lab[:, 0], bg_lab[:, -1]):
        border[edge] = True
    border[0] = True
    if border.all():
        return mask
    is_hole = ~border
    holes = is_hole[bg_lab]
    filled = mask | holes
    if max_fraction >= 1.0:
        return filled
    hole_lab = np.where(holes, bg_lab, 0)
    n_holes = n_bg
    reg_lab, _ = ndi.label(filled)
    hole_area = np.bincount(hole_lab.ravel(), minlength=n_holes + 1)
    reg_area = np.bincount(reg_lab.ravel())
    # the region each hole lies in (any of its pixels tells)
    at = np.flatnonzero(holes)
    idx = np.zeros(n_holes + 1, dtype=np.int64)
    idx[hole_lab.ravel()[at]] = reg_lab.ravel()[at]
    idx = idx[1:]
    keep = hole_area[1:] <= max_fraction * reg_area[idx]
    keep = np.concatenate([[False], keep])
    return mask | keep[hole_lab]


# ----------------------------------------------------------------------------------------------
# splitting touching crystals
# ----------------------------------------------------------------------------------------------
def _adjacent_pairs(lab: np.ndarray):
    """Pixel pairs across label boundaries: label_a < label_b, and their flat indices."""
    flat = np.arange(lab.size).reshape(lab.shape)
    parts = []
    for a, b, ia, ib in (
        (lab[:, :-1], lab[:, 1:], flat[:, :-1], flat[:, 1:]),
        (lab[:-1, :], lab[1:, :], flat[:-1, :], flat[1:, :]),
    ):
        sel = (a != b) & (a > 0) & (b > 0)
        parts.append((a[sel], b[sel], ia[sel], ib[sel]))
    la, lb, pa, pb = (np.concatenate([p[i] for p in parts]) for i in range(4))
    swap = la > lb
    la, lb = np.where(swap, lb, la), np.where(swap, la, lb)
    pa, pb = np.where(swap, pb, pa), np.where(swap, pa, pb)
    return la, lb, pa, pb


def _behind(values: np.ndarray, lab: np.ndarray, pix: np.ndarray, other: np.ndarray, k: int):
    """Value ``k`` pixels behind boundary pixels ``pix``, away from their neighbours ``other``."""
    rows, cols = lab.shape
    r, c = np.divmod(pix, cols)
    ro, co = np.divmod(other, cols)
    rr = np.clip(r + (r - ro) * k, 0, rows - 1)
    cc = np.clip(c + (c - co) * k, 0, cols - 1)
    same = lab[rr, cc] == lab[r, c]
    return np.where(same, values[rr, cc], values[r, c])


def _find(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _cut_cores(cores: np.ndarray, h_px: float) -> np.ndarray:
    """Cut core regions by a watershed of their distance transform from its h-maxima.

    ``cores`` is a label image of connected core regions; where two cores touch (a bright
    crystal against a dark one) the contact counts as an edge. The markers are the h-maxima of
    the distance transform (one per crystal body). A core too thin to hold an h-maximum stays
    one piece.
    """
    inner = cores > 0
    if not inner.any():
        return cores
    big = int(cores.max()) + 1
    nb_max = ndi.maximum_filter(cores, 3)
    nb_min = ndi.minimum_filter(np.where(inner, cores, big), 3)
    contact = inner & ((nb_max > cores) | (nb_min < cores))
    dist = ndi.distance_transform_edt(inner & ~contact)
    q = np.round(dist * 4).astype(np.int32)
    maxima = morphology.h_maxima(q, max(1, int(round(h_px * 4)))).astype(bool) & inner
    markers, n_markers = ndi.label(maxima)
    has_marker = np.zeros(big + 1, dtype=bool)
    has_marker[cores[maxima]] = True
    lonely = inner & ~has_marker[cores]
    if lonely.any():
        markers = np.where(lonely, cores + n_markers, markers)
    lab = segmentation.watershed(-dist, markers, mask=inner)
    lab, _, _ = segmentation.relabel_sequential(lab)
    return lab.astype(np.int32)


def _hull_of(mask: np.ndarray, offset: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Convex hull of a pixel set: its vertices (pixel corners) and its area."""
    edge = mask & ~ndi.binary_erosion(mask, border_value=0)
    pts = np.argwhere(edge) + np.asarray(offset)
    pts = np.concatenate([pts, pts + (0, 1), pts + (1, 0), pts + (1, 1)]).astype(float)
    return _hull(pts)


def _hull(points: np.ndarray) -> tuple[np.ndarray, float]:
    try:
        h = ConvexHull(points)
    except (QhullError, ValueError):  # fewer than 3 points, or all on a line
        return points, 0.0
    return points[h.vertices], float(h.volume)


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
) -> np.ndarray:
    """Join adjacent regions that are one crystal cut by a crack or by the splitting.

    Two regions are joined when the grey just behind their shared boundary agrees (median of
    the paired differences below ``merge_grey``) and their union is about as convex as they are
    (the convex hull of the union adds less than ``max_deficit`` of the smaller region beyond
    what their own hulls add): a crack through one crystal, not two crystals touching. A region
    smaller than ``small_px`` (too small to be a crystal of its own) needs only the grey. With
    ``lenient`` (background masked black), equal grey alone is enough. Rounds repeat on the
    joined regions until nothing changes (hulls of joined regions come from their parts').
    """
    lab = lab.astype(np.int32, copy=True)
    hull: dict[int, tuple[np.ndarray, float]] = {}
    for _ in range(max_rounds):
        la, lb, pa, pb = _adjacent_pairs(lab)
        if la.size == 0:
            break
        n = int(lab.max()) + 1
        keys, inv = np.unique(la.astype(np.int64) * n + lb, return_inverse=True)
        diff = _behind(smooth, lab, pa, pb, band_px) - _behind(smooth, lab, pb, pa, band_px)
        order = np.argsort(inv, kind="stable")
        bounds = np.searchsorted(inv[order], np.arange(keys.size + 1))
        areas = np.bincount(lab.ravel(), minlength=n)
        slices = ndi.find_objects(lab)

        def hull_of(i, slices=slices, lab=lab):
            if i not in hull:
                sl = slices[i - 1]
                hull[i] = _hull_of(lab[sl] == i, (sl[0].start, sl[1].start))
            return hull[i]

        parent = np.arange(n)
        changed = False
        for k, key_k in enumerate(keys):
            a, b = divmod(int(key_k), n)
            step = abs(float(np.median(diff[order[bounds[k] : bounds[k + 1]]])))
            if step >= merge_grey:
                continue
            small = min(areas[a], areas[b])
            if not lenient and small >= small_px:
                (pts_a, hull_a), (pts_b, hull_b) = hull_of(a), hull_of(b)
                _, union = _hull(np.concatenate([pts_a, pts_b]))
                extra = (union - areas[a] - areas[b]) - (hull_a - areas[a]) - (hull_b - areas[b])
                if extra >= max_deficit * small:
                    continue
            ra, rb = _find(parent, a), _find(parent, b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
                changed = True
        if not changed:
            break
        roots = np.array([_find(parent, i) for i in range(n)])
        # hulls of the joined regions, from the hull vertices of their parts
        for r in np.unique(roots[roots != np.arange(n)]):
            members = np.nonzero(roots == r)[0]
            if all(int(m) in hull for m in members):
                hull[int(r)] = _hull(np.concatenate([hull[int(m)][0] for m in members]))
            else:
                hull.pop(int(r), None)
            for m in members:
                if m != r:
                    hull.pop(int(m), None)
        lab = roots[lab].astype(np.int32)
    return segmentation.relabel_sequential(lab)[0].astype(np.int32)


def _contact(lab: np.ndarray) -> np.ndarray:
    """Pixels of a label image that touch a different non-zero label (8-neighbourhood)."""
    inner = lab > 0
    big = int(lab.max()) + 1
    nb_max = ndi.maximum_filter(lab, 3)
    nb_min = ndi.minimum_filter(np.where(inner, lab, big), 3)
    return inner & ((nb_max > lab) | (nb_min < lab))


def _grow(
    pieces: np.ndarray,
    grad: np.ndarray,
    background: np.ndarray,
    erode_px: float,
    cut_px: float,
) -> np.ndarray:
    """Marker watershed on the gradient from eroded pieces and a background marker.

    The markers step back ``erode_px`` from the outer edge of each piece and ``cut_px`` from
    where two pieces meet, so the watershed, not the cut, places the boundary between them
    (on the grain-boundary line).
    """
    n = int(pieces.max())
    if n == 0:
        return pieces
    edge = segmentation.find_boundaries(pieces, mode="inner") | (pieces == 0)
    keep = ndi.distance_transform_edt(~edge) > erode_px
    contact = _contact(pieces)
    if contact.any():
        keep &= ndi.distance_transform_edt(~contact) > cut_px
    markers = np.where(keep, pieces, 0)
    # pieces too small to survive the erosion keep their original marker
    present = np.zeros(n + 1, dtype=bool)
    present[markers.ravel()] = True
    missing = ~present
    missing[0] = False
    if missing.any():
        markers = np.where((markers == 0) & missing[pieces], pieces, markers)
    markers = np.where(background & (markers == 0), n + 1, markers)
    out = segmentation.watershed(grad, markers)
    out[out == n + 1] = 0
    return out.astype(np.int32)


def _fill_label_holes(labels: np.ndarray, max_fraction: float) -> np.ndarray:
    """Give enclosed holes (inclusions, cracks) the label of the crystal around them."""
    mask = labels > 0
    filled = _fill_holes(mask, max_fraction)
    holes = filled & ~mask
    if not holes.any():
        return labels
    hole_lab, n_holes = ndi.label(holes)
    # the crystal on the rim of each hole (any rim pixel tells)
    ring = ndi.maximum_filter(labels, size=3)
    at = np.flatnonzero(holes & (ring > 0))
    owner = np.zeros(n_holes + 1, dtype=np.int32)
    owner[hole_lab.ravel()[at]] = ring.ravel()[at]
    owner[0] = 0
    out = labels.copy()
    out[holes] = owner[hole_lab[holes]]
    return out.astype(np.int32, copy=False)


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


def _block_mean(img: np.ndarray, f: int) -> np.ndarray:
    """Mean over f x f blocks (the last partial blocks are padded by edge values)."""
    if f == 1:
        return img
    h, w = img.shape
    hp, wp = -(-h // f) * f, -(-w // f) * f
    if (hp, wp) != (h, w):
        img = np.pad(img, ((0, hp - h), (0, wp - w)), mode="edge")
    return img.reshape(hp // f, f, wp // f, f).mean(axis=(1, 3), dtype=np.float32)


def _upsample(arr: np.ndarray, f: int, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upsampling of a block image back to ``shape``."""
    if f == 1:
        return arr
    return np.repeat(np.repeat(arr, f, axis=0), f, axis=1)[: shape[0], : shape[1]]


def _label_medians(values: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Median of ``values`` per label 1..n (NaN for absent labels), from one sort."""
    sel = labels > 0
    lv, vv = labels[sel], values[sel]
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
    edge = segmentation.find_boundaries(labels, mode="inner")
    depth = ndi.distance_transform_edt(~edge)
    in_band = (labels > 0) & (depth >= band[0]) & (depth <= band[1])
    rim = _label_medians(smooth, np.where(in_band, labels, 0), n)
    missing = ~np.isfinite(rim)
    if missing.any():
        whole = _label_medians(smooth, labels, n)
        rim[missing] = whole[missing]
    thr = np.concatenate([[0.0], ref + 0.5 * (rim - ref)]).astype(np.float32)
    sign = np.concatenate([[0.0], np.sign(rim - ref)]).astype(np.float32)
    return thr, sign


def _refine_edges(
    coarse: np.ndarray,
    f: int,
    smooth: np.ndarray,
    thr: np.ndarray,
    sign: np.ndarray,
    line_px: int = 1,
) -> np.ndarray:
    """Full-resolution labels from coarse ones: edges placed by each crystal's midpoint grey.

    Pixels in blocks within two blocks of a coarse boundary take the label of their block (or,
    in background blocks, of the neighbouring crystal) when their grey is on the crystal's side
    of the midpoint between its rim and the reference; the other pixels keep their block's label.
    """
    shape = smooth.shape
    labels = _upsample(coarse, f, shape).copy()
    crystal = coarse > 0
    # crystal blocks next to the background, background blocks up to two blocks out, and the
    # blocks where two crystals meet (whose pixels keep their block's label)
    outer = crystal & ndi.binary_dilation(~crystal, structure=np.ones((3, 3), bool))
    ring = ~crystal & ndi.binary_dilation(crystal, structure=np.ones((5, 5), bool))
    band_c = outer | ring
    cand_c = np.where(crystal, coarse, ndi.maximum_filter(coarse, 5))
    band = _upsample(band_c, f, shape)
    idx = np.flatnonzero(band)
    if idx.size == 0:
        return labels
    cand = _upsample(cand_c, f, shape).ravel()[idx]
    v = smooth.ravel()[idx]
    keep = (cand > 0) & ((v - thr[cand]) * sign[cand] > 0)
    # inside crystal blocks only pixels near the failing pixels of background blocks (the
    # outside) are removed: an inclusion close to the edge is not the outside
    outside = np.zeros(shape, dtype=bool)
    outside.ravel()[idx] = ~keep
    outside &= ~_upsample(crystal, f, shape)
    reach = 2 * max(1, f // 2) + 1
    near_out = ndi.maximum_filter(outside, size=reach).ravel()[idx]
    in_crystal = _upsample(crystal, f, shape).ravel()[idx]
    keep |= in_crystal & ~near_out
    labels.ravel()[idx] = np.where(keep, cand, 0)
    # cracks that reach the edge must not notch their crystal: a small closing, inside
    # crystal blocks only
    if line_px >= 1:
        mask = labels > 0
        size = 2 * line_px + 1
        foot = morphology.disk(line_px).astype(bool)
        gaps = ndi.binary_closing(mask, structure=foot) & ~mask & _upsample(crystal, f, shape)
        if gaps.any():
            labels[gaps] = ndi.maximum_filter(labels, size=size)[gaps]
    # specks (microlites) in background blocks that do not touch their crystal are dropped
    comp, n_comp = ndi.label(labels > 0)
    if n_comp:
        anchored = np.zeros(n_comp + 1, dtype=bool)
        anchored[comp[_upsample(coarse > 0, f, shape) & (comp > 0)]] = True
        anchored[0] = False
        labels[~anchored[comp]] = 0
    return labels


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
    return_info: bool = False,
    **options,
):
    """Segment phenocrysts in a BSE image (or element maps) into integer labels.

    Parameters
    ----------
    image : array-like
        2D greyscale image of any integer or float dtype, RGB(A) (converted to grey with a
        warning), or a ``(channels, y, x)`` stack of element maps (combined into their first
        principal component). NaN pixels are never crystals.
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
    return_info : bool
        Also return a dict with the levels and parameters used.
    **options
        Fine control (lengths in um): ``work_um`` (3.0: detection, splitting and growing run
        on blocks of about this size, edges and merging at full resolution), ``detect_um``
        (smoothing of the detection image, default ``2 * smooth_um``), ``open_um`` (3.0,
        opening that removes microlites from the crystal cores), ``grow_um`` (``open_um + 3``,
        how far cores grow back to the crystal edge), ``split_h_um`` (3.0, depth of a neck that
        separates two crystal bodies), ``max_deficit`` (0.1, convex-hull excess, as a fraction
        of the smaller piece, under which two pieces may be one crystal), ``merge_grey`` (grey
        step across a cut that keeps two pieces apart; default the contrast),
        ``max_hole_fraction`` (0.5), ``texture`` (True: reject textured, microlite-rich cores),
        ``smooth_texture`` (0.75), ``min_smooth_share`` (0.25), ``max_vesicle_share`` (0.6:
        cores mostly within 6 um of near-black pixels are vesicle walls), ``dark_fraction``
        (0.2: near-black share above which the background may be a black mask).

    Returns
    -------
    numpy.ndarray or (numpy.ndarray, dict)
        int32 labels of the image's (y, x) shape, 0 = not a crystal, 1..n crystals; with
        ``return_info=True`` also a dict (``background``, ``reference``, ``contrast``,
        ``noise``, ``full_scale``, ...; grey levels in the image's own units).

    Raises
    ------
    ZonationInputError
        Bad image (1D, empty, 4D, 3D that is neither channels nor RGB), bad pixel size, unknown
        option or background mode.

    Warns
    -----
    UserWarning
        RGB input (converted to grey), constant or all-NaN image (no crystals).

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
    (where a blurred step crosses the true edge).
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
    ):
        if not (isinstance(val, (int, float, np.number)) and np.isfinite(val) and val >= 0):
            raise ZonationInputError(f"{name}={val!r} must be a non-negative number (um).")
    if contrast is not None and not (np.isfinite(contrast) and contrast > 0):
        raise ZonationInputError(
            f"contrast={contrast!r} must be a positive fraction of the grey range, or None."
        )
    grey, dtype = _to_grey(image)
    shape = grey.shape
    info: dict = {"background": None, "pixel_size_um": px, "n_crystals": 0}
    empty = np.zeros(shape, dtype=np.int32)

    finite = np.isfinite(grey)
    all_finite = bool(finite.all())
    if not finite.any():
        warnings.warn(
            "the image has no finite pixels; no crystals found.", UserWarning, stacklevel=2
        )
        return (empty, info) if return_info else empty
    sample = _subsample(grey if all_finite else grey[finite])
    lo, hi = (float(v) for v in np.percentile(sample, [0.1, 99.9]))
    if not hi - lo > 1e-12 * max(1.0, abs(hi)):
        lo, hi = float(np.min(sample)), float(np.max(sample))
    if not hi - lo > 1e-12 * max(1.0, abs(hi)):
        warnings.warn(
            "the image is constant (no grey contrast); no crystals found. Check that the right "
            "image or channel was passed.",
            UserWarning,
            stacklevel=2,
        )
        return (empty, info) if return_info else empty
    span = hi - lo
    src = grey if all_finite else np.where(finite, grey, float(np.median(sample)))
    norm = ((src - lo) * (1.0 / span)).astype(np.float32)
    info.update(full_scale=_full_scale(sample, dtype), grey_lo=lo, grey_hi=hi)

    # ---- coarse stage: blocks of about work_um
    f = _work_factor(px, opts["work_um"])
    pc = px * f
    cm = _block_mean(norm, f)
    fin_c = (
        np.ones(cm.shape, bool) if all_finite else _block_mean(finite.astype(np.float32), f) > 0.5
    )
    sig_c = smooth_um / pc
    smooth_c = ndi.gaussian_filter(cm, sig_c) if sig_c > 0.3 else cm
    detect_um = opts["detect_um"] if opts["detect_um"] is not None else 2.0 * smooth_um
    det_c = max(detect_um / pc, 1.0)
    det = ndi.gaussian_filter(cm, det_c)
    noise = _noise_sigma(norm)
    noise_d = noise / f / max(1.0, 2.0 * np.sqrt(np.pi) * det_c)
    info.update(noise=noise * span, work_factor=f)

    s_fin = _subsample(det[fin_c])
    mode_all, width_all, _, _ = _histogram_mode(s_fin, -0.05, 1.05)
    if background == "auto":
        dark_share = float(np.mean(s_fin < mode_all + 0.1))
        masked = mode_all < 0.15 and dark_share > opts["dark_fraction"]
        mode = "masked" if masked else "groundmass"
    else:
        mode = background
    info["background"] = mode

    open_um = opts["open_um"]
    grow_um = opts["grow_um"] if opts["grow_um"] is not None else open_um + 3.0
    tex = None
    if mode == "masked":
        ref = mode_all
        c = contrast if contrast is not None else max(0.05, 4.0 * max(width_all / 1.1774, noise_d))
        pos = det > ref + c
        neg = np.zeros_like(pos)
        bg_marker = smooth_c < ref + 0.5 * c
        info.update(reference=ref * span + lo, contrast=c)
    else:
        # texture: grey variance inside each block (microlites), smoothed over a few blocks
        if f > 1:
            var = _block_mean(norm * norm, f) - cm.astype(np.float32) ** 2
            tex = np.sqrt(np.clip(ndi.gaussian_filter(var, max(0.7, 1.0 / pc)), 0, None))
        else:
            tex = _texture(norm, max(0.5, 1.0 / px), max(1.5, 2.0 / px))
        # the groundmass is the textured mode: histogram of the most textured half of the
        # image (smooth crystal interiors drop out, whatever their share of the image), then
        # the peak of the full histogram near that level gives its level and width
        t_fin = _subsample(tex[fin_c])
        rough = t_fin >= np.percentile(t_fin, 50)
        not_black = s_fin > mode_all + 0.1 if mode_all < 0.15 else np.ones(s_fin.shape, bool)
        ref, _, _, _ = _histogram_mode(s_fin[rough & not_black], -0.05, 1.05)
        ref, ref_w, _, _ = _histogram_mode(s_fin[not_black], -0.05, 1.05, near=(ref, 0.04))
        c = contrast if contrast is not None else max(3.0 * ref_w / 1.1774, 4.0 * noise_d, 0.03)
        dark_thr = 0.45 * ref
        dev = det - ref
        pos = dev > c
        neg = (dev < -c) & (det > dark_thr)
        bg_marker = (np.abs(smooth_c - ref) < 0.5 * c) | (smooth_c < dark_thr)
        info.update(reference=ref * span + lo, contrast=c, dark_level=dark_thr * span + lo)
    pos &= fin_c
    neg &= fin_c
    bg_marker |= ~fin_c

    # ---- crystal cores: open away microlites, bridge cracks, fill inclusions; sign by sign
    open_px, close_px = open_um / pc, close_um / pc
    min_px_c = min_area_um2 / (pc * pc)
    cores = np.zeros(cm.shape, dtype=np.int32)
    n_cores = 0
    for part in (pos, neg):
        if not part.any():
            continue
        m = _open(part, open_px)
        m = _close(m, close_px)
        m = _fill_holes(m, opts["max_hole_fraction"])
        lab, n = ndi.label(m)
        cores = np.where(lab > 0, lab + n_cores, cores)
        n_cores += n
    if n_cores:
        area = np.bincount(cores.ravel(), minlength=n_cores + 1)
        keep = area >= 0.25 * min_px_c
        keep[0] = False
        if tex is not None and opts["texture"] and keep.any():
            # smooth crystal interiors set the low texture level, the groundmass the high one
            gm_pix = bg_marker & (smooth_c > dark_thr) & fin_c
            tex_gm = float(np.median(tex[gm_pix])) if gm_pix.any() else np.inf
            tex_low = float(np.percentile(t_fin, 5))
            tex_thr = float(max(opts["smooth_texture"] * tex_gm, 2.0 * tex_low))
            smooth_share = np.bincount(
                cores.ravel(), weights=(tex < tex_thr).ravel(), minlength=n_cores + 1
            ) / np.maximum(area, 1)
            keep &= smooth_share >= opts["min_smooth_share"]
            # the bright polished walls of vesicles hug a near-black disc: not crystals
            dark = (smooth_c < dark_thr) & fin_c
            if dark.any():
                near_dark = ndi.distance_transform_edt(~dark) <= max(1.0, 6.0 / pc)
                dark_share = np.bincount(
                    cores.ravel(), weights=near_dark.ravel(), minlength=n_cores + 1
                ) / np.maximum(area, 1)
                keep &= dark_share <= opts["max_vesicle_share"]
            info.update(texture_threshold=tex_thr * span, texture_groundmass=tex_gm * span)
        cores = np.where(keep[cores], cores, 0)
    if not cores.any():
        return (empty, info) if return_info else empty

    # ---- cut, grow back to the edges, join what one crystal lost to a cut or a crack
    pieces = _cut_cores(cores, max(opts["split_h_um"] / pc, 1.0)) if split_touching else cores
    grad = ndi.gaussian_gradient_magnitude(cm, 0.7)
    far = ndi.distance_transform_edt(pieces == 0) > grow_um / pc
    coarse = _grow(
        pieces,
        grad,
        (bg_marker & (pieces == 0)) | far,
        erode_px=1.0,
        cut_px=1.0,
    )
    coarse, _, _ = segmentation.relabel_sequential(coarse)
    coarse = _fill_label_holes(coarse.astype(np.int32), opts["max_hole_fraction"])

    # ---- full resolution: each crystal's edge at the midpoint of its rim and the reference
    band = (max(1.0, (smooth_um + 1.5) / pc), max(2.0, (smooth_um + 5.0) / pc))
    thr, sign = _rim_thresholds(coarse, smooth_c, ref, band)
    sigma_px = smooth_um / px
    smooth = ndi.gaussian_filter(norm, sigma_px) if sigma_px > 0.3 else norm
    labels = _refine_edges(coarse, f, smooth, thr, sign, line_px=int(np.ceil(1.0 / px)))
    # join what one crystal lost to a cut or a crack (judged at full resolution)
    labels = _merge_regions(
        labels,
        smooth,
        small_px=2.0 * min_area_um2 / (px * px),
        merge_grey=opts["merge_grey"] if opts["merge_grey"] is not None else c,
        max_deficit=opts["max_deficit"] if split_touching else np.inf,
        band_px=max(2, int(round(3.0 / px))),
        lenient=mode == "masked",
    )
    labels = _fill_label_holes(labels, opts["max_hole_fraction"])
    if not all_finite:
        labels[~finite] = 0
    min_px = min_area_um2 / (px * px)
    area = np.bincount(labels.ravel())
    keep = area >= min_px
    keep[0] = False
    labels = np.where(keep[labels], labels, 0)
    labels, _, _ = segmentation.relabel_sequential(labels)
    labels = labels.astype(np.int32, copy=False)
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
    # away from the crystal's own edge (the closing reaches over it)
    inner = ndi.distance_transform_edt(labels > 0) > size
    line = (bth > max(5.0 * noise_l, 1e-12)) & inner
    out = np.zeros(len(ids), dtype=bool)
    if not line.any():
        return out
    comp, n_comp = ndi.label(line, structure=np.ones((3, 3), bool))
    if n_comp == 0:
        return out
    min_len = max(10.0 / px, 5.0)
    # second moments of every component at once: long (major axis) and thin (minor axis)
    rr, cc = np.nonzero(comp)
    lbl = comp[rr, cc]
    cnt = np.bincount(lbl, minlength=n_comp + 1).astype(float)
    cnt[0] = 1.0
    mr = np.bincount(lbl, rr, minlength=n_comp + 1) / cnt
    mc = np.bincount(lbl, cc, minlength=n_comp + 1) / cnt
    vrr = np.bincount(lbl, rr * rr, minlength=n_comp + 1) / cnt - mr**2
    vcc = np.bincount(lbl, cc * cc, minlength=n_comp + 1) / cnt - mc**2
    vrc = np.bincount(lbl, rr * cc, minlength=n_comp + 1) / cnt - mr * mc
    half = 0.5 * (vrr + vcc)
    root = np.sqrt(np.clip(half**2 - (vrr * vcc - vrc**2), 0, None))
    major = 4.0 * np.sqrt(np.clip(half + root, 0, None))
    minor = 4.0 * np.sqrt(np.clip(half - root, 0, None))
    line_like = (major >= min_len) & (minor <= 0.35 * major)
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
