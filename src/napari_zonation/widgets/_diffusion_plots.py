"""The Diffusion dock's plots: one profile with its fitted model, initial profile, rim
boundary and residuals, and the population (kernel density of log10 timescales per cluster)
with its export (PNG and CSV). :class:`DiffusionPlots` is mixed into ``DiffusionWidget``.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from qtpy.QtWidgets import QFileDialog, QPushButton, QSpinBox

from .. import diffusion
from .._validation import ZonationInputError
from ._forms import form_row
from ._tables import profile_arrays, table_of, value_name

#: the x axis of the fit plot, by where the profiles come from
DISTANCE_LABELS = {
    "rim": "distance from rim (µm)",
    "line": "distance along the line (µm)",
    "imported": "distance (µm, as imported)",
}


class DiffusionPlots:
    """The Diffusion widget's plot controls and plots (mixed into ``DiffusionWidget``)."""

    def _build_plot_controls(self) -> None:
        """Rows of the form: the profile to plot, Population and its export."""
        self.plot_label = QSpinBox()
        self.plot_label.setRange(0, 10**9)
        self.plot_label.setSpecialValueText("first fitted")
        self.plot_label.valueChanged.connect(lambda _=None: self.plot_fit())
        self._form.addRow("Plot profile", self.plot_label)
        self.population_button = QPushButton("Population")
        self.population_button.setToolTip(
            "Kernel density of log10 timescales per cluster, each crystal with its interval.")
        self.population_button.clicked.connect(lambda _=None: self.plot_population())
        self.export_button = QPushButton("Export PNG + CSV…")
        self.export_button.clicked.connect(lambda _=None: self.export_population())
        self._form.addRow("", form_row(self.population_button, self.export_button))

    def plot_fit(self) -> None:
        """Plot the chosen profile (or the first fitted one) with the fitted model, its initial
        profile and rim boundary, and the residuals."""
        if self._last is None:
            return
        prof, table = self._last
        label = self.plot_label.value()
        if label == 0 or not (table["label"] == label).any():
            ok = table[table["fit_status"] == "ok"]
            row = (ok if len(ok) else table).iloc[0]
        else:
            row = table[table["label"] == label].iloc[0]
        lab = row["label"]
        d, v = profile_arrays(prof, lab)
        ax, res_ax = self.plot.axes(2)
        ax.figure.set_layout_engine("constrained")
        fg = self.plot.colors["fg"]
        ax.plot(d, v, "o", ms=2.5, color="#56B4E9", label="profile")
        curves = self._curves
        curve = None
        if curves is not None and len(curves) and "label" in curves:
            curve = curves[curves["label"] == lab].sort_values("distance_um")
        if curve is not None and len(curve) and np.isfinite(row.get("sqrt_dt_um", np.nan)):
            ax.plot(curve["distance_um"], curve["initial"], "--", color="0.55", lw=1,
                    label="initial")
            ax.plot(curve["distance_um"], curve["model"], color="#E69F00", lw=2, label="model")
            model_at = np.interp(d, curve["distance_um"], curve["model"])
            res_ax.axhline(0, color="0.6", lw=0.8)
            res_ax.plot(d, v - model_at, "o", ms=2, color="#56B4E9")
            start = row.get("domain_start_um", np.nan)
            if np.isfinite(start):
                held = row.get("rim") == "fixed"
                ax.axvline(start, color="#D55E00", lw=1, ls=":",
                           label="rim held" if held else f"rim {row.get('rim')}")
        elif np.isfinite(row.get("sqrt_dt_um", np.nan)) and len(d) and row.get("model") == "erf":
            grid = np.linspace(float(np.min(d)), float(np.max(d)), 300)
            fit = diffusion.erf_step(grid, row["outer_value"], row["inner_value"],
                                     row["step_position_um"], row["sqrt_dt_um"])
            ax.plot(grid, fit, color="#E69F00", lw=2, label="relaxed step")
            res_ax.axhline(0, color="0.6", lw=0.8)
            res_ax.plot(d, v - np.interp(d, grid, fit), "o", ms=2, color="#56B4E9")
        title = f"{lab}: √Dt = {row.get('sqrt_dt_um', np.nan):.3g}"
        err = row.get("sqrt_dt_err_um", np.nan)
        if np.isfinite(err):
            title += f" ± {err:.2g} µm"
        t = row.get("timescale_days", np.nan)
        if np.isfinite(t):
            title += (f", t = {t:.3g} d [{row.get('timescale_days_lo', np.nan):.2g}–"
                      f"{row.get('timescale_days_hi', np.nan):.2g}]")
        if row.get("fit_status") != "ok":
            title += f" ({row.get('fit_status')})"
        said = row.get("describe_status")
        if isinstance(said, str) and said:
            # the crystal's one decision, in words (what Describe found and what was fitted)
            lines = textwrap.wrap(said, 62)
            title += "\n" + "\n".join(lines[:3]) + ("…" if len(lines) > 3 else "")
        ax.set_title(title, color=fg, fontsize=9)
        res_ax.set_xlabel(DISTANCE_LABELS.get(getattr(self, "_kind", "rim"), "distance (µm)"))
        ax.set_ylabel(value_name(prof))
        res_ax.set_ylabel("residual")
        self.plot.legend(ax)
        self.plot.draw()

    def _population_fits(self) -> pd.DataFrame:
        if self._last is None:
            raise ZonationInputError("fit timescales first, then draw the population.")
        table = self._last[1]
        source = self.source_combo.value
        if "cluster" not in table.columns and source is not None and not isinstance(source, str):
            feats = table_of(source)
            if "cluster" in feats.columns:
                table = table.merge(feats[["label", "cluster"]], on="label", how="left")
        return table

    def plot_population(self):
        """Kernel density of log10 timescales per cluster in the dock's plot."""
        from ..diffusion.plots import timescale_density

        try:
            fits = self._population_fits()
        except ZonationInputError as exc:
            self.set_status(str(exc))
            return None
        ax = self.plot.axes(1)[0]
        by = "cluster" if "cluster" in fits.columns else None
        _, table = timescale_density(fits, by=by, ax=ax)
        self.plot.draw()
        return table

    def export_population(self, path: str | None = None) -> None:
        """Write the population figure (PNG) and its density curves (CSV)."""
        from ..diffusion.plots import timescale_density

        try:
            fits = self._population_fits()
        except ZonationInputError as exc:
            self.set_status(str(exc))
            return
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export the timescale density",
                                                  "timescales.png", "PNG (*.png)")
            if not path:
                return
        png = str(path) if str(path).endswith(".png") else f"{path}.png"
        csv = png[:-4] + ".csv"
        by = "cluster" if "cluster" in fits.columns else None
        timescale_density(fits, by=by, path=png, csv_path=csv)
        fits.to_csv(png[:-4] + "_fits.csv", index=False)
        self.set_status(f"wrote {png}, {csv} and the fits beside them.")
