"""The edge band: halos and other imaging artefacts at a crystal's outline, found and
skipped at the start of each profile."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .._validation import (
    ZonationInputError,
)

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


