"""Zoning profiles: drawn lines and paths, automatic core-to-rim profiles, calibration.

Every function returns a long profiles table, one row a point: ``label``, ``distance_um``,
``value`` and, where they apply, ``sigma``, ``n_pixels``, ``channel``, ``source``. Items that
cannot be profiled are skipped with a warning and listed in ``table.attrs["failures"]``
(a tuple of ``(label, reason)`` pairs, a plain value so that tables can be concatenated and
merged; :func:`profile_failures` gives it as a DataFrame); the others are returned.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import edt
import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage.measure import profile_line

from ._sortkeys import float_of_bits, sortable_bits
from ._stats import (
    IQR_TO_SIGMA,
    median_profile,  # noqa: F401 - importable from here too
    robust_sigma,
)
from ._threads import Workers, auto_threads
from ._validation import (
    ZonationInputError,
    as_image,
    check_labels,
    check_pixel_size,
    check_profiles,
)

PROFILE_ORDER = [
    "label",
    "channel",
    "distance_um",
    "value",
    "sigma",
    "n_pixels",
    "rim_skipped_um",
    "source",
]


def _channels(image, channel_names):
    img = as_image(image)
    stack = img[None] if img.ndim == 2 else img
    if channel_names is None:
        names = ["bse"] if img.ndim == 2 else [f"ch{i}" for i in range(stack.shape[0])]
    else:
        names = [str(n) for n in channel_names]
        if len(names) != stack.shape[0]:
            raise ZonationInputError(
                f"{len(names)} channel names for {stack.shape[0]} channels; give one name per "
                "channel of the (channels, y, x) stack."
            )
    return stack, names


def profile_failures(prof: pd.DataFrame) -> pd.DataFrame:
    """The items a profiles call skipped, as a DataFrame of ``label, reason``.

    Parameters
    ----------
    prof : pandas.DataFrame
        A table from :func:`rim_profiles`, :func:`line_profiles` or :func:`traverse_profiles`.

    Returns
    -------
    pandas.DataFrame
        One row per skipped item (empty when none was skipped).
    """
    return pd.DataFrame(list(prof.attrs.get("failures", ())), columns=["label", "reason"])


def _finish(frames, failures, source):
    if frames:
        out = pd.concat(frames, ignore_index=True)
    else:
        out = pd.DataFrame({c: [] for c in PROFILE_ORDER})
    out["source"] = source
    out = out[[c for c in PROFILE_ORDER if c in out.columns]]
    out.attrs["failures"] = tuple((lab, str(why)) for lab, why in failures)
    if failures:
        shown = "; ".join(f"{lab}: {why}" for lab, why in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        warnings.warn(
            f"{len(failures)} profile(s) skipped: {shown}{more}", UserWarning, stacklevel=3
        )
    return out


# ----------------------------------------------------------------------------------------
# distance to the rim


# ----------------------------------------------------------------------------------------
# the edge band: halos and other imaging artefacts at a crystal's outline

#: widest outer band (pixels) examined for an edge halo when ``halo_um`` is not given
HALO_PX = 3
#: departure from the next points' trend, as a fraction of the image's grey range, above
#: which an outer band is an imaging artefact (see :func:`skip_edge_band`)
HALO_CONTRAST = 0.1
#: points beyond the band that set its trend (their median); points whose departure is more
#: than ``_HALO_SIGMAS`` times the trend's scatter belong to the band
_HALO_REF_POINTS = 8
_HALO_SIGMAS = 3.0


def grey_range(plane) -> float:
    """Grey range of an image channel: its 99.9th minus its 0.1th percentile, over about a
    million of its pixels taken at a regular stride (non-finite ones left out)."""
    flat = np.asarray(plane).ravel()
    sub = flat[:: max(1, flat.size // 2**20)]
    if sub.dtype.kind == "f":
        sub = sub[np.isfinite(sub)]
    if not sub.size:
        return float("nan")
    lo, hi = np.percentile(sub, [0.1, 99.9])
    return float(hi) - float(lo)


def _range_of(name: str, plane, grey_ranges: dict | None) -> float:
    """The grey range given for a channel (``grey_ranges``), else measured on ``plane``."""
    if grey_ranges and name in grey_ranges:
        return float(grey_ranges[name])
    return grey_range(plane)


def _outside_grey(lab: np.ndarray, planes: dict, edge: np.ndarray | None = None):
    """``f(labels, channel)``: the median grey of the background pixels 4-adjacent to each of
    these crystals in that channel's image (``planes``: channel name -> 2D array; NaN for a
    crystal with no background neighbour). ``edge``: flat indices of the crystal pixels
    next to another label (found here when not given)."""
    H, W = lab.shape
    lab_flat = lab.ravel()
    if edge is None:
        inside = lab > 0
        near = np.zeros_like(inside)
        near[1:] |= lab[:-1] != lab[1:]
        near[:-1] |= lab[1:] != lab[:-1]
        near[:, 1:] |= lab[:, :-1] != lab[:, 1:]
        near[:, :-1] |= lab[:, 1:] != lab[:, :-1]
        edge = np.flatnonzero(inside & near)
    lab_edge = lab_flat[edge]
    col = edge % W

    def f(ids, channel) -> np.ndarray:
        plane = np.asarray(planes[channel]).ravel()
        ids = np.asarray(ids)
        sel = np.isin(lab_edge, ids)
        px_, lab_, c_ = edge[sel], lab_edge[sel], col[sel]
        who, where = [], []
        for off, ok in ((1, c_ < W - 1), (-1, c_ > 0), (W, px_ < H * W - W), (-W, px_ >= W)):
            nb = px_[ok] + off
            bg = lab_flat[nb] == 0
            who.append(lab_[ok][bg])
            where.append(nb[bg])
        who, where = np.concatenate(who), np.concatenate(where)
        med = pd.Series(plane[where].astype(np.float64)).groupby(who).median()
        return med.reindex(ids).to_numpy(dtype=float)

    return f


def _halo_band(px: float, halo_um: float | None, width_px: int = 1) -> float:
    """The edge band examined (um): ``halo_um``, or by default three pixels plus half of a
    line's band width beyond one pixel (an edge crossed at a slant spreads its halo along
    the line)."""
    if halo_um is None:
        return (HALO_PX + 0.5 * (width_px - 1)) * px
    if halo_um < 0:
        raise ZonationInputError("halo_um must be 0 (no edge band skipped) or positive (um).")
    return float(halo_um)


def skip_edge_band(
    prof: pd.DataFrame,
    band_um: float,
    min_departure: dict,
    always_um: float = 0.0,
    lead_um: float = 0.0,
    passes: int = 1,
    outside=None,
) -> pd.DataFrame:
    """Drop each profile's outer band when its grey is an imaging artefact, and say how much
    of the rim every profile leaves out (column ``rim_skipped_um``).

    The points nearer the rim than ``always_um`` (the blurred rim pixel) are always dropped,
    but they take part in the check: the halo peaks there. Such a point counts as an
    artefact only when no blend of the crystal with what lies outside it can give its grey
    (it lies beyond both the trend and ``outside``'s grey by more than three times the
    trend's scatter): a real thin rim zone next to a glass brighter than the crystal gives a
    bright rim pixel too, and must not be taken for a halo. Without ``outside`` they never
    count.

    The candidate band runs from the profile's first point to ``band_um`` beyond
    ``always_um`` (or beyond the first point, if that is deeper). The next eight points set
    its trend (at least three are needed, else only the ``always_um`` band is dropped):
    their least-squares line when its slope exceeds three standard errors (its residuals'
    RMS is then the trend's scatter), else their median (1.4826 times their median absolute
    deviation the scatter). The band is an artefact when one of its points departs from the
    median by more than ``min_departure[channel]`` (grey levels; the median, as a slope
    extrapolated across a wide band could make a textured groundmass look like a halo): an
    edge halo (the bright line a BSE image shows at a polished grain's edge), or the outside
    blurred into the crystal. Then every point up to the innermost such point is dropped,
    and after it the band's points that still depart from the trend on its side by more than
    three times the trend's scatter (and their own ``sigma``): a line started a little
    outside the crystal crosses dark epoxy, then the bright halo, then the halo's tail.
    Distances are not changed.

    Parameters
    ----------
    prof : pandas.DataFrame
        Long profiles table; the rows of one profile (``label`` and ``channel``) contiguous,
        in increasing distance.
    band_um : float
        Width of the candidate band beyond ``always_um`` (um); 0: no check.
    min_departure : dict
        Channel name -> least departure (grey levels) that makes the band an artefact.
    always_um : float
        Points nearer the rim than this are dropped whatever the check finds.
    lead_um : float
        Band left out before the profile's first point.
    passes : int
        Bands examined one after the other, at most (a band after a dropped one is examined
        again).
    outside : callable, optional
        ``outside(labels, channel)`` -> the grey just outside each of these crystals.

    Returns
    -------
    pandas.DataFrame
        The kept rows, with ``rim_skipped_um``: ``lead_um`` plus the distance from the
        profile's first point to its first kept one.
    """
    n = len(prof)
    if n == 0:
        return prof.assign(rim_skipped_um=np.zeros(0))
    lab = prof["label"].to_numpy()
    chan, names = pd.factorize(prof["channel"]) if "channel" in prof else (np.zeros(n, int), [""])
    start = np.ones(n, bool)
    start[1:] = (lab[1:] != lab[:-1]) | (chan[1:] != chan[:-1])
    starts = np.flatnonzero(start)
    gid = np.cumsum(start) - 1
    n_g = starts.size
    pos = np.arange(n) - starts[gid]
    d = prof["distance_um"].to_numpy(dtype=float)
    v = prof["value"].to_numpy(dtype=float)
    sig = prof["sigma"].to_numpy(dtype=float) if "sigma" in prof else np.full(n, np.nan)
    d0 = d[starts]
    tol = 1e-9 * max(float(np.nanmax(np.abs(d))), 1.0)
    n_skip = np.bincount(gid, weights=d < always_um - tol, minlength=n_g).astype(np.int64)
    found = np.zeros(n_g, bool)
    if band_um > 0:
        inband = (d < np.maximum(d0, always_um)[gid] + band_um - tol) & np.isfinite(v)
        nb = np.bincount(gid, weights=inband, minlength=n_g).astype(np.int64)
        ref = (pos >= nb[gid]) & (pos < nb[gid] + _HALO_REF_POINTS) & np.isfinite(v)
        # the trend: the median of the reference points (a robust level), or their
        # least-squares line where its slope is significant (3 standard errors: real zoning
        # often slopes there; a slope fitted on a few noisy points extrapolates badly)
        table = np.full((n_g, _HALO_REF_POINTS), np.nan)
        table[gid[ref], (pos - nb[gid])[ref]] = v[ref]
        ok = np.count_nonzero(np.isfinite(table), axis=1) >= 3
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # (groups without reference)
            level = np.nanmedian(table, axis=1)
            scatter = 1.4826 * np.nanmedian(np.abs(table - level[:, None]), axis=1)
        dv, vv = np.where(ref, d, 0.0), np.where(ref, v, 0.0)
        s0 = np.bincount(gid, ref.astype(float), n_g)
        mean_d = np.bincount(gid, dv, n_g) / np.maximum(s0, 1)
        mean_v = np.bincount(gid, vv, n_g) / np.maximum(s0, 1)
        dc = np.where(ref, d - mean_d[gid], 0.0)
        sxx = np.bincount(gid, dc * dc, n_g)
        slope = np.bincount(gid, dc * np.where(ref, v - mean_v[gid], 0.0), n_g) / np.maximum(
            sxx, 1e-300
        )
        resid = np.where(ref, v - mean_v[gid] - slope[gid] * (d - mean_d[gid]), 0.0)
        rms = np.sqrt(np.bincount(gid, resid * resid, n_g) / np.maximum(s0 - 2, 1))
        sloped = ok & (sxx > 0) & (np.abs(slope) * np.sqrt(sxx) > 3 * rms)
        scatter = np.where(sloped, rms, scatter)
        trend = np.where(sloped[gid], mean_v[gid] + slope[gid] * (d - mean_d[gid]), level[gid])
        dep = v - trend
        # the strong test against the level (a slope extrapolated across a wide band could
        # make a groundmass texture look like a halo); the tail against the trend
        dep_level = v - level[gid]
        floor = np.array([float(min_departure.get(c, np.inf)) for c in names])[chan]
        cand = inband & ok[gid]
        weak_thr = _HALO_SIGMAS * np.fmax(scatter[gid], np.nan_to_num(sig, nan=0.0))
        strong = cand & (np.abs(dep_level) > floor)
        rim = strong & (d < always_um - tol)
        if rim.any():
            # in the always-dropped band, only a peak no blend with the outside can make
            peak = np.zeros(n, bool)
            if outside is not None:
                for c in np.unique(chan[rim]):
                    at = np.flatnonzero(rim & (chan == c))
                    ids, inv = np.unique(lab[at], return_inverse=True)
                    og = np.asarray(outside(ids, names[c]), dtype=float)[inv]
                    lo = np.fmin(level[gid[at]], og)
                    hi = np.fmax(level[gid[at]], og)
                    peak[at] = (v[at] - hi > weak_thr[at]) | (lo - v[at] > weak_thr[at])
            strong &= ~rim | peak
        # the innermost strong point sets the side; weak points after it on that side extend
        # the band (a line started outside the crystal meets dark epoxy, then the bright halo)
        last_strong = np.full(n_g, -1, np.int64)
        np.maximum.at(last_strong, gid[strong], np.flatnonzero(strong))
        found = last_strong >= 0
        side = np.zeros(n_g)
        side[found] = np.sign(dep_level[last_strong[found]])
        weak = cand & found[gid] & (np.sign(dep) == side[gid]) & (np.abs(dep) > weak_thr)
        weak &= np.arange(n) > last_strong[gid]
        last = np.full(n_g, -1, np.int64)
        np.maximum.at(last, gid[weak | strong], pos[weak | strong])
        n_skip = np.maximum(n_skip, last + 1)
    size = np.bincount(gid, minlength=n_g)
    n_skip = np.minimum(n_skip, size)
    keep = pos >= n_skip[gid]
    first_kept = np.where(n_skip < size, d[np.minimum(starts + n_skip, n - 1)], np.nan)
    skipped = lead_um + np.where(n_skip > 0, first_kept - d0, 0.0)
    out = prof.assign(rim_skipped_um=skipped[gid])[keep]
    if passes > 1 and found.any():  # what lay outside the crystal, then its halo: once more
        again = skip_edge_band(out.drop(columns="rim_skipped_um"), band_um, min_departure,
                               passes=passes - 1, outside=outside)
        out = again.assign(
            rim_skipped_um=out.loc[again.index, "rim_skipped_um"] + again["rim_skipped_um"]
        )
    return out


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
    for the pixels (each strip adds into them), else per pixel (float64). The image is read
    in ``threads`` contiguous parts at once, each into its own place of the outputs (in
    image order) and its own sums.

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
        sums = np.zeros(n_keys) if per_key else None
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
                sums[lo : hi + 1] += np.bincount(k - lo, weights=d_um, minlength=hi - lo + 1)
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
    sums = np.sum([s for _, s in done], axis=0) if per_key else None
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
    key: np.ndarray, dsum: np.ndarray, v: np.ndarray, n_keys: int, counts=None
) -> pd.DataFrame:
    """Per (crystal, shell) key: pixel count, mean distance (from the distance sums ``dsum``
    over ``counts`` pixels, see :func:`_mean_distance`), median and spread (IQR / 1.349) of
    the values."""
    n_of = np.bincount(key, minlength=n_keys)
    present = np.flatnonzero(n_of)
    q1, med, q3 = _grouped_quartiles(key, v, n_of)
    n = n_of[present]
    return pd.DataFrame(
        {
            "key": present,
            "distance_um": _mean_distance(dsum, counts, present, n),
            "value": med,
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
) -> pd.DataFrame:
    """Shell statistics again, without pixels far from their shell's median.

    The scale is one per crystal: the median over its shells of their spread (most shells
    are clean, so contaminated outer shells do not inflate it). Crystals with a zero scale
    (noise-free images) and shells that would lose every pixel keep their first statistics.
    """
    sk = st["key"].to_numpy()
    full = sk if key_ids is None else key_ids[sk]
    crystal = full // n_bins
    scale_of_crystal = pd.Series(st["spread"].to_numpy()).groupby(crystal).median()
    scale = np.zeros(n_keys)
    scale[sk] = scale_of_crystal.reindex(crystal).to_numpy()
    counts = np.bincount(key, minlength=n_keys)
    med = np.zeros(n_keys)
    med[sk] = st["value"].to_numpy()
    s_px = scale[key]
    keep = (s_px <= 0) | (np.abs(v - med[key]) <= clip * s_px)
    # recompute only shells that lost at least min_dropped of their pixels: the few pixels a
    # 3-sigma clip takes from the tails of clean Gaussian noise (0.3 %, both sides) move a
    # median by less than 0.03 sigma, and recomputing every shell would double the cost
    dropped = np.bincount(key[~keep], minlength=n_keys)
    affected = dropped >= np.maximum(1, min_dropped * counts)
    if not affected.any():
        return st
    sel = affected[key] & keep
    new = _shell_stats(key[sel], np.zeros(n_keys), v[sel], n_keys)
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
        redo = (noise > 0) & (kept > 0) & (n - kept >= np.maximum(1, min_dropped * n))
        kept = np.where(redo, kept, n)
        if redo.any():
            r1, rmed, r3 = _quartiles_of_runs(packed, a[redo], kept[redo], codes.values)
            med, spread = med.copy(), spread.copy()
            med[redo] = rmed
            spread[redo] = (r3 - r1) / IQR_SIGMA
    return pd.DataFrame(
        {"key": present, "distance_um": dist, "value": med, "spread": spread, "n_pixels": kept}
    )


def rim_profiles(
    image,
    labels,
    pixel_size_um: float = 1.0,
    *,
    method: str = "shells",
    shell_um: float | None = None,
    skip_rim_um: float | None = None,
    min_pixels: int = 5,
    width_um: float = 3.0,
    channel_names: list[str] | None = None,
    return_traverses: bool = False,
    clip_sigmas: float | None = 3.0,
    contacts: str = "exclude",
    halo_um: float | None = None,
    halo_contrast: float = HALO_CONTRAST,
    grey_ranges: dict | None = None,
):
    """Core-to-rim profiles of every crystal.

    Parameters
    ----------
    image : array-like
        2D BSE image or ``(channels, y, x)`` element maps.
    labels : array-like of int
        Crystal labels of the image's (y, x) shape; 0 = not a crystal.
    pixel_size_um : float
        Micrometres per pixel.
    method : {"shells", "traverse"}
        ``"shells"``: the median value in shells of equal distance to the crystal's boundary
        (robust to cracks and inclusions, which cover a minority of each shell), one shell per
        ``shell_um``. ``"traverse"``: a straight traverse per crystal, placed as an analyst
        places an EPMA traverse: from the innermost point of the crystal, perpendicular to its
        longest well-developed face, avoiding faces shared with other crystals or the image
        edge, and avoiding cracks (see :func:`place_traverses`).
    shell_um : float, optional
        Shell thickness (default: one pixel).
    skip_rim_um : float, optional
        Ignore this outer band, blurred by the probe (default: one pixel).
    min_pixels : int
        Shells with fewer pixels are dropped.
    width_um : float
        Width of the band averaged across a traverse (traverse method).
    channel_names : list of str, optional
        Names of the channels of an element-map stack (default ``ch0, ch1, ...``; ``bse`` for
        a 2D image).
    return_traverses : bool
        With ``method="traverse"``, also return the traverse table (see
        :func:`place_traverses`).
    clip_sigmas : float or None, default 3.0
        Shells method: after a first median, pixels farther than ``clip_sigmas`` times the
        crystal's pixel noise from their shell's median are dropped and the median (and its
        ``sigma``, from the kept pixels) is taken again; the shell's distance is unchanged.
        The pixel noise is the median over the crystal's shells of their spread
        (interquartile range / 1.349, a robust sigma). This
        removes what a segmentation leaves at the outline (groundmass, microlites, the
        blurred rim) and what the shells cross inside (cracks, seams, inclusions): with
        noise, a fraction ``f`` of such pixels moves a plain median by about ``1.25 f`` pixel
        sigmas (1-2 DN for ``f = 0.2-0.4`` at 2 % noise), which reads as a step at the rim.
        ``None`` (or 0) keeps the plain median.
    contacts : {"exclude", "rim"}, default "exclude"
        Shells method: how a crystal's faces against other crystals count. ``"exclude"``:
        only free faces (against groundmass, glass, vesicles) are rims, and the pixels nearer
        a face shared with another crystal than a free face are left out; the others keep
        their distance to the nearest free face, which is then their distance to any other
        label. In a glomerocryst a contact often truncates a crystal's zoning (a neighbour
        grew over, or was cut across, part of it): those pixels are nearer the contact than
        their zone is to the crystal's own outline and, with noise, they pull the shell
        medians toward the core's values, so a step reads one or two pixels nearer the rim
        (tested). A crystal with no free face keeps its contacts as rims. This costs a
        second distance transform (to the background, in windows around the clusters of
        touching crystals) when crystals touch. ``"rim"``: every face is a rim,
        distances run to the nearest pixel of any other label.
    halo_um : float, optional
        Widest outer band examined for an edge halo or another imaging artefact (default
        three pixels; 0 turns the check off). BSE images show a bright line one to three
        pixels wide at a polished grain's edge (on the shipped real plagioclase, ~164 grey
        against a rim band of ~100-140), and a label that reaches past the crystal's edge
        blurs the outside into its first shells: a first point there reads as a false
        "reverse rim". When one of the profile's points less than ``halo_um`` from its first
        point departs from the trend of the next eight points (their median, or their line
        where it slopes significantly) by more than
        ``halo_contrast`` of the image's grey range, the band is dropped up to its last point
        that still departs on that side by more than three times the trend's scatter.
        Compositional zoning within one crystal rarely changes the grey that much within
        three pixels; a real rim zone of such contrast only one to three pixels wide would
        be dropped too, and ``rim_skipped_um`` shows it (set ``halo_um=0`` to keep it).
    halo_contrast : float, default 0.1
        The least departure that makes the outer band an artefact, as a fraction of the
        image's grey range (its 99.9th minus its 0.1th percentile, per channel).
    grey_ranges : dict, optional
        That grey range per channel name, when ``image`` is a window of a larger image (a
        whole-section mosaic profiled window by window gives the same profiles as the whole
        image; see :func:`grey_range`). By default it is measured on ``image``.

    Returns
    -------
    pandas.DataFrame
        Long table: ``label, channel, distance_um`` (0 at the rim, growing toward the core),
        ``value``, ``sigma`` (1-sigma uncertainty of the value: the robust standard error of
        the shell median, ``sqrt(pi / 2) * (IQR / 1.349) / sqrt(n)``, or the standard error
        across a traverse's width), ``n_pixels``, ``rim_skipped_um`` (the outer band the
        profile leaves out, from the rim to its first point: ``skip_rim_um`` plus the edge
        band found as an artefact, if any), ``source`` (``"rim"`` or ``"traverse"``).
    """
    px = check_pixel_size(pixel_size_um)
    raw = np.asarray(image)
    native = (
        method == "shells"
        and raw.dtype.kind in "uif"
        and (raw.ndim == 2 or (raw.ndim == 3 and raw.shape[0] <= 32))
    )
    if native:
        # integer and float images are read as they are (no float64 copy of the whole
        # image): only the crystal pixels are gathered, channel by channel
        stack = raw[None] if raw.ndim == 2 else raw
        _, names = _channels(raw[..., :1, :1], channel_names)
    else:
        stack, names = _channels(image, channel_names)
    integer = native and raw.dtype.kind in "ui"
    lab = check_labels(labels, stack.shape[1:])
    if method == "traverse":
        trav = place_traverses(lab, px, image=stack[0], width_um=width_um)
        prof = traverse_profiles(
            stack,
            trav,
            px,
            width_um=width_um,
            channel_names=names,
            skip_rim_um=skip_rim_um,
            halo_um=halo_um,
            halo_contrast=halo_contrast,
            labels=lab,
            grey_ranges=grey_ranges,
        )
        return (prof, trav) if return_traverses else prof
    if method != "shells":
        raise ZonationInputError(f"method={method!r}; choose 'shells' or 'traverse'.")
    shell = px if shell_um is None else float(shell_um)
    skip = px if skip_rim_um is None else float(skip_rim_um)
    halo_band = _halo_band(px, halo_um)
    if shell <= 0:
        raise ZonationInputError("shell_um must be positive (micrometres).")
    if contacts not in ("exclude", "rim"):
        raise ZonationInputError(f"contacts={contacts!r}; choose 'exclude' or 'rim'.")

    lab_n = _narrow(lab)
    flat = _rim_edt_sq(lab_n).ravel()  # 0 outside crystals
    lab_flat = lab_n.ravel()
    # crystal pixels beyond the skipped rim band (squared distances are exact integers)
    # with the edge check, the shells inside the skipped band are gathered too (the halo
    # peaks there; the same shell boundaries beyond it), and dropped after the check
    skip_at = skip - shell * np.floor(skip / shell + 1e-9) if halo_band > 0 else skip
    inner = max(skip_at / px + 0.5, 0.5)
    least = np.float32(inner * inner * (1 - 1e-6))
    # every crystal with a boundary has a pixel next to it (squared distance 1); one without
    # a boundary fills the image and is counted from its pixels below
    band = np.flatnonzero(flat == 1)
    lab_band = lab_flat[band]
    in_band = np.bincount(lab_band)
    if contacts == "exclude":
        free_side, pa, pb = _band_neighbours(lab_flat, band, lab_band, lab_n.shape)
        if pa.size:
            # pixels nearer another crystal than a free face: their distance to the grain
            # boundary is not their distance to the crystal's growth faces
            near = _nearer_a_contact(lab_n, flat, band, lab_band, pa, pb)
            # a crystal with no free face at all keeps its contacts as rims
            has_free = np.bincount(lab_band[free_side], minlength=in_band.size)
            enclosed = (in_band > 0) & (has_free == 0)
            if enclosed.any():
                near = near[~enclosed[lab_flat[near]]]
            flat[near] = 0  # (the transform is this call's own array) not gathered below
            del near
    present = np.flatnonzero(in_band)
    top_label = int(present[-1]) if present.size else int(lab_flat.max(initial=0))
    shells = _Shells(float(flat.max(initial=0)), px, skip_at, shell, lab.shape)
    n_bins = shells.n_bins
    n_keys = (top_label + 1) * n_bins
    planes = [stack[ci].ravel() for ci in range(len(names))]
    # (label, shell) keys, sorted like (label, shell), and the values of each channel
    key, dsum, d_px, values = _gather_shells(
        flat, least, lab_flat, planes, shells, n_keys, auto_threads()
    )
    del flat
    if not present.size and key.size:  # one crystal fills the image: no boundary anywhere
        present = np.unique(key // n_bins)
    if not present.size:
        return _finish([], [], "rim")
    key_ids = None
    if d_px is not None:  # many keys for the pixels: number them densely
        key_ids, key = np.unique(key, return_inverse=True)
        n_keys = key_ids.size
        dsum = np.bincount(key, weights=d_px, minlength=n_keys)
        del d_px

    def crystal_of_key(k):
        return (k if key_ids is None else key_ids[k]) // n_bins

    frames, failures = [], []
    for name, vals in zip(names, values, strict=True):
        if integer:
            st = _sorted_shell_stats(key, dsum, vals, n_keys, crystal_of_key, clip_sigmas)
        else:
            if vals.dtype not in (np.float32, np.float64):  # float32 stays (a faster sort)
                vals = vals.astype(np.float32 if vals.dtype == np.float16 else np.float64)
            ok = np.isfinite(vals)
            # a shell's distance is that of all its pixels, NaN or not
            counts = None if ok.all() else np.bincount(key, minlength=n_keys)
            k, v = (key, vals) if counts is None else (key[ok], vals[ok])
            iv = _as_integers(v)
            if iv is None and v.dtype == np.float64:
                with np.errstate(over="ignore"):  # beyond float32: inf, not equal
                    v32 = v.astype(np.float32)
                v = v32 if np.array_equal(v32, v) else v  # float32 codes when exact
            # whole numbers (counts, an integer image stored as float): integer codes
            v = v if iv is None else iv
            st = _sorted_shell_stats(k, dsum, v, n_keys, crystal_of_key, clip_sigmas, counts=counts)
            if st is None:  # float64 values that float32 does not hold
                st = _shell_stats(k, dsum, v, n_keys, counts)
                if clip_sigmas:
                    st = _clipped_shell_stats(st, k, v, n_keys, n_bins, key_ids, clip_sigmas)
        full_key = st["key"].to_numpy() if key_ids is None else key_ids[st["key"].to_numpy()]
        n = st["n_pixels"].to_numpy()
        out = pd.DataFrame(
            {
                "label": (full_key // n_bins).astype(lab.dtype),
                "distance_um": st["distance_um"].to_numpy(),
                "value": st["value"].to_numpy(),
                "sigma": st["spread"].to_numpy() * np.sqrt(np.pi / 2) / np.sqrt(n),
                "n_pixels": n,
            }
        )
        out = out[out["n_pixels"] >= min_pixels]
        out["channel"] = name
        frames.append(out)
    prof = pd.concat(frames, ignore_index=True)
    counts = np.bincount(prof["label"].to_numpy(), minlength=int(present.max()) + 1) / len(names)
    for lab_id in present[counts[present] < 3]:
        n_pts = int(counts[lab_id])
        failures.append(
            (int(lab_id), f"only {n_pts} shell(s) of >= {min_pixels} px: too small or thin")
        )
    bad = {f[0] for f in failures}
    if bad:
        prof = prof[~prof["label"].isin(bad)]
    floors = (
        {
            name: halo_contrast * _range_of(name, p, grey_ranges)
            for name, p in zip(names, planes, strict=True)
        }
        if halo_band > 0
        else {}
    )
    outside = _outside_grey(lab, {name: stack[ci] for ci, name in enumerate(names)}, band)
    prof = skip_edge_band(
        prof, halo_band, floors, always_um=skip, lead_um=skip_at, outside=outside
    )
    if halo_band > 0 and len(prof):  # the band left out: whole shells from the rim
        first = prof.groupby(["label", "channel"], sort=False)["distance_um"].transform("first")
        prof["rim_skipped_um"] = skip_at + shell * np.floor((first - skip_at) / shell + 1e-9)
    return _finish([prof], failures, "rim")


# ----------------------------------------------------------------------------------------
# traverses


def _ray_exit(lab_id, lab, r0, c0, angles, step=0.5, max_len=None):
    """Length (px) and exit pixel of rays from (r0, c0) until they leave label lab_id."""
    H, W = lab.shape
    max_len = max_len or float(np.hypot(H, W))
    t = np.arange(0.0, max_len, step)
    rr = r0 + np.outer(np.sin(angles), t)
    cc = c0 + np.outer(np.cos(angles), t)
    ri = np.round(rr).astype(int)
    ci = np.round(cc).astype(int)
    inside_img = (ri >= 0) & (ri < H) & (ci >= 0) & (ci < W)
    lab_along = np.where(inside_img, lab[np.clip(ri, 0, H - 1), np.clip(ci, 0, W - 1)], -1)
    out = lab_along != lab_id
    first = np.where(out.any(1), out.argmax(1), t.size - 1)
    length = t[np.maximum(first - 1, 0)]
    beyond = lab_along[np.arange(angles.size), first]  # -1 image edge, 0 background, >0 crystal
    return length, beyond


#: The columns of a traverse table (:func:`place_traverses`, :func:`traverse_table`).
TRAVERSE_COLUMNS = (
    "label",
    "rim_row",
    "rim_col",
    "core_row",
    "core_col",
    "length_um",
    "face_length_um",
    "angle_deg",
    "status",
)


def traverse_table(
    labels, rims, cores, pixel_size_um: float = 1.0, *, status: str = "edited"
) -> pd.DataFrame:
    """A traverse table for traverses given by their ends (placed or moved by a person).

    Parameters
    ----------
    labels : sequence of int
        The crystal of each traverse.
    rims, cores : array-like, shape (n, 2)
        The rim and core ends, ``(row, col)`` in pixels.
    pixel_size_um : float
        Micrometres per pixel.
    status : str
        The ``status`` of every row.

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`place_traverses` (:data:`TRAVERSE_COLUMNS`); ``length_um`` is
        the rim-to-core distance, ``face_length_um`` and ``angle_deg`` are NaN (no face was
        searched). :func:`traverse_profiles` takes it as it is.
    """
    px = check_pixel_size(pixel_size_um)
    rims = np.asarray(rims, dtype=float).reshape(-1, 2)
    cores = np.asarray(cores, dtype=float).reshape(-1, 2)
    n = len(rims)
    table = pd.DataFrame(
        {
            "label": np.asarray(labels, dtype=int).reshape(n),
            "rim_row": rims[:, 0],
            "rim_col": rims[:, 1],
            "core_row": cores[:, 0],
            "core_col": cores[:, 1],
            "length_um": np.hypot(*(cores - rims).T) * px,
            "face_length_um": np.full(n, np.nan),
            "angle_deg": np.full(n, np.nan),
            "status": [status] * n,
        }
    )
    return table[list(TRAVERSE_COLUMNS)]


def place_traverses(
    labels,
    pixel_size_um: float = 1.0,
    *,
    image=None,
    n_angles: int = 180,
    min_length_um: float = 5.0,
    width_um: float = 3.0,
) -> pd.DataFrame:
    """Place one straight rim-to-core traverse per crystal, as an analyst would.

    From the crystal's innermost point (the maximum of the distance to its rim, ties broken
    toward the centroid), rays are cast at ``n_angles`` directions. A ray that meets a face at
    right angles is a local minimum of the ray length ``L(theta)``; the length of that face is
    estimated from how far around the minimum ``L(theta) cos(theta - theta0)`` stays within
    3 % of the minimum. Faces against another crystal or the image edge are excluded (the rim
    there is not a melt contact). When an image is given, traverses whose band (``width_um``
    wide, as :func:`traverse_profiles` averages it) crosses a crack or a dark inclusion
    (pixels darker than the crystal's median by more than 4 robust sigmas) lose to any clean
    one; among clean faces (or, if none is clean, the least cracked) the longest wins.

    Returns
    -------
    pandas.DataFrame
        One row per crystal: ``label, rim_row, rim_col, core_row, core_col, length_um,
        face_length_um, angle_deg, status`` (``"ok"`` or why a fallback was used).
    """
    px = check_pixel_size(pixel_size_um)
    lab = np.asarray(labels)
    d = rim_distance(lab)
    ids = np.unique(lab[lab > 0])
    if ids.size == 0:
        return pd.DataFrame(columns=list(TRAVERSE_COLUMNS))
    cores = ndi.maximum_position(d, lab, ids)
    slices = ndi.find_objects(lab)
    angles = np.linspace(0, 2 * np.pi, n_angles, endpoint=False)
    img = None if image is None else as_image(image, allow_channels=False)
    # the band the profile averages: the centre line and lines offset across it
    half_width = 0.5 * (_linewidth_px(width_um, px) - 1)
    offsets = np.linspace(-half_width, half_width, 2 * int(np.ceil(half_width)) + 1)
    rows = []
    for lab_id, (r0, c0) in zip(ids, cores, strict=True):
        sl = slices[lab_id - 1]
        pad = 2
        r_lo, c_lo = max(sl[0].start - pad, 0), max(sl[1].start - pad, 0)
        sub = lab[r_lo : sl[0].stop + pad, c_lo : sl[1].stop + pad]
        # the edge of the sub-window is the image edge only where the window touches it
        length, beyond = _ray_exit(lab_id, sub, r0 - r_lo, c0 - c_lo, angles)
        at_edge = beyond == -1
        rr_end = r0 + np.sin(angles) * length
        cc_end = c0 + np.cos(angles) * length
        truly_edge = (
            (np.round(rr_end) <= 0)
            | (np.round(rr_end) >= lab.shape[0] - 1)
            | (np.round(cc_end) <= 0)
            | (np.round(cc_end) >= lab.shape[1] - 1)
        )
        beyond = np.where(at_edge & ~truly_edge, 0, beyond)
        bad = (beyond != 0) | (length * px < min_length_um)
        n = angles.size
        # local minima of L(theta): faces met at right angles
        prev, nxt = np.roll(length, 1), np.roll(length, -1)
        minima = np.nonzero((length <= prev) & (length <= nxt) & ~bad)[0]
        status = "ok"
        best, best_score, best_face = None, None, np.nan
        crack_pen = np.zeros(n)
        if img is not None:
            vals = img[lab == lab_id]
            med = np.median(vals)
            sig = robust_sigma(vals) + 1e-9
            for k in minima:
                t = np.arange(0, length[k], 0.5)
                sn, cs = np.sin(angles[k]), np.cos(angles[k])
                rr = r0 + sn * t[None, :] + cs * offsets[:, None]
                cc = c0 + cs * t[None, :] - sn * offsets[:, None]
                pr = np.clip(np.round(rr).astype(int), 0, lab.shape[0] - 1)
                pc = np.clip(np.round(cc).astype(int), 0, lab.shape[1] - 1)
                own = lab[pr, pc] == lab_id  # (the band's corners may leave the crystal)
                crack_pen[k] = np.mean((img[pr, pc] < med - 4 * sig) & own)
        for k in minima:
            L0 = length[k]
            proj = length * np.cos(angles - angles[k])
            ok = np.abs(proj - L0) <= 0.03 * L0 + 0.75
            # grow the face's angular extent both ways while the projection stays flat
            lo = hi = 0
            while lo < n // 4 and ok[(k - lo - 1) % n] and not bad[(k - lo - 1) % n]:
                lo += 1
            while hi < n // 4 and ok[(k + hi + 1) % n] and not bad[(k + hi + 1) % n]:
                hi += 1
            face = L0 * (np.tan(lo * 2 * np.pi / n) + np.tan(hi * 2 * np.pi / n)) * px
            # a clean band beats any cracked one; then the longer face (less cracked)
            score = (crack_pen[k] == 0, face * (1 - 3 * crack_pen[k]))
            if best is None or score > best_score:
                best, best_score, best_face = k, score, face
        if best is None:
            # no clean face: take the shortest ray that ends in background, else any
            cand = np.nonzero(beyond == 0)[0]
            best = cand[np.argmin(length[cand])] if cand.size else int(np.argmin(length))
            status = (
                "no clean face; shortest ray to the groundmass"
                if cand.size
                else ("no face against the groundmass; shortest ray")
            )
        a = angles[best]
        L = length[best]
        rows.append(
            {
                "label": int(lab_id),
                "rim_row": float(r0 + np.sin(a) * L),
                "rim_col": float(c0 + np.cos(a) * L),
                "core_row": float(r0),
                "core_col": float(c0),
                "length_um": float(L * px),
                "face_length_um": float(best_face),
                "angle_deg": float(np.rad2deg(a)),
                "status": status,
            }
        )
    return pd.DataFrame(rows)


def traverse_profiles(
    image,
    traverses: pd.DataFrame,
    pixel_size_um: float = 1.0,
    *,
    width_um: float = 3.0,
    channel_names: list[str] | None = None,
    skip_rim_um: float | None = None,
    halo_um: float | None = None,
    halo_contrast: float = HALO_CONTRAST,
    labels=None,
    grey_ranges: dict | None = None,
) -> pd.DataFrame:
    """Profiles along rim-to-core traverses (a table from :func:`place_traverses`).

    Parameters
    ----------
    image : array-like
        2D BSE image or ``(channels, y, x)`` element maps.
    traverses : pandas.DataFrame
        ``label, rim_row, rim_col, core_row, core_col`` (pixels), as
        :func:`place_traverses` gives.
    pixel_size_um : float
        Micrometres per pixel.
    width_um : float
        Width of the band averaged across the traverse.
    channel_names : list of str, optional
        Names of the channels (default ``ch0, ch1, ...``; ``bse`` for a 2D image).
    skip_rim_um : float, optional
        Samples nearer the rim point than this are dropped (default: one pixel): the first
        pixel mixes the crystal with what lies outside it (probe blur), as in the shells
        method.
    halo_um, halo_contrast : float
        The edge band examined for a halo or another imaging artefact after the skipped rim
        band, and the least departure that makes it one, as in :func:`rim_profiles`.
    labels : array-like of int, optional
        The crystal labels the traverses were placed on: with them, a bright rim sample
        (dropped anyway) that no blend of the crystal with the grey just outside it can give
        also marks a halo, whose tail is then dropped as well (:func:`skip_edge_band`).
    grey_ranges : dict, optional
        The grey range per channel of the whole image, when ``image`` is a window of it (as
        in :func:`rim_profiles`).

    Returns
    -------
    pandas.DataFrame
        Long table as :func:`rim_profiles`; distances are measured from the rim point (0)
        and grow toward the core, so the first kept one is about ``rim_skipped_um``.
    """
    px = check_pixel_size(pixel_size_um)
    skip = px if skip_rim_um is None else float(skip_rim_um)
    stack, names = _channels(image, channel_names)
    lines = [
        np.array([[r.rim_row, r.rim_col], [r.core_row, r.core_col]]) for r in traverses.itertuples()
    ]
    outside = None
    if labels is not None:
        lab = check_labels(labels, stack.shape[1:])
        outside = _outside_grey(lab, {name: stack[ci] for ci, name in enumerate(names)})
    prof = _lines(
        stack,
        names,
        lines,
        px,
        width_um,
        list(traverses["label"]),
        skip_um=skip,
        band_um=_halo_band(px, halo_um, _linewidth_px(width_um, px)),
        halo_contrast=halo_contrast,
        outside=outside,
        grey_ranges=grey_ranges,
    )
    prof["source"] = "traverse"
    return prof


# ----------------------------------------------------------------------------------------
# drawn lines and paths


def _sample_segment(img, p0, p1, linewidth):
    """profile_line with NaN outside the image; also the per-point std across the width."""
    vals = profile_line(
        img, p0, p1, linewidth=linewidth, order=1, mode="constant", cval=np.nan, reduce_func=None
    )
    vals = np.atleast_2d(vals)
    if vals.ndim == 2 and vals.shape[0] != 1 and linewidth == 1:
        vals = vals.reshape(-1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(vals, axis=1) if vals.ndim == 2 else vals
        n = np.sum(np.isfinite(vals), axis=1) if vals.ndim == 2 else np.ones_like(vals)
        sd = (
            np.nanstd(vals, axis=1, ddof=1)
            if vals.ndim == 2 and vals.shape[1] > 1
            else (np.full(mean.shape, np.nan))
        )
    return mean, sd / np.sqrt(np.maximum(n, 1)), n


def _linewidth_px(width_um: float, px: float) -> int:
    """Pixels across a band ``width_um`` wide (``profile_line``'s ``linewidth``)."""
    return max(1, int(round(width_um / px)))


def _lines(
    stack,
    names,
    lines,
    px,
    width_um,
    ids,
    skip_um: float = 0.0,
    band_um: float = 0.0,
    halo_contrast: float = HALO_CONTRAST,
    outside=None,
    grey_ranges: dict | None = None,
):
    """Profiles along polylines; samples nearer the start than ``skip_um`` are dropped, then
    the start band when it is an imaging artefact (:func:`skip_edge_band`)."""
    H, W = stack.shape[1:]
    linewidth = _linewidth_px(width_um, px)
    frames, failures = [], []
    for lab_id, verts in zip(ids, lines, strict=True):
        v = np.asarray(verts, dtype=float)
        if v.ndim != 2 or v.shape[1] < 2 or v.shape[0] < 2:
            failures.append((lab_id, f"needs at least 2 vertices, got {len(v)}"))
            continue
        v = v[:, -2:]  # napari shapes on nD layers: keep (row, col)
        if not np.isfinite(v).all():
            failures.append((lab_id, "vertices are not finite"))
            continue
        seg_len = np.hypot(*np.diff(v, axis=0).T)
        if seg_len.sum() < 1e-9:
            failures.append((lab_id, "zero length: start and end are the same point"))
            continue
        lo, hi = v.min(0), v.max(0)
        if hi[0] < -0.5 or hi[1] < -0.5 or lo[0] > H - 0.5 or lo[1] > W - 0.5:
            failures.append(
                (
                    lab_id,
                    f"lies outside the image (rows 0-{H - 1}, cols 0-{W - 1}); draw it "
                    "over the image, or check the Shapes layer's scale",
                )
            )
            continue
        for ci, name in enumerate(names):
            dist, vals, sig, npx = [], [], [], []
            offset = 0.0
            for k in range(v.shape[0] - 1):
                if seg_len[k] < 1e-9:
                    continue
                m, s, n = _sample_segment(stack[ci], v[k], v[k + 1], linewidth)
                t = np.linspace(0.0, seg_len[k], m.size) + offset
                if k > 0 and dist:  # the joint is the previous segment's last point
                    m, s, n, t = m[1:], s[1:], n[1:], t[1:]
                dist.append(t)
                vals.append(m)
                sig.append(s)
                npx.append(n)
                offset += seg_len[k]
            d = np.concatenate(dist) * px
            val = np.concatenate(vals)
            inside = np.isfinite(val)
            ok = inside & (d >= skip_um * (1 - 1e-9))
            if not ok.any():
                why = (
                    f"no sample beyond the skipped rim band ({skip_um:g} um)"
                    if inside.any()
                    else "no sample inside the image"
                )
                failures.append((lab_id, why))
                break
            if band_um > 0:  # the skipped band takes part in the edge check
                ok = inside
            if not inside.all() and ci == 0:
                warnings.warn(
                    f"profile {lab_id}: {int((~inside).sum())} point(s) outside the image dropped",
                    UserWarning,
                    stacklevel=4,
                )
            frames.append(
                pd.DataFrame(
                    {
                        "label": lab_id,
                        "channel": name,
                        "distance_um": d[ok],
                        "value": val[ok],
                        "sigma": np.concatenate(sig)[ok],
                        "n_pixels": np.concatenate(npx)[ok],
                    }
                )
            )
    if frames:
        floors = {}
        if band_um > 0:
            floors = {
                n: halo_contrast * _range_of(n, stack[ci], grey_ranges)
                for ci, n in enumerate(names)
            }
        prof = pd.concat(frames, ignore_index=True)
        frames = [skip_edge_band(prof, band_um, floors, always_um=skip_um, outside=outside)]
    return _finish(frames, failures, "shape")


def line_profiles(
    image,
    lines,
    pixel_size_um: float = 1.0,
    width_um: float = 3.0,
    *,
    channel_names: list[str] | None = None,
    halo_um: float | None = None,
    halo_contrast: float = HALO_CONTRAST,
) -> pd.DataFrame:
    """Profiles along drawn lines and paths (napari Shapes data).

    Parameters
    ----------
    image : array-like
        2D image or ``(channels, y, x)`` element maps.
    lines : list of (N, 2) arrays
        Vertices in (row, col) pixel coordinates of the image; each becomes profile
        ``label`` i + 1. A path is sampled segment by segment.
    pixel_size_um : float
        Micrometres per pixel.
    width_um : float
        Width of the band averaged perpendicular to the line (rounded to whole pixels,
        at least one), as :func:`skimage.measure.profile_line`'s ``linewidth``.
    halo_um : float, optional
        A line drawn from a crystal's edge inward starts on the edge's halo (the bright line
        a BSE image shows at a polished grain's edge) or on what lies outside: the samples
        of the first ``halo_um`` (default three pixels; 0: none) are dropped when they are
        such an artefact, as :func:`rim_profiles` decides for its outer band.
    halo_contrast : float, default 0.1
        The least departure that makes the start band an artefact, as a fraction of the
        image's grey range (as in :func:`rim_profiles`).

    Returns
    -------
    pandas.DataFrame
        Long table ``label, channel, distance_um`` (from the first vertex), ``value``,
        ``sigma`` (standard error across the band; NaN for a one-pixel band), ``n_pixels``,
        ``rim_skipped_um`` (the start band dropped as an artefact, 0 when none),
        ``source="shape"``. With ``halo_um=0``, straight lines give exactly
        ``skimage.measure.profile_line(image, start, end, linewidth, order=1)``; by default
        the same without the dropped start band.
    """
    px = check_pixel_size(pixel_size_um)
    stack, names = _channels(image, channel_names)
    if isinstance(lines, np.ndarray) and lines.ndim == 2:
        lines = [lines]
    lines = list(lines)
    if not lines:
        raise ZonationInputError(
            "no lines were given; draw a line or path in a Shapes layer over the image."
        )
    return _lines(
        stack,
        names,
        lines,
        px,
        width_um,
        list(range(1, len(lines) + 1)),
        band_um=_halo_band(px, halo_um, _linewidth_px(width_um, px)),
        halo_contrast=halo_contrast,
    )


# ----------------------------------------------------------------------------------------
# calibration


def spot_values(image, points_rc, pixel_size_um: float = 1.0, radius_um: float = 1.5) -> np.ndarray:
    """Median grey of an image in a small disk around each reference spot.

    Parameters
    ----------
    image : array-like
        2D image.
    points_rc : array-like of shape (n, 2)
        Spot centres in (row, col) pixel coordinates (fractional allowed).
    pixel_size_um : float
        Micrometres per pixel.
    radius_um : float
        Radius of the disk (micrometres), e.g. half the analysed spot's diameter. Pixels
        whose centre lies within it count; the pixel under the centre always counts.

    Returns
    -------
    numpy.ndarray
        One median per spot (float); NaN for a spot outside the image or whose disk holds
        no finite value.
    """
    px = check_pixel_size(pixel_size_um)
    img = as_image(image, allow_channels=False)
    pts = np.asarray(points_rc, dtype=float)
    if pts.size == 0:
        return np.zeros(0)
    if pts.ndim != 2 or pts.shape[1] < 2:
        raise ZonationInputError(
            f"points_rc has shape {pts.shape}; give an (n, 2) array of (row, col) pixel "
            "coordinates."
        )
    if not np.isfinite(radius_um) or radius_um < 0:
        raise ZonationInputError(f"radius_um={radius_um!r} must be zero or a positive number.")
    pts = pts[:, -2:]
    rad = float(radius_um) / px
    H, W = img.shape
    out = np.full(len(pts), np.nan)
    for i, (r, c) in enumerate(pts):
        if not (np.isfinite(r) and np.isfinite(c)):
            continue
        r0, r1 = max(int(np.floor(r - rad)), 0), min(int(np.ceil(r + rad)) + 1, H)
        c0, c1 = max(int(np.floor(c - rad)), 0), min(int(np.ceil(c + rad)) + 1, W)
        if r0 >= r1 or c0 >= c1:
            continue
        rr, cc = np.mgrid[r0:r1, c0:c1]
        inside = (rr - r) ** 2 + (cc - c) ** 2 <= rad**2
        nr, nc = int(np.round(r)), int(np.round(c))
        if 0 <= nr < H and 0 <= nc < W:
            inside[nr - r0, nc - c0] = True
        vals = img[r0:r1, c0:c1][inside]
        vals = vals[np.isfinite(vals)]
        if vals.size:
            out[i] = float(np.median(vals))
    return out


@dataclass
class Calibration:
    """A linear grey-to-composition calibration ``composition = slope * grey + intercept``.

    Attributes
    ----------
    slope, intercept : float
        The fit.
    r2 : float
        Coefficient of determination (NaN for two points).
    residuals : numpy.ndarray
        Composition minus fit at the reference points.
    name : str
        Name of the quantity with its unit, e.g. ``"Fo (mol%)"``.
    """

    slope: float
    intercept: float
    r2: float
    residuals: np.ndarray
    name: str = "composition"

    def __call__(self, grey):
        return self.slope * np.asarray(grey, dtype=float) + self.intercept

    def as_dict(self) -> dict:
        return {
            "slope": self.slope,
            "intercept": self.intercept,
            "r2": self.r2,
            "residuals": [float(r) for r in self.residuals],
            "name": self.name,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        """The calibration stored by :meth:`as_dict`."""
        return cls(
            float(d["slope"]),
            float(d["intercept"]),
            float(d.get("r2", np.nan)),
            np.asarray(d.get("residuals", []), dtype=float),
            str(d.get("name", "composition")),
        )


def calibrate(grey, composition, name: str = "composition") -> Calibration:
    """Fit a linear grey-to-composition calibration from two or more reference spots.

    Parameters
    ----------
    grey : array-like
        Grey values at the reference points (e.g. the image at analysed spots).
    composition : array-like
        Measured composition at the same points (e.g. Fo mol% by EPMA).
    name : str
        The quantity and its unit, used as the calibrated column's name.
    """
    g = np.asarray(grey, dtype=float).ravel()
    c = np.asarray(composition, dtype=float).ravel()
    if g.shape != c.shape:
        raise ZonationInputError(f"{g.size} grey values for {c.size} compositions; pair them.")
    ok = np.isfinite(g) & np.isfinite(c)
    g, c = g[ok], c[ok]
    if g.size < 2 or np.ptp(g) == 0:
        raise ZonationInputError(
            "calibration needs at least two reference points with different grey values."
        )
    slope, intercept = np.polyfit(g, c, 1)
    fit = slope * g + intercept
    res = c - fit
    ss_tot = np.sum((c - c.mean()) ** 2)
    r2 = float(1 - np.sum(res**2) / ss_tot) if g.size > 2 and ss_tot > 0 else np.nan
    return Calibration(float(slope), float(intercept), r2, res, name)


def apply_calibration(prof: pd.DataFrame, cal: Calibration) -> pd.DataFrame:
    """Return a copy of a profiles table with ``value`` (and ``sigma``) in composition.

    The grey values are kept in ``value_grey``; the quantity is named in ``quantity``.
    """
    check_profiles(prof)
    out = prof.copy()
    out["value_grey"] = out["value"]
    out["value"] = cal(out["value"])
    if "sigma" in out:
        out["sigma"] = np.abs(cal.slope) * out["sigma"]
    out["quantity"] = cal.name
    return out
