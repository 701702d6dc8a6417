"""Row runs of masks and label images: connected components, holes and their filling, and a
packed integer sort, all from the runs rather than from every pixel."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from .labelops import row_change_pixels
from .morphology import flat_nonzero


def mask_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row runs of the True pixels of a 2D mask: (row, first col, end col + 1), row by row.

    Read from the pixels where a row changes value (few), not from every pixel.
    """
    h, w = mask.shape
    stride = w + 1  # a run's start and end as keys row * stride + col
    r, c = flat_nonzero(mask[:, 1:] != mask[:, :-1])
    first, last = np.flatnonzero(mask[:, 0]), np.flatnonzero(mask[:, -1])
    keys = np.sort(
        np.concatenate([r * stride + c + 1, first * stride, last * stride + w])
    )  # starts and ends alternate along each row
    row, col = np.divmod(keys, stride)
    return row[0::2], col[0::2], col[1::2]


def run_components(row: np.ndarray, c0: np.ndarray, c1: np.ndarray, width: int):
    """Connected components (side neighbours) of the row runs of a mask (:func:`mask_runs`).

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


def run_pixels(row: np.ndarray, c0: np.ndarray, c1: np.ndarray, width: int) -> np.ndarray:
    """Flat indices of the pixels of row runs (in the order of the runs)."""
    length = c1 - c0
    start = row * width + c0
    return np.repeat(start - np.cumsum(length) + length, length) + np.arange(int(length.sum()))


def on_border(row, c0, c1, comp, n: int, shape: tuple[int, int]) -> np.ndarray:
    """Which of the ``n`` components of row runs reach the image border."""
    border = np.zeros(n, dtype=bool)
    border[comp[(row == 0) | (row == shape[0] - 1) | (c0 == 0) | (c1 == shape[1])]] = True
    return border


def find_holes(fg: np.ndarray, regions: bool = True):
    """The holes of a mask: background parts (side-connected) that do not reach the border.

    From the row runs of the background and of the filled mask (faster than labelling the
    image). Returns None without holes, else ``(at, ids, area, region, filled)``: the flat
    indices of the hole pixels (raster order), the hole of each (ids ``0..k-1``), the pixels
    of each hole, the pixels of the region each hole lies in (the connected part of the mask
    and its holes; with ``regions``, else None) and the mask with every hole filled.
    """
    w = fg.shape[1]
    row, c0, c1 = mask_runs(~fg)
    comp, n = run_components(row, c0, c1, w)
    border = on_border(row, c0, c1, comp, n, fg.shape)
    if border.all():
        return None
    hole = ~border[comp]
    row, c0, c1, comp = row[hole], c0[hole], c1[hole], comp[hole]
    at = run_pixels(row, c0, c1, w)
    ids = np.repeat(comp, c1 - c0)
    area = np.bincount(ids, minlength=n)
    filled = fg.copy()
    filled.ravel()[at] = True
    if not regions:
        return at, ids, area, None, filled
    # the region of each hole: the component of the run of the filled mask holding its runs
    f_row, f_c0, f_c1 = mask_runs(filled)
    f_comp, n_reg = run_components(f_row, f_c0, f_c1, w)
    reg_area = np.bincount(f_comp, weights=f_c1 - f_c0, minlength=n_reg)
    stride = w + 1
    run_at = np.searchsorted(f_row * stride + f_c0, row * stride + c0, side="right") - 1
    region = np.zeros(n, dtype=np.float64)
    region[comp] = reg_area[f_comp[run_at]]
    return at, ids, area, region, filled


def fill_holes(labels_or_mask: np.ndarray, max_fraction: float) -> np.ndarray:
    """Fill holes of a mask that are smaller than ``max_fraction`` of the enclosing region."""
    mask = labels_or_mask > 0
    # holes: background components that do not reach the image border (their runs are much
    # faster than scipy's iterated dilation on large images)
    found = find_holes(mask, regions=max_fraction < 1.0)
    if found is None:
        return mask
    at, ids, area, region, filled = found
    if max_fraction >= 1.0:
        return filled
    keep = area <= max_fraction * region
    mask.ravel()[at[keep[ids]]] = True
    return mask


def packed_order(keys: tuple, spans: tuple) -> np.ndarray:
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


def label_runs(lab: np.ndarray, row_changes=None):
    """Row runs of every label: (label, row, first col, last col), sorted by label then row.

    Read from the pixels where a row changes label (few, ``row_changes``: from
    :func:`row_change_pixels`), not from every pixel.
    """
    h, w = lab.shape
    r, c = row_change_pixels(lab) if row_changes is None else row_changes
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
    so = packed_order((s_col, s_row, s_lab), (w, h, n_lab))
    eo = packed_order((e_col, e_row, e_lab), (w, h, n_lab))
    return s_lab[so], s_row[so], s_col[so], e_col[eo]
