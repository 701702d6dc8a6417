"""Straight traverses placed as an analyst places an EPMA traverse, and their profiles."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from .._stats import (
    robust_sigma,
)
from .._validation import (
    as_image,
    check_labels,
    check_pixel_size,
)
from ._rim_distance import rim_distance
from ._table import _channels
from .halo import HALO_CONTRAST, _halo_band, _outside_grey
from .lines import _lines, _linewidth_px

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
    progress: Callable[[int, int], None] | None = None,
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
    progress : callable, optional
        ``progress(done, total)`` before each traverse (``done`` of the ``total`` traverses
        profiled) and ``progress(total, total)`` at the end. An exception it raises (a
        Cancel button's) stops the call and propagates.

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
        progress=progress,
    )
    prof["source"] = "traverse"
    return prof


