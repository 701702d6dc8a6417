"""Distance to the rim: distance transforms of crystal labels, contacts between touching
crystals, and the shells of equal rim distance gathered strip by strip."""

from __future__ import annotations

import edt
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .._threads import Workers, auto_threads


def _rim_edt(lab: np.ndarray) -> np.ndarray:
    """Distance (pixels, float64) from every crystal pixel's centre to the nearest centre of a
    pixel of another label (background or a touching crystal); 0 outside crystals.

    One multi-label Euclidean distance transform of the whole image (the ``edt`` package:
    each label is transformed against every other, the image edge is not a boundary). Its
    squared distances between pixel centres are integers, exact in float32, so the distances
    are exact. A crystal with no boundary (it fills the image) is ``hypot(H, W)`` from it.
    """
    return _root(_rim_edt_sq(_narrow(lab)), lab.shape)


def _narrow(lab: np.ndarray) -> np.ndarray:
    """Labels (non-negative) as uint16 when they fit (a faster transform, cheaper gathers),
    C-contiguous."""
    if lab.size and lab.dtype.itemsize > 2 and int(lab.max()) < 2**16:
        lab = lab.astype(np.uint16)
    return np.ascontiguousarray(lab)


def _rim_edt_sq(lab: np.ndarray) -> np.ndarray:
    """float32 squared multi-label distance transform (see :func:`_rim_edt`) of labels
    already through :func:`_narrow`: integers."""
    return edt.edtsq(lab, black_border=False, parallel=auto_threads())


def _free_edt_sq(lab: np.ndarray) -> np.ndarray:
    """float32 squared distance of every pixel to the nearest background (label 0) pixel:
    the distance to a crystal's free faces, other crystals counting as no boundary."""
    # a uint8 view, not the boolean: edt transforms uint8 about a third faster
    return edt.edtsq((lab != 0).view(np.uint8), black_border=False, parallel=auto_threads())


def _band_neighbours(lab_flat: np.ndarray, band: np.ndarray, lab_band: np.ndarray, shape):
    """The 4-neighbours of the rim-band pixels (flat indices ``band``, labels ``lab_band``):
    whether each band pixel has a background neighbour (a free face), and the label pairs
    ``(a, b)`` of touching crystals (``a`` a band pixel's, ``b`` its right or lower
    neighbour's).

    A crystal pixel next to another label is in the band, so every contact shows here.
    """
    H, W = shape
    col = band % W
    free_side = np.zeros(band.size, bool)
    pa, pb = [], []
    for step, edge in ((1, col == W - 1), (W, band >= (H - 1) * W), (-1, col == 0), (-W, band < W)):
        nb = lab_flat.take(band + step, mode="clip")
        nb[edge] = lab_band[edge]  # beyond the image edge: no neighbour
        free_side |= nb == 0
        if step > 0:  # both pixels of a contact are in the band: right and down find it
            touch = (nb != 0) & (nb != lab_band)
            pa.append(lab_band[touch])
            pb.append(nb[touch])
    return free_side, np.concatenate(pa), np.concatenate(pb)


def _clusters(a: np.ndarray, b: np.ndarray, n_labels: int) -> np.ndarray:
    """Cluster number (1, 2, ...) of every label below ``n_labels`` from the pairs ``(a, b)``
    of touching crystals (the connected groups of touching crystals); 0: touches none."""
    # int32 weights: the repeated pairs of one contact are summed into one edge, which an
    # int8 weight could wrap to an (explicit) zero
    graph = coo_matrix(
        (np.ones(a.size, np.int32), (a.astype(np.int64), b.astype(np.int64))),
        shape=(n_labels, n_labels),
    )
    _, comp = connected_components(graph, directed=False)
    touching = np.zeros(n_labels, bool)
    touching[a] = touching[b] = True
    out = np.zeros(n_labels, np.int64)
    out[touching] = np.unique(comp[touching], return_inverse=True)[1] + 1
    return out


