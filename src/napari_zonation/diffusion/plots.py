"""Figures of diffusion results (matplotlib; imported only when a figure is made).

:func:`timescale_density` draws the figure diffusion studies publish for a population: a kernel
density of log10 timescales per cluster (one curve per cluster, each crystal's timescale as a
tick, its 5-95 % interval as a bar), and returns the curves as a table for export.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import gaussian_kde

from .._validation import ZonationInputError

#: colour-blind-safe qualitative palette (Okabe & Ito 2008)
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
           "#000000")


def timescale_density_table(fits: pd.DataFrame, *, by: str | None = "cluster",
                            column: str = "timescale_days", n_grid: int = 256,
                            bandwidth: float | None = None) -> pd.DataFrame:
    """Kernel densities of log10 timescales per group.

    Parameters
    ----------
    fits : pandas.DataFrame
        Rows with ``column`` (days) and ``fit_status``; ``by`` names the grouping column
        (``cluster``); absent or None: one group, ``all``.
    by : str or None
        Grouping column.
    column : str
        The timescale column, in days.
    n_grid : int
        Points of the log10 grid.
    bandwidth : float, optional
        Kernel standard deviation in log10 units; default Scott's rule, at least 0.05.

    Returns
    -------
    pandas.DataFrame
        Long table ``group, log10_days, density, n`` (the density integrates to 1 over
        log10 days per group; ``n`` crystals in the group).
    """
    if column not in fits.columns:
        raise ZonationInputError(f"the table has no {column!r} column; fit the profiles first "
                                 "(fit_diffusion).")
    ok = fits[np.isfinite(pd.to_numeric(fits[column], errors="coerce"))]
    if "fit_status" in ok.columns:
        ok = ok[ok["fit_status"] == "ok"]
    ok = ok[ok[column] > 0]
    groups = ok.groupby(by, sort=True) if by and by in ok.columns else [("all", ok)]
    logs = np.log10(ok[column].to_numpy(dtype=float))
    if logs.size == 0:
        return pd.DataFrame(columns=["group", "log10_days", "density", "n"])
    lo, hi = logs.min() - 1.0, logs.max() + 1.0
    grid = np.linspace(lo, hi, n_grid)
    rows = []
    for name, g in groups:
        v = np.log10(g[column].to_numpy(dtype=float))
        if v.size == 0:
            continue
        if v.size == 1 or np.ptp(v) == 0:
            bw = bandwidth or 0.1
            dens = np.exp(-0.5 * ((grid[:, None] - v[None, :]) / bw) ** 2).sum(1)
            dens = dens / (v.size * bw * math.sqrt(2 * math.pi))
        else:
            kde = gaussian_kde(v)
            if bandwidth is not None:
                kde.set_bandwidth(bandwidth / float(np.std(v, ddof=1)))
            elif math.sqrt(kde.covariance[0, 0]) < 0.05:
                kde.set_bandwidth(0.05 / float(np.std(v, ddof=1)))
            dens = kde(grid)
        rows.append(pd.DataFrame({"group": name, "log10_days": grid, "density": dens,
                                  "n": v.size}))
    return pd.concat(rows, ignore_index=True)


def timescale_density(fits: pd.DataFrame, *, by: str | None = "cluster",
                      column: str = "timescale_days", ax=None, path=None,
                      csv_path=None, title: str | None = None):
    """Kernel density of log10 timescales per cluster, with each crystal as a tick and its
    5-95 % interval as a bar.

    Parameters
    ----------
    fits : pandas.DataFrame
        ``fit_diffusion`` results (with ``timescale_days_lo`` / ``_hi`` when present), joined
        with the crystal table when ``by="cluster"``.
    by : str or None
        Grouping column (``cluster``), or None for one curve.
    column : str
        Timescale column in days.
    ax : matplotlib.axes.Axes, optional
        Draw there; default a new figure (Agg).
    path, csv_path : str or path-like, optional
        Write the figure (PNG) and the density curves (CSV).
    title : str, optional
        Figure title.

    Returns
    -------
    (matplotlib.figure.Figure, pandas.DataFrame)
        The figure and the density table of :func:`timescale_density_table`.
    """
    own = ax is None
    if own:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.4, 3.8), dpi=120)
        ax = fig.add_subplot(111)
    else:
        fig = ax.figure
    table = timescale_density_table(fits, by=by, column=column)
    ok = fits.copy()
    if "fit_status" in ok.columns:
        ok = ok[ok["fit_status"] == "ok"]
    ok = ok[np.isfinite(pd.to_numeric(ok[column], errors="coerce")) & (ok[column] > 0)]
    if table.empty:
        ax.text(0.5, 0.5, "no timescale to show: no profile was fitted ok with a diffusivity",
                ha="center", va="center", transform=ax.transAxes, wrap=True)
        ax.set_axis_off()
    else:
        groups = list(dict.fromkeys(table["group"]))
        top = float(table["density"].max())
        for i, name in enumerate(groups):
            col = PALETTE[i % len(PALETTE)]
            t = table[table["group"] == name]
            n = int(t["n"].iloc[0])
            label = f"{by} {name} (n = {n})" if by and by in fits.columns else f"all (n = {n})"
            ax.plot(t["log10_days"], t["density"], color=col, lw=2, label=label)
            ax.fill_between(t["log10_days"], t["density"], color=col, alpha=0.15)
            members = ok[ok[by] == name] if by and by in ok.columns else ok
            y0 = -0.06 * top * (i + 1)
            lt = np.log10(members[column].to_numpy(dtype=float))
            ax.plot(lt, np.full(lt.size, y0), "|", color=col, ms=9, mew=1.5)
            if {"timescale_days_lo", "timescale_days_hi"} <= set(members.columns):
                lo = np.log10(np.clip(members["timescale_days_lo"].to_numpy(float), 1e-12,
                                      None))
                hi = np.log10(np.clip(members["timescale_days_hi"].to_numpy(float), 1e-12,
                                      None))
                for a, b in zip(lo, hi, strict=True):
                    if np.isfinite(a) and np.isfinite(b):
                        ax.plot([a, b], [y0, y0], color=col, lw=1, alpha=0.6)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xlabel("log$_{10}$ timescale (days)")
        ax.set_ylabel("density (per log$_{10}$ day)")
        ax.set_ylim(-0.06 * top * (len(groups) + 1), top * 1.1)
        ax.legend(frameon=False, fontsize=8)
        secondary = ax.secondary_xaxis("top", functions=(lambda v: v, lambda v: v))
        ticks = [v for v in (-1, 0, math.log10(7), math.log10(30), 2, math.log10(365.25),
                             math.log10(3652.5)) if table.log10_days.min() <= v
                 <= table.log10_days.max()]
        names = {-1: "2.4 h", 0: "1 d", math.log10(7): "1 wk", math.log10(30): "1 mo",
                 2: "100 d", math.log10(365.25): "1 yr", math.log10(3652.5): "10 yr"}
        secondary.set_xticks(ticks, [names[v] for v in ticks])
        secondary.tick_params(labelsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    if own:
        fig.tight_layout()
    if path is not None:
        fig.savefig(Path(path))
    if csv_path is not None:
        table.to_csv(Path(csv_path), index=False)
    return fig, table
