"""Profiles: core-to-rim profiles of all crystals, profiles of drawn lines, imported CSV.

Three sources, one docked plot:

- **Crystals**: ``rim_profiles`` of every crystal of a Labels layer (shells or traverses); the
  long table goes to the Labels layer's ``metadata["napari_zonation"]["profiles"]``. With
  traverses, a plugin-owned Shapes layer ``<image> traverses`` shows them (rim -> core);
  moving a traverse's vertex re-profiles that crystal.
- **Drawn lines**: lines and paths of a Shapes layer over an image; one row per shape in the
  Shapes layer's ``features`` (label, length_um, start/end/min/max/mean value), the long table
  in its metadata. The plot follows the shapes live while they are drawn or moved.
- **Import**: CSV/Excel through ``io.read_profiles``; kept in a per-viewer store that the
  Diffusion widget also offers.
- **Calibration**: reference spots in a plugin-owned Points layer ``<image> calibration spots``
  whose ``features["composition"]`` the user types in a table; the grey at each spot is the
  image's median in a disk of the spot's size (``profiles.spot_values``). "Fit" stores
  ``Calibration.as_dict()`` in the image layer's ``metadata["napari_zonation"]["calibration"]``
  and plots grey against composition; "Apply to profiles" stores calibrated copies of the
  profiles made from that image under ``metadata["napari_zonation"]["profiles_calibrated"]``
  (the grey profiles are kept).

Clicking a crystal of a profiled Labels layer (pan/zoom mode) shows its profile and its
descriptors under the plot.
"""

from __future__ import annotations

import warnings
import weakref
from pathlib import Path

import numpy as np
import pandas as pd
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QWidget,
)

from .. import io as zio
from .. import profiles as zprof
from .._validation import ZonationInputError
from ._base import ZonationWidget, weak_method
from ._canvas import PlotCanvas
from ._colors import TAB10, label_color, to_hex
from ._coords import shape_to_image_px
from ._forms import layer_combo
from ._layers import (
    find_layer,
    find_owned,
    layer_image,
    layer_uid,
    pixel_size_of,
    same,
    source_image,
    unwrap,
    upsert_layer,
    writable_crystals,
    zmeta,
)
from ._profile_store import profile_store
from ._tables import concat, first_channel, profile_arrays, profiles_of, table_of, value_name

LINE_TYPES = ("line", "path")
DEFAULT_EDGE = np.array([0x77, 0x77, 0x77, 0xFF]) / 255.0
SUMMARY_COLUMNS = [
    "label",
    "length_um",
    "start_value",
    "end_value",
    "min_value",
    "max_value",
    "mean_value",
]
THROTTLE_MS = 150
INFO_COLUMNS = (
    ("phase", "phase"),
    ("zoning_type", "zoning"),
    ("interpretation", "interpretation"),
    ("n_plateaus", "plateaus"),
    ("core_value", "core"),
    ("rim_value", "rim"),
    ("cluster", "cluster"),
    ("sqrt_dt_um", "√Dt (µm)"),
    ("timescale_days", "t (days)"),
    ("llm_zoning_type", "LLM"),
)


def _is_crystals(layer) -> bool:
    md = zmeta(layer, create=False)
    if md.get("ground_truth") is True:
        return False
    return not (md.get("owned") and md.get("role") not in (None, "crystals"))


def _image_pixel_size(image) -> tuple[float, str]:
    px, source = pixel_size_of(image)
    if px is None:
        return 1.0, "no pixel size on the image: distances are in pixels"
    return px, ""


def _sample_lines(shapes, image, idx: list, width_um: float, notes: list):
    """``line_profiles`` of the shapes ``idx`` over one image layer (its own pixels and
    pixel size); ``label`` = shape index + 1."""
    img = layer_image(image)
    if getattr(image, "rgb", False):
        img = img[..., :3].mean(axis=-1)
    px, note = _image_pixel_size(image)
    if note:
        notes.append(note)
    lines = [shape_to_image_px(shapes, image, shapes.data[i]) for i in idx]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prof = zprof.line_profiles(img, lines, px, width_um)
    notes += [str(w.message) for w in caught]
    prof["label"] = prof["label"].map(lambda k: idx[int(k) - 1] + 1)
    return prof, lines, px


