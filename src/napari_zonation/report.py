"""The report figure: the crystals on the image, their profiles per cluster, their timescales.

Left, the image (µm axes) with every crystal outlined and lightly filled in its cluster's
colour and numbered by its ``label`` (the row of ``crystals.csv``); a crystal cut by the image
edge has a dashed outline. Right, one panel per cluster: every member's profile relative to
its core value (its number at the core end), on one y scale shared by all panels so that
noise and steps compare; a median only for a coherent cluster (one phase, one zoning type,
rims all on one side of the core); a mixed cluster says so in its title, which counts every
zoning type (ties visible). The panels are drawn by
:func:`napari_zonation.cluster_plots.draw_cluster_panel`, as in the Cluster dock.
Below them, when the table has timescales, each dated crystal's timescale with its interval.
Colours are Okabe & Ito's colour-blind-safe set.

Uses matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .channels import combined_grey, select_channel
from .cluster_plots import draw_cluster_panel

#: Okabe & Ito (2008) colour-blind-safe colours, ordered so that neighbouring cluster numbers
#: differ most (black left out: it vanishes on BSE images; yellow last: it is faint on the
#: white profile panels)
OKABE_ITO = ("#E69F00", "#0072B2", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
#: line styles that tell clusters apart once the colours repeat (more than 7 clusters)
CLUSTER_LINESTYLES = ("-", "--", ":", "-.")
UNCLUSTERED_COLOR = "#BBBBBB"
FILL_ALPHA = 0.15
#: crystals above this count are drawn without numbers (they would cover the image)
MAX_NUMBERS = 200
#: crystals above this count are outlined from the raster instead of contour lines
MAX_CONTOURS = 1500


def cluster_style(cluster) -> tuple[str, str]:
    """Colour and line style of a cluster in the report (cluster < 0 or NaN: unclustered)."""
    if cluster is None or pd.isna(cluster) or int(cluster) < 0:
        return UNCLUSTERED_COLOR, "-"
    c = int(cluster)
    return OKABE_ITO[c % len(OKABE_ITO)], CLUSTER_LINESTYLES[(c // len(OKABE_ITO)) % 4]


def quantity_label(profiles: pd.DataFrame, quantity: str | None = None) -> str:
    """The profiles' quantity with its unit, for an axis: ``"grey levels"`` for BSE grey,
    ``"ch0, image units"`` for a channel of element maps, or the composition's name (from
    ``quantity``, the table's ``quantity`` column or attribute, or a named ``channel``)."""
    if quantity:
        name = str(quantity)
    elif "quantity" in profiles and profiles["quantity"].dropna().nunique() == 1:
        name = str(profiles["quantity"].dropna().iloc[0])
    elif profiles.attrs.get("quantity"):
        name = str(profiles.attrs["quantity"])
    elif "channel" in profiles and len(profiles) and isinstance(profiles["channel"].iloc[0], str):
        name = str(profiles["channel"].iloc[0])
    else:
        name = "grey"
    if name.lower() in ("grey", "gray", "value", "bse", ""):
        return "grey levels"
    if len(name) > 2 and name[:2] == "ch" and name[2:].isdigit():
        return f"{name}, image units"
    return name


def interval_columns(table: pd.DataFrame) -> tuple[str | None, str | None]:
    """The columns of the timescale interval (``timescale_days_lo``/``_hi``, or the older
    ``_low``/``_high``), None where absent."""
    for lo, hi in (("timescale_days_lo", "timescale_days_hi"),
                   ("timescale_days_low", "timescale_days_high")):
        if lo in table and hi in table:
            return lo, hi
    return None, None


def _crystal_shapes(labels: np.ndarray, ids: np.ndarray, contours: bool):
    """Per label: outline polylines (row, col) and a point well inside it (row, col)."""
    from scipy import ndimage as ndi
    from skimage.measure import find_contours

    slices = ndi.find_objects(labels)
    out = {}
    for lab in ids:
        sl = slices[lab - 1] if lab - 1 < len(slices) else None
        if sl is None:
            continue
        mask = np.pad(labels[sl] == lab, 1)
        dist = ndi.distance_transform_edt(mask)
        r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
        point = (r - 1 + sl[0].start, c - 1 + sl[1].start)
        lines = []
        if contours:
            for line in find_contours(mask.astype(np.float32), 0.5):
                lines.append(line + (sl[0].start - 1, sl[1].start - 1))
        out[int(lab)] = (lines, point)
    return out


