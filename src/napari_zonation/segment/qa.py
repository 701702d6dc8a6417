"""How sure each crystal's rim is: edge contrast along the outline, the rim's grey against the
groundmass's, and the rim band itself (for a QA layer).

- The rim band of a crystal: its pixels between ``inner_um`` and ``outer_um`` inside its free
  faces (not at contacts with other crystals, not at the image's edge), beyond a bright edge
  halo one or two pixels wide: where the rim composition is read.
- The edge contrast: on grey profiles across the free outline (pieces of outline of about
  24 um, :func:`~napari_zonation.segment.outline.edge_profiles`), the step between the grey
  just inside and just outside, in units of the image's pixel noise; its median over the
  outline is ``edge_contrast``, and ``edge_sure`` the share of the outline where the step
  stands four standard errors out of the noise. An outline that is mostly unsure is flagged
  ``faint_edge``: the crystal is kept as segmented, not clipped, and should be checked.
- ``rim_near_groundmass`` flags a rim whose grey is within three widths of the groundmass
  mode (or of the level given; the width is at least that of the noise of a grey smoothed
  over a few pixels): there the boundary cannot come from the grey alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .labelops import label_medians
from .morphology import distance_inside
from .outline import edge_profiles, nanmedian_rows


def rim_band(labels: np.ndarray, px: float, inner_um: float = 1.5, outer_um: float = 4.5):
    """The rim band of every crystal, as labels (0 elsewhere; see the module's notes)."""
    labels = np.asarray(labels)
    if not labels.any():
        return np.zeros(labels.shape, dtype=np.int32)
    depth = distance_inside(labels > 0)  # distance to the background (not to other crystals)
    inner = max(1.0, inner_um / px)
    outer = max(inner + 1.0, outer_um / px)
    band = (depth > inner) & (depth <= outer)
    return np.where(band, labels, 0).astype(np.int32)


def rim_qa(
    grey: np.ndarray,
    labels: np.ndarray,
    px: float,
    noise: float,
    ids: np.ndarray,
    groundmass_level: float,
    groundmass_width: float,
) -> pd.DataFrame:
    """The rim QA columns of :func:`~napari_zonation.crystal_table` for crystals ``ids``.

    ``grey``: the image (NaN-free); ``noise``: its pixel noise sigma; ``groundmass_level`` and
    ``groundmass_width``: the groundmass mode and its width, image units (NaN when there is
    no groundmass). Returns ``rim_grey``, ``edge_contrast``, ``edge_sure``, ``faint_edge`` and
    ``rim_near_groundmass``, one row per id.
    """
    ids = np.asarray(ids, dtype=np.int64)
    n = int(labels.max()) if labels.size else 0
    out = pd.DataFrame(
        {
            "rim_grey": np.full(ids.size, np.nan),
            "edge_contrast": np.full(ids.size, np.nan),
            "edge_sure": np.full(ids.size, np.nan),
        }
    )
    if n == 0 or ids.size == 0:
        out["faint_edge"] = False
        out["rim_near_groundmass"] = False
        return out
    band = rim_band(labels, px)
    rim = label_medians(grey.astype(np.float32), band, n)
    # crystals without a free face: the median of the whole crystal
    whole = label_medians(grey.astype(np.float32), labels, n)
    rim = np.where(np.isfinite(rim), rim, whole)
    out["rim_grey"] = rim[ids - 1]
    b = max(4, int(np.ceil(4.0 / px)))
    found = edge_profiles(labels, grey.astype(np.float32), b, max(24, int(round(24.0 / px))))
    if found is not None and noise > 0:
        _, _, owner, group, profiles, counts = found
        crystal = np.zeros(profiles.shape[0], dtype=np.int64)
        crystal[group] = owner
        k = 2
        g_out = nanmedian_rows(np.where(counts[:, :k] > 0, profiles[:, :k], np.nan))
        g_in = nanmedian_rows(np.where(counts[:, -k:] > 0, profiles[:, -k:], np.nan))
        n_out, n_in = counts[:, :k].sum(axis=1), counts[:, -k:].sum(axis=1)
        step = np.abs(g_in - g_out)
        se = 1.2533 * noise * np.sqrt(1.0 / np.maximum(n_out, 1) + 1.0 / np.maximum(n_in, 1))
        # pieces of a few pixels (cut by the tiles' grid) say little: shares are of pixels
        ok = np.isfinite(step) & (n_out >= 6) & (n_in >= 6)
        crystal, step, se = crystal[ok], step[ok], se[ok]
        weight = (n_out + n_in)[ok].astype(np.float64)
        contrast = label_medians((step / noise).astype(np.float32), crystal, n)
        sure = np.bincount(crystal, weights=(step > 4.0 * se) * weight, minlength=n + 1)
        pieces = np.bincount(crystal, weights=weight, minlength=n + 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(pieces > 0, sure / np.maximum(pieces, 1), np.nan)
        out["edge_contrast"] = contrast[ids - 1]
        out["edge_sure"] = share[ids]
    out["faint_edge"] = (out["edge_sure"] < 0.5).fillna(False).astype(bool)
    if np.isfinite(groundmass_level):
        # the groundmass mode's width, or the noise of a grey smoothed over a few pixels
        wide = max(
            groundmass_width if np.isfinite(groundmass_width) else 0.0,
            2.0 * noise / (2.0 * np.sqrt(np.pi)),
        )
        near = (out["rim_grey"] - groundmass_level).abs() < 3.0 * wide
        out["rim_near_groundmass"] = near.fillna(False).astype(bool)
    else:
        out["rim_near_groundmass"] = False
    return out
