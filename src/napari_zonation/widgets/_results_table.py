"""A crystal results table for the dock widgets: sortable, one row per crystal; clicking a row
selects that crystal in its Labels layer and plots its profile below the table (as
napari-skimage-regionprops links its table to the labels)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractItemView, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from ._base import weak_method
from ._canvas import PlotCanvas
from ._tables import first_channel, profiles_of, table_of, value_name

#: the columns shown first, when the table has them
RESULT_COLUMNS = (
    "label",
    "zoning_type",
    "n_plateaus",
    "n_steps",
    "core_value",
    "rim_value",
    "contrast",
    "phase",
    "describe_status",
    "fit_status",
    "timescale_days",
)


class _Item(QTableWidgetItem):
    """A table cell that sorts numbers as numbers."""

    def __init__(self, value) -> None:
        if isinstance(value, float | np.floating):
            text = "" if not np.isfinite(value) else f"{value:.4g}"
        else:
            text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(
                value
            )
        super().__init__(text)
        self._key = value
        self.setFlags(self.flags() & ~Qt.ItemFlag.ItemIsEditable)

    def __lt__(self, other) -> bool:
        a, b = self._key, getattr(other, "_key", None)
        try:
            return float(a) < float(b)
        except (TypeError, ValueError):
            return str(a) < str(b)


class ResultsTable(QWidget):
    """One row per crystal of a Labels layer's features; a click selects the crystal."""

    def __init__(self, viewer, parent=None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.layer = None
        self.table = QTableWidget(0, 0)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setMinimumHeight(160)
        self.table.setToolTip("Click a row to select its crystal; click a header to sort.")
        self.table.itemSelectionChanged.connect(self._on_row)
        self.plot = PlotCanvas(viewer, height=1.9)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.plot)
        self._on_selected = weak_method(self._layer_selected)
        self._filling = False
        self.setVisible(False)

    @property
    def selected_label(self) -> int | None:
        """The label of the selected row (None when no row is selected)."""
        rows = {i.row() for i in self.table.selectedItems()}
        if not rows:
            return None
        col = self._columns().index("label")
        item = self.table.item(rows.pop(), col)
        return None if item is None else int(float(item._key))

    def _columns(self) -> list[str]:
        return [self.table.horizontalHeaderItem(i).text() for i in range(self.table.columnCount())]

    def show_layer(self, layer) -> None:
        """Fill the table from ``layer.features`` and follow the layer's selected label."""
        if self.layer is not None and self.layer is not layer:
            for emitter, slot in ((self.layer.events.selected_label, self._on_selected),
                                  (self.layer.events.features, self._on_features)):
                try:
                    emitter.disconnect(slot)
                except (TypeError, ValueError, RuntimeError):
                    pass
        self.layer = layer
        feats = table_of(layer)
        if "label" not in feats.columns or feats.empty:
            self.setVisible(False)
            return
        cols = [c for c in RESULT_COLUMNS if c in feats.columns]
        self._filling = True
        self.table.setSortingEnabled(False)
        self.table.clear()
        self.table.setRowCount(len(feats))
        self.table.setColumnCount(len(cols))
        self.table.setHorizontalHeaderLabels(cols)
        for r, row in enumerate(feats[cols].itertuples(index=False)):
            for c, value in enumerate(row):
                self.table.setItem(r, c, _Item(value))
        self.table.setSortingEnabled(True)
        self.table.resizeColumnsToContents()
        self._filling = False
        layer.events.selected_label.connect(self._on_selected)
        # another dock writing into the table (Diffusion's describe_status, timescales)
        layer.events.features.connect(self._on_features)
        self.setVisible(True)
        self.plot.message("Click a row to see its crystal's profile.")

    def _on_features(self, event=None) -> None:
        """Refill the table when the layer's features change."""
        if self.layer is not None and not self._filling:
            self.show_layer(self.layer)

    def select(self, label: int) -> None:
        """Select the row of ``label`` (what clicking it does)."""
        col = self._columns().index("label")
        for r in range(self.table.rowCount()):
            item = self.table.item(r, col)
            if item is not None and int(float(item._key)) == int(label):
                self.table.selectRow(r)
                return

    def _on_row(self) -> None:
        if self._filling or self.layer is None:
            return
        label = self.selected_label
        if label is None:
            return
        if self.layer.selected_label != label:
            self.layer.selected_label = label
        self.plot_profile(label)

    def _layer_selected(self, event=None) -> None:
        if self.layer is None or self._filling:
            return
        label = int(self.layer.selected_label)
        if label != self.selected_label:
            self.select(label)

    def plot_profile(self, label: int) -> None:
        """The crystal's rim-to-core profile with its type and plateaus in the title."""
        prof = profiles_of(self.layer)
        if prof is None:
            self.plot.message(f"crystal {label}: no profile")
            return
        p = first_channel(prof)
        p = p[p["label"] == label].sort_values("distance_um")
        if p.empty:
            self.plot.message(f"crystal {label}: no profile (see describe_status)")
            return
        ax = self.plot.axes(1)[0]
        ax.plot(p["distance_um"], p["value"], color="#56B4E9", lw=1.4)
        feats = table_of(self.layer)
        row = feats[feats["label"] == label]
        title = f"crystal {label}"
        if len(row) and "zoning_type" in row:
            title += f": {row['zoning_type'].iloc[0]}"
        if len(row) and "n_plateaus" in row and pd.notna(row["n_plateaus"].iloc[0]):
            title += f", {int(row['n_plateaus'].iloc[0])} plateau(s)"
        ax.set_title(title)
        ax.set_xlabel("distance from rim (µm)")
        ax.set_ylabel(value_name(prof))
        self.plot.draw()
