"""Profiles: core-to-rim profiles of all crystals, profiles of drawn lines, imported CSV.

The dock tabs four tools over one docked plot, each in its own module:

- **Crystals** (:mod:`._profiles_crystals`): ``rim_profiles`` of every crystal of a Labels
  layer (shells or traverses), editable traverses, clicking a crystal to see its profile and
  its descriptors under the plot.
- **Drawn lines** (:mod:`._profiles_lines`): lines and paths of a Shapes layer over an image,
  followed live while they are drawn or moved.
- **Import** (:mod:`._profiles_import`): CSV/Excel through ``io.read_profiles``, kept in a
  per-viewer store that the Diffusion widget also offers.
- **Calibration** (:mod:`._profiles_calibration`): grey -> composition from reference spots.
"""

from __future__ import annotations

import pandas as pd
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QLabel, QSizePolicy, QTabWidget

from ._base import ZonationWidget, weak_method
from ._canvas import PlotCanvas
from ._colors import TAB10
from ._profiles_calibration import CalibrationTool
from ._profiles_crystals import CrystalsTool
from ._profiles_import import ImportTool
from ._profiles_lines import LinesTool
from ._tables import first_channel, profile_arrays, value_name

#: Delay (ms) that gathers a burst of layer edits into one re-profiling.
THROTTLE_MS = 150
RUN_TEXTS = ("Profile all crystals", "Profile drawn lines", "Import profiles")


class ProfilesWidget(CrystalsTool, LinesTool, ImportTool, CalibrationTool, ZonationWidget):
    """Dock widget: profiles of crystals, drawn lines and imported tables, with a plot."""

    title = "Profiles"

    def __init__(self, napari_viewer, parent=None) -> None:
        super().__init__(napari_viewer, parent)
        self.tabs = QTabWidget()
        self._layout.addWidget(self.tabs)
        self.tabs.addTab(self._crystals_tab(), "Crystals")
        self.tabs.addTab(self._lines_tab(), "Drawn lines")
        self.tabs.addTab(self._import_tab(), "Import")
        self.tabs.addTab(self._calibration_tab(), "Calibration")

        self._finish_layout(stretch=False)
        self.plot = PlotCanvas(self.viewer, height=2.8, min_height=170)
        self._layout.addWidget(self.plot, 1)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self._layout.addWidget(self.info)
        self.plot.message("Profiles appear here.\nClick a profiled crystal to see its own.")

        self._timer = self._throttle(self._refresh_shapes)
        self._trav_timer = self._throttle(self._refresh_traverses)
        self._watched_shapes = None
        self._shapes_cache_key = None
        self._clickable: set[int] = set()
        self._click_cb = weak_method(self._on_click)

        self.tabs.currentChanged.connect(self._on_tab)
        self.labels_combo.changed.connect(self._on_labels_changed)
        self.shapes_combo.changed.connect(self._watch_shapes)
        self.line_image_combo.changed.connect(lambda _=None: self._schedule_shapes())
        self.also_images.changed.connect(lambda _=None: self._schedule_shapes())
        self.line_width.valueChanged.connect(lambda _=None: self._schedule_shapes())
        self.cal_image_combo.changed.connect(lambda _=None: self._on_cal_image())
        self.spot_um.valueChanged.connect(lambda _=None: self._on_spot_size())
        self.viewer.layers.events.inserted.connect(self._on_inserted)
        self._on_tab(0)
        self._on_labels_changed(self.labels_combo.value)
        self._watch_shapes(self.shapes_combo.value)
        for lay in self.viewer.layers:
            self._make_clickable(lay)

    def _throttle(self, slot) -> QTimer:
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.setInterval(THROTTLE_MS)
        timer.timeout.connect(slot)
        return timer

    # ------------------------------------------------------------------ UI plumbing
    def _on_tab(self, index: int) -> None:
        # the tab widget takes the height of the current page only
        for i in range(self.tabs.count()):
            policy = QSizePolicy.Policy.Preferred if i == index else QSizePolicy.Policy.Ignored
            self.tabs.widget(i).setSizePolicy(QSizePolicy.Policy.Preferred, policy)
        self.tabs.adjustSize()
        calibrating = index == 3
        self.run_button.setVisible(not calibrating)
        self.cancel_button.setVisible(not calibrating)
        if calibrating:
            layer = self.spots_layer(create=False)
            if layer is not None:
                self._watch_spots(layer)
            return
        self.run_button.setText(RUN_TEXTS[index])

    def _on_inserted(self, event) -> None:
        self._make_clickable(event.value)

    # ------------------------------------------------------------------ run (by tab)
    def _collect(self) -> dict:
        mode = self.tabs.currentIndex()
        if mode == 0:
            return self._collect_crystals()
        if mode == 1:
            return self._collect_lines()
        return self._collect_import()

    def _steps(self, params: dict) -> int:
        return 2

    def _work(self, p: dict):
        if p["mode"] == "crystals":
            return (yield from self._work_crystals(p))
        if p["mode"] == "import":
            return (yield from self._work_import(p))
        yield "Profiling drawn lines…"
        yield "Done."
        return None  # drawn lines are profiled in the main thread (they are small)

    def _apply(self, p: dict, r) -> None:
        if p["mode"] == "crystals":
            self._apply_crystals(p, r)
        elif p["mode"] == "import":
            self._apply_import(p, r)
        else:
            self.update_shapes(p["shapes"], p["image_layer"], p["width_um"], force=True)

    # ------------------------------------------------------------------ shared plot
    def plot_table(self, prof: pd.DataFrame, title: str) -> None:
        """One curve per profile of a long table (imported or calibrated profiles)."""
        ax = self.plot.axes(1)[0]
        labs = list(dict.fromkeys(first_channel(prof)["label"]))
        for i, lab in enumerate(labs[:40]):
            d, v = profile_arrays(prof, lab)
            ax.plot(d, v, lw=1.2, color=TAB10[i % 10], label=str(lab))
        ax.set_xlabel("distance (µm)")
        ax.set_ylabel(self._value_name(prof))
        ax.set_title(title)
        if len(labs) <= 10:
            self.plot.legend(ax)
        self.plot.draw()

    @staticmethod
    def _value_name(prof: pd.DataFrame) -> str:
        if "quantity" in prof.columns and len(prof):
            return str(prof["quantity"].iloc[0])
        return value_name(prof)
