"""Profiles dock, Import tab: profiles from CSV/Excel through ``io.read_profiles``, kept in a
per-viewer store that the Diffusion dock also offers."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QWidget,
)

from .. import io as zio
from .._validation import ZonationInputError
from ._profile_store import profile_store


class ImportTool:
    """The Import tab of :class:`~.profiles_widget.ProfilesWidget` (a mixin of the dock)."""

    def _import_tab(self) -> QWidget:
        tab = QWidget()
        form = QFormLayout(tab)
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("profiles.csv, .xlsx, or a folder")
        browse = QPushButton("…")
        browse.setMaximumWidth(30)
        browse.clicked.connect(self._browse)
        row = QWidget()
        hl = QHBoxLayout(row)
        hl.setContentsMargins(0, 0, 0, 0)
        hl.addWidget(self.path_edit)
        hl.addWidget(browse)
        form.addRow("File", row)
        self.distance_col = QLineEdit("Distance (um)")
        self.value_col = QLineEdit("value")
        self.value_col.setToolTip("Value column(s), comma-separated (e.g. Fo or An, Sr).")
        self.label_col = QLineEdit("")
        self.label_col.setPlaceholderText("one profile per file")
        self.sigma_col = QLineEdit("")
        self.sigma_col.setPlaceholderText("none (or 'auto')")
        self.rim = QComboBox()
        self.rim.addItems(["as in the file", "start", "end"])
        self.rim.setToolTip("Which end of each profile is the rim (distance 0).")
        form.addRow("Distance column", self.distance_col)
        form.addRow("Value column", self.value_col)
        form.addRow("Profile column", self.label_col)
        form.addRow("Sigma column", self.sigma_col)
        form.addRow("Rim at", self.rim)
        return tab

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Import profiles", "", "Tables (*.csv *.tsv *.txt *.xlsx);;All files (*)"
        )
        if path:
            self.path_edit.setText(path)

    def _collect_import(self) -> dict:
        path = self.path_edit.text().strip()
        if not path:
            raise ZonationInputError("choose a CSV or Excel file of profiles (the … button).")
        values = [v.strip() for v in self.value_col.text().split(",") if v.strip()]
        if not values:
            raise ZonationInputError("name the value column (e.g. Fo, An or value).")
        rim = self.rim.currentText()
        return {
            "mode": "import",
            "path": path,
            "kwargs": {
                "distance": self.distance_col.text().strip() or None,
                "value": values[0] if len(values) == 1 else values,
                "label": self.label_col.text().strip() or None,
                "sigma": self.sigma_col.text().strip() or None,
                "rim": None if rim.startswith("as") else rim,
            },
        }

    def _work_import(self, p: dict):
        yield f"Reading {Path(p['path']).name}…"
        prof = zio.read_profiles(p["path"], **p["kwargs"])
        yield "Done."
        return {"prof": prof}

    def _apply_import(self, p: dict, r: dict) -> None:
        name = Path(p["path"]).stem
        profile_store.put(self.viewer, name, r["prof"])
        n = r["prof"]["label"].nunique()
        self.plot_table(r["prof"], f"{name}: {n} imported profile(s)")
        self.set_status(f"Imported {n} profile(s) as '{name}' (offered in Diffusion).")