def _cluster_windows(cluster_of: np.ndarray, lab_n: np.ndarray, band, lab_band) -> tuple:
    """Bounding boxes ``(r0, r1, c0, c1)`` (half-open) of the clusters of touching crystals,
    widened by one pixel on each side within the image.

    Read from the band pixels: a crystal's extreme pixel on a side is next to another label
    (in the band), unless it lies on the image edge there, which the image's first and last
    rows and columns tell.
    """
    H, W = lab_n.shape
    n_cl = int(cluster_of.max())
    cb = cluster_of[lab_band]
    on = cb > 0
    cb = cb[on] - 1
    rows, cols = np.divmod(band[on], W)
    r0, c0 = np.full(n_cl, H, np.int64), np.full(n_cl, W, np.int64)
    r1, c1 = np.zeros(n_cl, np.int64), np.zeros(n_cl, np.int64)
    np.minimum.at(r0, cb, rows)
    np.maximum.at(r1, cb, rows)
    np.minimum.at(c0, cb, cols)
    np.maximum.at(c1, cb, cols)
    for line, ends, value in (
        (lab_n[0], r0, 0),
        (lab_n[-1], r1, H - 1),
        (lab_n[:, 0], c0, 0),
        (lab_n[:, -1], c1, W - 1),
    ):
        cl = cluster_of[line]
        ends[cl[cl > 0] - 1] = value
    return (
        np.maximum(r0 - 1, 0),
        np.minimum(r1 + 2, H),
        np.maximum(c0 - 1, 0),
        np.minimum(c1 + 2, W),
    )


# windows covering more than this share of the image: one transform of the whole image
WINDOWS_SHARE = 0.6


def _shelves(heights: np.ndarray, widths: np.ndarray, width: int) -> tuple:
    """Places for rectangles in a canvas ``width`` wide, tallest first, left to right in rows
    (shelves) as tall as their first: top-left corners ``(ys, xs)`` and the canvas height."""
    ys, xs = np.zeros(heights.size, np.int64), np.zeros(heights.size, np.int64)
    y = x = shelf = 0
    for k in np.argsort(-heights, kind="stable"):
        if x + widths[k] > width:
            y, x, shelf = y + shelf, 0, 0
        ys[k], xs[k] = y, x
        x += int(widths[k])
        shelf = max(shelf, int(heights[k]))
    return ys, xs, y + shelf


def _nearer_a_contact(lab_n: np.ndarray, e2: np.ndarray, band, lab_band, a, b) -> np.ndarray:
    """Flat indices of the pixels of touching crystals nearer another crystal than the
    background: their squared distance to the background exceeds ``e2`` (the flat squared
    distance to any other label).

    The distance to the background is transformed in windows around the clusters of touching
    crystals (pairs ``a, b``) only. A pixel's nearest background pixel lies in its cluster's
    bounding box widened by one pixel: the pixels nearer to it form a 4-connected set of
    crystal pixels (every row of a disk holds its centre's column), hence of its cluster.
    Other crystals in the window only take background away, and a pixel of another crystal
    is never nearer than that background pixel, so the window's frame can be made
    background. Framed so, the windows are packed into one canvas and transformed together
    (one call: each call costs a thread); a window on the image edge has no frame there (the
    image edge is no boundary) and is transformed alone, its edges no boundary. When the
    windows would cover more than ``WINDOWS_SHARE`` of the image, the whole image is
    transformed once instead.
    """
    H, W = lab_n.shape
    cluster_of = _clusters(a, b, int(lab_band.max()) + 1)
    r0, r1, c0, c1 = _cluster_windows(cluster_of, lab_n, band, lab_band)
    hh, ww = r1 - r0, c1 - c0
    if np.sum(hh * ww) > WINDOWS_SHARE * lab_n.size:
        return np.flatnonzero(_free_edt_sq(lab_n).ravel() > e2)
    e2 = e2.reshape(H, W)
    at_edge = (r0 == 0) | (c0 == 0) | (r1 == H) | (c1 == W)
    inner = np.flatnonzero(~at_edge)
    free = {}
    for k in np.flatnonzero(at_edge):
        lw = lab_n[r0[k] : r1[k], c0[k] : c1[k]]
        free[k] = edt.edtsq((lw != 0).view(np.uint8), black_border=False, parallel=1)
    if inner.size:
        ys, xs, height = _shelves(hh[inner], ww[inner], W)
        canvas = np.zeros((height, W), np.uint8)
        for k, y, x in zip(inner, ys, xs, strict=True):
            # the frame stays background: only the window's inside is copied
            place = canvas[y + 1 : y + hh[k] - 1, x + 1 : x + ww[k] - 1].view(bool)
            np.not_equal(lab_n[r0[k] + 1 : r1[k] - 1, c0[k] + 1 : c1[k] - 1], 0, out=place)
        packed = edt.edtsq(canvas, black_border=False, parallel=auto_threads())
        del canvas
        for k, y, x in zip(inner, ys, xs, strict=True):
            free[k] = packed[y : y + hh[k], x : x + ww[k]]
    out = []
    for k in range(r0.size):
        win = np.s_[r0[k] : r1[k], c0[k] : c1[k]]
        rr, cc = np.nonzero(free.pop(k) > e2[win])
        # pixels of other clusters in the window may miss their background: not theirs
        mine = cluster_of[lab_n[win][rr, cc]] == k + 1
        out.append((rr[mine] + r0[k]) * W + (cc[mine] + c0[k]))
    return np.concatenate(out)


