"""Outer zones at the groundmass grey, found by the faint step or line that bounds them.

A crystal's outer zone can have the grey of the glass around it (the Fe-rich rim of an
olivine in basaltic glass, a plagioclase zone at the glass's grey). Its cores and edges, found
from grey departures, then stop at the inner side of that zone. What still bounds the crystal
is a faint step, a thin dark line just outside it or a thin bright line on its outermost
pixels, at the same distance from the inner zone all around it (the zones are concentric).

Around every crystal the outside pixels within ``band_px`` are grouped by their distance to
the crystal (each pixel goes to its nearest crystal) and by piece of outline, and the mean
grey (clipped against specks) of each distance gives a profile outward from the outline, per
crystal (all of its outline pooled: the noise falls with the outline's length) and per piece.
On the crystal's profile, coming from the outside (the outside level is read on its outermost
bins), the outermost thin line or step that stands more than ``min_z`` standard errors out of
the outside's own scatter (local tests, :func:`crystal_bounds`) is the candidate edge:

- a line puts the edge on the line's centre; a step at the half-crossing between the zone's
  level and the outside's;
- a step (not a line) is a bound only with ``steps=True`` (:func:`extend_outer_zones`'
  default is off; ``segment_crystals`` turns it on with ``zone_steps``), and then only where
  the outside is as smooth as the detector's noise (glass): a textured groundmass can change
  its grey next to a crystal (fewer microlites) without being crystal;
- the candidate is kept only when most pieces of the outline show the same departure at the
  same distance (the line or step runs all around the crystal; a vesicle, a neighbour or a
  patch of microlites beside one side of it does not); a step, which a band of the glass's
  own grey along one side of a crystal (schlieren, a boundary layer in the melt) also makes,
  only when at least half of the pieces in each quarter of the directions from the
  crystal's centre show it;
- each piece's edge is then its own line (its extremum within two pixels of the crystal's)
  when it stands out of the piece's noise, else the crystal's.

The distances are read from each crystal's convex hull (its zones follow its faces, which
the hull follows more closely than the ragged outline of an inner zone). The outside pixels
closer to the hull than the edge of their piece, and the dents between the crystal and its
hull, join a crystal that has such a bound; the others keep their outline.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError
from skimage.measure import points_in_poly

from .labelops import label_medians

#: Standard error of one pixel's clipped grey, in units of the pixel noise.
SE_ONE = 1.0


def outer_profiles(
    labels: np.ndarray,
    grey: np.ndarray,
    band_px: int,
    piece_px: int,
    origin: tuple[int, int] = (0, 0),
    valid: np.ndarray | None = None,
    noise: float | None = None,
):
    """Outward grey profiles of every crystal and of every piece of its outline.

    Returns ``(at, j, owner, piece, crystal_prof, crystal_n, piece_prof, piece_n,
    piece_owner)`` or None: the flat indices of the outside pixels within ``band_px`` of a
    crystal, their distance bin ``j`` (0: touching the outline), their nearest crystal and
    piece of outline (the ``piece_px`` square of the image's grid holding their nearest
    crystal pixel), then the mean grey and pixel count per crystal (``n_labels + 1`` x
    ``band_px``, row 0 unused) and per piece, and the crystal of each piece. Only the pixels
    of ``valid`` (when given: finite and not near-black, as vesicles and epoxy never belong
    to a crystal's zone) are read and can join. The means are of greys clipped to three
    ``noise`` either side of the median of the crystal's outside pixels (so that microlites and
    specks weigh little; unlike a median, a mean of integer greys is not stuck on whole grey
    steps); without ``noise``, medians.
    """
    outside = labels == 0
    if outside.all() or not outside.any():
        return None
    h, w = labels.shape
    b = int(band_px)
    off, d2 = nearest_offsets(outside)
    # outside pixels (crystal pixels are their own nearest) within band_px + 0.5: on integer
    # squared distances, d2 <= b * b + b
    sel = (d2 > 0) & (d2 <= b * b + b)
    if valid is not None:
        sel &= valid
    at = np.flatnonzero(sel)
    if at.size == 0:
        return None
    del sel
    dist = np.sqrt(d2.ravel()[at].astype(np.float64))
    j = np.clip(np.floor(dist - 0.5).astype(np.int64), 0, b - 1)
    del dist
    nr = at // w + off[0].ravel()[at]
    nc = at % w + off[1].ravel()[at]
    del off
    owner = labels[nr, nc].astype(np.int64)
    r0, c0 = origin[0] % piece_px, origin[1] % piece_px
    n_tc = -(-(w + c0) // piece_px)
    n_tiles = (-(-(h + r0) // piece_px)) * n_tc
    # the piece of every pixel: its (crystal, grid square) pair, numbered in sorted order;
    # the pairs are read once per distinct nearest crystal pixel (far fewer than the pixels)
    near = nr * w + nc
    seen = np.zeros(h * w, dtype=bool)
    seen[near] = True
    firsts = np.flatnonzero(seen)
    del seen
    fr, fc = firsts // w, firsts % w
    fkey = labels.ravel()[firsts].astype(np.int64) * n_tiles + (
        ((fr + r0) // piece_px) * n_tc + (fc + c0) // piece_px
    )
    uniq, finv = np.unique(fkey, return_inverse=True)
    slot = d2.ravel()  # reused: the rank of each distinct nearest pixel among them
    slot[firsts] = np.arange(firsts.size, dtype=slot.dtype)
    piece = finv.ravel()[slot[near]]
    del d2, slot, near
    piece_owner = uniq // n_tiles
    values = grey.ravel()[at].astype(np.float32, copy=False)
    n_lab = int(labels.max()) + 1
    cell = owner * b + j
    pcell = piece.astype(np.int64) * b + j
    n_p = int(uniq.size)
    crystal_n = np.bincount(cell, minlength=n_lab * b).reshape(n_lab, b)
    piece_n = np.bincount(pcell, minlength=n_p * b).reshape(n_p, b)
    if noise is None:
        crystal_prof = label_medians(values, cell + 1, n_lab * b).reshape(n_lab, b)
        piece_prof = label_medians(values, pcell + 1, n_p * b).reshape(n_p, b)
    else:
        centre = label_medians(values, owner, n_lab - 1)
        c = np.r_[np.nan, centre][owner]
        clipped = np.clip(values, c - 3.0 * noise, c + 3.0 * noise).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            crystal_prof = (
                np.bincount(cell, weights=clipped, minlength=n_lab * b).reshape(n_lab, b)
                / crystal_n
            )
            piece_prof = (
                np.bincount(pcell, weights=clipped, minlength=n_p * b).reshape(n_p, b)
                / piece_n
            )
    return at, j, owner, piece, crystal_prof, crystal_n, piece_prof, piece_n, piece_owner


def nearest_offsets(outside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets to the nearest pixel that is not ``outside`` and their squared lengths.

    Parameters
    ----------
    outside : numpy.ndarray of bool
        The pixels whose nearest other pixel is wanted; at least one pixel must be False.

    Returns
    -------
    off : numpy.ndarray of int32, shape (2, rows, cols)
        Row and column offset from every pixel to its nearest pixel that is not ``outside``,
        ties broken as :func:`scipy.ndimage.distance_transform_edt`'s feature transform
        breaks them (zero on those pixels themselves).
    d2 : numpy.ndarray of int32 or int64, shape (rows, cols)
        The squared Euclidean length of the offset (integer, so exact; int64 when an image
        side makes it exceed int32).
    """
    h, w = outside.shape
    off = ndi.distance_transform_edt(outside, return_distances=False, return_indices=True)
    off[0] -= np.arange(h, dtype=off.dtype)[:, None]
    off[1] -= np.arange(w, dtype=off.dtype)[None, :]
    big = (h - 1) ** 2 + (w - 1) ** 2 >= 2**31
    sq = off.astype(np.int64) if big else off
    d2 = sq[0] * sq[0]
    d2 += sq[1] * sq[1]
    return off, d2


