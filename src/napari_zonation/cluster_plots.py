"""One cluster's profiles in one panel: the drawing shared by the report and the Cluster dock.

Every member's profile is drawn relative to its own core value (``value - core_value``), so
crystals of different brightness compare, on whatever y scale the caller shares between the
panels. A median is drawn only for a coherent cluster: one phase, one zoning type, rims all on
one side of the core (beyond the crystals' noise). Otherwise the panel's title says why there
is no median, and each crystal is drawn. The title counts every zoning type (ties visible).

Uses matplotlib only through the axes it is given.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._stats import median_profile

#: members above this count are drawn without their numbers
MAX_PANEL_NUMBERS = 12


def zoning_counts(types: pd.Series) -> list[tuple[str, int]]:
    """Each zoning type and how many members have it, the commonest first."""
    counts = types.dropna().astype(str).value_counts()
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def phases_of(members: pd.DataFrame) -> list[str]:
    """The distinct phases of a cluster's members (empty without a ``phase`` column)."""
    if "phase" not in members.columns:
        return []
    return sorted(set(members["phase"].dropna().astype(str)))


def is_mixed(members: pd.DataFrame, counts: list[tuple[str, int]] | None = None) -> bool:
    """Several phases, several zoning types, or rims on both sides of the core beyond the
    crystals' noise: a median of such members draws a profile no crystal has."""
    counts = zoning_counts(members["zoning_type"]) if counts is None and \
        "zoning_type" in members.columns else (counts or [])
    if len(phases_of(members)) > 1 or len(counts) > 1:
        return True
    if {"rim_value", "core_value"} <= set(members.columns) and len(members) > 1:
        delta = (pd.to_numeric(members["rim_value"], errors="coerce")
                 - pd.to_numeric(members["core_value"], errors="coerce")).dropna()
        delta = delta.to_numpy(float)
        scale = np.nanmedian(np.abs(delta)) if delta.size else 0.0
        big = delta[np.abs(delta) > 0.25 * scale] if scale > 0 else delta[:0]
        return bool((big > 0).any() and (big < 0).any())
    return False


def panel_title(name: str, members: pd.DataFrame) -> str:
    """``"<name> (n=N[, mixed])"`` and the zoning types with counts; the phases when several
    (then no median)."""
    counts = zoning_counts(members["zoning_type"]) if "zoning_type" in members else []
    mixed = is_mixed(members, counts)
    kinds = ", ".join(f"{k} {v}" for k, v in counts[:3])
    if len(counts) > 3:
        kinds += f", +{len(counts) - 3} more"
    state = ", mixed" if mixed else ""
    title = f"{name} (n={len(members)}{state})" + (f"\n{kinds}" if kinds else "")
    phases = phases_of(members)
    if len(phases) > 1:
        title += f"\n{len(phases)} phases: no median"
    return title


def median_within_reach(curves: list) -> tuple[np.ndarray, np.ndarray]:
    """Median profile over the depth that at least half the members (and two) reach."""
    ends = sorted(float(np.nanmax(d)) for d, _ in curves if len(d))
    need = max(2, int(np.ceil(len(ends) / 2)))
    if len(ends) < need:
        return np.array([]), np.array([])
    limit = ends[len(ends) - need]
    return median_profile([(d[d <= limit], v[d <= limit]) for d, v in curves])


def relative_profiles(profiles: pd.DataFrame, members: pd.DataFrame) -> dict:
    """Per member label: (distance, value - core value), sorted by distance. The core value is
    the member's ``core_value`` when known, else the median of its 5 deepest points."""
    labels = members["label"] if "label" in members.columns else pd.Series(members.index)
    core = {}
    if "core_value" in members.columns:
        core = dict(zip(labels, pd.to_numeric(members["core_value"], errors="coerce"),
                        strict=True))
    out = {}
    if not len(profiles):
        return out
    for lab, p in profiles[profiles["label"].isin(set(labels))].groupby("label"):
        p = p.sort_values("distance_um")
        ref = core.get(lab, np.nan)
        if not np.isfinite(ref):
            ref = float(p["value"].iloc[-5:].median())
        out[lab] = (p["distance_um"].to_numpy(float), p["value"].to_numpy(float) - ref)
    return out


def draw_cluster_panel(
    ax,
    profiles: pd.DataFrame,
    members: pd.DataFrame,
    *,
    name: str,
    color,
    linestyle="-",
    dashed=(),
    text_color="0.25",
) -> dict:
    """Draw one cluster's members (relative to their core values) and, when coherent, their
    median on ``ax``; set the panel's title.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The panel (share its y axis between the panels of one figure).
    profiles : pandas.DataFrame
        Long profiles table (one channel): ``label``, ``distance_um``, ``value``.
    members : pandas.DataFrame
        The cluster's rows of the crystal table (``label``; ``core_value``, ``rim_value``,
        ``zoning_type``, ``phase`` when known).
    name : str
        The cluster's name in the title.
    color, linestyle
        The cluster's colour and line style.
    dashed : collection
        Labels drawn dashed (e.g. crystals cut by the image edge).
    text_color
        Colour of the members' numbers.

    Returns
    -------
    dict
        ``title``, ``mixed`` (no median drawn), ``n_drawn`` (member curves drawn).
    """
    curves = relative_profiles(profiles, members)
    mixed = is_mixed(members)
    for lab, (d, v) in curves.items():
        ax.plot(d, v, color=color, lw=0.9, alpha=0.75 if mixed else 0.5,
                ls=(0, (3, 2)) if lab in dashed else linestyle, gid=f"crystal {lab}")
        if len(curves) <= MAX_PANEL_NUMBERS and len(d):
            ax.annotate(str(lab), (d[-1], v[-1]), xytext=(2, 0), textcoords="offset points",
                        fontsize=6, color=text_color, va="center")
    if len(curves) > 1 and not mixed:
        grid, med = median_within_reach(list(curves.values()))
        if grid.size:
            ax.plot(grid, med, color=color, lw=2.6, ls=linestyle, label="median", gid="median")
    ax.axhline(0.0, color="0.6", lw=0.6, zorder=0, gid="core level")
    title = panel_title(name, members)
    ax.set_title(title, fontsize=8)
    return {"title": title, "mixed": mixed, "n_drawn": len(curves)}
