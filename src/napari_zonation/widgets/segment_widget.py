"""Segment crystals: image -> ``<image> crystals`` Labels (features = crystal table) + QA layers.

QA layers (outlines, phases, rim band, flagged crystals): :mod:`._segment_qa`.

One-shot reference: "Use shape as reference" takes the last polygon of the chosen Shapes
layer, "Use crystal as reference" the selected label of the plugin's crystals layer (a crystal
the user corrected), as one crystal outlined rim included, and segments the image again with
``segment_crystals(..., reference=...)``; on a bad reference the error is shown and the
previous labels stay.

Correct (issue 3): paint strokes on a plugin-owned ``<image> scribbles`` Labels layer and
train a pixel classifier on them (:func:`napari_zonation.scribble.train_scribbles`, in the
thread worker; the result replaces the plugin's ``<image> crystals`` layer, never a user's);
merge, delete or split crystals of the plugin's crystals layer
(:mod:`napari_zonation.edit`). Edits write only the changed pixels through
``Labels.data_setitem``, so napari's undo (Ctrl+Z on the layer, ``layer.undo()``) restores
them; after each edit, and after napari's undo/redo or a brush/fill/eraser stroke on the
crystals layer, the crystal table (features) and the QA layers are recomputed.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
)

from .. import edit, scribble, segment
from .._validation import ZonationInputError, check_pixel_size
from . import _mosaic_run
from ._base import Progress, ZonationWidget
from ._canvas import Section
from ._colors import TRANSPARENT, legend_html
from ._coords import shape_to_image_px
from ._forms import layer_combo, spin_box
from ._layers import (
    KEY,
    ROLE,
    find_owned,
    layer_image,
    pixel_size_of,
    source_image,
    unwrap,
    upsert_layer,
    zmeta,
)
from ._segment_qa import SegmentQA, flag_summary
from ._tables import with_index

#: Stroke classes of a scribble layer: (value, name, colour).
SCRIBBLE_LEGEND = (
    (1, "groundmass", (0.3, 0.8, 0.3, 1.0)),
    (2, "vesicle / epoxy", (0.3, 0.5, 1.0, 1.0)),
    (3, "crystal (phase A, e.g. olivine)", (1.0, 0.3, 0.3, 1.0)),
    (4, "crystal (phase B, e.g. plagioclase)", (1.0, 0.8, 0.2, 1.0)),
    (5, "crystal (phase C, e.g. cpx)", (0.9, 0.4, 1.0, 1.0)),
)


def parse_ids(text: str) -> list[int]:
    """Label ids typed as ``"3, 7 12"`` -> ``[3, 7, 12]``."""
    parts = [p for p in text.replace(",", " ").replace(";", " ").split() if p]
    try:
        return [int(p) for p in parts]
    except ValueError as exc:
        raise ZonationInputError(
            f"'{text}' is not a list of crystal ids; type whole numbers like '3, 7'."
        ) from exc


_spin = spin_box


class SegmentWidget(SegmentQA, ZonationWidget):
    """Dock widget: segment the crystals of a BSE image into a Labels layer."""

    title = "Segment crystals"
    run_text = "Segment crystals"

    def __init__(self, napari_viewer, parent=None) -> None:
        super().__init__(napari_viewer, parent)
        from napari.layers import Image

        self._editing = False

        self.image_combo = self._add_combo(layer_combo(self.viewer, (Image,), "Image"))
        self.pixel_size = _spin(1.0, 1e-4, 1e4, 0.1, decimals=4, suffix=" µm/px")
        self.pixel_size.setToolTip(
            "Micrometres per pixel. Read from the image layer's scale or metadata; edit it when "
            "the SEM file carried none. The image layer's scale is set to it on Run."
        )
        self.pixel_source = QLabel("")
        self.pixel_source.setWordWrap(True)
        self.pixel_source.setStyleSheet("font-size: 8pt;")
        self._form.addRow("Pixel size", self.pixel_size)
        self._form.addRow(self.pixel_source)
        self.min_area = _spin(400.0, 0.0, 1e8, 50.0, decimals=1, suffix=" µm²")
        self.min_area.setToolTip("Smallest crystal kept (smaller ones are groundmass).")
        self._form.addRow("Min. area", self.min_area)
        self.advanced = Section("Advanced settings")
        self._form.addRow(self.advanced)
        adv = self.advanced.form
        self.smooth = _spin(1.5, 0.0, 1e3, 0.5, suffix=" µm")
        self.smooth.setToolTip("Gaussian smoothing (sigma) against pixel noise.")
        adv.addRow("Smoothing", self.smooth)
        self.contrast = _spin(0.0, 0.0, 1.0, 0.01, decimals=3)
        self.contrast.setSpecialValueText("auto")
        self.contrast.setToolTip(
            "Smallest grey deviation from the groundmass that counts as crystal, as a fraction "
            "of the grey range; 'auto' sets it from the groundmass and the noise."
        )
        adv.addRow("Contrast", self.contrast)
        self.close_um = _spin(3.0, 0.0, 1e3, 0.5, suffix=" µm")
        self.close_um.setToolTip("Cracks and gaps narrower than about twice this are bridged.")
        adv.addRow("Close gaps", self.close_um)
        self.background = QComboBox()
        self.background.addItems(["auto", "groundmass", "masked"])
        self.background.setToolTip(
            "groundmass: crystals differ from a dominant groundmass grey; masked: the background "
            "was masked black."
        )
        adv.addRow("Background", self.background)
        self.split = QCheckBox("split touching crystals")
        self.split.setChecked(True)
        adv.addRow("", self.split)

        self._build_qa()
        self._finish_layout(stretch=False)
        self._layout.addWidget(self.legend)
        self._build_correct()
        self._layout.addStretch(1)
        self._next_job = "segment"
        self._reference_from = "shape"

        self.image_combo.changed.connect(self._on_image_changed)
        self._on_image_changed(self.image_combo.value)
        _mosaic_run.add_mosaic_options(self)  # a lazily opened mosaic: labels to a zarr store

    def _build_correct(self) -> None:
        from napari.layers import Shapes

        box = self.correct_section = Section("Correct (scribbles, merge, split, reference)")
        form = box.form
        row = QHBoxLayout()
        self.new_scribble_button = QPushButton("New scribble layer")
        self.new_scribble_button.setToolTip(
            "Add a '<image> scribbles' Labels layer: paint a few strokes with the classes below."
        )
        self.new_scribble_button.clicked.connect(lambda: self.new_scribble_layer())
        self.train_button = QPushButton("Train on scribbles")
        self.train_button.setToolTip(
            "Train a pixel random forest on the strokes; the crystals found replace the "
            "'<image> crystals' layer."
        )
        self.train_button.clicked.connect(lambda: self.train())
        row.addWidget(self.new_scribble_button)
        row.addWidget(self.train_button)
        form.addRow(row)
        self.scribble_legend = QLabel(
            legend_html((c, f"{v} {name}") for v, name, c in SCRIBBLE_LEGEND)
        )
        self.scribble_legend.setStyleSheet("font-size: 8pt;")
        form.addRow(self.scribble_legend)
        self.ids_edit = QLineEdit()
        self.ids_edit.setPlaceholderText("crystal ids, e.g. 3, 7")
        self.ids_edit.setToolTip("Ids of the crystals to merge, delete or split (hover to read).")
        form.addRow("Ids", self.ids_edit)
        row = QHBoxLayout()
        self.merge_button = QPushButton("Merge")
        self.merge_button.clicked.connect(lambda: self.merge_selected())
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(lambda: self.delete_selected())
        row.addWidget(self.merge_button)
        row.addWidget(self.delete_button)
        form.addRow(row)
        self.line_combo = self._add_combo(layer_combo(self.viewer, (Shapes,), "Line layer"), form)
        self.split_button = QPushButton("Split along last line")
        self.split_button.setToolTip(
            "Cut the crystal under the last line of the line layer (or the first id typed) "
            "along that line; draw it across the crystal, from outside to outside."
        )
        self.split_button.clicked.connect(lambda: self.split_last_line())
        form.addRow(self.split_button)
        self.reference_shape_button = QPushButton("Use shape as reference")
        self.reference_shape_button.setToolTip(
            "One-shot reference: the last polygon of the line layer outlines one crystal, rim "
            "included; the image is segmented again, learning from it."
        )
        self.reference_shape_button.clicked.connect(lambda: self.use_reference("shape"))
        self.reference_label_button = QPushButton("Use crystal as reference")
        self.reference_label_button.setToolTip(
            "One-shot reference: the crystals layer's selected label (correct it first if "
            "needed) is the reference crystal; the image is segmented again, learning from it."
        )
        self.reference_label_button.clicked.connect(lambda: self.use_reference("label"))
        form.addRow(self.reference_shape_button)
        form.addRow(self.reference_label_button)
        self._layout.addWidget(box)

    # ------------------------------------------------------------------ pixel size
    def _on_image_changed(self, layer=None) -> None:
        layer = self.image_combo.value if layer is None else layer
        if layer is None:
            self.pixel_source.setText("")
            return
        px, source = pixel_size_of(layer)
        if px is None:
            self.pixel_size.setValue(1.0)
            self.pixel_source.setText(
                "⚠ no pixel size in this layer: set µm per pixel (from the SEM scale bar)."
            )
        else:
            self.pixel_size.setValue(px)
            src = zmeta(layer, create=False).get(KEY.pixel_size_source)
            self.pixel_source.setText(
                f"Pixel size from the layer's {source}" + (f" ({src})" if src else "") + "."
            )

    # ------------------------------------------------------------------ job
    def _collect(self) -> dict:
        job = self._next_job
        image = self.image_combo.value
        if image is None:
            raise ZonationInputError("no image layer: open a BSE image (File > Open) first.")
        if _mosaic_run.is_lazy_mosaic(image):
            return _mosaic_run.collect(self, image, job)
        px = check_pixel_size(self.pixel_size.value())
        contrast = self.contrast.value()
        params = {
            "job": job,
            "layer": image,
            "image": layer_image(image),
            "rgb": bool(getattr(image, "rgb", False)),
            "pixel_size_um": px,
            "options": {
                "min_area_um2": self.min_area.value(),
                "smooth_um": self.smooth.value(),
                "contrast": None if contrast <= 0 else contrast,
                "close_um": self.close_um.value(),
                "split_touching": self.split.isChecked(),
                "background": self.background.currentText(),
            },
        }
        if job == "reference":
            params["reference"] = self._reference_outline(image)
        if job == "scribbles":
            layer = find_owned(self.viewer, ROLE.scribbles, image)
            if layer is None:
                raise ZonationInputError(
                    f"no scribble layer for '{image.name}': press 'New scribble layer' and "
                    "paint a few strokes first."
                )
            params["scribbles"] = np.asarray(layer.data).copy()
        return params

    def _steps(self, params: dict) -> int:
        return 3

    def _work(self, p: dict):
        if p.get("job") == "mosaic":
            return (yield from _mosaic_run.work(self, p))
        img, px = p["image"], p["pixel_size_um"]
        level = None
        if p.get("job") == "scribbles":
            labels, _ = scribble.train_scribbles(
                img, p["scribbles"], px, min_area_um2=p["options"]["min_area_um2"]
            )
        else:
            # a large image is segmented in tiles: the bar follows them (and Cancel stops
            # between two tiles); the two steps after segmenting come last
            extra = {"reference": p["reference"]} if p.get("job") == "reference" else {}
            labels, info = yield from self.calls_with_progress(
                segment.segment_crystals,
                _tile_progress,
                img,
                px,
                return_info=True,
                **p["options"],
                **extra,
            )
            if info.get("background") == "groundmass":
                level = info.get("reference")
        labels = np.asarray(labels, dtype=np.int32)
        n = int(len(np.unique(labels[labels > 0])))
        self.check_cancel()
        yield f"{n} crystals found; measuring them…"
        table = segment.crystal_table(img, labels, px, groundmass_level=level)
        self.check_cancel()
        yield "Building the QA layers…"
        yield "Done."
        out = self._qa_results(labels, table, px)
        out["groundmass_level"] = level
        return out


    def _apply(self, p: dict, r: dict) -> None:
        if p.get("job") == "mosaic":
            return _mosaic_run.apply(self, p, r)
        image = p["layer"]
        px = p["pixel_size_um"]
        if image not in self.viewer.layers:
            raise ZonationInputError(f"the image layer '{image.name}' was removed meanwhile.")
        nd = image.ndim - (1 if p["rgb"] else 0)
        # the image carries the pixel size (edited here or not): results line up with it
        old_scale = np.asarray(image.scale, float)
        if not np.allclose(old_scale[-2:], px):
            image.scale = tuple(old_scale[:-2]) + (px, px) if nd > 2 else (px, px)
        md = zmeta(image)
        if md.get(KEY.pixel_size_um) != px:
            md[KEY.pixel_size_um] = px
            md.setdefault(KEY.pixel_size_source, "entered in Segment crystals")
        scale = tuple(float(s) for s in image.scale[-2:])
        translate = tuple(float(t) for t in image.translate[-2:])
        geom = {"scale": scale, "translate": translate}
        units = getattr(image, "units", None)
        if units is not None:
            geom["units"] = tuple(units)[-2:]
        name = image.name
        table = r["table"]

        stale = find_owned(self.viewer, ROLE.traverses, image)
        if stale is not None:  # traverses of the previous crystals: ours, and now wrong
            self.viewer.layers.remove(stale)
        crystals = find_owned(self.viewer, ROLE.crystals, image)
        if crystals is not None:
            cmd = zmeta(crystals)
            for key in (KEY.profiles, KEY.profiles_described, KEY.traverses,
                        KEY.profile_options):
                cmd.pop(key, None)
            if cmd.pop(KEY.cluster_colored, False):
                from napari.utils.colormaps import label_colormap

                crystals.colormap = label_colormap()
        crystals = upsert_layer(
            self.viewer,
            "labels",
            r["labels"],
            role=ROLE.crystals,
            source=image,
            name=f"{name} crystals",
            meta={KEY.pixel_size_um: px, KEY.groundmass_level: r.get("groundmass_level")},
            features=with_index(table),
            **geom,
        )
        self._update_qa(image, r, px, geom)
        self._watch_edits(crystals)
        self.viewer.layers.selection.active = crystals
        how = {"scribbles": " (trained on scribbles)", "reference": " (one-shot reference)"}.get(
            p.get("job"), ""
        )
        self.set_status(
            f"{len(table)} crystals in '{crystals.name}'{how}, {px:g} µm/px. "
            f"{flag_summary(table)}Next: Profiles."
        )


    # ------------------------------------------------------------------ correct
    def new_scribble_layer(self):
        """Add (or select) the plugin-owned ``<image> scribbles`` Labels layer."""
        image = self.image_combo.value
        if image is None:
            self._notify_error("no image layer: open a BSE image first.")
            return None
        layer = find_owned(self.viewer, ROLE.scribbles, image)
        if layer is None:
            from napari.utils.colormaps import DirectLabelColormap

            shape = tuple(image.data.shape[-3:-1] if image.rgb else image.data.shape[-2:])
            colors = {None: TRANSPARENT, 0: TRANSPARENT}
            colors.update({v: c for v, _, c in SCRIBBLE_LEGEND})
            geom = {
                "scale": tuple(float(x) for x in image.scale[-2:]),
                "translate": tuple(float(t) for t in image.translate[-2:]),
            }
            if getattr(image, "units", None) is not None:
                geom["units"] = tuple(image.units)[-2:]
            layer = upsert_layer(
                self.viewer,
                "labels",
                np.zeros(shape, dtype=np.int32),
                role=ROLE.scribbles,
                source=image,
                name=f"{image.name} scribbles",
                colormap=DirectLabelColormap(color_dict=colors, name="scribbles"),
                **geom,
            )
            layer.brush_size = 5
            layer.selected_label = 3
        self.viewer.layers.selection.active = layer
        try:
            layer.mode = "paint"
        except Exception:  # noqa: BLE001 - not essential
            pass
        self.set_status(
            f"Paint short strokes in '{layer.name}': 1 groundmass, 2 vesicle/epoxy, 3+ one "
            "class per crystal phase; then 'Train on scribbles'."
        )
        return unwrap(layer)

    def _reference_outline(self, image):
        """The reference of a "Use as reference" run: the last polygon of the line layer
        (image pixel coordinates), or the mask of the crystals layer's selected label."""
        if self._reference_from == "shape":
            shapes = self.line_combo.value
            if shapes is None or not len(shapes.data):
                raise ZonationInputError(
                    "no shape to use as reference: add a Shapes layer, draw a polygon around "
                    "one crystal (rim included) and pick it as the line layer."
                )
            return shape_to_image_px(shapes, image, np.asarray(shapes.data[-1]))
        layer = find_owned(self.viewer, ROLE.crystals, image)
        if layer is None:
            raise ZonationInputError(
                f"no crystals layer of '{image.name}' made by the plugin: segment first, then "
                "select a crystal's label (the label picker) to use it as reference."
            )
        chosen = int(getattr(layer, "selected_label", 0))
        labels = np.asarray(layer.data)
        if chosen <= 0 or not (labels == chosen).any():
            raise ZonationInputError(
                f"label {chosen} is not in '{layer.name}': pick a crystal's label with the "
                "label picker (or type it as the selected label) first."
            )
        return labels == chosen

    def use_reference(self, source: str = "shape", blocking: bool = False):
        """Segment again with a one-shot reference: ``source`` ``"shape"`` (the last polygon
        of the line layer) or ``"label"`` (the crystals layer's selected label)."""
        self._next_job = "reference"
        self._reference_from = source
        try:
            return self.run(blocking=blocking)
        finally:
            self._next_job = "segment"

    def train(self, blocking: bool = False):
        """Run :func:`napari_zonation.scribble.train_scribbles` like a segmentation run."""
        self._next_job = "scribbles"
        try:
            return self.run(blocking=blocking)
        finally:
            self._next_job = "segment"

    def _crystals_for_edit(self):
        image = self.image_combo.value
        if image is None:
            raise ZonationInputError("no image layer: open a BSE image first.")
        layer = find_owned(self.viewer, ROLE.crystals, image)
        if layer is None:
            raise ZonationInputError(
                f"no crystals layer of '{image.name}' made by the plugin: segment (or train on "
                "scribbles) first; edits only touch the plugin's own crystals layer."
            )
        return image, layer

    def _edit(self, what: str, func) -> bool:
        """Apply ``func(labels) -> labels`` to the crystals layer, undoably; refresh the table."""
        if self.busy:
            self.set_status("A run is going on; wait or press Cancel first.")
            return False
        try:
            image, layer = self._crystals_for_edit()
            old = np.asarray(layer.data)
            new = func(old)
            changed = np.nonzero(new != old)
            if changed[0].size:
                # napari records the changed pixels in the layer's history (undo works)
                self._editing = True
                try:
                    layer.data_setitem(changed, new[changed])
                finally:
                    self._editing = False
            self._refresh_table(image, layer)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self._on_error(exc)
            return False
        self.set_status(
            f"{what}: {int(changed[0].size)} pixels changed; {len(layer.features)} crystals in "
            f"'{layer.name}' (undo: Ctrl+Z on the layer)."
        )
        return True

    def _watch_edits(self, layer) -> None:
        """Keep the crystal table in step with the crystals layer after napari's undo/redo
        (Ctrl+Z, Ctrl+Shift+Z) and after brush, fill or eraser strokes on it."""
        layer = unwrap(layer)
        if getattr(layer, "_zonation_watched", False):
            return
        layer._zonation_watched = True
        for name in ("undo", "redo"):
            original = getattr(layer, name)

            def replay(original=original) -> None:
                original()
                self._refresh_after_user_edit(layer)

            setattr(layer, name, replay)
        # napari emits ``paint`` before it writes the stroke: refresh once the event loop runs
        # (the widget's own edits refresh the table themselves)
        layer.events.paint.connect(
            lambda event=None: (
                None
                if self._editing
                else QTimer.singleShot(0, lambda: self._refresh_after_user_edit(layer))
            )
        )

    def _refresh_after_user_edit(self, layer) -> None:
        if self.busy or layer not in self.viewer.layers:
            return
        image = source_image(self.viewer, layer)
        if image is None:
            return
        try:
            self._refresh_table(image, layer)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self._on_error(exc)
            return
        self.set_status(f"{len(layer.features)} crystals in '{layer.name}' (table refreshed).")

    def _refresh_table(self, image, layer) -> None:
        """Recompute the crystal table and the QA layers from the crystals layer's labels."""
        px = zmeta(layer, create=False).get(KEY.pixel_size_um) or float(layer.scale[-1])
        labels = np.asarray(layer.data, dtype=np.int32)
        level = zmeta(layer, create=False).get(KEY.groundmass_level)
        table = segment.crystal_table(layer_image(image), labels, px, groundmass_level=level)
        layer.features = with_index(table)
        geom = {
            "scale": tuple(float(x) for x in layer.scale[-2:]),
            "translate": tuple(float(t) for t in layer.translate[-2:]),
        }
        if getattr(layer, "units", None) is not None:
            geom["units"] = tuple(layer.units)[-2:]
        self._update_qa(image, self._qa_results(labels, table, px), px, geom)

    def _edit_ids(self, verb: str, fn) -> bool:
        try:
            ids = parse_ids(self.ids_edit.text())
        except ZonationInputError as exc:
            self._on_error(exc)
            return False
        return self._edit(f"{verb} {ids}", lambda lab: fn(lab, ids))

    def merge_selected(self) -> bool:
        """Merge the crystals whose ids are typed in the ids box."""
        return self._edit_ids("merged", edit.merge_labels)

    def delete_selected(self) -> bool:
        """Delete the crystals whose ids are typed in the ids box."""
        return self._edit_ids("deleted", edit.delete_labels)

    def split_last_line(self) -> bool:
        """Split a crystal along the last shape of the chosen Shapes layer."""
        try:
            shapes = self.line_combo.value
            if shapes is None or not len(shapes.data):
                raise ZonationInputError(
                    "no line to split along: add a Shapes layer, draw a line or path across "
                    "the crystal and pick it as the line layer."
                )
            image, layer = self._crystals_for_edit()
            rc = shape_to_image_px(shapes, image, np.asarray(shapes.data[-1]))
            ids = parse_ids(self.ids_edit.text())
            if ids:
                target = ids[0]
            else:  # the crystal most of the line crosses
                lab = np.asarray(layer.data)
                from skimage.draw import line as draw_line

                v = np.clip(np.round(rc).astype(int), 0, np.array(lab.shape) - 1)
                hits = np.concatenate(
                    [
                        lab[draw_line(int(a[0]), int(a[1]), int(b[0]), int(b[1]))]
                        for a, b in zip(v[:-1], v[1:], strict=True)
                    ]
                    or [np.zeros(0, int)]
                )
                hits = hits[hits > 0]
                if not hits.size:
                    raise ZonationInputError(
                        "the last line crosses no crystal; draw it across the crystal to split."
                    )
                target = int(np.bincount(hits).argmax())
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self._on_error(exc)
            return False
        return self._edit(f"split crystal {target}", lambda lab: edit.split_label(lab, target, rc))


def _tile_progress(done: int, total: int) -> Progress:
    """Progress of a segmentation (``done`` of ``total`` tiles), then two more steps."""
    text = f"Segmenting: tile {done} of {total}…" if total > 1 else "Segmented."
    return Progress(done, total + 2, text)