def crystal_bounds(
    prof: np.ndarray,
    counts: np.ndarray,
    noise: float,
    *,
    factor: float = 1.0,
    min_z: float = 6.0,
    min_offset: int = 2,
    skip: int = 1,
    width: int = 4,
    n_ref: int = 4,
    min_count: int = 20,
) -> tuple[float, float, float, bool, float] | None:
    """The bound of one crystal's outer zone on its pooled outward profile.

    Returns ``(edge, peak_bin, sign, is_line, g0)``, or None when the profile shows no bound
    at least ``min_offset`` pixels out: ``edge`` the distance of the edge from the outline
    (pixels), ``peak_bin`` the bin of the line or of the step's outer side, ``sign`` the sign
    of the zone's (or line's) departure from the outside, ``is_line`` whether it is a thin
    line, ``g0`` the outside level (the median of the ``n_ref`` outermost bins that hold at
    least ``min_count`` pixels and a third of the pixels next to the outline).

    Both cues are local, so that a slow drift of the outside grey is not taken for a bound:

    - a **line**: one bin, the extremum of the five around it and on the same side of the
      outside level, against the mean of the bins two and three away on both sides;
    - a **step**: the mean of ``width`` (or ``2 * width``) bins inside a distance against the
      mean of as many bins outside it, all within the bins read;

    each in standard errors (that of the mean of a bin's pixels under white noise
    ``noise``, times ``factor``: how much more the outside's grey varies than white noise
    would make it, :func:`excess_scatter`). The outermost distance where either exceeds
    ``min_z`` is the bound; the first ``skip`` bins (the crystal's own blurred edge) are never
    read.
    """
    full, ref_bins = reference_bins(prof, counts, min_offset, n_ref, min_count)
    if ref_bins is None:
        return None
    g0 = float(np.median(prof[ref_bins]))
    n_bins = prof.size
    se = factor * SE_ONE * noise / np.sqrt(np.maximum(counts, 1))
    ok = full.copy()
    ok[:skip] = False
    v = np.where(ok, prof - g0, 0.0)
    var = np.where(ok, se * se, 0.0)
    w = ok.astype(np.float64)
    last = int(ref_bins[-1]) + 1
    first = max(min_offset, skip)
    if not may_exceed(v, var, ok, first, last, min_z, (width, 2 * width), skip):
        return None

    def window_mean(lo: int, hi: int):
        lo, hi = max(lo, 0), min(hi, n_bins)
        n = w[lo:hi].sum()
        if n < 1:
            return np.nan, np.inf
        return v[lo:hi].sum() / n, var[lo:hi].sum() / (n * n)

    line_j, line_z, step_j = -1, 0.0, -1
    zstep = np.zeros(n_bins)
    for jj in range(max(min_offset, skip), last):
        if not ok[jj]:
            continue
        # a line at bin jj
        sides = np.r_[jj - 3 : jj - 1, jj + 2 : jj + 4]
        sides = sides[(sides >= 0) & (sides < n_bins)]
        sides = sides[ok[sides]]
        if sides.size >= 3:
            diff = v[jj] - v[sides].mean()
            with np.errstate(invalid="ignore", divide="ignore"):  # noise-free: 0 / 0
                zl = diff / np.sqrt(var[jj] + var[sides].sum() / sides.size**2)
            near = v[max(jj - 2, 0) : jj + 3]
            peak = np.sign(zl) * v[jj] > 0 and abs(v[jj]) >= np.abs(near).max()
            if abs(zl) > min_z and peak:
                line_j, line_z = jj, zl
        # a step between bins jj - 1 and jj, sharp or spread over twice the width (the
        # first outline need not run parallel to the crystal's faces); the outer window lies
        # within the bins read
        for wd in (width, 2 * width):
            if jj - wd < skip or jj + wd > last:
                continue
            mi, vi = window_mean(jj - wd, jj)
            mo, vo = window_mean(jj, jj + wd)
            if np.isfinite(mi) and np.isfinite(mo):
                with np.errstate(invalid="ignore", divide="ignore"):  # noise-free: 0 / 0
                    zs = (mi - mo) / np.sqrt(vi + vo)
                if abs(zs) > abs(zstep[jj]):
                    zstep[jj] = zs
        if abs(zstep[jj]) > min_z:
            step_j = jj
    # a line also makes a step wherever a window holds it: the line wins there
    if line_j >= 0 and step_j <= line_j + 2 * width:
        best_j, best_kind, best_score = line_j, "line", line_z
    elif step_j >= 0:
        # a step is significant on a few distances around the true one: its peak
        lo = max(step_j - 2 * width, line_j + 2 * width + 1 if line_j >= 0 else 0, 0)
        sgn0 = np.sign(zstep[step_j])
        best_j = lo + int(np.argmax(sgn0 * zstep[lo : step_j + 1]))
        best_kind, best_score = "step", zstep[best_j]
    else:
        return None
    sgn = float(np.sign(best_score))
    if best_kind == "line":
        # the outermost significant line: its peak within one bin
        return best_j + 0.5, float(best_j), sgn, True, g0
    # the outermost significant step: it is significant on a few distances around the
    # true one; the edge is the half-crossing between the zone's level and the outside's
    zone = float(np.median(v[max(best_j - width, skip) : best_j]))
    out = float(np.median(v[best_j : best_j + width]))
    half = 0.5 * (zone + out)
    a = sgn * (v[: best_j + 1] - half)
    inside = np.flatnonzero(a[skip:] > 0) + skip
    if inside.size == 0:
        return None
    k = int(inside[-1])
    if k + 1 >= n_bins:
        return None
    y0, y1 = sgn * (v[k] - half), sgn * (v[k + 1] - half)
    t = np.clip(y0 / max(y0 - y1, 1e-9), 0.0, 1.0)
    edge = k + 0.5 + t
    if edge < min_offset:
        return None
    return edge, float(k + 1), sgn, False, g0


