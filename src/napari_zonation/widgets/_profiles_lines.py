"""Profiles dock, Drawn lines tab: profiles of the lines and paths of a Shapes layer over an
image, updated live while they are drawn or moved.

One row per shape goes to the Shapes layer's ``features`` (label, length_um, start/end/min/max/
mean value), the long table to its metadata. Other images (element maps, a second detector) can
be sampled along the same lines.
"""

from __future__ import annotations

import weakref

import numpy as np
import pandas as pd
from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QPushButton,
    QWidget,
)

from .. import profiles as zprof
from .._validation import ZonationInputError
from ._base import recorded_warnings
from ._colors import TAB10, to_hex
from ._coords import shape_to_image_px
from ._forms import core_default, layer_combo
from ._layers import (
    KEY,
    ROLE,
    image_pixel_size,
    layer_image,
    layer_uid,
    same,
    unwrap,
    zmeta,
)
from ._tables import profile_arrays, profiles_of, table_of

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


def _sample_lines(shapes, image, idx: list, width_um: float, notes: list):
    """``line_profiles`` of the shapes ``idx`` over one image layer (its own pixels and
    pixel size); ``label`` = shape index + 1."""
    img = layer_image(image)
    if getattr(image, "rgb", False):
        img = img[..., :3].mean(axis=-1)
    px, note = image_pixel_size(image)
    if note:
        notes.append(note)
    lines = [shape_to_image_px(shapes, image, shapes.data[i]) for i in idx]
    with recorded_warnings() as caught:
        prof = zprof.line_profiles(img, lines, px, width_um)
    notes += caught
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


class LinesTool:
    """The Drawn lines tab of :class:`~.profiles_widget.ProfilesWidget` (a mixin of the dock)."""

    def _lines_tab(self) -> QWidget:
        from magicgui.widgets import Select
        from napari.layers import Image, Shapes

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
        self.line_width.setValue(core_default(zprof.line_profiles, "width_um"))
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
        return tab

    def _collect_lines(self) -> dict:
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

    def _watch_shapes(self, layer=None) -> None:
        old = self._watched_shapes() if self._watched_shapes else None
        if old is not None and not same(old, layer):
            for em in (old.events.data, old.events.set_data):
                em.disconnect(self._on_shapes_event)
        self._watched_shapes = None
        self._shapes_cache_key = None
        if layer is None:
            return
        if zmeta(layer, create=False).get(KEY.role) == ROLE.traverses:
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
        md[KEY.profiles] = prof
        md[KEY.image_layer] = image.name
        md[KEY.image_layer_id] = layer_uid(image)
        md[KEY.pixel_size_um] = image_pixel_size(image)[0]
        md[KEY.width_um] = width_um
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
