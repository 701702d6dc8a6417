"""Per-shell statistics: medians, quartiles, means and their clipped versions of the pixels
of every (crystal, shell) key, from one sort of the gathered values."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._sortkeys import float_of_bits, sortable_bits
from .._stats import (
    IQR_TO_SIGMA,
)

# The spread of a shell's values is its interquartile range over 1.349 (the IQR of a Gaussian
# in sigmas): read from the same sorted run as the median, it needs no second sort (as the
# median absolute deviation would), and it is as efficient for Gaussian noise.
IQR_SIGMA = IQR_TO_SIGMA


def _quartiles_of_runs(vs: np.ndarray, starts: np.ndarray, n: np.ndarray, values=None) -> tuple:
    """First quartile, median and third quartile of sorted runs ``vs[starts:starts + n]``
    (linear interpolation between order statistics, as :func:`numpy.quantile`); ``values``
    turns the entries read (sort codes) into float64 values."""
    values = values or (lambda x: x.astype(np.float64))
    out = []
    for q in (0.25, 0.5, 0.75):
        pos = (n - 1) * q
        lo = np.floor(pos).astype(np.int64)
        frac = pos - lo
        v_lo = values(vs[starts + lo])
        v_hi = values(vs[starts + np.minimum(lo + 1, n - 1)])
        out.append(v_lo + frac * (v_hi - v_lo))
    return tuple(out)


def _grouped_quartiles(key: np.ndarray, v: np.ndarray, counts: np.ndarray) -> tuple:
    """Quartiles of ``v`` per group ``key`` (ints indexing ``counts``), for every key present
    (``counts > 0``), in ascending key order: ``(q1, median, q3)``.

    One sort: integer-valued data are packed with their key into one int64, and values that
    float32 holds exactly with their key into one uint64 (the float's bits made to sort as
    the float does), and sorted in place; other data go through :func:`numpy.lexsort`.
    """
    present = np.flatnonzero(counts)
    n = counts[present]
    starts = np.cumsum(n) - n
    if not v.size:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    vmin, vmax = float(v.min()), float(v.max())
    span = int(round(vmax - vmin)) + 1
    if span * counts.size < 2**62 and np.array_equal(v, np.round(v)):
        # in int32 when it holds the packed values: a faster sort
        dt = np.int32 if span * counts.size < 2**31 else np.int64
        packed = np.multiply(key, span, dtype=dt)
        packed += np.rint(v - vmin).astype(dt)
        packed.sort()
        packed %= span
        return tuple(q + vmin for q in _quartiles_of_runs(packed, starts, n))
    with np.errstate(over="ignore"):  # values beyond float32 become inf: not held exactly
        v32 = v if v.dtype == np.float32 else v.astype(np.float32)
    if counts.size < 2**32 and (v32 is v or np.array_equal(v32, v)):
        packed = key.astype(np.uint64) << np.uint64(32)
        packed |= sortable_bits(v32)
        packed.sort()
        return _quartiles_of_runs(float_of_bits(packed), starts, n)
    order = np.lexsort((v, key))
    return _quartiles_of_runs(v[order], starts, n)


def _mean_distance(dsum: np.ndarray, counts: np.ndarray | None, present, n) -> np.ndarray:
    """Mean distance of the keys ``present`` from the per-key distance sums ``dsum`` of all
    their pixels: over ``counts`` of them (per key), or ``n`` when every pixel is counted."""
    return dsum[present] / (n if counts is None else counts[present])


def _shell_stats(
    key: np.ndarray,
    dsum: np.ndarray,
    v: np.ndarray,
    n_keys: int,
    counts=None,
    statistic: str = "median",
) -> pd.DataFrame:
    """Per (crystal, shell) key: pixel count, mean distance (from the distance sums ``dsum``
    over ``counts`` pixels, see :func:`_mean_distance`), the ``statistic`` (median or
    mean) as ``value``, the median and the spread (IQR / 1.349) of the values."""
    n_of = np.bincount(key, minlength=n_keys)
    present = np.flatnonzero(n_of)
    q1, med, q3 = _grouped_quartiles(key, v, n_of)
    n = n_of[present]
    value = med
    if statistic == "mean":
        value = np.bincount(key, weights=v, minlength=n_keys)[present] / n
    return pd.DataFrame(
        {
            "key": present,
            "distance_um": _mean_distance(dsum, counts, present, n),
            "value": value,
            "median": med,
            "spread": (q3 - q1) / IQR_SIGMA,
            "n_pixels": n,
        }
    )


def _clipped_shell_stats(
    st: pd.DataFrame,
    key: np.ndarray,
    v: np.ndarray,
    n_keys: int,
    n_bins: int,
    key_ids: np.ndarray | None,
    clip: float,
    min_dropped: float = 0.01,
    statistic: str = "median",
) -> pd.DataFrame:
    """Shell statistics again, without pixels far from their shell's median (a mean: every
    shell that lost a pixel).

    The scale is one per crystal: the median over its shells of their spread (most shells
    are clean, so contaminated outer shells do not inflate it). Crystals with a zero scale
    (noise-free images) and shells that would lose every pixel keep their first statistics
    (a mean: the median of a crystal without noise, exact there).
    """
    sk = st["key"].to_numpy()
    full = sk if key_ids is None else key_ids[sk]
    crystal = full // n_bins
    scale_of_crystal = pd.Series(st["spread"].to_numpy()).groupby(crystal).median()
    scale = np.zeros(n_keys)
    scale[sk] = scale_of_crystal.reindex(crystal).to_numpy()
    counts = np.bincount(key, minlength=n_keys)
    med = np.zeros(n_keys)
    med[sk] = st["median"].to_numpy()
    s_px = scale[key]
    keep = (s_px <= 0) | (np.abs(v - med[key]) <= clip * s_px)
    if statistic == "mean":  # a crystal without noise to clip by keeps its medians
        st = st.assign(value=np.where(scale[sk] > 0, st["value"], st["median"]))
    # recompute only shells that lost at least min_dropped of their pixels (a median: the few
    # pixels a 3-sigma clip takes from the tails of clean Gaussian noise, 0.3 %, both sides,
    # move it by less than 0.03 sigma, and recomputing every shell would double the cost); a
    # mean, every shell that lost a pixel
    dropped = np.bincount(key[~keep], minlength=n_keys)
    least = 1 if statistic == "mean" else np.maximum(1, min_dropped * counts)
    affected = dropped >= least
    if not affected.any():
        return st
    sel = affected[key] & keep
    new = _shell_stats(key[sel], np.zeros(n_keys), v[sel], n_keys, statistic=statistic)
    retained = st[~np.isin(sk, new["key"].to_numpy())]
    cur = pd.concat([retained, new]).sort_values("key").reset_index(drop=True)
    # a shell's distance is that of all its pixels (the clipping picks values, not places)
    dist = pd.Series(st["distance_um"].to_numpy(), index=sk)
    return cur.assign(distance_um=dist.reindex(cur["key"].to_numpy()).to_numpy())


def _runs(counts: np.ndarray):
    """The keys present in ``counts``, their sizes and where their runs start once sorted."""
    present = np.flatnonzero(counts)
    n = counts[present]
    starts = np.cumsum(n) - n
    return present, n, starts


def _run_sums(arr: np.ndarray, starts: np.ndarray, n: np.ndarray, dtype) -> np.ndarray:
    """Sums of the runs ``arr[starts:starts + n]`` (``n >= 1``, runs in ascending order and
    not overlapping), accumulated in ``dtype`` without a copy of ``arr``."""
    if not starts.size:
        return np.zeros(0, dtype)
    idx = np.empty(2 * starts.size, np.int64)
    idx[0::2] = starts
    idx[1::2] = starts + n
    if idx[-1] >= arr.size:  # the last run ends the array: reduceat sums to the end
        idx = idx[:-1]
    return np.add.reduceat(arr, idx, dtype=dtype)[0::2]


def _packed_sort(key: np.ndarray, v: np.ndarray, vmin: int, n_keys: int, span: int) -> np.ndarray:
    """``key * span + (v - vmin)`` (``0 <= v - vmin < span``) in the narrowest integer type,
    sorted: one sort orders the pixels by key and, within a key, by value."""
    dt = np.int32 if span * max(n_keys, 1) < 2**31 else np.int64
    packed = np.multiply(key, span, dtype=dt)
    if v.dtype.itemsize <= 2:
        # added in place, then the offset: an intermediate that wraps around wraps back (the
        # result is in range), and no shifted copy of the values is made
        np.add(packed, v, out=packed, casting="unsafe")
        if vmin:
            np.subtract(packed, vmin, out=packed)
    else:
        iv = v if vmin == 0 and v.dtype.kind == "u" else np.subtract(v, vmin, dtype=np.int64)
        np.add(packed, iv, out=packed, casting="unsafe")
    packed.sort()
    return packed


def _needles(x: np.ndarray, dtype) -> np.ndarray:
    """Search values in the sorted array's own integer type when they fit (a search with
    wider needles would first convert the whole sorted array)."""
    info = np.iinfo(dtype)
    if x.size and info.min <= int(x.min()) and int(x.max()) <= info.max:
        return x.astype(dtype)
    return x


def _as_integers(v: np.ndarray, max_span: int = 2**20) -> np.ndarray | None:
    """Float values that are all whole numbers within ``max_span`` of each other in the
    narrowest integer type that holds them (their shell statistics then take the integer
    path: one sort of packed pairs, the clip by binary search), else None."""
    if not v.size:
        return None
    lo, hi = float(v.min()), float(v.max())
    if hi - lo >= max_span or max(abs(lo), abs(hi)) >= 2**30:
        return None
    dt = next(
        t
        for t in (np.uint8, np.int8, np.uint16, np.int16, np.int32)
        if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max
    )
    iv = v.astype(dt)
    return iv if np.array_equal(iv, v) else None


class _IntCodes:
    """Sort codes of integer values: ``key * span + (v - vmin)`` (see :func:`_packed_sort`)."""

    def __init__(self, key: np.ndarray, v: np.ndarray, n_keys: int):
        self.vmin = int(v.min())
        self.span = int(v.max()) - self.vmin + 1
        self.sorted = _packed_sort(key, v, self.vmin, n_keys, self.span)

    def key_starts(self, keys: np.ndarray) -> np.ndarray:
        return keys.astype(np.int64) * self.span

    def values(self, codes: np.ndarray) -> np.ndarray:
        return (codes % self.span + self.vmin).astype(np.float64)

    def run_means(self, keys: np.ndarray, starts: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Mean value of each key's run ``sorted[starts:starts + n]``, exact in integers: a
        run's codes are ``key * span + (v - vmin)``."""
        if int(self.sorted[-1]) * int(n.max()) < 2**62:  # the code sums fit in int64
            sums = _run_sums(self.sorted, starts, n, np.int64)
            sums -= n * self.key_starts(keys)
            return sums / n + self.vmin
        return _run_sums(self.values(self.sorted), starts, n, np.float64) / n

    def window(self, keys: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple:
        """Codes of the smallest value >= ``lo`` and the largest <= ``hi`` of each key, within
        the key's own range (a window reaching past the value range takes no pixel of the
        neighbouring key's run)."""
        top = self.span - 1
        lo_c = np.clip(np.ceil(lo - self.vmin), 0, top).astype(np.int64)
        hi_c = np.clip(np.floor(hi - self.vmin), 0, top).astype(np.int64)
        base = self.key_starts(keys)
        return base + lo_c, base + hi_c


class _FloatCodes:
    """Sort codes of float32 values: ``key << 32 | sortable_bits(v)`` (uint64)."""

    def __init__(self, key: np.ndarray, v32: np.ndarray, n_keys: int):
        self.sorted = key.astype(np.uint64) << np.uint64(32)
        self.sorted |= sortable_bits(v32)
        self.sorted.sort()

    def key_starts(self, keys: np.ndarray) -> np.ndarray:
        return keys.astype(np.uint64) << np.uint64(32)

    def values(self, codes: np.ndarray) -> np.ndarray:
        return float_of_bits(codes).astype(np.float64)

    def run_means(self, keys: np.ndarray, starts: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Mean value of each key's run ``sorted[starts:starts + n]`` (float32 values summed
        in float64)."""
        return _run_sums(float_of_bits(self.sorted), starts, n, np.float64) / n

    def window(self, keys: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple:
        """Codes of the smallest float32 >= ``lo`` and the largest float32 <= ``hi``."""
        with np.errstate(over="ignore"):
            lo32, hi32 = lo.astype(np.float32), hi.astype(np.float32)
        lo32 = np.where(lo32 < lo, np.nextafter(lo32, np.float32(np.inf)), lo32)
        hi32 = np.where(hi32 > hi, np.nextafter(hi32, np.float32(-np.inf)), hi32)
        base = self.key_starts(keys)
        return base | sortable_bits(lo32), base | sortable_bits(hi32)


def _sorted_shell_stats(
    key: np.ndarray,
    dsum: np.ndarray,
    v: np.ndarray,
    n_keys: int,
    crystal_of_key,
    clip: float | None,
    min_dropped: float = 0.01,
    counts: np.ndarray | None = None,
    statistic: str = "median",
) -> pd.DataFrame | None:
    """Shell statistics from one sort of the ``(key, value)`` pairs packed into one integer
    code each: integer values (:class:`_IntCodes`) or float32 ones (:class:`_FloatCodes`; other
    values: None).

    Per key: pixel count, mean distance (from the distance sums ``dsum`` over ``counts``
    pixels, see :func:`_mean_distance`), median and spread (IQR / 1.349), read from the
    key's sorted run. With ``clip``, pixels farther than ``clip`` times their crystal's pixel
    noise (the median over its shells of the spread) from their shell's median are dropped:
    being sorted, the kept pixels of a shell are one contiguous run found by binary search,
    and the statistics of the shells that lost at least ``min_dropped`` of their pixels are
    read again from it (the few pixels a 3-sigma clip takes from clean Gaussian noise move a
    median by < 0.03 sigma). A shell's distance stays that of all its pixels; crystals with
    zero noise and shells that would lose every pixel keep their first statistics.

    With ``statistic="mean"`` the value is the mean of the kept run (every shell that lost a
    pixel, however few: one far pixel moves a mean), its sum read from the sorted codes; a
    crystal without noise to clip by keeps its medians (exact there).
    """
    if not v.size:
        present, n, starts = _runs(np.bincount(key, minlength=n_keys))
        dist = _mean_distance(dsum, counts, present, n)
        return pd.DataFrame(
            {"key": present, "distance_um": dist, "value": dist, "spread": dist, "n_pixels": n}
        )
    if v.dtype.kind in "ui":
        codes = _IntCodes(key, v, n_keys)
    elif v.dtype == np.float32 and n_keys < 2**32:
        codes = _FloatCodes(key, v, n_keys)
    else:
        return None
    packed = codes.sorted
    # the counts are the sorted runs' lengths (no pass over the keys)
    edges = np.searchsorted(packed, _needles(codes.key_starts(np.arange(1, n_keys)), packed.dtype))
    present, n, starts = _runs(np.diff(edges, prepend=0, append=packed.size))
    dist = _mean_distance(dsum, counts, present, n)
    q1, med, q3 = _quartiles_of_runs(packed, starts, n, codes.values)
    spread = (q3 - q1) / IQR_SIGMA
    kept = n
    a = starts
    if clip:
        crystal = crystal_of_key(present)
        noise = pd.Series(spread).groupby(crystal).transform("median").to_numpy()
        w = clip * noise
        lo_c, hi_c = codes.window(present, med - w, med + w)
        # only shells with a value outside the window lose pixels (their ends tell)
        out = (noise > 0) & ((packed[starts] < lo_c) | (packed[starts + n - 1] > hi_c))
        a, kept = starts.copy(), n.copy()
        if out.any():
            a[out] = np.searchsorted(packed, _needles(lo_c[out], packed.dtype), "left")
            kept[out] = np.searchsorted(packed, _needles(hi_c[out], packed.dtype), "right") - a[out]
        least = 1 if statistic == "mean" else np.maximum(1, min_dropped * n)
        redo = (noise > 0) & (kept > 0) & (n - kept >= least)
        kept = np.where(redo, kept, n)
        a = np.where(redo, a, starts)
        if redo.any():
            r1, rmed, r3 = _quartiles_of_runs(packed, a[redo], kept[redo], codes.values)
            med, spread = med.copy(), spread.copy()
            med[redo] = rmed
            spread[redo] = (r3 - r1) / IQR_SIGMA
    value = med
    if statistic == "mean":
        value = codes.run_means(present, a, kept)
        if clip:  # a crystal without noise to clip by keeps its medians (exact there)
            value = np.where(noise > 0, value, med)
    return pd.DataFrame(
        {"key": present, "distance_um": dist, "value": value, "spread": spread, "n_pixels": kept}
    )