def shapes_profiles(shapes, image, width_um: float, extra_images=()):
    """Profiles of the lines and paths of a Shapes layer over an image layer.

    ``extra_images``: other image layers (element maps, a second detector) sampled along
    the same shapes, each in its own pixels; the table's ``channel`` is then the layer's
    name (the main image's channels keep theirs when it is the only one).

    Returns ``(prof, summary, notes)``: the long table (``label`` = shape index + 1), one
    summary row per shape (NaN for shapes that are not lines or paths; values from the main
    image) and warnings.
    """
    notes: list[str] = []
    types = list(shapes.shape_type)
    idx = [i for i, t in enumerate(types) if t in LINE_TYPES]
    summary = pd.DataFrame(np.nan, index=range(len(types)), columns=SUMMARY_COLUMNS)
    summary["label"] = np.arange(1, len(types) + 1)
    if not idx:
        return pd.DataFrame(columns=["label", "distance_um", "value"]), summary, notes
    prof, lines, px = _sample_lines(shapes, image, idx, width_um, notes)
    extra = [lay for lay in extra_images if lay is not image]
    if extra:

        def named(table, layer):
            if "channel" in table and table["channel"].nunique() > 1:
                return table.assign(channel=layer.name + " " + table["channel"].astype(str))
            return table.assign(channel=layer.name)

        parts = [named(prof, image)]
        parts += [named(_sample_lines(shapes, lay, idx, width_um, notes)[0], lay) for lay in extra]
        attrs = dict(prof.attrs)
        prof = pd.concat(parts, ignore_index=True)
        prof.attrs = attrs  # the main image's failures (the others' are in the notes)
        prof = prof[[c for c in zprof.PROFILE_ORDER if c in prof.columns]]
    failures = prof.attrs.get("failures", ())
    if len(failures):
        prof.attrs["failures"] = tuple((idx[int(k) - 1] + 1, why) for k, why in failures)
    for i, verts in zip(idx, lines, strict=True):
        length = float(np.hypot(*np.diff(verts, axis=0).T).sum()) * px
        summary.loc[i, "length_um"] = length
        d, v = profile_arrays(prof, i + 1)
        if v.size:
            summary.loc[i, ["start_value", "end_value", "min_value", "max_value", "mean_value"]] = (
                v[0],
                v[-1],
                np.nanmin(v),
                np.nanmax(v),
                np.nanmean(v),
            )
    return prof, summary, notes


def _shapes_key(shapes, image, width, extra=()) -> tuple:
    return (
        id(unwrap(image)),
        tuple(id(unwrap(lay)) for lay in extra),
        width,
        tuple(shapes.shape_type),
        tuple(np.asarray(d, float).tobytes() for d in shapes.data),
        tuple(np.asarray(shapes.scale).tolist() + np.asarray(image.scale).tolist()),
        tuple(np.asarray(shapes.translate).tolist() + np.asarray(image.translate).tolist()),
    )


