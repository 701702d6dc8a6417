"""Diffusion timescales: finite-difference fits of profiles -> sqrt(Dt), days and intervals.

By default (model "as described") each crystal's fit follows its description
(:func:`napari_zonation.diffusion.described.fit_as_described`): no described step, not
fitted; one, that step; several, the outer step only; the decision in words in
``describe_status`` and above the plot. What the chosen diffusivity still needs (XFe on grey
levels, D for a plain D) is said under the form, its field highlighted, before Run.

Sources: a crystals Labels layer with profiles in its metadata, a Shapes layer with drawn-line
profiles, or an imported table (Profiles > Import). Results (``sqrt_dt_um``,
``timescale_days`` with ``timescale_days_lo``/``_hi`` and the other ``fit_diffusion`` columns)
are merged into the layer's ``features`` (by ``label``); for imported tables they are kept
beside the table in the per-viewer store. The plot shows one profile with the fitted model,
its initial profile and rim boundary, and the residuals; "Population" draws the kernel density
of log10 timescales per cluster and exports it (PNG and CSV).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
)

from .. import diffusion
from .._validation import ZonationInputError
from ..diffusion.described import NOT_FITTED, fit_as_described
from ..diffusion.plagioclase import fit_plagioclase_mg
from ._base import ZonationWidget, chunks
from ._canvas import PlotCanvas
from ._diffusion_plots import DiffusionPlots
from ._forms import form_row, spin_box
from ._layers import KEY, ROLE, writable_crystals, zmeta
from ._layers import is_crystals as _is_crystals
from ._profile_store import profile_store
from ._tables import (
    concat,
    merge_table,
    profile_arrays,
    profiles_of,
    quantity_of,
    set_table,
    table_of,
)

N_CHUNKS = 10
#: the model choice that fits what Describe found in each crystal
AS_DESCRIBED = "as described"
#: fit columns written into a layer as ``fit_<name>``: Describe's columns of the same name
#: (the described steps and plateaus) stay as Describe wrote them
FIT_RENAMED = ("step_positions_um", "plateau_levels")
STORE_PREFIX = "imported: "

#: the diffusivity choices offered, with the keywords they give fit_diffusion
LAWS = {
    "olivine Fe-Mg, Dohmen & Chakraborty 2007": {"mineral": "olivine", "d_law": "dc07"},
    "olivine Fe-Mg, DFENS (Mutch et al. 2021)": {"mineral": "olivine", "d_law": "dfens"},
    "plagioclase Mg (Van Orman 2014; Bindeman 1998 partitioning)": {"plagioclase": True},
    "user Arrhenius law (D0, Ea)": {"d_law": "arrhenius"},
    "plain D (any mineral)": {},
}
GREY_HELP = (
    "These are BSE grey levels, not Fo: the olivine laws need the composition. Calibrate them "
    "first (Profiles ▸ Calibration, then tick 'calibrated values'), give XFe, the fayalite "
    "fraction (0.15 for Fo85), or choose 'plain D' and give D."
)
#: what a plain D needs before it can run
NEEDS_D = "Give D (µm²/s) to fit with a plain D: Run is off until then."
#: the highlight of the field the user must fill in
HIGHLIGHT = "border: 2px solid #E69F00;"


#: a drawn line's sample darker than this fraction of the line's median grey is epoxy or a hole
GAP_FRACTION = 0.5
#: at least this many dark samples in a row make a gap
GAP_MIN_SAMPLES = 3


def line_gap(distance: np.ndarray, value: np.ndarray) -> tuple[float, float] | None:
    """The first gap (epoxy, a hole, a crack) a drawn line crosses between two grains: a run
    of at least ``GAP_MIN_SAMPLES`` samples darker than ``GAP_FRACTION`` of the line's median
    grey, with brighter samples on both sides. Returns its (start, end) distance or None.

    Epoxy and holes are the darkest thing in a BSE image (grey near 0), minerals are far
    brighter: a diffusion model fitted across such a gap describes no crystal.
    """
    v = np.asarray(value, float)
    d = np.asarray(distance, float)
    ok = np.isfinite(v)
    if ok.sum() < 2 * GAP_MIN_SAMPLES + 1:
        return None
    med = float(np.median(v[ok]))
    if not med > 0:
        return None
    dark = ok & (v < GAP_FRACTION * med)
    bright = np.flatnonzero(ok & ~dark)
    if bright.size < 2:
        return None
    i = bright[0]
    while i <= bright[-1]:
        if dark[i]:
            j = i
            while j < len(v) and dark[j]:
                j += 1
            if j - i >= GAP_MIN_SAMPLES and j <= bright[-1]:
                return float(d[i]), float(d[j - 1])
            i = j
        else:
            i += 1
    return None


def disagreements(table: pd.DataFrame, zoning: pd.DataFrame | None) -> tuple[pd.DataFrame, int]:
    """Add ``describe_vs_fit``: for each crystal Describe called zoned but the fit found no
    step, both verdicts and the fit's reason in words (empty where they agree)."""
    if zoning is None or "zoning_type" not in zoning or "fit_status" not in table:
        return table, 0
    z = zoning.drop_duplicates("label").set_index("label")
    notes = []
    for row in table.itertuples(index=False):
        label = row.label
        zt = z["zoning_type"].get(label) if label in z.index else None
        note = ""
        if isinstance(zt, str) and zt != "unzoned" and row.fit_status == "no step":
            n = z["n_plateaus"].get(label) if "n_plateaus" in z else None
            plateaus = f", {int(n)} plateaus" if n is not None and pd.notna(n) else ""
            note = (
                f"Describe: {zt}{plateaus}; this fit: no step ({getattr(row, 'fit_error', '')})."
                " Try the multi_step model, which starts from the described steps."
            )
        notes.append(note)
    table = table.copy()
    table["describe_vs_fit"] = notes
    return table, sum(bool(n) for n in notes)


