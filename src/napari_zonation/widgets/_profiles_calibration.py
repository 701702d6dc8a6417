"""Profiles dock, Calibration tab: grey -> composition from reference spots.

Reference spots live in a plugin-owned Points layer ``<image> calibration spots`` whose
``features["composition"]`` the user types in a table; the grey at each spot is the image's
median in a disk of the spot's size (``profiles.spot_values``). "Fit" stores
``Calibration.as_dict()`` in the image layer's ``metadata["napari_zonation"]["calibration"]`` and
plots grey against composition; "Apply to profiles" stores calibrated copies of the profiles made
from that image under ``metadata["napari_zonation"]["profiles_calibrated"]`` (the grey profiles
are kept).
"""

from __future__ import annotations

import weakref

import numpy as np
import pandas as pd
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from .. import profiles as zprof
from .._validation import ZonationInputError
from ._colors import TAB10
from ._coords import shape_to_image_px
from ._forms import core_default, layer_combo
from ._layers import (
    KEY,
    ROLE,
    find_owned,
    image_pixel_size,
    layer_image,
    layer_uid,
    same,
    unwrap,
    upsert_layer,
    zmeta,
)
from ._tables import profiles_of


class CalibrationTool:
    """The Calibration tab of :class:`~.profiles_widget.ProfilesWidget` (a mixin of the dock)."""

    def _calibration_tab(self) -> QWidget:
        from napari.layers import Image

        tab = QWidget()
        form = QFormLayout(tab)
        self.cal_image_combo = self._add_combo(layer_combo(self.viewer, (Image,), "Image"), form)
        self.cal_name = QLineEdit("Fo (mol%)")
        self.cal_name.setToolTip("The calibrated quantity with its unit: Fo (mol%), An (mol%)…")
        form.addRow("Quantity", self.cal_name)
        self.spot_um = QDoubleSpinBox()
        self.spot_um.setRange(0.01, 1000)
        # the spot diameter: twice the radius of the disk the core takes the median in
        self.spot_um.setValue(2 * core_default(zprof.spot_values, "radius_um"))
        self.spot_um.setSuffix(" µm")
        self.spot_um.setToolTip(
            "Diameter of the analysed spot: the grey of a spot is the image's median in it."
        )
        form.addRow("Spot size", self.spot_um)
        self.spots_button = QPushButton("Add spots layer (click the analysed spots)")
        self.spots_button.clicked.connect(lambda: self._guarded(self.spots_layer))
        form.addRow("", self.spots_button)
        self.spots_table = QTableWidget(0, 2)
        self.spots_table.setHorizontalHeaderLabels(["grey", "composition"])
        self.spots_table.setMaximumHeight(130)
        self.spots_table.setToolTip("Type each spot's analysed composition (e.g. by EPMA).")
        self.spots_table.cellChanged.connect(self._on_spot_cell)
        form.addRow(self.spots_table)
        self.fit_button = QPushButton("Fit")
        self.fit_button.clicked.connect(lambda: self._guarded(self.fit_calibration))
        self.apply_cal_button = QPushButton("Apply to profiles")
        self.apply_cal_button.clicked.connect(
            lambda: self._guarded(self.apply_calibration_to_profiles)
        )
        row = QWidget()
        hl = QHBoxLayout(row)
        hl.setContentsMargins(0, 0, 0, 0)
        hl.addWidget(self.fit_button)
        hl.addWidget(self.apply_cal_button)
        form.addRow("", row)
        self.cal_result = QLabel("")
        self.cal_result.setWordWrap(True)
        form.addRow(self.cal_result)
        self.tabs.addTab(tab, "Calibration")
        self._filling_table = False
        self._watched_spots = None
        return tab

    def _guarded(self, fn):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self._on_error(exc)
            return None

    def _cal_image(self):
        image = self.cal_image_combo.value
        if image is None:
            raise ZonationInputError("choose the image layer the reference spots were analysed on.")
        return image

    def _on_cal_image(self) -> None:
        image = self.cal_image_combo.value
        layer = None if image is None else find_owned(self.viewer, ROLE.calibration_spots, image)
        self._watch_spots(layer)

    def spots_layer(self, create: bool = True):
        """The plugin's Points layer of reference spots over the chosen image (made on demand).

        Its ``features["composition"]`` holds the analysed composition of each spot.
        """
        image = self.cal_image_combo.value if not create else self._cal_image()
        if image is None:
            return None
        layer = find_owned(self.viewer, ROLE.calibration_spots, image)
        if layer is None and create:
            px = image_pixel_size(image)[0]
            layer = upsert_layer(
                self.viewer,
                "points",
                np.zeros((0, 2)),
                role=ROLE.calibration_spots,
                source=image,
                name=f"{image.name} calibration spots",
                features=pd.DataFrame({"composition": pd.Series([], dtype=float)}),
                scale=image.scale[-2:],
                translate=image.translate[-2:],
                size=self.spot_um.value() / px,
                face_color="transparent",
                border_color="#ffcc00",
                border_width=0.15,
            )
            layer.feature_defaults = {"composition": np.nan}
            layer.mode = "add"
            self.viewer.layers.selection.active = layer
        if layer is not None:
            self._watch_spots(layer)
        return layer

    def _on_spot_size(self) -> None:
        layer = self._watched_spots() if self._watched_spots else None
        image = self.cal_image_combo.value
        if layer is not None and image is not None and layer in self.viewer.layers:
            size = self.spot_um.value() / image_pixel_size(image)[0]
            if len(layer.data):
                layer.size = np.full(len(layer.data), size)
            layer.current_size = size
        self.refresh_spots_table()

    def _watch_spots(self, layer) -> None:
        old = self._watched_spots() if self._watched_spots else None
        if old is not None and not same(old, layer):
            old.events.data.disconnect(self._on_spots_event)
            old.events.features.disconnect(self._on_spots_event)
        if layer is None:
            self._watched_spots = None
            self.refresh_spots_table()
            return
        if old is None or not same(old, layer):
            layer.events.data.connect(self._on_spots_event)
            layer.events.features.connect(self._on_spots_event)
            self._watched_spots = weakref.ref(unwrap(layer))
        self.refresh_spots_table()

    def _on_spots_event(self, event=None) -> None:
        try:
            self.refresh_spots_table()
        except Exception as exc:  # noqa: BLE001 - never break clicking spots
            self._on_error(exc)

    def spot_table(self) -> pd.DataFrame:
        """``row, col`` (image pixels), ``grey`` and ``composition`` of every spot."""
        layer = self._watched_spots() if self._watched_spots else None
        image = self.cal_image_combo.value
        cols = ["row", "col", "grey", "composition"]
        if layer is None or image is None or layer not in self.viewer.layers:
            return pd.DataFrame(columns=cols)
        data = np.asarray(layer.data, dtype=float)
        if not len(data):
            return pd.DataFrame(columns=cols)
        rc = shape_to_image_px(layer, image, data)
        img = layer_image(image)
        if getattr(image, "rgb", False):
            img = img[..., :3].mean(axis=-1)
        px = image_pixel_size(image)[0]
        grey = zprof.spot_values(img, rc, px, self.spot_um.value() / 2)
        comp = np.full(len(data), np.nan)
        if "composition" in layer.features.columns and len(layer.features) == len(data):
            comp = pd.to_numeric(layer.features["composition"], errors="coerce").to_numpy(float)
        return pd.DataFrame({"row": rc[:, 0], "col": rc[:, 1], "grey": grey, "composition": comp})

    def refresh_spots_table(self) -> None:
        table = self.spot_table()
        self._filling_table = True
        try:
            self.spots_table.setRowCount(len(table))
            for i, row in enumerate(table.itertuples()):
                grey = QTableWidgetItem("" if np.isnan(row.grey) else f"{row.grey:.1f}")
                grey.setFlags(grey.flags() & ~Qt.ItemFlag.ItemIsEditable)
                comp = QTableWidgetItem("" if np.isnan(row.composition) else f"{row.composition:g}")
                self.spots_table.setItem(i, 0, grey)
                self.spots_table.setItem(i, 1, comp)
        finally:
            self._filling_table = False

    def _on_spot_cell(self, row: int, column: int) -> None:
        if self._filling_table or column != 1:
            return
        item = self.spots_table.item(row, column)
        text = item.text().strip() if item is not None else ""
        try:
            value = float(text.replace(",", ".")) if text else np.nan
        except ValueError:
            self.set_status(f"spot {row + 1}: '{text}' is not a number.", error=True)
            return
        self.set_spot_composition(row, value)

    def set_spot_composition(self, index: int, value: float) -> None:
        """Set the analysed composition of spot ``index`` (a row of the spots layer)."""
        layer = self._watched_spots() if self._watched_spots else None
        if layer is None:
            raise ZonationInputError("add the calibration spots layer first.")
        feats = layer.features.copy()
        if "composition" not in feats.columns:
            feats["composition"] = np.nan
        feats["composition"] = pd.to_numeric(feats["composition"], errors="coerce").astype(float)
        feats.loc[feats.index[index], "composition"] = float(value)
        layer.features = feats

    def fit_calibration(self):
        """Fit grey -> composition on the spots; store, report and plot it."""
        image = self._cal_image()
        table = self.spot_table()
        ok = table.dropna(subset=["grey", "composition"]) if len(table) else table
        if len(ok) < 2:
            raise ZonationInputError(
                "calibration needs at least two spots with a composition: click the analysed "
                "spots in the spots layer, then type each one's composition in the table."
            )
        name = self.cal_name.text().strip() or "composition"
        cal = zprof.calibrate(ok["grey"], ok["composition"], name=name)
        md = zmeta(image)
        md[KEY.calibration] = cal.as_dict()
        md[KEY.calibration_spots] = ok.reset_index(drop=True)
        r2 = "n/a (two spots)" if np.isnan(cal.r2) else f"{cal.r2:.4f}"
        res = ", ".join(f"{r:+.2g}" for r in cal.residuals)
        self.cal_result.setText(
            f"{name} = {cal.slope:.5g} × grey + {cal.intercept:.5g}\nR² = {r2}; residuals: {res}"
        )
        ax = self.plot.axes(1)[0]
        g = ok["grey"].to_numpy(float)
        ax.plot(g, ok["composition"], "o", color="#ffcc00", label="spots")
        xs = np.linspace(g.min(), g.max(), 2)
        ax.plot(xs, cal(xs), "-", color=TAB10[0], lw=1.5, label="fit")
        ax.set_xlabel("grey (median in the spot)")
        ax.set_ylabel(name)
        ax.set_title(f"calibration on '{image.name}' ({len(ok)} spots)")
        self.plot.legend(ax)
        self.plot.draw()
        self.set_status(f"Calibration fitted on {len(ok)} spots; stored on '{image.name}'.")
        return cal

    def apply_calibration_to_profiles(self) -> list:
        """Calibrated copies of the profiles made from the image (``profiles_calibrated``).

        Returns the layers whose profiles were converted.
        """
        image = self._cal_image()
        stored = zmeta(image, create=False).get(KEY.calibration)
        if not stored:
            raise ZonationInputError("no calibration on this image yet: press Fit first.")
        cal = zprof.Calibration.from_dict(stored)
        uid = layer_uid(image)
        done = []
        for layer in self.viewer.layers:
            md = zmeta(layer, create=False)
            prof = profiles_of(layer)
            if prof is None or not len(prof):
                continue
            if not (md.get(KEY.image_layer_id) == uid or md.get(KEY.image_layer) == image.name):
                continue
            md[KEY.profiles_calibrated] = zprof.apply_calibration(prof, cal)
            md[KEY.calibration] = dict(stored)
            done.append(layer)
        if not done:
            raise ZonationInputError(
                f"no profiles from '{image.name}' yet: profile the crystals (Crystals tab) or "
                "draw lines (Drawn lines tab) first."
            )
        first = zmeta(done[0])[KEY.profiles_calibrated]
        self.plot_table(first, f"{done[0].name}: profiles in {cal.name}")
        self.set_status(
            f"Profiles of {', '.join(lay.name for lay in done)} converted to {cal.name} "
            "(stored as 'profiles_calibrated'; the grey profiles are kept)."
        )
        return done