class ProfilesWidget(ZonationWidget):
    """Dock widget: profiles of crystals, drawn lines and imported tables, with a plot."""

    title = "Profiles"

    def __init__(self, napari_viewer, parent=None) -> None:
        super().__init__(napari_viewer, parent)
        from magicgui.widgets import Select
        from napari.layers import Image, Labels, Shapes

        self.tabs = QTabWidget()
        self._layout.addWidget(self.tabs)

        # --- crystals
        tab = QWidget()
        form = QFormLayout(tab)
        self.labels_combo = self._add_combo(
            layer_combo(self.viewer, (Labels,), "Crystals", _is_crystals), form
        )
        self.image_combo = self._add_combo(layer_combo(self.viewer, (Image,), "Image"), form)
        self.method = QComboBox()
        self.method.addItems(["shells", "traverse"])
        self.method.setToolTip(
            "shells: median grey at each distance from the rim (robust to cracks);\n"
            "traverse: one straight rim-to-core traverse per crystal, placed like an EPMA "
            "traverse (editable: move its ends in the '<image> traverses' layer)."
        )
        form.addRow("Method", self.method)
        self.width_um = QDoubleSpinBox()
        self.width_um.setRange(0.01, 1000)
        self.width_um.setValue(3.0)
        self.width_um.setSuffix(" µm")
        self.width_um.setToolTip("Band width averaged across a traverse or a drawn line.")
        form.addRow("Traverse width", self.width_um)
        self.contacts = QComboBox()
        self.contacts.addItems(["exclude", "rim"])
        self.contacts.setToolTip(
            "Shells: faces shared with another crystal.\n"
            "exclude: only free faces (against groundmass) are rims, and pixels nearer a "
            "grain contact than a free face are left out (unbiased when a neighbour covers "
            "part of a crystal's zoning);\n"
            "rim: every face is a rim (distance to the nearest other label)."
        )
        form.addRow("Grain contacts", self.contacts)
        self.tabs.addTab(tab, "Crystals")

        # --- drawn lines
        tab = QWidget()
        form = QFormLayout(tab)
        self.shapes_combo = self._add_combo(layer_combo(self.viewer, (Shapes,), "Shapes"), form)
        self.line_image_combo = self._add_combo(layer_combo(self.viewer, (Image,), "Image"), form)
        self.also_images = Select(
            label="Also sample",
            choices=lambda _w=None: [
                (lay.name, lay) for lay in self.viewer.layers if isinstance(lay, Image)
            ],
            allow_multiple=True,
        )
        self.also_images.native.setToolTip(
            "Other images (element maps, another detector) profiled along the same lines:\n"
            "one plot panel per image."
        )
        self.also_images.native.setMaximumHeight(70)
        self._add_combo(self.also_images, form)
        self.line_width = QDoubleSpinBox()
        self.line_width.setRange(0.01, 1000)
        self.line_width.setValue(3.0)
        self.line_width.setSuffix(" µm")
        form.addRow("Line width", self.line_width)
        self.live = QCheckBox("update while drawing")
        self.live.setChecked(True)
        self.recolor = QCheckBox("one colour per line")
        self.recolor.setChecked(True)
        self.recolor.setToolTip("Give new grey lines their own colour (as in the plot).")
        form.addRow("", self.live)
        form.addRow("", self.recolor)
        self.new_shapes_button = QPushButton("New line layer over the image")
        self.new_shapes_button.clicked.connect(self.new_shapes_layer)
        form.addRow("", self.new_shapes_button)
        self.tabs.addTab(tab, "Drawn lines")

        # --- import
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
        self.tabs.addTab(tab, "Import")

        # --- calibration
        tab = QWidget()
        form = QFormLayout(tab)
        self.cal_image_combo = self._add_combo(layer_combo(self.viewer, (Image,), "Image"), form)
        self.cal_name = QLineEdit("Fo (mol%)")
        self.cal_name.setToolTip("The calibrated quantity with its unit: Fo (mol%), An (mol%)…")
        form.addRow("Quantity", self.cal_name)
        self.spot_um = QDoubleSpinBox()
        self.spot_um.setRange(0.01, 1000)
        self.spot_um.setValue(3.0)
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

        self._finish_layout(stretch=False)
        self.plot = PlotCanvas(self.viewer, height=2.8, min_height=170)
        self._layout.addWidget(self.plot, 1)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self._layout.addWidget(self.info)
        self.plot.message("Profiles appear here.\nClick a profiled crystal to see its own.")

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(THROTTLE_MS)
        self._timer.timeout.connect(self._refresh_shapes)
        self._trav_timer = QTimer(self)
        self._trav_timer.setSingleShot(True)
        self._trav_timer.setInterval(THROTTLE_MS)
        self._trav_timer.timeout.connect(self._refresh_traverses)
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
        self.run_button.setText(
            ("Profile all crystals", "Profile drawn lines", "Import profiles")[index]
        )

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Import profiles", "", "Tables (*.csv *.tsv *.txt *.xlsx);;All files (*)"
        )
        if path:
            self.path_edit.setText(path)

    def _on_inserted(self, event) -> None:
        self._make_clickable(event.value)

    def _on_labels_changed(self, layer=None) -> None:
        layer = self.labels_combo.value if layer is None else layer
        if layer is not None:
            self._follow_source_image(layer)
            self._make_clickable(layer)

    def new_shapes_layer(self):
        """Add a Shapes layer over the chosen image, ready to draw lines."""
        image = self.line_image_combo.value or self.image_combo.value
        kwargs = {}
        if image is not None:
            kwargs = {"scale": image.scale[-2:], "translate": image.translate[-2:]}
            if getattr(image, "units", None) is not None:
                kwargs["units"] = tuple(image.units)[-2:]
        name = f"{image.name} lines" if image is not None else "lines"
        layer = self.viewer.add_shapes(
            name=name, ndim=2, edge_width=max(1.0, 1.5), edge_color="#777777", **kwargs
        )
        layer.mode = "add_line"
        self.shapes_combo.value = layer
        self.tabs.setCurrentIndex(1)
        return layer

    # ------------------------------------------------------------------ run
    def _collect(self) -> dict:
        mode = self.tabs.currentIndex()
        if mode == 0:
            labels, image = self.labels_combo.value, self.image_combo.value
            if labels is None:
                raise ZonationInputError(
                    "no crystals: run Segment crystals first, or open a Labels layer."
                )
            if image is None:
                raise ZonationInputError("no image layer to take the profiles from.")
            px, note = _image_pixel_size(image)
            px = zmeta(labels, create=False).get("pixel_size_um", px)
            return {
                "mode": "crystals",
                "labels_layer": labels,
                "image_layer": image,
                "labels": np.array(labels.data, copy=True),
                "image": layer_image(image),
                "pixel_size_um": float(px),
                "method": self.method.currentText(),
                "width_um": self.width_um.value(),
                "contacts": self.contacts.currentText(),
                "note": note,
            }
        if mode == 1:
            shapes, image = self.shapes_combo.value, self.line_image_combo.value
            if shapes is None:
                raise ZonationInputError(
                    "no Shapes layer: add one (button below) and draw lines over the image."
                )
            if image is None:
                raise ZonationInputError("no image layer under the lines.")
            return {
                "mode": "shapes",
                "shapes": shapes,
                "image_layer": image,
                "width_um": self.line_width.value(),
            }
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

    def _steps(self, params: dict) -> int:
        return 2

    def _work(self, p: dict):
        if p["mode"] == "crystals":
            yield f"Profiling crystals ({p['method']})…"
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = zprof.rim_profiles(
                    p["image"],
                    p["labels"],
                    p["pixel_size_um"],
                    method=p["method"],
                    width_um=p["width_um"],
                    return_traverses=p["method"] == "traverse",
                    contacts=p.get("contacts", "exclude"),
                )
            prof, trav = out if isinstance(out, tuple) else (out, None)
            yield "Done."
            return {"prof": prof, "traverses": trav, "warnings": [str(w.message) for w in caught]}
        if p["mode"] == "import":
            yield f"Reading {Path(p['path']).name}…"
            prof = zio.read_profiles(p["path"], **p["kwargs"])
            yield "Done."
            return {"prof": prof}
        yield "Profiling drawn lines…"
        yield "Done."
        return None  # drawn lines are profiled in the main thread (they are small)

    def _apply(self, p: dict, r) -> None:
        if p["mode"] == "crystals":
            self._apply_crystals(p, r)
        elif p["mode"] == "import":
            name = Path(p["path"]).stem
            profile_store.put(self.viewer, name, r["prof"])
            n = r["prof"]["label"].nunique()
            self.plot_table(r["prof"], f"{name}: {n} imported profile(s)")
            self.set_status(f"Imported {n} profile(s) as '{name}' (offered in Diffusion).")
        else:
            self.update_shapes(p["shapes"], p["image_layer"], p["width_um"], force=True)

    # ------------------------------------------------------------------ crystals
    def _apply_crystals(self, p: dict, r: dict) -> None:
        labels = writable_crystals(self.viewer, p["labels_layer"])
        p["labels_layer"] = labels
        image = p["image_layer"]
        prof, trav = r["prof"], r["traverses"]
        md = zmeta(labels)
        md["profiles"] = prof
        md["profile_options"] = {
            "method": p["method"],
            "width_um": p["width_um"],
            "contacts": p.get("contacts", "exclude"),
            "pixel_size_um": p["pixel_size_um"],
        }
        md.setdefault("pixel_size_um", p["pixel_size_um"])
        md.setdefault("image_layer", image.name)
        md.setdefault("image_layer_id", layer_uid(image))
        if trav is not None:
            md["traverses"] = trav
            self._show_traverses(labels, image, trav)
        self._make_clickable(labels)
        n_lab = len(np.unique(p["labels"][p["labels"] > 0]))
        n = prof["label"].nunique()
        fails = prof.attrs.get("failures", ())
        msg = f"{n} of {n_lab} crystals profiled ({p['method']})"
        if len(fails):
            msg += "; skipped: " + "; ".join(f"{a}: {b}" for a, b in fails[:3])
        if p.get("note"):
            msg += f" ({p['note']})"
        self.set_status(msg + ". Click a crystal to see its profile.")
        self.plot_crystals(labels)

    def _show_traverses(self, labels, image, trav: pd.DataFrame) -> None:
        lines = [
            np.array([[t.rim_row, t.rim_col], [t.core_row, t.core_col]], float)
            for t in trav.itertuples()
        ]
        lines = [
            np.asarray([labels.world_to_data(image.data_to_world(v)) for v in ln])[:, -2:]
            if labels.ndim == image.ndim
            else ln
            for ln in lines
        ]
        colors = []
        for lab in trav["label"]:
            c = label_color(labels, int(lab))
            colors.append(c if c is not None and c[3] > 0 else np.array([1, 1, 0, 1.0]))
        feats = trav[["label", "length_um", "status"]].reset_index(drop=True)
        layer = find_owned(self.viewer, "traverses", image)
        if layer is not None:
            layer.events.data.disconnect(self._on_traverses_event)
            layer.events.set_data.disconnect(self._on_traverses_event)
        layer = upsert_layer(
            self.viewer,
            "shapes",
            lines,
            role="traverses",
            source=image,
            name=f"{image.name} traverses",
            meta={"labels_layer": labels.name, "labels_layer_id": layer_uid(labels)},
            features=feats,
            shape_type="line",
            edge_color=np.asarray(colors) if colors else "yellow",
            edge_width=max(1.0, float(np.mean(labels.scale[-2:]))),
            scale=labels.scale[-2:],
            translate=labels.translate[-2:],
            units=tuple(labels.units)[-2:],
        )
        if len(colors):
            layer.edge_color = np.asarray(colors)
        layer.events.data.connect(self._on_traverses_event)
        layer.events.set_data.connect(self._on_traverses_event)
        self._traverses_layer = weakref.ref(unwrap(layer))

    def _on_traverses_event(self, event=None) -> None:
        if not self._trav_timer.isActive():
            self._trav_timer.start()

    def _refresh_traverses(self) -> None:
        ref = getattr(self, "_traverses_layer", None)
        layer = ref() if ref else None
        if layer is None or layer not in self.viewer.layers:
            return
        try:
            self.retraverse(layer)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self._on_error(exc)

    def retraverse(self, traverses) -> list[int]:
        """Re-profile the crystals whose traverse (a line of ``traverses``) was edited."""
        md = zmeta(traverses, create=False)
        labels = find_layer(self.viewer, md.get("labels_layer"), md.get("labels_layer_id"))
        image = source_image(self.viewer, traverses)
        if labels is None or image is None:
            return []
        lmd = zmeta(labels)
        trav, prof = lmd.get("traverses"), profiles_of(labels)
        if trav is None or prof is None:
            return []
        feats = traverses.features
        if "label" not in feats.columns or len(feats) != len(traverses.data):
            return []
        new_rows, changed = [], []
        for i, verts in enumerate(traverses.data):
            lab = feats["label"].iloc[i]
            if pd.isna(lab):
                continue
            lab = int(lab)
            rc = shape_to_image_px(traverses, image, verts)
            rim, core = rc[0], rc[-1]
            old = trav[trav["label"] == lab]
            row = {
                "label": lab,
                "rim_row": rim[0],
                "rim_col": rim[1],
                "core_row": core[0],
                "core_col": core[1],
                "length_um": float(np.hypot(*(core - rim))) * lmd.get("pixel_size_um", 1.0),
                "face_length_um": np.nan,
                "angle_deg": np.nan,
                "status": "edited",
            }
            if len(old):
                o = old.iloc[0]
                same = np.allclose(
                    [o.rim_row, o.rim_col, o.core_row, o.core_col], [*rim, *core], atol=1e-6
                )
                if same:
                    new_rows.append(o.to_dict())
                    continue
            new_rows.append(row)
            changed.append(lab)
        kept = {r["label"] for r in new_rows}
        removed = [int(x) for x in trav["label"] if int(x) not in kept]
        if not changed and not removed:
            return []
        new_trav = pd.DataFrame(new_rows, columns=trav.columns)
        opts = lmd.get("profile_options", {})
        px = float(opts.get("pixel_size_um", lmd.get("pixel_size_um", 1.0)))
        keep = prof[~prof["label"].isin(changed + removed)]
        parts = [keep]
        if changed:
            sub = new_trav[new_trav["label"].isin(changed)]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                parts.append(
                    zprof.traverse_profiles(
                        layer_image(image), sub, px, width_um=float(opts.get("width_um", 3.0))
                    )
                )
        new_prof = concat(parts)
        lmd["traverses"] = new_trav
        lmd["profiles"] = new_prof
        self.set_status(
            f"Re-profiled crystal(s) {', '.join(map(str, changed)) or '-'}"
            + (f"; dropped {', '.join(map(str, removed))}" if removed else "")
            + "."
        )
        if changed:
            self.show_crystal(labels, changed[-1])
        return changed

    # ------------------------------------------------------------------ drawn lines
    def _watch_shapes(self, layer=None) -> None:
        old = self._watched_shapes() if self._watched_shapes else None
        if old is not None and not same(old, layer):
            for em in (old.events.data, old.events.set_data):
                em.disconnect(self._on_shapes_event)
        self._watched_shapes = None
        self._shapes_cache_key = None
        if layer is None:
            return
        if zmeta(layer, create=False).get("role") == "traverses":
            return  # traverses are watched by their own handler
        layer.events.data.connect(self._on_shapes_event)
        layer.events.set_data.connect(self._on_shapes_event)
        self._watched_shapes = weakref.ref(unwrap(layer))
        self._schedule_shapes()

    def _on_shapes_event(self, event=None) -> None:
        if self.live.isChecked():
            self._schedule_shapes()

    def _schedule_shapes(self) -> None:
        if not self._timer.isActive():
            self._timer.start()

    def _refresh_shapes(self) -> None:
        shapes = self._watched_shapes() if self._watched_shapes else None
        image = self.line_image_combo.value
        if shapes is None or image is None or shapes not in self.viewer.layers:
            return
        try:
            self.update_shapes(shapes, image, self.line_width.value())
        except ZonationInputError as exc:
            self.set_status(str(exc), error=True)
        except Exception as exc:  # noqa: BLE001 - never break drawing
            self._on_error(exc)

    def _auto_colors(self, shapes) -> None:
        if not self.recolor.isChecked() or not len(shapes.data):
            return
        colors = np.array(shapes.edge_color, dtype=float, copy=True)
        changed = False
        for i, t in enumerate(shapes.shape_type):
            if t in LINE_TYPES and np.allclose(colors[i], DEFAULT_EDGE, atol=1e-3):
                colors[i] = (
                    np.array([int(TAB10[i % 10][k : k + 2], 16) for k in (1, 3, 5)] + [255]) / 255.0
                )
                changed = True
        if changed:
            shapes.edge_color = colors

    def update_shapes(self, shapes, image, width_um: float, force: bool = False):
        """Profile the lines and paths of ``shapes`` over ``image``; store and plot them.

        The summary goes to ``shapes.features`` (other feature columns are kept), the long
        table to ``shapes.metadata["napari_zonation"]["profiles"]``. Returns the long table.
        """
        extra = [lay for lay in (self.also_images.value or []) if lay in self.viewer.layers]
        key = _shapes_key(shapes, image, width_um, extra)
        if not force and key == self._shapes_cache_key:
            return profiles_of(shapes)
        self._auto_colors(shapes)
        prof, summary, notes = shapes_profiles(shapes, image, width_um, extra)
        self._shapes_cache_key = key
        md = zmeta(shapes)
        md["profiles"] = prof
        md["image_layer"] = image.name
        md["image_layer_id"] = layer_uid(image)
        md["pixel_size_um"] = _image_pixel_size(image)[0]
        md["width_um"] = width_um
        old = table_of(shapes)
        if len(old) == len(summary):
            other = old.drop(columns=[c for c in SUMMARY_COLUMNS if c in old.columns])
            summary = pd.concat([other.reset_index(drop=True), summary], axis=1)
        if len(summary) == len(shapes.data):
            shapes.features = summary
        self.plot_shapes(shapes, prof)
        n = prof["label"].nunique() if len(prof) else 0
        msg = f"{n} line profile(s) from '{shapes.name}' over '{image.name}'"
        if extra:
            msg += " and " + ", ".join(f"'{lay.name}'" for lay in extra)
        self.set_status(msg + (": " + "; ".join(notes[:2]) if notes else "."), error=False)
        return prof

    # ------------------------------------------------------------------ plots
    def plot_shapes(self, shapes, prof: pd.DataFrame) -> None:
        """One curve per shape in the shape's edge colour; one panel per channel (image)."""
        channels = (
            list(dict.fromkeys(prof["channel"]))
            if len(prof) and "channel" in prof.columns
            else [None]
        )
        axes = self.plot.axes(len(channels))
        colors = np.asarray(shapes.edge_color, float)
        for ax, ch in zip(axes, channels, strict=True):
            sub = prof if ch is None else prof[prof["channel"] == ch]
            for lab in sorted(sub["label"].unique()) if len(sub) else []:
                d, v = profile_arrays(sub, lab)
                i = int(lab) - 1
                c = colors[i] if i < len(colors) else None
                ax.plot(
                    d,
                    v,
                    color=to_hex(c) if c is not None else None,
                    lw=1.4,
                    label=f"shape {int(lab)}",
                )
            ax.set_ylabel(self._value_name(sub) if ch is None or len(channels) == 1 else str(ch))
        ax = axes[0]
        axes[-1].set_xlabel("distance along the line (µm)")
        ax.set_title(f"{shapes.name}")
        if len(prof) and prof["label"].nunique() <= 10:
            self.plot.legend(ax)
        if not len(prof):
            ax.text(
                0.5,
                0.5,
                "draw a line or path over the image",
                ha="center",
                transform=ax.transAxes,
                color=self.plot.colors["fg"],
                fontsize=8,
            )
        self.plot.draw()

    def plot_crystals(self, labels, highlight: int | None = None, max_lines: int = 80) -> None:
        prof = profiles_of(labels)
        if prof is None or not len(prof):
            self.plot.message("No profiles yet: run 'Profile all crystals'.")
            return
        ax = self.plot.axes(1)[0]
        labs = sorted(first_channel(prof)["label"].unique())
        for lab in labs[:max_lines]:
            if lab == highlight:
                continue
            d, v = profile_arrays(prof, lab)
            c = label_color(labels, int(lab))
            ax.plot(
                d,
                v,
                lw=0.8,
                alpha=0.55 if highlight is None else 0.2,
                color=to_hex(c) if c is not None and c[3] > 0 else "#999999",
            )
        if highlight is not None:
            sub = first_channel(prof)
            sub = sub[sub["label"] == highlight].sort_values("distance_um")
            c = label_color(labels, int(highlight))
            col = to_hex(c) if c is not None and c[3] > 0 else "#ffcc00"
            if "sigma" in sub and sub["sigma"].notna().any():
                ax.fill_between(
                    sub["distance_um"],
                    sub["value"] - sub["sigma"],
                    sub["value"] + sub["sigma"],
                    color=col,
                    alpha=0.3,
                    lw=0,
                )
            ax.plot(
                sub["distance_um"], sub["value"], color=col, lw=2.2, label=f"crystal {highlight}"
            )
            self.plot.legend(ax)
        ax.set_xlabel("distance from rim (µm)")
        ax.set_ylabel(self._value_name(prof))
        ax.set_title(
            f"crystal {highlight} of {len(labs)}"
            if highlight is not None
            else f"{len(labs)} crystal profiles"
        )
        self.plot.draw()

    def plot_table(self, prof: pd.DataFrame, title: str) -> None:
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

    # ------------------------------------------------------------------ clicking a crystal
    def _make_clickable(self, layer) -> None:
        from napari.layers import Labels

        if not isinstance(layer, Labels) or not _is_crystals(layer):
            return
        if id(unwrap(layer)) in self._clickable:
            return
        self._clickable.add(id(unwrap(layer)))
        layer.mouse_drag_callbacks.append(self._click_cb)

    def _on_click(self, layer, event) -> None:
        if event.type != "mouse_press" or layer.mode != "pan_zoom":
            return
        if profiles_of(layer) is None:
            return
        try:
            value = layer.get_value(
                event.position,
                view_direction=event.view_direction,
                dims_displayed=event.dims_displayed,
                world=True,
            )
        except Exception:  # noqa: BLE001 - a click outside the data
            return
        if value is None or int(value) <= 0:
            return
        self.show_crystal(layer, int(value))

    def show_crystal(self, labels, label: int) -> None:
        """Plot one crystal's profile over the others and list its descriptors."""
        self.plot_crystals(labels, highlight=int(label))
        table = table_of(labels)
        parts = [f"<b>crystal {label}</b>"]
        if "label" in table.columns:
            row = table[table["label"] == label]
            if len(row):
                row = row.iloc[0]
                for col, name in INFO_COLUMNS:
                    if col in row.index and not (np.isscalar(row[col]) and pd.isna(row[col])):
                        val = row[col]
                        if isinstance(val, float | np.floating):
                            val = f"{val:.3g}"
                        parts.append(f"{name}: {val}")
        self.info.setText(" · ".join(parts))

    # ------------------------------------------------------------------ calibration
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
        layer = None if image is None else find_owned(self.viewer, "calibration_spots", image)
        self._watch_spots(layer)

    def spots_layer(self, create: bool = True):
        """The plugin's Points layer of reference spots over the chosen image (made on demand).

        Its ``features["composition"]`` holds the analysed composition of each spot.
        """
        image = self.cal_image_combo.value if not create else self._cal_image()
        if image is None:
            return None
        layer = find_owned(self.viewer, "calibration_spots", image)
        if layer is None and create:
            px = _image_pixel_size(image)[0]
            layer = upsert_layer(
                self.viewer,
                "points",
                np.zeros((0, 2)),
                role="calibration_spots",
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
            size = self.spot_um.value() / _image_pixel_size(image)[0]
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
        px = _image_pixel_size(image)[0]
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
        md["calibration"] = cal.as_dict()
        md["calibration_spots"] = ok.reset_index(drop=True)
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
        stored = zmeta(image, create=False).get("calibration")
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
            if not (md.get("image_layer_id") == uid or md.get("image_layer") == image.name):
                continue
            md["profiles_calibrated"] = zprof.apply_calibration(prof, cal)
            md["calibration"] = dict(stored)
            done.append(layer)
        if not done:
            raise ZonationInputError(
                f"no profiles from '{image.name}' yet: profile the crystals (Crystals tab) or "
                "draw lines (Drawn lines tab) first."
            )
        first = zmeta(done[0])["profiles_calibrated"]
        self.plot_table(first, f"{done[0].name}: profiles in {cal.name}")
        self.set_status(
            f"Profiles of {', '.join(lay.name for lay in done)} converted to {cal.name} "
            "(stored as 'profiles_calibrated'; the grey profiles are kept)."
        )
        return done
