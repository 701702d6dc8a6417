"""The report figure: the image with crystals coloured by cluster, and profiles per cluster."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd


def report_figure(
    image: np.ndarray,
    labels: np.ndarray,
    crystals: pd.DataFrame,
    profiles: pd.DataFrame,
    path: str | os.PathLike,
    *,
    pixel_size_um: float = 1.0,
    title: str = "",
) -> Path:
    """Save a PNG: left, the image with crystals coloured by cluster; right, each cluster's
    profiles (thin) and median profile (thick) against the distance from the rim.

    Uses matplotlib's Agg backend (no display needed).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from skimage.segmentation import find_boundaries

    from .cluster import cluster_colors

    img = np.asarray(image, dtype=float)
    if img.ndim == 3:
        img = img.mean(axis=0)
    lo, hi = np.nanpercentile(img, [0.5, 99.5])
    colors = cluster_colors(crystals) if "cluster" in crystals else {}
    lut = np.zeros((int(labels.max()) + 1, 4))
    for lab, rgba in colors.items():
        if 0 < int(lab) < lut.shape[0]:
            lut[int(lab)] = rgba
    overlay = lut[labels]
    overlay[..., 3] = np.where(labels > 0, 0.45, 0.0)
    edges = find_boundaries(labels, mode="inner")
    overlay[edges, 3] = 1.0

    clusters = sorted(crystals["cluster"].dropna().unique()) if "cluster" in crystals else []
    fig = Figure(figsize=(13, 6), dpi=100, layout="constrained")
    ax_img = fig.add_subplot(1, 2, 1)
    h, w = img.shape
    extent = (0, w * pixel_size_um, h * pixel_size_um, 0)
    ax_img.imshow(img, cmap="gray", vmin=lo, vmax=hi, extent=extent)
    ax_img.imshow(overlay, extent=extent, interpolation="nearest")
    ax_img.set_xlabel("x (um)")
    ax_img.set_ylabel("y (um)")
    ax_img.set_title(title or f"{len(crystals)} crystals, {len(clusters)} cluster(s)")
    ax = fig.add_subplot(1, 2, 2)
    prof = profiles
    if "channel" in prof and prof["channel"].nunique() > 1:
        prof = prof[prof["channel"] == prof["channel"].iloc[0]]
    handles = []
    for c in clusters:
        members = crystals.loc[crystals["cluster"] == c, "label"]
        color = colors[int(members.iloc[0])] if len(members) else (0.5, 0.5, 0.5, 1)
        sub = prof[prof["label"].isin(members)]
        grid = np.arange(0, sub["distance_um"].quantile(0.9) + pixel_size_um, pixel_size_um)
        curves = []
        for _, p in sub.groupby("label"):
            ax.plot(p["distance_um"], p["value"], color=color, lw=0.6, alpha=0.35)
            curves.append(np.interp(grid, p["distance_um"], p["value"], right=np.nan))
        if curves:
            ax.plot(grid, np.nanmedian(np.vstack(curves), axis=0), color=color, lw=2.5)
        name = "unclustered" if c < 0 else f"cluster {int(c)}"
        types = crystals.loc[crystals["cluster"] == c, "zoning_type"] if (
            "zoning_type" in crystals) else pd.Series(dtype=str)
        common = f", mostly {types.mode().iloc[0]}" if len(types) else ""
        handles.append(Patch(color=color, label=f"{name} (n={len(members)}{common})"))
    ax.set_xlabel("distance from rim (um)")
    ax.set_ylabel("value")
    ax.set_title("profiles per cluster (thick: median)")
    if handles:
        ax.legend(handles=handles, fontsize=8, loc="best")
    out = Path(path)
    fig.savefig(out)
    return out
