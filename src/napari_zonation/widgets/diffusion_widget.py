"""Diffusion timescales: erf (or finite-difference) fits of profiles -> sqrt(Dt) and days.

Sources: a crystals Labels layer with profiles in its metadata, a Shapes layer with drawn-line
profiles, or an imported table (Profiles > Import). Results (``sqrt_dt_um``,
``sqrt_dt_err_um``, ``timescale_days`` and the other ``fit_diffusion`` columns) are merged into
the layer's ``features`` (by ``label``); for imported tables they are kept beside the table in
the per-viewer store. A small plot shows one profile with its fitted relaxed step.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from qtpy.QtWidgets import QCheckBox, QComboBox, QSpinBox

from .. import diffusion
from .._validation import ZonationInputError
from ._common import (
    PlotCanvas,
    ZonationWidget,
    chunks,
    concat,
    merge_table,
    profile_arrays,
    profile_store,
    profiles_of,
    quantity_of,
    set_table,
    spin_box,
    table_of,
    value_name,
    zmeta,
)
from .profiles_widget import _is_crystals

N_CHUNKS = 10
STORE_PREFIX = "imported: "


def _spin(value, lo, hi, step, decimals=1, suffix="", special=None):
    return spin_box(value, lo, hi, step, decimals, suffix, special)


class DiffusionWidget(ZonationWidget):
    """Dock widget: fit diffusion-relaxed steps and turn their widths into timescales."""

    title = "Diffusion timescales"
    run_text = "Fit timescales"

    def __init__(self, napari_viewer, parent=None) -> None:
        super().__init__(napari_viewer, parent)
        from magicgui.widgets import ComboBox

        self.source_combo = ComboBox(label="Profiles", choices=self._source_choices)
        self._add_combo(self.source_combo)
        profile_store.changed.connect(self.reset_choices)
        self.mineral = QComboBox()
        self.mineral.addItems(["olivine", "other"])
        self.mineral.setToolTip(
            "olivine: Fe-Mg interdiffusion (Dohmen & Chakraborty 2007) from T, P, fO2 and XFe;\n"
            "other: give D directly."
        )
        self._form.addRow("Mineral", self.mineral)
        self.temperature = _spin(1150.0, 500.0, 1600.0, 10.0, suffix=" °C")
        self._form.addRow("Temperature", self.temperature)
        self.temperature_err = _spin(30.0, 0.0, 300.0, 5.0, suffix=" °C", special="none")
        self.temperature_err.setToolTip("1-sigma; folded into the timescale range.")
        self._form.addRow("T uncertainty (1σ)", self.temperature_err)
        self.pressure = _spin(100.0, 0.1, 5000.0, 50.0, suffix=" MPa")
        self._form.addRow("Pressure", self.pressure)
        self.delta_qfm = _spin(0.0, -10.0, 10.0, 0.1, decimals=2)
        self.delta_qfm.setToolTip("Oxygen fugacity in log units relative to the QFM buffer.")
        self._form.addRow("ΔQFM", self.delta_qfm)
        self.xfe = _spin(0.0, 0.0, 1.0, 0.01, decimals=3, special="from Fo values")
        self.xfe.setToolTip(
            "Fayalite fraction for D (e.g. 0.15 for Fo85); needed when the profiles are grey "
            "levels rather than Fo in mol %."
        )
        self._form.addRow("XFe", self.xfe)
        self.diffusivity = _spin(
            0.0, 0.0, 1e6, 1e-4, decimals=8, suffix=" µm²/s", special="from the mineral model"
        )
        self.diffusivity.setToolTip("A plain D along the traverse (any mineral).")
        self._form.addRow("D", self.diffusivity)
        self.model = QComboBox()
        self.model.addItems(["erf", "fd"])
        self.model.setToolTip("erf: analytical quick look; fd: finite differences, D(XFe).")
        self._form.addRow("Model", self.model)
        self.calibrated = QCheckBox("calibrated values when there are some")
        self.calibrated.setChecked(True)
        self.calibrated.setToolTip(
            "Fit the calibrated copy of the profiles (Profiles widget, Calibration tab: e.g.\n"
            "Fo in mol %, from which XFe follows) instead of the grey levels."
        )
        self._form.addRow("Profiles in", self.calibrated)
        self.plot_label = QSpinBox()
        self.plot_label.setRange(0, 10**9)
        self.plot_label.setSpecialValueText("first fitted")
        self.plot_label.valueChanged.connect(lambda _=None: self.plot_fit())
        self._form.addRow("Plot profile", self.plot_label)
        self.mineral.currentTextChanged.connect(lambda _=None: self._update_enabled())
        self.diffusivity.valueChanged.connect(lambda _=None: self._update_enabled())
        self._update_enabled()
        self._finish_layout(stretch=False)
        self.plot = PlotCanvas(self.viewer, height=2.4)
        self._layout.addWidget(self.plot, 1)
        self.plot.message("Fit timescales to see a profile and its fit.")
        self._last: tuple | None = None

    def _update_enabled(self) -> None:
        """Grey out the olivine conditions when D is given or the mineral is another."""
        model = self.mineral.currentText() == "olivine" and self.diffusivity.value() <= 0
        for box in (
            self.temperature,
            self.temperature_err,
            self.pressure,
            self.delta_qfm,
            self.xfe,
        ):
            box.setEnabled(model)

    # ------------------------------------------------------------------ sources
    def _source_choices(self, _widget=None):
        from napari.layers import Labels, Shapes

        out = []
        for lay in self.viewer.layers:
            if isinstance(lay, Labels) and _is_crystals(lay):
                out.append((f"{lay.name}", lay))
            elif isinstance(lay, Shapes) and zmeta(lay, create=False).get("role") != "traverses":
                out.append((f"{lay.name} (lines)", lay))
        for name in profile_store.tables(self.viewer):
            out.append((f"{STORE_PREFIX}{name}", f"{STORE_PREFIX}{name}"))
        return out

    def _profiles_of_source(self, source):
        if isinstance(source, str):
            name = source[len(STORE_PREFIX) :]
            prof = profile_store.tables(self.viewer).get(name)
            return prof, None
        return profiles_of(source, calibrated=self.calibrated.isChecked()), source

    # ------------------------------------------------------------------ job
    def _collect(self) -> dict:
        source = self.source_combo.value
        if source is None:
            raise ZonationInputError(
                "no profiles to fit: profile crystals or drawn lines (Profiles widget) first."
            )
        prof, layer = self._profiles_of_source(source)
        if prof is None or not len(prof):
            name = source if isinstance(source, str) else source.name
            raise ZonationInputError(
                f"'{name}' has no profiles yet: run the Profiles widget on it first."
            )
        mineral = self.mineral.currentText()
        d = self.diffusivity.value()
        kwargs = {"model": self.model.currentText()}
        if d > 0:
            kwargs["diffusivity_um2_s"] = d
            if mineral == "olivine":
                kwargs["mineral"] = "olivine"
        elif mineral == "olivine":
            kwargs.update(
                mineral="olivine",
                temperature_c=self.temperature.value(),
                pressure_mpa=self.pressure.value(),
                delta_qfm=self.delta_qfm.value(),
            )
            if self.temperature_err.value() > 0:
                kwargs["temperature_c_err"] = self.temperature_err.value()
            if self.xfe.value() > 0:
                kwargs["xfe"] = self.xfe.value()
        else:
            raise ZonationInputError(
                "for a mineral other than olivine give its diffusivity D (µm²/s)."
            )
        return {"source": source, "layer": layer, "prof": prof, "kwargs": kwargs}

    def _steps(self, p: dict) -> int:
        return len(chunks(p["prof"]["label"].unique(), N_CHUNKS))

    def _work(self, p: dict):
        prof = p["prof"]
        labs = list(pd.unique(prof["label"]))
        parts, done = [], 0
        notes: list[str] = []
        for chunk in chunks(labs, N_CHUNKS):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                parts.append(
                    diffusion.fit_diffusion(prof[prof["label"].isin(chunk)], **p["kwargs"])
                )
            notes += [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
            done += len(chunk)
            self.check_cancel()
            yield f"Fitted {done} of {len(labs)} profiles…"
        table = concat(parts)
        return {"table": table, "notes": list(dict.fromkeys(notes))}

    def _apply(self, p: dict, r: dict) -> None:
        table = r["table"]
        layer = p["layer"]
        if layer is not None:
            if layer not in self.viewer.layers:
                raise ZonationInputError(f"the layer '{layer.name}' was removed meanwhile.")
            from napari.layers import Labels

            fit = table.drop(columns=[c for c in ("channel",) if c in table.columns])
            if isinstance(layer, Labels):
                set_table(layer, merge_table(table_of(layer), fit))
            else:
                old = table_of(layer)
                merged = merge_table(old, fit, how="left") if len(old) else fit
                if len(merged) == len(layer.data):
                    layer.features = merged
            zmeta(layer)["diffusion"] = {k: v for k, v in p["kwargs"].items()}
            where = f"'{layer.name}' features"
        else:
            name = p["source"][len(STORE_PREFIX) :]
            profile_store.results(self.viewer)[name] = table
            where = f"the imported table '{name}'"
        self._last = (p["prof"], table)
        ok = table[table["fit_status"] == "ok"]
        msg = f"{len(ok)} of {len(table)} profiles fitted into {where}"
        if quantity_of(p["prof"]):
            msg += f" (calibrated profiles, {quantity_of(p['prof'])})"
        if len(ok) and ok["timescale_days"].notna().any():
            t = ok["timescale_days"].dropna()
            msg += f"; median timescale {np.median(t):.3g} days"
        if r["notes"]:
            msg += " (" + "; ".join(r["notes"][:2]) + ")"
        self.set_status(msg + ".")
        self.plot_fit()

    # ------------------------------------------------------------------ plot
    def plot_fit(self) -> None:
        """Plot the chosen profile (or the first fitted one) with its fitted relaxed step."""
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
        ax = self.plot.axes(1)[0]
        fg = self.plot.colors["fg"]
        ax.plot(d, v, "o", ms=2.5, color="#9ecae1", label="profile")
        if np.isfinite(row.get("sqrt_dt_um", np.nan)) and len(d):
            grid = np.linspace(float(np.min(d)), float(np.max(d)), 300)
            fit = diffusion.erf_step(
                grid,
                row["outer_value"],
                row["inner_value"],
                row["step_position_um"],
                row["sqrt_dt_um"],
            )
            ax.plot(grid, fit, color="#ff7f0e", lw=2, label="relaxed step")
        title = f"{lab}: √Dt = {row.get('sqrt_dt_um', np.nan):.3g}"
        err = row.get("sqrt_dt_err_um", np.nan)
        if np.isfinite(err):
            title += f" ± {err:.2g} µm"
        t = row.get("timescale_days", np.nan)
        if np.isfinite(t):
            title += f", t ≈ {t:.3g} d"
        if row.get("fit_status") != "ok":
            title += f" ({row.get('fit_status')})"
        ax.set_title(title, color=fg)
        ax.set_xlabel("distance from rim (µm)")
        ax.set_ylabel(value_name(prof))
        self.plot.legend(ax)
        self.plot.draw()
