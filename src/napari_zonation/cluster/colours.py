"""Label colours by cluster: a qualitative palette without greys, grey for unclustered."""


from __future__ import annotations

import colorsys

import numpy as np
import pandas as pd

from .._validation import ZonationInputError
from .features import UNCLUSTERED_RGBA

_TAB10 = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
_TAB20 = (
    "#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896",
    "#9467bd", "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7",
    "#bcbd22", "#dbdb8d", "#17becf", "#9edae5",
)  # fmt: skip


def cluster_colors(
    table: pd.DataFrame, cmap: str = "tab10"
) -> dict[int, tuple[float, float, float, float]]:
    """RGBA colour of every crystal label by its cluster, for napari's ``DirectLabelColormap``.

    Parameters
    ----------
    table : pandas.DataFrame
        Crystal table with ``label`` and ``cluster`` (from :func:`cluster_crystals`).
    cmap : str
        ``"tab10"`` or ``"tab20"`` (built in), or any matplotlib colormap name (matplotlib is
        then imported, without a GUI backend). Cluster ``i`` takes colour ``i``; clusters
        beyond the colormap's colours get further distinct hues.

    Returns
    -------
    dict
        ``{label: (r, g, b, a)}`` with floats in 0-1; unclustered crystals (cluster -1 or NaN)
        are grey :data:`UNCLUSTERED_RGBA`. Add ``None``/``0`` (background) entries yourself
        when building a napari colormap.
    """
    if not isinstance(table, pd.DataFrame) or not {"label", "cluster"} <= set(table.columns):
        raise ZonationInputError(
            "table needs 'label' and 'cluster' columns; run cluster_crystals first."
        )
    clusters = pd.to_numeric(table["cluster"], errors="coerce")
    ids = sorted({int(c) for c in clusters.dropna() if c >= 0})
    palette = _palette(cmap, (max(ids) + 1) if ids else 0)
    colours = {}
    for lab, c in zip(table["label"], clusters, strict=True):
        if pd.isna(lab):
            continue
        colours[int(lab)] = UNCLUSTERED_RGBA if pd.isna(c) or c < 0 else palette[int(c)]
    return colours


# --------------------------------------------------------------------------------------
# colours


def _hex_rgba(h: str) -> tuple[float, float, float, float]:
    h = h.lstrip("#")
    return (int(h[0:2], 16) / 255, int(h[2:4], 16) / 255, int(h[4:6], 16) / 255, 1.0)


def _palette(cmap: str, n: int) -> list[tuple[float, float, float, float]]:
    if cmap == "tab10":
        base = [_hex_rgba(h) for h in _TAB10]
    elif cmap == "tab20":
        base = [_hex_rgba(h) for h in _TAB20]
    else:
        try:
            import matplotlib

            cm = matplotlib.colormaps[cmap]
        except (ImportError, KeyError) as exc:
            raise ZonationInputError(
                f"cmap={cmap!r} is not a known colormap; use 'tab10', 'tab20' or a "
                "matplotlib colormap name."
            ) from exc
        count = getattr(cm, "N", 256)
        if count <= 20:  # qualitative: its own colours in order
            base = [tuple(float(c) for c in cm(i)) for i in range(count)]
        else:
            base = [tuple(float(c) for c in cm(t)) for t in np.linspace(0, 1, max(n, 1))]
    # never reuse grey for a cluster: it means "unclustered"
    base = [c for c in base if not _is_grey(c)]
    colours = list(base[:n])
    i = 0
    while len(colours) < n:  # more clusters than colours: golden-ratio hues
        hue = (0.13 + 0.618033988749895 * i) % 1.0
        sat, val = (0.65, 0.95) if (i // len(_TAB10)) % 2 == 0 else (0.9, 0.7)
        colours.append((*colorsys.hsv_to_rgb(hue, sat, val), 1.0))
        i += 1
    return colours


def _is_grey(c) -> bool:
    r, g, b = c[:3]
    return max(r, g, b) - min(r, g, b) < 0.02
