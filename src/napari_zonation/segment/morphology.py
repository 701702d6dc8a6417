"""Binary morphology by Euclidean disks (dilation by rows of the disk or a distance
transform), square dilation, opening and closing, and gathers over footprints at chosen
pixels."""

from __future__ import annotations

import functools

import edt
import numpy as np


def flat_nonzero(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.nonzero`` of a 2D array, from the flat indices (many times faster in numpy)."""
    return np.divmod(np.flatnonzero(mask), mask.shape[1])


def distance_inside(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of each True pixel to the nearest False one (float32).

    The same as ``scipy.ndimage.distance_transform_edt`` on a binary mask (pixels beyond the
    border are not False), from seung-lab's ``edt`` (fast C++).
    """
    return edt.edt(np.ascontiguousarray(mask, dtype=bool), black_border=False, parallel=1)


ROWS_DISK = 24.0  # radii (pixels) up to which the disk's rows beat a distance transform


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


def near_mask(mask: np.ndarray, radius: float, strict: bool = False) -> np.ndarray:
    """Pixels within ``radius`` of a True pixel of ``mask`` (Euclidean; closer with ``strict``).

    The same as ``distance_inside(~mask) <= radius`` (``< radius``), and as a binary dilation by
    :func:`_disk` (pixels beyond the border are False). Up to ``ROWS_DISK`` pixels the disk
    is taken row by row: the mask is widened along the rows to the half-width of each of the
    disk's rows, from the outermost row (the narrowest) in, and each widening is ORed in
    shifted by its row's offset (about 4 x radius whole-image ORs, several times faster than
    the distance transform there); beyond it, the distance transform.
    """
    if radius > ROWS_DISK:
        d = distance_inside(~mask)
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


def dilate_square(arr: np.ndarray, k: int) -> np.ndarray:
    """Maximum over a (2k + 1) square (a binary dilation for masks), rows then columns.

    Only pixels inside the image count: the same as ``ndi.maximum_filter`` (reflected border)
    and ``ndi.binary_dilation`` (border False). Beyond ``k = 2`` the maximum along each axis
    is taken over windows doubling in length (about ``2 log2 k`` whole-image maxima per axis
    instead of ``2 k``).
    """
    if k <= 2:
        out = arr.copy()
        for d in range(1, k + 1):
            np.maximum(out[d:], arr[:-d], out=out[d:])
            np.maximum(out[:-d], arr[d:], out=out[:-d])
        rows = out.copy()
        for d in range(1, k + 1):
            np.maximum(out[:, d:], rows[:, :-d], out=out[:, d:])
            np.maximum(out[:, :-d], rows[:, d:], out=out[:, :-d])
        return out
    return _window_max(_window_max(arr, k, 0), k, 1)


def _window_max(a: np.ndarray, k: int, axis: int) -> np.ndarray:
    """Maximum over ``[i - k, i + k]`` along ``axis`` (pixels inside the image only)."""
    n = a.shape[axis]

    def part(x: np.ndarray, start: int | None, stop: int | None) -> np.ndarray:
        key = [slice(None)] * x.ndim
        key[axis] = slice(start, stop)
        return x[tuple(key)]

    # run[i]: the maximum of a[i : i + m] (shorter at the end), for the largest power of two
    # m <= 2k + 1 (so m >= k + 1)
    run = a.copy()
    m = 1
    while 2 * m <= 2 * k + 1:
        if m < n:
            np.maximum(part(run, None, -m), part(run, m, None), out=part(run, None, -m))
        m *= 2
    out = np.empty_like(a)
    # from i = k on, [i - k, i + k] is the union of the runs starting at i - k and at
    # i + k + 1 - m (both inside the image; a run cut by the image's end is what lies inside)
    if n > k:
        s = k + 1 - m
        np.maximum(part(run, None, n - k), part(run, k + s, n + s), out=part(out, k, None))
    # before it, [0, i + k]: the running maximum from the image's start
    lo = min(k, n)
    prefix = np.maximum.accumulate(part(a, None, min(n, 2 * k)), axis=axis)
    take = np.minimum(np.arange(lo) + k, n - 1)
    part(out, None, lo)[...] = np.take(prefix, take, axis=axis)
    return out


def open_mask(mask: np.ndarray, radius: float) -> np.ndarray:
    """Binary opening by a disk of ``radius`` pixels (pixels beyond the border are inside)."""
    if radius < 0.5:
        return mask
    eroded = ~near_mask(~mask, radius)
    if not eroded.any():
        return eroded
    return near_mask(eroded, radius)


def close_mask(mask: np.ndarray, radius: float) -> np.ndarray:
    """Binary closing by a disk of ``radius`` pixels (pixels beyond the border are inside)."""
    if radius < 0.5 or not mask.any():
        return mask
    return ~near_mask(~near_mask(mask, radius), radius)


def _shifted_indices(n: int, idx: np.ndarray, k: int) -> list[np.ndarray]:
    """``idx + d`` for d in -k..k, clipped to 0..n-1 (a clipped index stays in the window)."""
    return [np.clip(idx + d, 0, n - 1) for d in range(-k, k + 1)]


def gather_any(
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


def gather_max(arr: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int):
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
