"""Drawn lines and paths: profiles along user-drawn shapes."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
from skimage.measure import profile_line

from .._validation import (
    ZonationInputError,
    check_pixel_size,
)
from ._table import _channels, _finish
from .halo import HALO_CONTRAST, _halo_band, _range_of, skip_edge_band

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
    progress: Callable[[int, int], None] | None = None,
):
    """Profiles along polylines; samples nearer the start than ``skip_um`` are dropped, then
    the start band when it is an imaging artefact (:func:`skip_edge_band`).

    ``progress(done, total)`` is called before each line (``done`` lines finished) and once
    all are (``total, total``)."""
    H, W = stack.shape[1:]
    linewidth = _linewidth_px(width_um, px)
    frames, failures = [], []
    n_lines = len(ids)
    for i, (lab_id, verts) in enumerate(zip(ids, lines, strict=True)):
        if progress is not None:
            progress(i, n_lines)
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
    if progress is not None:
        progress(n_lines, n_lines)
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


