"""Small operations on label images: look-ups, renumbering, pixel pairs across label
boundaries, contact and boundary pixels, per-label medians."""

from __future__ import annotations

import numpy as np

from .._sortkeys import float_of_bits, sortable_bits
from .morphology import flat_nonzero


def index_lut(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``table[index]`` for an array of integer indices (labels, ids) in range.

    The same values as the fancy indexing, from ``np.take``: several times faster for int32
    indices (label images), which fancy indexing first converts.
    """
    return np.take(table, index)


def row_change_pixels(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) of the pixels whose right neighbour has another label."""
    return flat_nonzero(lab[:, :-1] != lab[:, 1:])


def adjacent_pairs(lab: np.ndarray, diagonal: bool = False, row_changes=None):
    """Pixel pairs across label boundaries: label_a < label_b, and their flat indices.

    Side neighbours, and with ``diagonal`` also corner neighbours. ``row_changes``: the
    result of :func:`row_change_pixels` for ``lab``, if at hand.
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
            r, c = flat_nonzero(a != b)  # few pixels: the zero/non-zero test runs on them only
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


def find_root(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def contact_pixels(lab: np.ndarray) -> np.ndarray:
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


def inner_boundary(lab: np.ndarray) -> np.ndarray:
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


def label_medians(values: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Median of ``values`` per label 1..n (NaN for absent labels), from one sort."""
    sel = labels > 0
    lv, vv = labels[sel], values[sel]
    if vv.dtype == np.float32 and lv.size and int(lv.max()) < 2**31 and not np.isnan(vv).any():
        # one sort of (label, order-preserving float bits) packed into a uint64; labels and
        # values are read back from the sorted codes
        packed = (lv.astype(np.uint64) << np.uint64(32)) | sortable_bits(vv).astype(np.uint64)
        packed.sort()
        lv = (packed >> np.uint64(32)).astype(np.int64)
        vv = float_of_bits(packed)
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


def relabel(labels: np.ndarray, return_lut: bool = False):
    """Consecutive ids 1..n in the order of the old ids (0 stays 0), as int32 (with
    ``return_lut`` also the look-up table, index = old id)."""
    n = int(labels.max()) if labels.size else 0
    present = np.zeros(n + 1, dtype=bool)
    present[labels.ravel()] = True
    present[0] = False
    lut = np.zeros(n + 1, dtype=np.int32)
    lut[present] = np.arange(1, int(present.sum()) + 1, dtype=np.int32)
    return (index_lut(lut, labels), lut) if return_lut else index_lut(lut, labels)