def _root(e2: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """float64 distances from float32 squared distances (integers); infinite ones (no
    boundary anywhere) become the image diagonal."""
    e = np.sqrt(e2, dtype=np.float64)
    inf = np.isinf(e)
    if inf.any():
        e[inf] = float(np.hypot(*shape))
    return e


class _Shells:
    """Distance to the rim (um, exact) and shell index of pixels from their squared transform
    values (integers; -1: a pixel inside the skipped rim band).

    Below 1000 pixels from the rim (``top``, the largest squared value, under 1e6) both are
    read from tables indexed by the squared distance; beyond, they are computed. ``last`` is
    the largest shell index (the shells grow with the distance), ``n_bins`` the number of
    shell indices a key holds (at least 1).
    """

    def __init__(self, top: float, px: float, skip: float, shell: float, shape):
        self.px, self.skip, self.shell, self.shape = px, skip, shell, shape
        self.tabled = top < 1e6
        if self.tabled:
            self.table_d = (np.sqrt(np.arange(int(top) + 1)) - 0.5) * px
            self.table_bin = self._bins(self.table_d).astype(np.int32)
            self.last = int(self.table_bin[-1])
        else:
            self.last = int(self(np.array([top], np.float32))[1][0])
        self.n_bins = max(self.last, 0) + 1

    def _bins(self, d_um: np.ndarray) -> np.ndarray:
        bins = np.floor((d_um - self.skip) / self.shell).astype(np.int64)
        bins[d_um < self.skip] = -1
        return bins

    def __call__(self, e2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.tabled:
            d2 = e2.astype(np.intp)  # (indices of the native type: the gathers do not convert)
            return self.table_d[d2], self.table_bin[d2]
        d_um = (_root(e2, self.shape) - 0.5) * self.px
        return d_um, self._bins(d_um)


# pixels per strip of :func:`_gather_shells`: the strip's temporaries stay in the cache and
# are not image-sized allocations (which the kernel zeroes page by page)
STRIP_PIXELS = 2**20


def _gather_shells(
    flat: np.ndarray,
    least: float,
    lab_flat: np.ndarray,
    planes: list[np.ndarray],
    shells: _Shells,
    n_keys: int,
    threads: int = 1,
) -> tuple:
    """The crystal pixels at squared rim distance ``flat >= least`` and in a shell (index >= 0),
    read strip by strip: their key ``label * n_bins + shell`` (int32 when ``n_keys`` fits),
    the distances, and their values in each of ``planes`` (flat image channels, native dtype;
    all channels at once: one pass over the distances).

    The distances come per key, as sums (float64, ``n_keys`` long) when there are few keys
    for the pixels, else per pixel (float64). The image is read in ``threads`` contiguous
    parts at once, each into its own place of the outputs (in image order); each strip's
    sums over its span of keys are added in strip order afterwards, so that the sums (and
    every output) are the same to the bit for every thread count.

    Returns ``(key, distance_sums or None, pixel_distances or None, values)``.
    """
    n_bins = shells.n_bins
    n_strips = -(-flat.size // STRIP_PIXELS)
    cuts = [STRIP_PIXELS * (n_strips * i // threads) for i in range(threads)] + [flat.size]
    parts = list(zip(cuts[:-1], cuts[1:], strict=True))
    caps = [int(np.count_nonzero(flat[a:b] >= least)) for a, b in parts]
    offsets = np.concatenate([[0], np.cumsum(caps)]).astype(np.int64)
    cap = int(offsets[-1])
    per_key = n_keys * n_strips <= 8 * max(cap, 1)
    key = np.empty(cap, np.int32 if n_keys < 2**31 else np.int64)
    dists = None if per_key else np.empty(cap)
    vals = [np.empty(cap, p.dtype) for p in planes]

    def part(i: int) -> tuple:
        sums = [] if per_key else None  # (first key, sums over the strip's span of keys)
        pos = int(offsets[i])
        start, stop = parts[i]
        for s in range(start, stop, STRIP_PIXELS):
            strip = np.s_[s : s + STRIP_PIXELS]
            sel = flat[strip] >= least
            d_um, bins = shells(flat[strip][sel])
            if bins.size and bins.min() < 0:  # a rounding let a rim pixel through
                keep = bins >= 0
                sel[np.flatnonzero(sel)[~keep]] = False
                d_um, bins = d_um[keep], bins[keep]
            n = bins.size
            if not n:
                continue
            k = key[pos : pos + n]
            np.multiply(lab_flat[strip][sel], n_bins, out=k, dtype=k.dtype)
            np.add(k, bins, out=k, casting="unsafe")
            if per_key:
                lo, hi = int(k.min()), int(k.max())
                sums.append((lo, np.bincount(k - lo, weights=d_um, minlength=hi - lo + 1)))
            else:
                dists[pos : pos + n] = d_um
            for v, plane in zip(vals, planes, strict=True):
                np.compress(sel, plane[strip], out=v[pos : pos + n])
            pos += n
        return pos, sums

    with Workers(threads) as workers:
        done = workers.map(part, range(threads))
    ends = [end for end, _ in done]
    if ends != list(offsets[1:]):  # rim pixels were dropped: close the gaps
        spans = [np.s_[a:e] for a, e in zip(offsets[:-1], ends, strict=True)]
        key = np.concatenate([key[s] for s in spans])
        dists = None if per_key else np.concatenate([dists[s] for s in spans])
        vals = [np.concatenate([v[s] for s in spans]) for v in vals]
    sums = None
    if per_key:
        sums = np.zeros(n_keys)
        for _, spans in done:
            for lo, part_sums in spans:
                sums[lo : lo + part_sums.size] += part_sums
    return key, sums, dists, vals


def rim_distance(labels: np.ndarray) -> np.ndarray:
    """Distance (pixels) of every crystal pixel to its own crystal's boundary.

    The boundary is crossed between a crystal pixel and any pixel of another label
    (background or a touching crystal), so touching crystals each get their own rim: the
    distance is that from the pixel's centre to the nearest centre of a pixel of another label,
    less half a pixel (the boundary runs along pixel edges). A pixel on the rim is 0.5 pixel
    from it; 0 outside crystals. The image edge is not a rim (a crystal cut by it is measured
    from its other faces).
    """
    lab = np.asarray(labels)
    d = _rim_edt(lab)
    inside = lab > 0
    d[inside] -= 0.5
    d[~inside] = 0.0
    return d

