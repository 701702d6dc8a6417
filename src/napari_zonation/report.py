"""The report figure: the image with crystals coloured by cluster, and profiles per cluster."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .profiles import median_profile


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
    """Save a PNG: left, the image with crystals coloured by cluster; right, one panel per
    cluster with its members' profiles relative to their core value (thin) and their median
    (thick, out to the median member's depth: over at least half the members everywhere)
    against the distance from the rim.

    Uses matplotlib's Agg backend (no display needed).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
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
    n_panels = max(len(clusters), 1)
    n_cols = 2 if n_panels > 1 else 1
    n_rows = int(np.ceil(n_panels / n_cols))
    h, w = img.shape
    height_in = max(6.0, 2.2 * n_rows)
    image_in = float(np.clip(height_in * w / h, 4.0, 10.0))  # the image keeps its aspect
    fig = Figure(figsize=(image_in + 3.4 * n_cols, height_in), dpi=100, layout="constrained")
    grid_spec = fig.add_gridspec(n_rows, 1 + n_cols, width_ratios=[image_in] + [3.4] * n_cols)
    ax_img = fig.add_subplot(grid_spec[:, 0])
    extent = (0, w * pixel_size_um, h * pixel_size_um, 0)
    ax_img.imshow(img, cmap="gray", vmin=lo, vmax=hi, extent=extent)
    ax_img.imshow(overlay, extent=extent, interpolation="nearest")
    ax_img.set_xlabel("x (um)")
    ax_img.set_ylabel("y (um)")
    ax_img.set_title(title or f"{len(crystals)} crystals, {len(clusters)} cluster(s)")
    prof = profiles
    if "channel" in prof and prof["channel"].nunique() > 1:
        prof = prof[prof["channel"] == prof["channel"].iloc[0]]
    core = (
        crystals.set_index("label")["core_value"].dropna().to_dict()
        if ("core_value" in crystals)
        else {}
    )
    first = None
    for i, c in enumerate(clusters):
        ax = fig.add_subplot(grid_spec[i // n_cols, 1 + i % n_cols], sharex=first)
        first = first or ax
        members = crystals.loc[crystals["cluster"] == c, "label"]
        color = (
            colors.get(int(members.iloc[0]), (0.5, 0.5, 0.5, 1))
            if len(members)
            else (0.5, 0.5, 0.5, 1)
        )
        curves = []
        for lab, p in prof[prof["label"].isin(members)].groupby("label"):
            # crystals of one zoning pattern may be of different phases (grey levels):
            # compare shapes, relative to each crystal's core
            p = p.assign(value=p["value"] - core.get(lab, p["value"].iloc[-5:].median()))
            ax.plot(p["distance_um"], p["value"], color=color, lw=0.7, alpha=0.45)
            curves.append((p["distance_um"].to_numpy(), p["value"].to_numpy()))
        if len(curves) > 1:
            # over at least half the members, as the Cluster widget draws it
            ax.plot(*median_profile(curves), color=color, lw=2.5)
        name = "unclustered" if c < 0 else f"cluster {int(c)}"
        types = (
            crystals.loc[crystals["cluster"] == c, "zoning_type"].dropna()
            if ("zoning_type" in crystals)
            else pd.Series(dtype=str)
        )
        common = f": {types.mode().iloc[0]}" if len(types) else ""
        ax.set_title(f"{name} (n={len(members)}){common}", fontsize=9, color=color)
        ax.tick_params(labelsize=7)
        if i // n_cols == n_rows - 1 or i + n_cols >= len(clusters):
            ax.set_xlabel("distance from rim (um)", fontsize=8)
        if i % n_cols == 0:
            ax.set_ylabel("value − core value", fontsize=8)
    out = Path(path)
    fig.savefig(out)
    return out