def _spin(value, lo, hi, step, decimals=1, suffix="", special=None):
    return spin_box(value, lo, hi, step, decimals, suffix, special)


class DiffusionWidget(DiffusionPlots, ZonationWidget):
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
        self.mineral.addItems(list(LAWS))
        self.mineral.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.mineral.setMinimumContentsLength(18)
        self.mineral.setToolTip(
            "The diffusivity law: olivine Fe-Mg interdiffusion from T, P, fO2, XFe and the\n"
            "traverse's angles to the axes (Dohmen & Chakraborty 2007, or the DFENS regression\n"
            "with its coefficient covariance); Mg in plagioclase with An-dependent D and\n"
            "partitioning (needs An and Mg channels); your own Arrhenius law; or a plain D."
        )
        self._form.addRow("Diffusivity", self.mineral)
        self.temperature = _spin(1150.0, 600.0, 1600.0, 10.0, suffix=" °C")
        self.temperature_err = _spin(30.0, 0.0, 300.0, 5.0, suffix=" °C", special="none")
        self.temperature_err.setToolTip("1-sigma; folded into the timescale interval.")
        self._form.addRow("Temperature", form_row(self.temperature, "±", self.temperature_err))
        self.pressure = _spin(100.0, 0.1, 5000.0, 50.0, suffix=" MPa")
        self.pressure_err = _spin(0.0, 0.0, 2000.0, 10.0, suffix=" MPa", special="none")
        self._form.addRow("Pressure", form_row(self.pressure, "±", self.pressure_err))
        self.delta_qfm = _spin(0.0, -10.0, 10.0, 0.1, decimals=2)
        self.delta_qfm.setToolTip("Oxygen fugacity in log units relative to the QFM buffer.")
        self.delta_qfm_err = _spin(0.0, 0.0, 5.0, 0.1, decimals=2, special="none")
        self._form.addRow("ΔQFM", form_row(self.delta_qfm, "±", self.delta_qfm_err))
        self.angles_known = QCheckBox("known")
        self.angles_known.setToolTip(
            "Angles between the traverse and olivine's [100], [010], [001] (EBSD). Unknown:\n"
            "D along [001], the fastest axis, so timescales are minima."
        )
        self.angle_a = _spin(90.0, 0.0, 180.0, 1.0, decimals=1, suffix="°")
        self.angle_b = _spin(90.0, 0.0, 180.0, 1.0, decimals=1, suffix="°")
        self.angle_c = _spin(0.0, 0.0, 180.0, 1.0, decimals=1, suffix="°")
        self._form.addRow("Angles to a, b, c",
                          form_row(self.angles_known, self.angle_a, self.angle_b, self.angle_c))
        self.xfe = _spin(0.0, 0.0, 1.0, 0.01, decimals=3, special="from Fo values")
        self.xfe.setToolTip(
            "Fayalite fraction for D (e.g. 0.15 for Fo85); needed when the profiles are grey\n"
            "levels rather than Fo in mol %."
        )
        self._form.addRow("XFe", self.xfe)
        self.diffusivity = _spin(
            0.0, 0.0, 1e6, 1e-4, decimals=8, suffix=" µm²/s", special="from the law"
        )
        self.diffusivity.setToolTip("A plain D along the traverse (any mineral).")
        self.diffusivity_err = _spin(0.0, 0.0, 1e6, 1e-4, decimals=8, suffix=" µm²/s",
                                     special="none")
        self._form.addRow("D", form_row(self.diffusivity, "±", self.diffusivity_err))
        self.d0 = _spin(-8.0, -20.0, 2.0, 0.1, decimals=2, suffix=" log₁₀ m²/s")
        self.d0.setToolTip("log10 of the pre-exponential factor D0 (m²/s).")
        self.ea = _spin(250.0, 0.0, 1000.0, 5.0, decimals=1, suffix=" kJ/mol")
        self.ea_err = _spin(0.0, 0.0, 200.0, 5.0, decimals=1, suffix=" kJ/mol", special="none")
        self._form.addRow("D0, Ea", form_row(self.d0, self.ea, "±", self.ea_err))
        self.model = QComboBox()
        self.model.addItems([AS_DESCRIBED, "step", "multi_step", "two_stage", "erf"])
        self.model.setToolTip(
            "as described: what Describe found in each crystal: no step, not fitted; one\n"
            "step, that step; several, the outer (youngest) step only. Without a description,\n"
            "one step from the profile.\n"
            "step: one step relaxed by finite differences (D at each node's composition);\n"
            "multi_step: several steps, one time; two_stage: a relaxed core step, then a new\n"
            "rim (t1 and t2); erf: the analytical quick look (infinite medium)."
        )
        self._form.addRow("Model", self.model)
        self.rim = QComboBox()
        self.rim.addItems(["fixed", "closed", "open"])
        self.rim.setToolTip(
            "fixed: the rim is held at its plateau (a melt in contact); closed: no flux;\n"
            "open: no boundary (the rim plateau continues outward, as the erf assumes)."
        )
        self._form.addRow("Rim", self.rim)
        self.blur = _spin(0.0, 0.0, 50.0, 0.5, decimals=2, suffix=" µm", special="auto")
        self.blur.setToolTip(
            "The measurement's resolution (beam, spot or probe size, FWHM). auto: a one-pixel\n"
            "probe for image profiles, none for imported traverses."
        )
        self._form.addRow("Blur (FWHM)", self.blur)
        self.calibrated = QCheckBox("calibrated values when there are some")
        self.calibrated.setChecked(True)
        self.calibrated.setToolTip(
            "Fit the calibrated copy of the profiles (Profiles widget, Calibration tab: e.g.\n"
            "Fo in mol %, from which XFe follows) instead of the grey levels."
        )
        self._form.addRow("Profiles in", self.calibrated)
        self._build_plot_controls()
        from qtpy.QtWidgets import QLabel

        self.hint = QLabel("")
        self.hint.setWordWrap(True)
        self._form.addRow(self.hint)
        self.mineral.currentTextChanged.connect(lambda _=None: self._update_enabled())
        self.diffusivity.valueChanged.connect(lambda _=None: self._update_enabled())
        self.angles_known.toggled.connect(lambda _=None: self._update_enabled())
        self.xfe.valueChanged.connect(lambda _=None: self._update_enabled())
        self.calibrated.toggled.connect(lambda _=None: self._update_enabled())
        self.source_combo.changed.connect(lambda _=None: self._update_enabled())
        self._update_enabled()
        self._finish_layout(stretch=False)
        self.plot = PlotCanvas(self.viewer, height=3.2)
        self._layout.addWidget(self.plot, 1)
        self.plot.message("Fit timescales to see a profile, its model and residuals.")
        self._last: tuple | None = None
        self._curves: pd.DataFrame | None = None

    def _law(self) -> dict:
        return LAWS.get(self.mineral.currentText(), {})

    def _update_enabled(self) -> None:
        """Grey out the conditions the chosen diffusivity does not use."""
        law = self._law()
        olivine = law.get("mineral") == "olivine" and self.diffusivity.value() <= 0
        needs_t = olivine or law.get("d_law") == "arrhenius" or law.get("plagioclase", False)
        for box in (self.temperature, self.temperature_err, self.pressure, self.pressure_err):
            box.setEnabled(needs_t)
        for box in (self.delta_qfm, self.delta_qfm_err, self.xfe, self.angles_known):
            box.setEnabled(olivine)
        for box in (self.angle_a, self.angle_b, self.angle_c):
            box.setEnabled(olivine and self.angles_known.isChecked())
        plain = not law or self.diffusivity.value() > 0
        self.diffusivity.setEnabled(plain or law.get("mineral") == "olivine")
        self.diffusivity_err.setEnabled(self.diffusivity.value() > 0)
        for box in (self.d0, self.ea, self.ea_err):
            box.setEnabled(law.get("d_law") == "arrhenius")
        self._show_readiness()

    def readiness(self) -> tuple[str, object | None]:
        """What the chosen conditions still need, in words, and the field to fill in
        (``("", None)`` when they are complete)."""
        law = self._law()
        d = self.diffusivity.value()
        if not law and d <= 0:
            return NEEDS_D, self.diffusivity
        if law.get("mineral") == "olivine" and d <= 0 and self.xfe.value() <= 0:
            prof = self._source_profiles()
            if prof is not None and len(prof) and not _looks_like_fo(prof):
                return GREY_HELP, self.xfe
        return "", None

    def _source_profiles(self) -> pd.DataFrame | None:
        source = getattr(self.source_combo, "value", None)
        if source is None:
            return None
        try:
            return self._profiles_of_source(source)[0]
        except Exception:  # noqa: BLE001 - a layer without profiles yet
            return None

    def _show_readiness(self) -> None:
        """Say what is missing, highlight its field, and turn Run off for a plain D
        without D."""
        if not hasattr(self, "hint"):
            return
        text, field = self.readiness()
        for box in (self.xfe, self.diffusivity):
            box.setStyleSheet(HIGHLIGHT if box is field else "")
        law = self._law()
        if not text and law.get("mineral") == "olivine" and self.xfe.value() <= 0 \
                and self.diffusivity.value() <= 0:
            prof = self._source_profiles()
            if prof is not None and len(prof) and _looks_like_fo(prof):
                text = "XFe from the Fo values of the profiles."
        self.hint.setText(text)
        self.run_button.setEnabled(field is not self.diffusivity)
        self.run_button.setToolTip(text if field is self.diffusivity else "")

    # ------------------------------------------------------------------ sources
    def _source_choices(self, _widget=None):
        from napari.layers import Labels, Shapes

        out = []
        for lay in self.viewer.layers:
            if isinstance(lay, Labels) and _is_crystals(lay):
                out.append((f"{lay.name}", lay))
            elif isinstance(lay, Shapes) and zmeta(lay, False).get(KEY.role) != ROLE.traverses:
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
        need, _field = self.readiness()
        if need:
            self._show_readiness()
            raise ZonationInputError(need)
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
        law = self._law()
        d = self.diffusivity.value()
        model = self.model.currentText()
        kwargs: dict = {"model": "step" if model == AS_DESCRIBED else model,
                        "rim": self.rim.currentText()}
        if self.blur.value() > 0:
            kwargs["blur_fwhm_um"] = self.blur.value()
        if law.get("plagioclase"):
            channels = set(prof["channel"]) if "channel" in prof.columns else set()
            if not {"An", "Mg"} <= channels:
                raise ZonationInputError(
                    "Mg in plagioclase needs An and Mg measured along the same traverse: import "
                    "the traverse with both columns (Profiles ▸ Import, values An and Mg)."
                )
            kwargs = {"plagioclase": True, "temperature_c": self.temperature.value(),
                      "temperature_c_err": self.temperature_err.value()}
        elif d > 0:
            kwargs["diffusivity_um2_s"] = d
            if self.diffusivity_err.value() > 0:
                kwargs["diffusivity_um2_s_err"] = self.diffusivity_err.value()
            if law.get("mineral") == "olivine":
                kwargs["mineral"] = "olivine"
        elif law.get("mineral") == "olivine":
            kwargs.update(
                mineral="olivine",
                d_law=law["d_law"],
                temperature_c=self.temperature.value(),
                pressure_mpa=self.pressure.value(),
                delta_qfm=self.delta_qfm.value(),
            )
            for key, box in (("temperature_c_err", self.temperature_err),
                             ("pressure_mpa_err", self.pressure_err),
                             ("delta_qfm_err", self.delta_qfm_err)):
                if box.value() > 0:
                    kwargs[key] = box.value()
            if self.angles_known.isChecked():
                kwargs["angles_deg"] = (self.angle_a.value(), self.angle_b.value(),
                                        self.angle_c.value())
            if self.xfe.value() > 0:
                kwargs["xfe"] = self.xfe.value()
        elif law.get("d_law") == "arrhenius":
            kwargs.update(d_law="arrhenius", temperature_c=self.temperature.value(),
                          pressure_mpa=self.pressure.value(), d0_m2_s=10.0 ** self.d0.value(),
                          ea_kj_mol=self.ea.value())
            if self.temperature_err.value() > 0:
                kwargs["temperature_c_err"] = self.temperature_err.value()
            if self.ea_err.value() > 0:
                kwargs["ea_kj_mol_err"] = self.ea_err.value()
        else:
            raise ZonationInputError(NEEDS_D)
        refused = []
        from napari.layers import Labels, Shapes

        described = table_of(layer) if isinstance(layer, Labels) else pd.DataFrame()
        if "zoning_type" in described.columns and not kwargs.get("plagioclase"):
            # the description's steps and plateaus start the multi-step fit (one decision
            # per crystal across the widgets)
            keep = [c for c in ("label", "zoning_type", "n_plateaus", "step_positions_um",
                                "plateau_levels") if c in described.columns]
            kwargs["zoning"] = described[keep]
        as_described = model == AS_DESCRIBED and "zoning" in kwargs

        if isinstance(layer, Shapes) and not quantity_of(prof):
            # a drawn line across epoxy or a hole between two grains is not one crystal
            for lab in pd.unique(prof["label"]):
                gap = line_gap(*profile_arrays(prof, lab))
                if gap is not None:
                    refused.append({
                        "label": lab,
                        "fit_status": "crosses_gap",
                        "fit_note": (
                            f"the line crosses a gap (epoxy or a hole) from {gap[0]:.1f} to "
                            f"{gap[1]:.1f} µm: not fitted; draw it within one crystal"
                        ),
                    })
            if refused:
                bad = [r["label"] for r in refused]
                prof = prof[~prof["label"].isin(bad)]
                if not len(prof):
                    raise ZonationInputError(
                        "every line crosses a gap (epoxy or a hole, grey near 0) between "
                        "grains: " + refused[0]["fit_note"] + "."
                    )
        kind = (
            "line" if isinstance(layer, Shapes) else "rim" if layer is not None else "imported"
        )
        return {"source": source, "layer": layer, "prof": prof, "kwargs": kwargs,
                "refused": pd.DataFrame(refused), "kind": kind, "as_described": as_described,
                "undescribed": model == AS_DESCRIBED and not as_described
                and isinstance(layer, Labels) and not kwargs.get("plagioclase")}

    def _steps(self, p: dict) -> int:
        return len(chunks(p["prof"]["label"].unique(), N_CHUNKS))

    def _work(self, p: dict):
        prof = p["prof"]
        labs = list(pd.unique(prof["label"]))
        parts, curve_parts, done = [], [], 0
        notes: list[str] = []
        for chunk in chunks(labs, N_CHUNKS):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                sub = prof[prof["label"].isin(chunk)]
                if p["kwargs"].get("plagioclase"):
                    kw = {k: v for k, v in p["kwargs"].items() if k != "plagioclase"}
                    parts.append(fit_plagioclase_mg(sub, **kw))
                else:
                    try:
                        if p.get("as_described"):
                            kw = {k: v for k, v in p["kwargs"].items() if k != "zoning"}
                            out, curves = fit_as_described(sub, p["kwargs"]["zoning"],
                                                           return_curves=True, **kw)
                        else:
                            out, curves = diffusion.fit_diffusion(sub, return_curves=True,
                                                                  **p["kwargs"])
                    except ZonationInputError as exc:
                        if "fayalite" in str(exc) and not _looks_like_fo(sub):
                            raise ZonationInputError(GREY_HELP) from exc
                        raise
                    parts.append(out)
                    curve_parts.append(curves)
            notes += [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
            done += len(chunk)
            self.check_cancel()
            yield f"Fitted {done} of {len(labs)} profiles…"
        table = concat(parts)
        curves = pd.concat(curve_parts, ignore_index=True) if curve_parts else None
        return {"table": table, "curves": curves, "notes": list(dict.fromkeys(notes))}

    def _apply(self, p: dict, r: dict) -> None:
        table = r["table"]
        refused = p.get("refused")
        if refused is not None and len(refused):
            table = concat([table, refused])
        if p.get("as_described"):
            n_disagree = 0
        else:
            table, n_disagree = disagreements(table, p["kwargs"].get("zoning"))
        layer = p["layer"]
        if layer is not None:
            if layer not in self.viewer.layers:
                raise ZonationInputError(f"the layer '{layer.name}' was removed meanwhile.")
            from napari.layers import Labels

            fit = table.drop(columns=[c for c in ("channel",) if c in table.columns])
            # the fit's steps and levels beside the description's, never over them
            fit = fit.rename(columns={c: f"fit_{c}" for c in FIT_RENAMED if c in fit.columns})
            if isinstance(layer, Labels):
                layer = p["layer"] = writable_crystals(self.viewer, layer)
                set_table(layer, merge_table(table_of(layer), fit))
            else:
                old = table_of(layer)
                merged = merge_table(old, fit, how="left") if len(old) else fit
                if len(merged) == len(layer.data):
                    layer.features = merged
            used = {k: v for k, v in p["kwargs"].items() if k != "zoning"}
            if p.get("as_described"):
                used["model"] = AS_DESCRIBED
            zmeta(layer)[KEY.diffusion] = used
            where = f"'{layer.name}' features"
        else:
            name = p["source"][len(STORE_PREFIX) :]
            profile_store.results(self.viewer)[name] = table
            where = f"the imported table '{name}'"
        self._last = (p["prof"], table)
        self._kind = p.get("kind", "rim")
        self._curves = r.get("curves")
        ok = table[table["fit_status"] == "ok"]
        msg = f"{len(ok)} of {len(table)} profiles fitted into {where}"
        if quantity_of(p["prof"]):
            msg += f" (calibrated profiles, {quantity_of(p['prof'])})"
        if len(ok) and ok["timescale_days"].notna().any():
            t = ok["timescale_days"].dropna()
            msg += f"; median timescale {np.median(t):.3g} days"
        grey = table[table["fit_status"].isin(["ok"]) & table["timescale_days"].isna()]
        if len(grey) and "diffusivity_um2_s" in table and table["diffusivity_um2_s"].isna().all():
            msg += ". No timescale: calibrate first, or give D"
        bad = table[~table["fit_status"].isin(["ok", NOT_FITTED])]
        skipped = int((table["fit_status"] == NOT_FITTED).sum())
        if skipped:
            msg += f"; {skipped} crystal(s) Describe found no step in, not fitted"
        if p.get("as_described"):
            confirmed = table["describe_status"].str.contains("fitted step at", regex=False)
            msg += (f"; {int(confirmed.sum())} described step(s) confirmed by the fit "
                    "(column describe_status)")
        elif p.get("undescribed"):
            msg += ("; no description yet: one step fitted from each profile (run Describe "
                    "first for one decision per crystal)")
        if len(bad):
            reasons = bad["fit_status"].value_counts()
            msg += "; not dated: " + ", ".join(f"{k} {v}" for k, v in reasons.items())
        if n_disagree:
            msg += (
                f". {n_disagree} crystal(s) Describe calls zoned have no step in this fit "
                "(column describe_vs_fit)"
            )
        if refused is not None and len(refused):
            msg += f". Line {refused['label'].iloc[0]}: {refused['fit_note'].iloc[0]}"
        if r["notes"]:
            msg += " (" + "; ".join(r["notes"][:2]) + ")"
        self.set_status(msg + ".")
        self.plot_fit()

def _looks_like_fo(prof: pd.DataFrame) -> bool:
    v = pd.to_numeric(prof["value"], errors="coerce").to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    if "quantity" in prof.columns and len(prof):
        q = str(prof["quantity"].iloc[0]).lower()
        if q.startswith("fo") or q.startswith("xfo"):
            return True
    if not v.size:
        return False
    lo, hi = np.percentile(v, [1, 99])
    return bool(lo >= 49.0 and hi <= 101.0)
