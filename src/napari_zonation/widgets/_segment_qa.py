"""The Segment dock's QA layers: crystal outlines, phases (with legend), rim band and flags.

:func:`qa_results` turns labels and their crystal table into the QA layers' data (in the
thread worker); :class:`SegmentQA` is the part of the Segment widget that builds the "QA
layers" section of its form and writes the QA layers (plugin-owned, updated in place on
re-run, each shown or hidden from the widget): ``<image> boundaries`` (crystal outlines),
``<image> phases`` (coloured per phase, legend in the widget), ``<image> rim band`` (each
crystal's rim band, where its rim composition is read:
:func:`napari_zonation.segment.qa.rim_band`) and ``<image> flagged`` (points at the
centroids of crystals with a QA flag: low contrast, cracked, touching, at the border, a faint
edge, a rim at the groundmass's grey).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from qtpy.QtWidgets import QCheckBox, QComboBox, QLabel, QVBoxLayout, QWidget

from ._canvas import Section
from ._colors import TRANSPARENT, legend_html, phase_color
from ._layers import KEY, ROLE, find_owned, upsert_layer
from ._tables import QA_FLAGS

BOUNDARY_COLOR = (1.0, 0.85, 0.1, 1.0)
FLAG_COLOR = "#ff8c1a"


def phase_codes(table: pd.DataFrame) -> tuple[dict[int, int], list[str]]:
    """Label -> phase code (1..k) and the phase names in code order (``unknown`` for NaN)."""
    if "phase" not in table.columns:
        names = ["unknown"]
        return {int(lab): 1 for lab in table["label"]}, names
    phases = table["phase"].where(table["phase"].notna(), "unknown").astype(str)
    names = sorted(phases.unique(), key=lambda p: (p == "unknown", p))
    code = {name: i + 1 for i, name in enumerate(names)}
    return {int(lab): code[ph] for lab, ph in zip(table["label"], phases, strict=True)}, names


def flag_summary(table: pd.DataFrame) -> str:
    """How many crystals carry each QA flag, in words (empty when none does)."""
    counts = [(int(table[f].fillna(False).astype(bool).sum()), f) for f in QA_FLAGS
              if f in table.columns]
    parts = [f"{n} {f.replace('_', ' ')}" for n, f in sorted(counts, reverse=True) if n]
    if not parts:
        return ""
    return "QA flags (QA layers ▸ flagged): " + ", ".join(parts) + ". "


def flagged_table(table: pd.DataFrame, labels: np.ndarray) -> tuple[np.ndarray, pd.DataFrame]:
    """Centroids (row, col) and flags of the crystals with any QA flag."""
    flags = [c for c in QA_FLAGS if c in table.columns]
    if not flags or table.empty:
        return np.empty((0, 2)), pd.DataFrame({"label": pd.Series([], dtype=int), "flags": []})
    fl = table[flags].fillna(False).astype(bool)
    sel = fl.any(axis=1).to_numpy()
    sub = table.loc[sel]
    if {"centroid_row", "centroid_col"} <= set(table.columns):
        pts = sub[["centroid_row", "centroid_col"]].to_numpy(float)
    else:
        from scipy import ndimage as ndi

        ids = sub["label"].astype(int).to_numpy()
        pts = np.asarray(ndi.center_of_mass(labels > 0, labels, ids), float).reshape(-1, 2)
    feats = pd.DataFrame({"label": sub["label"].astype(int).to_numpy()})
    for c in flags:
        feats[c] = fl.loc[sel, c].to_numpy()
    feats["flags"] = [
        ", ".join(c.replace("_", " ") for c in flags if row[c]) for _, row in fl.loc[sel].iterrows()
    ]
    return pts, feats


def qa_results(labels: np.ndarray, table: pd.DataFrame, px: float = 1.0) -> dict:
    """The QA layers' data from labels and their crystal table."""
    from skimage.segmentation import find_boundaries

    from ..segment.qa import rim_band

    boundaries = (find_boundaries(labels, mode="inner") * labels).astype(np.int32)
    code_of, names = phase_codes(table)
    lut = np.zeros(int(labels.max()) + 1, dtype=np.int32)
    for lab, code in code_of.items():
        if 0 < lab < lut.size:
            lut[lab] = code
    phases = lut[labels]
    pts, flag_feats = flagged_table(table, labels)
    return {
        "labels": labels,
        "table": table,
        "boundaries": boundaries,
        "rim_band": rim_band(labels, px),
        "phases": phases,
        "phase_names": names,
        "points": pts,
        "flags": flag_feats,
    }