def may_exceed(
    v: np.ndarray,
    var: np.ndarray,
    ok: np.ndarray,
    first: int,
    last: int,
    min_z: float,
    widths: tuple[int, ...],
    skip: int,
) -> bool:
    """Whether any line or step test of :func:`crystal_bounds` can exceed ``min_z``.

    A screen, all distances at once: the line score of every bin ``first <= j < last`` (the
    bin against the mean of the bins two and three away, those that are ``ok``) and the step
    score between the ``widths`` bins inside and outside it, computed from cumulative sums.
    They differ from the bin-by-bin scores only by rounding, so the screen answers True
    whenever a score comes within 0.1 % of ``min_z`` (or a variance is not positive), and
    False only when no score can exceed it.

    Parameters
    ----------
    v, var : numpy.ndarray of float
        Departure of each bin from the outside level and its variance (0 where not ``ok``).
    ok : numpy.ndarray of bool
        Bins that are read.
    first, last : int
        The bins tested.
    min_z : float
        Threshold on the absolute score.
    widths : tuple of int
        Window widths of the step test.
    skip : int
        Bins next to the outline that no step window reaches into.

    Returns
    -------
    bool
        False when no test can exceed ``min_z``.
    """
    n = v.size
    jj = np.arange(first, last)
    jj = jj[ok[jj]]
    if jj.size == 0:
        return False
    if not (var[ok] > 0).all():
        return True
    thr = 0.999 * min_z
    pad = 3
    vp = np.pad(v, pad)
    varp = np.pad(var, pad)
    okp = np.pad(ok, pad)
    m = np.zeros(jj.size)
    sv = np.zeros(jj.size)
    svar = np.zeros(jj.size)
    for o in (-3, -2, 2, 3):
        k = jj + o + pad
        m += okp[k]
        sv += vp[k]
        svar += varp[k]
    has = m >= 3
    with np.errstate(invalid="ignore", divide="ignore"):
        zl = (v[jj] - sv / m) / np.sqrt(var[jj] + svar / (m * m))
    if (has & (np.abs(zl) > thr)).any():
        return True
    cv = np.concatenate([[0.0], np.cumsum(v)])
    cvar = np.concatenate([[0.0], np.cumsum(var)])
    cw = np.concatenate([[0], np.cumsum(ok)])
    for wd in widths:
        use = (jj - wd >= skip) & (jj + wd <= last) & (jj + wd <= n)
        if not use.any():
            continue
        j = jj[use]
        ni, no = cw[j] - cw[j - wd], cw[j + wd] - cw[j]
        both = (ni >= 1) & (no >= 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mi = (cv[j] - cv[j - wd]) / ni
            mo = (cv[j + wd] - cv[j]) / no
            vv = (cvar[j] - cvar[j - wd]) / (ni * ni) + (cvar[j + wd] - cvar[j]) / (no * no)
            zs = (mi - mo) / np.sqrt(vv)
        if (both & ~(np.abs(zs) <= thr)).any():
            return True
    return False


def reference_bins(
    prof: np.ndarray, counts: np.ndarray, min_offset: int = 2, n_ref: int = 4, min_count: int = 20
):
    """``(full, ref)``: the bins holding at least ``min_count`` pixels and a third of the
    pixels next to the outline, and the ``n_ref`` outermost of them (None if too few)."""
    near = float(np.max(counts[: min_offset + 1]))
    full = (counts >= max(min_count, near / 3.0)) & np.isfinite(prof)
    good = np.flatnonzero(full)
    if good.size < n_ref + min_offset + 2:
        return full, None
    return full, good[-n_ref:]


def excess_scatter(
    pprof: np.ndarray,
    pn: np.ndarray,
    ref: np.ndarray,
    g0: float,
    noise: float,
    trend: np.ndarray | None = None,
) -> float:
    """How many times more the pieces' medians scatter in the reference bins ``ref`` than
    white noise ``noise`` would make them (at least 1): the outside's own texture (microlites,
    schlieren) measured, so that it is not taken for a step. ``trend``: per piece, the
    outside level's smooth change across the crystal (:func:`outside_trend`), taken out
    first: shading across the field is not texture."""
    v = pprof[:, ref]
    if trend is not None:
        v = v - trend[:, None]
    n = pn[:, ref]
    ok = (n >= 3) & np.isfinite(v)
    if ok.sum() < 8:
        return 1.0
    with np.errstate(invalid="ignore", divide="ignore"):  # noise-free: 0 / 0, inf - inf
        z = (v[ok] - g0) / (SE_ONE * noise / np.sqrt(n[ok]))
        spread = 1.4826 * float(np.median(np.abs(z - np.median(z))))
    return max(1.0, spread)


def outside_trend(
    pprof: np.ndarray, pn: np.ndarray, ref: np.ndarray, centres: np.ndarray
) -> np.ndarray:
    """Per piece of an outline, the outside level's linear change across the crystal: a
    plane in the pieces' ``centres`` (rows, cols) fitted to their mean grey in the reference
    bins ``ref`` (weighted by their pixel counts), minus its weighted mean. The brightness of
    a BSE image drifts across the field (beam current, detector shading); around a crystal
    many micrometres across it is a ramp, which is neither texture nor a zone's step. Zeros
    when fewer than eight pieces hold reference pixels."""
    v = pprof[:, ref]
    n = pn[:, ref].astype(np.float64)
    ok = (n > 0) & np.isfinite(v)
    wsum = np.where(ok, n, 0.0).sum(axis=1)
    has = wsum > 0
    out = np.zeros(pprof.shape[0])
    if has.sum() < 8:
        return out
    mean = np.where(ok, v * n, 0.0).sum(axis=1)[has] / wsum[has]
    c = centres[has]
    a = np.column_stack([np.ones(c.shape[0]), c[:, 0] - c[:, 0].mean(), c[:, 1] - c[:, 1].mean()])
    sw = np.sqrt(wsum[has])
    coef, *_ = np.linalg.lstsq(a * sw[:, None], mean * sw, rcond=None)
    full = np.column_stack(
        [np.zeros(pprof.shape[0]), centres[:, 0] - c[:, 0].mean(), centres[:, 1] - c[:, 1].mean()]
    )
    out = full @ coef
    return out - float(np.average(out[has], weights=wsum[has]))


def _step_trusted(
    tex: np.ndarray, counts: np.ndarray, edge: float, skip: int, n: int, noise: float
) -> bool:
    """Whether a step (not a line) bounding a zone can be trusted: the outside beyond it (as
    many bins as the zone, at most 8) is as smooth as the detector's noise (mean squared
    high-pass grey below 1.15 noise variances: glass). Groundmass next to a crystal can change
    its grey (a boundary layer in the melt, fewer microlites) without being crystal; in a
    textured groundmass such a step cannot be told from the groundmass's own variation."""
    k = int(np.ceil(edge))
    zone = slice(skip, max(k - 1, skip + 1))
    width = min(max(k - skip, 2), 8)
    out = slice(k + 1, min(k + 1 + width, n))
    nz, no = counts[zone].sum(), counts[out].sum()
    if nz < 20 or no < 20:
        return False
    to = tex[out].sum() / no
    return bool(to < 1.15 * noise * noise)


def _step_agrees(
    pprof: np.ndarray, pn: np.ndarray, g0: float, sign: float, edge: float, skip: int,
    noise: float,
) -> np.ndarray:
    """Per piece of an outline, whether its zone (bins ``skip`` to the crystal's ``edge``)
    departs from the outside level ``g0`` with the crystal's ``sign`` by more than one
    standard error (``noise``: the pixel noise times the outside's excess scatter)."""
    k = max(int(edge), skip + 1)
    v, n = pprof[:, skip:k], pn[:, skip:k]
    ok = (n > 0) & np.isfinite(v)
    tot = np.where(ok, sign * (v - g0) * n, 0.0).sum(axis=1)
    n_tot = np.where(ok, n, 0).sum(axis=1)
    return tot / np.maximum(n_tot, 1) > SE_ONE * noise / np.sqrt(np.maximum(n_tot, 1))


def _all_around(
    agree: np.ndarray, centres: np.ndarray, centre: np.ndarray, framed: bool = False
) -> bool:
    """Whether the pieces that show a step lie all around the crystal: each quarter of the
    directions from its ``centre`` (rows, cols) holds at least two pieces, and at least half
    of them agree. A zone runs around its crystal; schlieren or a boundary layer of the
    glass along one side of it do not, and a crystal hemmed in by others cannot show that its
    step runs all around it.

    A crystal cut by the image's frame (``framed``) has no outline in the directions the
    frame cuts off: the same test is applied to the quarters that hold at least two pieces
    (the directions it has inside the image), and at least two quarters must hold them."""
    ang = np.arctan2(centres[:, 0] - centre[0], centres[:, 1] - centre[1])
    quarter = np.floor((ang + np.pi) / (0.5 * np.pi)).astype(np.int64) % 4
    judged = 0
    for q in range(4):
        inq = quarter == q
        if inq.sum() < 2:
            if framed:
                continue
            return False
        if agree[inq].mean() < 0.5:
            return False
        judged += 1
    return judged >= 2


def extend_outer_zones(
    labels: np.ndarray,
    grey: np.ndarray,
    noise: float,
    *,
    band_px: int,
    piece_px: int,
    origin: tuple[int, int] = (0, 0),
    valid: np.ndarray | None = None,
    min_z: float = 6.0,
    min_offset: int = 2,
    skip: int = 1,
    min_pieces: float = 0.5,
    min_px: float = 0.0,
    texture_px: float = 1.0,
    steps: bool = False,
) -> np.ndarray:
    """Labels whose crystals are extended over an outer zone at the outside grey up to the
    step or line that bounds it (see the module's notes). ``grey``: the unsmoothed
    normalised image, ``noise`` its pixel noise. Crystals smaller than ``min_px`` pixels
    are left as they are. ``texture_px``: the scale (Gaussian sigma, pixels) of the fine
    texture that tells glass from a microlite groundmass (about 1 um). ``steps``: also take
    a faint step (not only a thin line) as a zone's bound; off by default, as a step of the
    glass's own grey next to a crystal (schlieren, a boundary layer in the melt) looks the
    same; a step is then taken only where the pieces of the outline that show the zone's
    departure lie all around the crystal (at least half of them in each quarter of the
    directions from its centre; for a crystal cut by the image's frame, in each quarter of
    the directions it has inside the image), not along one side of it; a step must stand
    out by ``min_z`` standard errors, as a line. Returns a new label image (or ``labels``
    when nothing changes)."""
    hulls = hull_labels(labels, min_px)
    found = outer_profiles(hulls, grey, band_px, piece_px, origin, valid, noise)
    if found is None:
        return labels
    at, j, owner, piece, cprof, cn, pprof, pn, powner = found
    n_lab = cprof.shape[0]
    # the fine texture (squared high-pass grey) per crystal and distance
    tex = None
    if steps:
        hp = grey.ravel()[at] - ndi.gaussian_filter(grey, texture_px).ravel()[at]
        cell = owner * band_px + j
        tex_sum = np.bincount(cell, weights=hp * hp, minlength=n_lab * band_px)
        tex = tex_sum.reshape(n_lab, band_px)
    piece_edge = np.full(pprof.shape[0], np.nan)
    centroid = None
    w = grey.shape[1]
    n_pix = np.maximum(np.bincount(piece, minlength=pprof.shape[0]), 1)
    centres = np.column_stack(
        [np.bincount(piece, weights=at // w, minlength=pprof.shape[0]) / n_pix,
         np.bincount(piece, weights=at % w, minlength=pprof.shape[0]) / n_pix]
    )
    if steps:
        centroid = np.zeros((n_lab, 2))
        fg = np.flatnonzero(hulls.ravel())
        lab_of = hulls.ravel()[fg]
        n_fg = np.maximum(np.bincount(lab_of, minlength=n_lab), 1)
        centroid[:, 0] = np.bincount(lab_of, weights=fg // w, minlength=n_lab) / n_fg
        centroid[:, 1] = np.bincount(lab_of, weights=fg % w, minlength=n_lab) / n_fg
        # a crystal cut by the frame shows its step only in the directions inside the image
        framed = np.zeros(n_lab, dtype=bool)
        framed[np.concatenate([hulls[0], hulls[-1], hulls[:, 0], hulls[:, -1]])] = True
    order = np.argsort(powner, kind="stable")
    starts = np.searchsorted(powner[order], np.arange(n_lab + 1))
    area = np.bincount(labels.ravel(), minlength=n_lab)
    for lab in range(1, n_lab):
        pieces = order[starts[lab] : starts[lab + 1]]
        if pieces.size == 0 or area[lab] < min_px:
            continue
        _, ref = reference_bins(cprof[lab], cn[lab], min_offset)
        if ref is None:
            continue
        g0 = float(np.median(cprof[lab][ref]))
        trend = outside_trend(pprof[pieces], pn[pieces], ref, centres[pieces])
        factor = excess_scatter(pprof[pieces], pn[pieces], ref, g0, noise, trend)
        bound = crystal_bounds(
            cprof[lab],
            cn[lab],
            noise,
            factor=factor,
            min_z=min_z,
            min_offset=min_offset,
            skip=skip,
        )
        if bound is None:
            continue
        edge, jp, s, is_line, g0 = bound
        if not is_line and (
            not steps
            or factor > 1.5 or not _step_trusted(tex[lab], cn[lab], edge, skip, band_px, noise)
        ):
            # a step in a groundmass whose grey scatters more than the noise, or is textured
            continue
        jpi = int(jp)
        lo, hi = max(jpi - 2, 0), min(jpi + 3, band_px)
        win = pprof[pieces, lo:hi]
        wn = pn[pieces, lo:hi]
        dev = s * (win - g0)
        se = factor * SE_ONE * noise / np.sqrt(np.maximum(wn, 1))
        zp = np.where((wn > 0) & np.isfinite(win), dev / se, -np.inf)
        has = (wn > 0).any(axis=1)
        if not has.any():
            continue
        best = np.argmax(zp, axis=1)
        zbest = zp[np.arange(pieces.size), best]
        if is_line:
            agree = zbest > 2.0
        else:
            agree = _step_agrees(pprof[pieces], pn[pieces], g0, s, edge, skip, factor * noise)
        share = agree[has].mean()
        if share < min_pieces:
            continue
        if not is_line and not _all_around(
            agree[has], centres[pieces[has]], centroid[lab], bool(framed[lab])
        ):
            # a step along one side only: the glass's own grey (schlieren), not a zone
            continue
        e = np.full(pieces.size, edge)
        if is_line:
            own = agree & has
            e[own] = lo + best[own] + 0.5
        piece_edge[pieces] = e
    d = piece_edge[piece]
    join = np.isfinite(d) & (j + 0.5 < d)
    # the dents between a crystal and its hull join it with its zone
    has_zone = np.zeros(n_lab, dtype=bool)
    has_zone[owner[join]] = True
    dent = (hulls > 0) & (labels == 0) & has_zone[hulls]
    if valid is not None:
        dent &= valid
    if not join.any() and not dent.any():
        return labels
    out = labels.copy()
    out[dent] = hulls[dent]
    out.ravel()[at[join]] = owner[join]
    return out


def hull_labels(labels: np.ndarray, min_px: float = 0.0) -> np.ndarray:
    """Each crystal of at least ``min_px`` pixels filled out to its convex hull, on the
    pixels of no other crystal (first come, first served). The profiles are read outward from
    the hulls: a crystal's zones follow its faces, which its hull follows more closely than
    the ragged outline of an inner zone found from the grey."""
    out = labels.copy()
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        image = labels[sl] == i
        if np.count_nonzero(image) < min_px:
            continue
        win = out[sl]
        win[convex_image(image) & (win == 0)] = i
    return out


def convex_image(image: np.ndarray) -> np.ndarray:
    """The convex hull of a 2D mask, as :func:`skimage.morphology.convex_hull_image` gives it.

    The hull is that of the pixels' edge midpoints (the default ``offset_coordinates``), and a
    pixel is in it when its centre is inside or on the hull (``include_borders``). The hull
    polygon is built from the first and last pixel of every row and column; the pixels
    between the first and last of a row or column lie inside it, so only the others are
    tested against the polygon (:func:`skimage.measure.points_in_poly`).

    Parameters
    ----------
    image : numpy.ndarray of bool, 2D
        The mask (not empty).

    Returns
    -------
    numpy.ndarray of bool
        The pixels of the mask's convex hull, of ``image``'s shape.
    """
    h, w = image.shape
    rows, cols = image.any(axis=1), image.any(axis=0)
    first_c = np.argmax(image, axis=1)
    last_c = w - 1 - np.argmax(image[:, ::-1], axis=1)
    first_r = np.argmax(image, axis=0)
    last_r = h - 1 - np.argmax(image[::-1], axis=0)
    rr, cc = np.flatnonzero(rows), np.flatnonzero(cols)
    # the pixels' edge midpoints, in half pixels, numbered row by row (no point twice)
    r2 = np.concatenate([rr, rr, first_r[cc], last_r[cc]]) * 2
    c2 = np.concatenate([first_c[rr], last_c[rr], cc, cc]) * 2
    r2 = np.concatenate([r2 - 1, r2 + 1, r2, r2])
    c2 = np.concatenate([c2, c2, c2 - 1, c2 + 1])
    span = 2 * w + 1
    key = np.unique((r2 + 1) * span + (c2 + 1))
    corners = np.column_stack([key // span - 1, key % span - 1]) * 0.5
    try:
        hull = ConvexHull(corners)
    except QhullError:
        from skimage.morphology import convex_hull_image

        return convex_hull_image(image)
    vertices = hull.points[hull.vertices]
    r_idx = np.arange(h)[:, None]
    c_idx = np.arange(w)[None, :]
    inside = (rows[:, None] & (c_idx >= first_c[:, None]) & (c_idx <= last_c[:, None])) | (
        cols[None, :] & (r_idx >= first_r[None, :]) & (r_idx <= last_r[None, :])
    )
    test = np.argwhere(~inside)
    if test.size:
        inside[test[:, 0], test[:, 1]] = (
            points_in_poly(test.astype(np.float64), vertices).view(np.uint8) != 0
        )
    return inside