def build_report(
    image,
    labels: np.ndarray,
    crystals: pd.DataFrame,
    profiles: pd.DataFrame,
    *,
    pixel_size_um: float = 1.0,
    title: str = "",
    quantity: str | None = None,
    note: str | None = None,
):
    """The report as a matplotlib :class:`~matplotlib.figure.Figure` (see the module).

    Parameters
    ----------
    image : array-like
        The image that was segmented: 2D grey, RGB(A) or ``(channels, y, x)`` element maps
        (shown as the segmentation's combined grey).
    labels : numpy.ndarray
        Crystal labels of the image's (y, x) shape.
    crystals : pandas.DataFrame
        Crystal table (``label``; ``cluster``, ``zoning_type``, ``core_value``,
        ``rim_value``, ``touches_border``, ``timescale_days`` [``_lo``, ``_hi``],
        ``fit_status`` when present).
    profiles : pandas.DataFrame
        Long profiles table (the first channel is drawn).
    pixel_size_um : float
        Micrometres per pixel.
    title : str
        Title of the map (default: the crystal and cluster counts).
    quantity : str, optional
        Name of the profiles' quantity for the y axis (default: from the table, else grey
        levels).
    note : str, optional
        A sentence shown in place of the panels (e.g. why no crystal was found).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import patheffects
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    img = np.asarray(combined_grey(image), dtype=float)
    labels = np.asarray(labels)
    px = float(pixel_size_um)
    finite = img[np.isfinite(img)]
    lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
    crystals = crystals if crystals is not None else pd.DataFrame(columns=["label"])
    table = crystals.set_index("label", drop=False) if "label" in crystals else crystals
    table.index.name = None
    has_cluster = "cluster" in table and len(table)
    clusters = sorted(pd.to_numeric(table["cluster"]).dropna().unique()) if has_cluster else []
    border = (
        set(table.index[table["touches_border"].fillna(False).astype(bool)])
        if "touches_border" in table
        else set()
    )
    style = {int(lab): cluster_style(table.at[lab, "cluster"] if has_cluster else None)
             for lab in table.index}

    dated = pd.DataFrame()
    if "timescale_days" in table:
        t = pd.to_numeric(table["timescale_days"], errors="coerce")
        dated = table[np.isfinite(t) & (t > 0)]
    n_panels = max(len(clusters), 1)
    n_cols = 2 if n_panels > 1 else 1
    n_rows = int(np.ceil(n_panels / n_cols))
    extra = 1 if len(dated) else 0
    h, w = img.shape
    height_in = max(6.0, 2.4 * (n_rows + extra) + 0.8)
    image_in = float(np.clip((height_in - 1.2) * w / h, 4.0, 10.0))
    fig = Figure(figsize=(image_in + 3.6 * n_cols, height_in), dpi=100, layout="constrained")
    grid = fig.add_gridspec(n_rows + extra, 1 + n_cols, width_ratios=[image_in] + [3.6] * n_cols)

    # --- the map
    ax_map = fig.add_subplot(grid[:, 0])
    extent = (0, w * px, h * px, 0)
    ax_map.imshow(img, cmap="gray", vmin=lo, vmax=hi, extent=extent, interpolation="nearest")
    ids = np.asarray(sorted(int(i) for i in np.unique(labels) if i > 0))
    lut = np.zeros((int(labels.max()) + 1 if labels.size else 1, 4))
    for lab in ids:
        rgba = matplotlib.colors.to_rgba(style.get(int(lab), (UNCLUSTERED_COLOR, "-"))[0])
        lut[lab] = (*rgba[:3], FILL_ALPHA)
    if len(ids):
        ax_map.imshow(lut[labels], extent=extent, interpolation="nearest")
    contours = len(ids) <= MAX_CONTOURS
    shapes = _crystal_shapes(labels, ids, contours) if len(ids) else {}
    if not contours:
        from skimage.segmentation import find_boundaries

        edges = lut[labels]
        edges[..., 3] = find_boundaries(labels, mode="inner")
        ax_map.imshow(edges, extent=extent, interpolation="nearest")
    stroke = [patheffects.withStroke(linewidth=2.2, foreground="black")]
    for lab, (lines, (r, c)) in shapes.items():
        colour, ls = style.get(lab, (UNCLUSTERED_COLOR, "-"))
        dashed = lab in border
        for line in lines:
            ax_map.plot((line[:, 1] + 0.5) * px, (line[:, 0] + 0.5) * px, color=colour,
                        lw=1.3, ls=(0, (3, 2)) if dashed else ls)
        if len(ids) <= MAX_NUMBERS:
            ax_map.text((c + 0.5) * px, (r + 0.5) * px, str(lab), color="white", fontsize=8,
                        fontweight="bold", ha="center", va="center", path_effects=stroke)
    ax_map.set_xlim(0, w * px)
    ax_map.set_ylim(h * px, 0)
    ax_map.set_xlabel("x (µm)")
    ax_map.set_ylabel("y (µm)")
    n_numbers = "" if len(ids) <= MAX_NUMBERS else f"; {len(ids)} crystals: numbers left out"
    ax_map.set_title(
        title or f"{len(ids)} crystals, {len(clusters)} cluster(s)", fontsize=10
    )
    handles = [
        Patch(facecolor=cluster_style(c)[0], edgecolor=cluster_style(c)[0],
              linestyle=cluster_style(c)[1], label="unclustered" if c < 0 else f"cluster {int(c)}")
        for c in clusters
    ]
    if border:
        handles.append(Line2D([], [], color="0.3", ls=(0, (3, 2)),
                              label=f"cut by the image edge ({len(border)})"))
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(6, len(handles)),
                   fontsize=8, frameon=False, title_fontsize=8,
                   title="map: crystals numbered by their label in crystals.csv" + n_numbers)

    # --- profiles per cluster
    unit = quantity_label(profiles, quantity)
    # the channel the descriptors describe: the same rule as every stage
    prof = select_channel(profiles, warn=False)[0] if len(profiles) else profiles
    panels = []
    if note or not clusters:
        ax = fig.add_subplot(grid[:n_rows, 1:])
        ax.axis("off")
        ax.text(0.02, 0.98, note or "no cluster to show", va="top", ha="left", wrap=True,
                fontsize=10, transform=ax.transAxes)
    first = None
    for i, c in enumerate(clusters):
        ax = fig.add_subplot(grid[i // n_cols, 1 + i % n_cols], sharex=first, sharey=first)
        first = first or ax
        panels.append(ax)
        members = table[pd.to_numeric(table["cluster"]) == c]
        colour, ls = cluster_style(c)
        name = "unclustered" if c < 0 else f"cluster {int(c)}"
        draw_cluster_panel(ax, prof, members, name=name, color=colour, linestyle=ls,
                           dashed=border)
        ax.title.set_color("0.1")
        for spine in ax.spines.values():
            spine.set_edgecolor(colour)
            spine.set_linewidth(1.5)
        ax.tick_params(labelsize=7)
        if i + n_cols >= len(clusters):  # the lowest panel of its column
            ax.set_xlabel("distance from rim (µm)", fontsize=8)
        else:
            ax.tick_params(labelbottom=False)
        if i % n_cols == 0:
            ax.set_ylabel(f"value − core value ({unit})", fontsize=8)
        else:
            ax.tick_params(labelleft=False)

    # --- timescales
    if len(dated):
        ax = fig.add_subplot(grid[n_rows, 1:])
        order = dated.sort_values(["cluster", "label"] if "cluster" in dated else ["label"])
        days = pd.to_numeric(order["timescale_days"]).to_numpy(float)
        y = np.arange(len(order))
        lo_col, hi_col = interval_columns(order)
        missing = pd.Series(np.nan, index=order.index)
        lo_d = pd.to_numeric(order[lo_col] if lo_col else missing, errors="coerce").to_numpy(float)
        hi_d = pd.to_numeric(order[hi_col] if hi_col else missing, errors="coerce").to_numpy(float)
        for k, lab in enumerate(order.index):
            colour = style.get(int(lab), (UNCLUSTERED_COLOR, "-"))[0]
            if np.isfinite(lo_d[k]) and np.isfinite(hi_d[k]):
                ax.plot([max(lo_d[k], 1e-9), hi_d[k]], [y[k], y[k]], color=colour, lw=2.0)
            ax.plot(days[k], y[k], "o", color=colour, mec="black", mew=0.5, ms=5)
        spread = np.nanmax(np.r_[days, hi_d]) / np.nanmin(np.r_[days, lo_d])
        if spread > 10:  # a log axis only when the timescales span more than a decade
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(FuncFormatter(
                lambda v, _: f"{v:g}" if f"{v:.1e}"[0] in "25" else ""
            ))
        ax.set_yticks(y, [str(int(lab)) for lab in order.index], fontsize=6)
        ax.set_ylabel("crystal", fontsize=8)
        ax.set_xlabel("diffusion timescale (days; bars: interval)", fontsize=8)
        ax.tick_params(labelsize=7)
        n_total = len(table)
        not_dated = ""
        if "fit_status" in table:
            counts = table.loc[~table.index.isin(dated.index), "fit_status"].fillna("not fitted")
            counts = counts.astype(str).value_counts()
            not_dated = "; not dated: " + ", ".join(f"{k} {v}" for k, v in counts.items())
        ax.set_title(f"{len(dated)} of {n_total} crystals dated{not_dated}", fontsize=8)
    return fig


def report_figure(
    image,
    labels: np.ndarray,
    crystals: pd.DataFrame,
    profiles: pd.DataFrame,
    path: str | os.PathLike,
    *,
    pixel_size_um: float = 1.0,
    title: str = "",
    quantity: str | None = None,
    note: str | None = None,
) -> Path:
    """Save the report (:func:`build_report`) as a PNG and return its path."""
    fig = build_report(image, labels, crystals, profiles, pixel_size_um=pixel_size_um,
                       title=title, quantity=quantity, note=note)
    out = Path(path)
    fig.savefig(out)
    return out