class SegmentQA:
    """The Segment widget's QA layers section and layers (mixed into ``SegmentWidget``)."""

    def _build_qa(self) -> None:
        """The "QA layers" section of the form (shown layers, flag filter) and the legend."""
        qa = QWidget()
        qa_row = QVBoxLayout(qa)
        qa_row.setContentsMargins(0, 0, 0, 0)
        qa_row.setSpacing(2)
        self.show_boundaries = QCheckBox("boundaries")
        self.show_boundaries.setChecked(True)
        self.show_phases = QCheckBox("phases")
        self.show_phases.setChecked(False)
        self.show_flagged = QCheckBox("flagged")
        self.show_flagged.setChecked(False)  # QA flags on demand, not over every crystal
        self.show_rim_band = QCheckBox("rim band")
        self.show_rim_band.setChecked(False)
        for box, role in (
            (self.show_boundaries, "boundaries"),
            (self.show_phases, "phases"),
            (self.show_rim_band, "rim band"),
            (self.show_flagged, "flagged"),
        ):
            box.setToolTip(f"Show the '<image> {role}' QA layer.")
            box.toggled.connect(lambda on, role=role: self._set_visible(role, on))
            qa_row.addWidget(box)
        # the phase legend only when the phases layer is shown (its colours are on screen)
        self.show_phases.toggled.connect(lambda on: self.legend.setVisible(bool(on)))
        self.qa_section = Section("QA layers")
        self.qa_section.form.addRow(qa)
        self.flag_filter = QComboBox()
        self.flag_filter.addItems(["any flag", *[f.replace("_", " ") for f in QA_FLAGS]])
        self.flag_filter.setToolTip("Which QA flag the 'flagged' layer marks.")
        self.flag_filter.currentTextChanged.connect(lambda _=None: self._filter_flags())
        self.qa_section.form.addRow("Show", self.flag_filter)
        self._form.addRow(self.qa_section)
        self.legend = QLabel("")
        self.legend.setWordWrap(True)
        self.legend.setVisible(self.show_phases.isChecked())

    def _filter_flags(self) -> None:
        """Show only the crystals carrying the flag chosen in the QA section."""
        image = self.image_combo.value
        layer = None if image is None else find_owned(self.viewer, ROLE.flagged, image)
        if layer is None or not len(layer.data):
            return
        choice = self.flag_filter.currentText().replace(" ", "_")
        feats = layer.features
        if choice in feats.columns:
            shown = feats[choice].fillna(False).astype(bool).to_numpy()
        else:
            shown = np.ones(len(layer.data), dtype=bool)
        layer.shown = shown
        self.show_flagged.setChecked(True)

    def _on_phases_visible(self, event=None) -> None:
        """Keep the phase legend and its checkbox with the phases layer's visibility."""
        on = bool(getattr(getattr(event, "source", None), "visible", False))
        self.legend.setVisible(on)
        self.show_phases.blockSignals(True)
        self.show_phases.setChecked(on)
        self.show_phases.blockSignals(False)

    def _set_visible(self, role: str, on: bool) -> None:
        image = self.image_combo.value
        if image is None:
            return
        layer = find_owned(self.viewer, role, image)
        if layer is not None:
            layer.visible = bool(on)

    @staticmethod
    def _qa_results(labels: np.ndarray, table: pd.DataFrame, px: float = 1.0) -> dict:
        """The QA layers' data from labels and their crystal table."""
        return qa_results(labels, table, px)

    def _update_qa(self, image, r: dict, px: float, geom: dict) -> None:
        """Update (or add) the boundaries, phases and flagged layers and the legend."""
        from napari.utils.colormaps import DirectLabelColormap

        name = image.name
        table = r["table"]
        boundary_cmap = DirectLabelColormap(
            color_dict={None: BOUNDARY_COLOR, 0: TRANSPARENT}, name="boundaries"
        )
        upsert_layer(
            self.viewer,
            "labels",
            r["boundaries"],
            role=ROLE.boundaries,
            source=image,
            name=f"{name} boundaries",
            meta={KEY.pixel_size_um: px},
            colormap=boundary_cmap,
            visible=self.show_boundaries.isChecked(),
            **geom,
        )

        names = r["phase_names"]
        colors = {None: TRANSPARENT, 0: TRANSPARENT}
        colors.update({i + 1: phase_color(ph) for i, ph in enumerate(names)})
        phase_feats = pd.DataFrame({"index": np.arange(1, len(names) + 1), "phase": names})
        upsert_layer(
            self.viewer,
            "labels",
            r["phases"],
            role=ROLE.phases,
            source=image,
            name=f"{name} phases",
            meta={KEY.pixel_size_um: px, KEY.phase_names: list(names)},
            features=phase_feats,
            colormap=DirectLabelColormap(color_dict=colors, name="phases"),
            opacity=0.55,
            visible=self.show_phases.isChecked(),
            **geom,
        )

        upsert_layer(
            self.viewer,
            "labels",
            r["rim_band"],
            role=ROLE.rim_band,
            source=image,
            name=f"{name} rim band",
            meta={KEY.pixel_size_um: px},
            opacity=0.6,
            visible=self.show_rim_band.isChecked(),
            **geom,
        )

        pts, flags = r["points"], r["flags"]
        size = max(8.0 * px, 6.0 * px)
        text = {"string": "{flags}", "size": 8, "color": FLAG_COLOR, "anchor": "upper_left"}
        upsert_layer(
            self.viewer,
            "points",
            pts,
            role=ROLE.flagged,
            source=image,
            name=f"{name} flagged",
            meta={KEY.pixel_size_um: px},
            features=flags,
            face_color="transparent",
            border_color=FLAG_COLOR,
            border_width=0.2,
            size=size * 2,
            text=text,
            visible=self.show_flagged.isChecked(),
            **geom,
        )
        if self.flag_filter.currentIndex() > 0:
            self._filter_flags()

        phases_layer = find_owned(self.viewer, "phases", image)
        if phases_layer is not None and not getattr(phases_layer, "_zonation_legend", False):
            # hiding the phases layer from the layer list hides its legend too
            phases_layer.events.visible.connect(self._on_phases_visible)
            phases_layer._zonation_legend = True
        # legend of the phases layer, with counts
        counts = table["phase"].fillna("unknown").value_counts() if "phase" in table else {}
        self.legend.setText(
            "<b>Phases</b><br>"
            + legend_html((phase_color(ph), f"{ph} ({int(counts.get(ph, 0))})") for ph in names)
        )
