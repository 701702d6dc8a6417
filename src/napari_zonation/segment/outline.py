"""Outlines placed on each crystal's own edge, from grey profiles across it.

Around every crystal's free faces (not its contacts with other crystals) the pixels within a
band of the current outline are grouped by crystal and by short pieces of the outline (the
pixels of one square tile of the image), and binned by their signed distance to the outline.
The median grey of each bin gives, for each piece, a grey profile across the edge that is
averaged along the edge (noise falls with the piece's length) but not blurred across it. On
each profile:

- the outside level is read on the outermost bins (glass, groundmass, epoxy or a vesicle:
  whatever lies beside that piece of the outline) and the rim level on the innermost bins;
- the edge is where, coming from the outside, the grey first departs from the outside level
  by half the rim's contrast, either way: a bright edge halo on the crystal's outermost
  pixels departs from the outside as much as the rim does, so it stays inside the crystal
  whether the crystal is brighter or darker than its surroundings;
- a piece whose rim does not stand out of the profile's noise keeps its outline.

The edge is placed between pixel centres by linear interpolation of the profile.
"""

from __future__ import annotations

import edt
import numpy as np

from .labelops import label_medians
from .morphology import dilate_square


def edge_profiles(
    labels: np.ndarray,
    grey: np.ndarray,
    band_px: int,
    tile_px: int,
    origin: tuple[int, int] = (0, 0),
    threads: int = 1,
):
    """Grey profiles across the free faces of every crystal, per piece of outline.

    Returns ``(pixels, sd, owner, group, profiles, counts)``: the flat indices of the band's
    pixels, their signed distance to the outline (pixels; > 0 inside), their crystal (an
    outside pixel's: the only crystal within ``band_px`` on each axis; pixels near two are left
    out), their piece of outline (0..g-1),
    and per piece the median grey and the pixel count of each distance bin (``g x 2 band_px``
    arrays, NaN where a bin is empty; bin ``k`` holds distances ``k - band_px`` to
    ``k - band_px + 1``). None when no crystal has a free face.
    """
    inside = labels > 0
    if not inside.any() or inside.all():
        return None
    b = int(band_px)
    h, w = labels.shape
    # the signed distance of each pixel centre to the outline: half a pixel less than its
    # distance to the nearest pixel centre on the other side (one distance transform of the
    # two-label image inside / outside: each pixel's distance to the other label)
    two = inside.view(np.uint8) + np.uint8(1)
    sd = edt.edt(two, black_border=False, parallel=max(1, int(threads))).astype(np.float32)
    sd -= np.float32(0.5)
    far = sd >= b
    np.negative(sd, out=sd, where=~inside)
    sd[far] = 0
    at = np.flatnonzero(sd != 0)
    if at.size == 0:
        return None
    sd_at = sd.ravel()[at]
    owner = labels.ravel()[at]
    out = owner == 0
    if out.any():
        owner[out] = _sole_crystal(labels, at[out], b)
    keep = owner > 0
    at, sd_at, owner = at[keep], sd_at[keep], owner[keep]
    # the piece of outline of each pixel: the tile holding its nearest outline point, about
    # its position moved down the distance's gradient by its distance
    r, c = np.divmod(at, w)
    gr, gc = _gradient_at(sd, r, c)
    norm = np.maximum(np.hypot(gr, gc), 1e-6)
    rr = np.clip(np.round(r - sd_at * gr / norm), 0, h - 1).astype(np.int64)
    cc = np.clip(np.round(c - sd_at * gc / norm), 0, w - 1).astype(np.int64)
    # tiles of the whole image's grid (``origin``: the window's first pixel in the image), so
    # that a window of a tiled image groups its pixels as the whole image would
    r0, c0 = origin[0] % tile_px, origin[1] % tile_px
    n_tc = -(-(w + c0) // tile_px)
    tile = ((rr + r0) // tile_px) * n_tc + (cc + c0) // tile_px
    n_tiles = (-(-(h + r0) // tile_px)) * n_tc
    key = owner.astype(np.int64) * n_tiles + tile
    _, group = np.unique(key, return_inverse=True)
    n_groups = int(group.max()) + 1
    n_bins = 2 * b
    k = np.clip(np.floor(sd_at).astype(np.int64) + b, 0, n_bins - 1)
    cell = group.astype(np.int64) * n_bins + k
    values = grey.ravel()[at].astype(np.float32, copy=False)
    med = label_medians(values, cell + 1, n_groups * n_bins)
    counts = np.bincount(cell, minlength=n_groups * n_bins)
    return (
        at,
        sd_at,
        owner,
        group,
        med.reshape(n_groups, n_bins),
        counts.reshape(n_groups, n_bins),
    )


def _sole_crystal(labels: np.ndarray, at: np.ndarray, reach: int) -> np.ndarray:
    """The crystal of each outside pixel ``at`` (flat indices): the only one within ``reach``
    pixels on each axis; 0 near two (whatever their ids: the same in every window)."""
    small = labels.max() < np.iinfo(np.int16).max
    lab = labels.astype(np.int16) if small else labels
    top = dilate_square(lab, reach).ravel()[at]
    low = dilate_square(np.where(lab > 0, -lab, np.iinfo(lab.dtype).min), reach).ravel()[at]
    return np.where(top == -low, top, 0).astype(labels.dtype)


def _gradient_at(field: np.ndarray, r: np.ndarray, c: np.ndarray):
    """Central differences of ``field`` at pixels (r, c) (one-sided at the image's edge)."""
    h, w = field.shape
    flat = field.ravel()
    at = r * w + c
    has_up, has_down = r > 0, r < h - 1
    has_left, has_right = c > 0, c < w - 1
    # (float32 differences over int64 steps: float64, as with 2D indices)
    step_r = np.maximum(has_up.astype(np.int64) + has_down, 1)
    step_c = np.maximum(has_left.astype(np.int64) + has_right, 1)
    gr = (flat[at + np.where(has_down, w, 0)] - flat[at - np.where(has_up, w, 0)]) / step_r
    gc = (flat[at + has_right] - flat[at - has_left]) / step_c
    return gr, gc


def edge_positions(
    profiles: np.ndarray,
    counts: np.ndarray,
    crystal: np.ndarray,
    noise: float,
    *,
    n_ref: int = 3,
    min_z: float = 6.0,
    detect: float = 0.25,
    peak_bins: int = 3,
) -> np.ndarray:
    """Signed distance of the edge on each profile (pixels, > 0 inside); NaN where unsure.

    ``crystal``: the crystal of each profile. On each profile the outside level is the median
    of the ``n_ref`` outermost bins, the rim level that of the ``n_ref`` innermost ones; their
    difference (the rim's contrast) must exceed ``min_z`` standard errors (``noise``: of one
    pixel), else the profile is unsure.

    The shape of the edge is read once per crystal. On each profile scaled by its contrast,
    coming from the outside: the first bin that departs from the outside level by more than
    ``detect`` times the contrast (for two bins in a row, or by half as much again), and the
    peak of that departure within ``peak_bins`` bins: the rim level for a plain step, a halo's
    brightness when the crystal's outermost pixels are brighter than both the rim and the
    outside. When most of the crystal's profiles show a halo, its peak is the median of their
    peaks, else the median of the plain ones. On each profile the edge is then the first
    crossing, from the outside, of half that peak (the same way; one of the next two bins
    must not be back at the outside level), between bin centres.
    """
    n_groups, n_bins = profiles.shape
    b = n_bins // 2
    out = np.full(n_groups, np.nan)
    if n_groups == 0:
        return out
    with np.errstate(invalid="ignore", divide="ignore"):
        g_out = nanmedian_rows(profiles[:, :n_ref])
        g_in = nanmedian_rows(profiles[:, -n_ref:])
        n_out = counts[:, :n_ref].sum(axis=1)
        n_in = counts[:, -n_ref:].sum(axis=1)
        amp = g_in - g_out
        se = 1.2533 * noise * np.sqrt(1.0 / np.maximum(n_out, 1) + 1.0 / np.maximum(n_in, 1))
        ok = np.isfinite(amp) & (np.abs(amp) > min_z * se) & (n_out > 0) & (n_in > 0)
        dep = profiles - g_out[:, None]
    dep = np.where(np.isfinite(dep), dep, 0.0)
    rows = np.flatnonzero(ok)
    if rows.size == 0:
        return out
    mag = np.abs(amp[rows])
    scaled = (dep[rows] / mag[:, None]).astype(np.float32)
    # the edge's shape per crystal: each profile's first departure and its peak; when most
    # of a crystal's profiles first depart the other way than its rim (a halo brighter than
    # the outside on a darker crystal, or brighter than the rim on a brighter one), the
    # median of those peaks, else the median of the others
    ids, cidx = np.unique(crystal[rows], return_inverse=True)
    own = _first_peak(scaled, n_ref, detect, peak_bins)
    rim_sign = np.sign(amp[rows])
    has = np.isfinite(own)
    halo = has & ((np.sign(own) != rim_sign) | (np.abs(own) > 1.25))
    plain = has & ~halo
    n_halo = np.bincount(cidx, weights=halo, minlength=ids.size)
    n_has = np.bincount(cidx, weights=has, minlength=ids.size)
    use_halo = n_halo >= 0.5 * np.maximum(n_has, 1)
    pick = np.where(use_halo[cidx], halo, plain)
    peak = label_medians(
        np.where(pick, own, 0.0).astype(np.float32), np.where(pick, cidx + 1, 0), ids.size
    )
    # crystals without a clear departure: a plain step to the rim
    none = ~np.isfinite(peak)
    peak[none] = np.sign(np.bincount(cidx, weights=rim_sign, minlength=ids.size))[none]
    f = peak[cidx]
    sf = np.sign(f)
    level = 0.5 * np.abs(f)
    along = scaled * sf[:, None]
    cross = along >= level[:, None]
    cross[:, :n_ref] = False
    away = np.abs(scaled) > detect
    stays = np.zeros_like(cross)
    stays[:, :-1] = away[:, 1:]
    stays[:, :-2] |= away[:, 2:]
    cand = cross & stays
    first = np.argmax(cand, axis=1)
    hit = cand.any(axis=1) & (first >= n_ref)
    k = first[hit]
    r = np.flatnonzero(hit)
    lo, hi = along[r, k - 1], along[r, k]
    t = np.clip((level[r] - lo) / np.maximum(hi - lo, 1e-9), 0.0, 1.0)
    # bin k's centre lies at distance k - b + 0.5
    out[rows[r]] = (k - 1 - b + 0.5) + t
    return out


def _first_peak(pooled: np.ndarray, n_ref: int, detect: float, peak_bins: int) -> np.ndarray:
    """Per scaled profile: the signed peak of its first departure from 0 (see
    :func:`edge_positions`), NaN when it has none."""
    n, n_bins = pooled.shape
    big = np.abs(pooled) > detect
    pair = big[:, :-1] & big[:, 1:] & (np.sign(pooled[:, :-1]) == np.sign(pooled[:, 1:]))
    pair |= np.abs(pooled[:, :-1]) > 1.5 * detect
    pair[:, :n_ref] = False
    first = np.argmax(pair, axis=1)
    found = pair.any(axis=1)
    out = np.full(n, np.nan)
    r = np.flatnonzero(found)
    k0 = first[r]
    sign = np.sign(pooled[r, k0])
    idx = np.clip(k0[:, None] + np.arange(peak_bins)[None, :], 0, n_bins - 1)
    out[r] = sign * (pooled[r[:, None], idx] * sign[:, None]).max(axis=1)
    return out


def nanmedian_rows(a: np.ndarray) -> np.ndarray:
    """Median of each row ignoring NaN (NaN for a row of NaN), without warnings."""
    s = np.sort(a, axis=1)  # NaN last
    n = np.isfinite(s).sum(axis=1)
    lo = np.maximum((n - 1) // 2, 0)
    hi = np.maximum(n // 2, 0)
    r = np.arange(a.shape[0])
    med = 0.5 * (s[r, lo] + s[r, np.minimum(hi, a.shape[1] - 1)])
    return np.where(n > 0, med, np.nan)


def snap_outlines(
    labels: np.ndarray,
    grey: np.ndarray,
    noise: float,
    *,
    band_px: int,
    tile_px: int,
    max_move_px: float,
    origin: tuple[int, int] = (0, 0),
    threads: int = 1,
) -> np.ndarray:
    """Labels whose free faces are moved onto the crystals' edges (see the module's notes).

    ``grey``: the unsmoothed normalised image; ``noise``: its pixel noise. Pixels of a piece
    whose edge is unsure, or further than ``max_move_px`` from the outline, keep their label.
    Returns a new label image.
    """
    found = edge_profiles(labels, grey, band_px, tile_px, origin, threads)
    if found is None:
        return labels
    at, sd, owner, group, profiles, counts = found
    crystal = np.zeros(profiles.shape[0], dtype=np.int64)
    crystal[group] = owner
    edge = edge_positions(profiles, counts, crystal, noise)
    edge[np.abs(edge) > max_move_px] = np.nan
    d_star = edge[group]
    sure = np.isfinite(d_star)
    at, sd, owner, d_star = at[sure], sd[sure], owner[sure], d_star[sure]
    out = labels.copy()
    flat = out.ravel()
    inside = sd > d_star
    flat[at[inside]] = owner[inside]
    flat[at[~inside]] = 0
    return out
