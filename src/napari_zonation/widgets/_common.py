"""Shared pieces of the dock widgets: layer pickers, plugin-owned layers, features tables,
pixel size, the thread-worker runner, the status line and a themed matplotlib canvas.

Conventions (see docs/architecture.md):

- Plugin metadata lives in ``layer.metadata["napari_zonation"]``. A layer the plugin made
  carries ``owned=True``, its ``role`` (``crystals``, ``boundaries``, ``phases``, ``flagged``,
  ``traverses``) and the image layer it was made from (``image_layer``, ``image_layer_id``).
  Only owned layers are updated in place; a user's layer is never overwritten (a new layer is
  added, and napari appends a number to a clashing name).
- A crystal table in ``Labels.features`` has an ``index`` column holding the label ids, so
  napari maps rows to labels by id; the whole DataFrame is reassigned so ``events.features``
  fires.
- The profiles of a Labels layer are its ``metadata["napari_zonation"]["profiles"]`` (the long
  table of the core); drawn shapes keep theirs in the Shapes layer's metadata, imported CSV
  tables in :data:`profile_store`.
"""

from __future__ import annotations

import logging
import queue
import threading
import weakref
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from psygnal import Signal
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .._validation import ZonationCancelled, ZonationInputError

logger = logging.getLogger("napari_zonation.widgets")

META = "napari_zonation"
TRANSPARENT = np.array([0.0, 0.0, 0.0, 0.0], dtype=np.float32)
#: Boolean QA columns of the crystal table that mark a crystal as flagged.
QA_FLAGS = (
    "low_contrast",
    "cracked",
    "touching",
    "touches_border",
    "faint_edge",
    "rim_near_groundmass",
)
PHASE_COLORS = {
    "olivine": (0.40, 0.78, 0.30, 1.0),
    "clinopyroxene": (0.10, 0.55, 0.50, 1.0),
    "orthopyroxene": (0.70, 0.50, 0.20, 1.0),
    "plagioclase": (0.55, 0.75, 1.00, 1.0),
    "oxide": (0.55, 0.55, 0.60, 1.0),
}
UNKNOWN_COLOR = (0.6, 0.6, 0.6, 1.0)
#: The smallest height of a dock's scrolled body (px): five docks fit a 800 px high screen.
MIN_DOCK_HEIGHT = 90
TAB10 = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip


# ------------------------------------------------------------------------------------------
# metadata, ownership, pixel size


def zmeta(layer, create: bool = True) -> dict:
    """The plugin's metadata dict of a layer (created empty when ``create``)."""
    md = getattr(layer, "metadata", None)
    if md is None:
        return {}
    if META not in md or not isinstance(md.get(META), dict):
        if not create:
            return {}
        md[META] = {}
    return md[META]


def is_owned(layer) -> bool:
    """True for layers the plugin made (and may update in place)."""
    return bool(zmeta(layer, create=False).get("owned") is True)


def is_ground_truth(layer) -> bool:
    """True for a layer marked as ground truth (the synthetic sample's true crystals): data to
    compare with, never a target the widgets pick or write into."""
    return bool(zmeta(layer, create=False).get("ground_truth") is True)


def writable_crystals(viewer, layer):
    """The crystals layer results may be written into: ``layer`` itself when the plugin owns
    it, otherwise the plugin's copy of it (made on first use, then reused).

    A user's Labels layer is data: its pixels, features and metadata are never changed. The
    copy (``"<name> (zonation)"``) carries the same labels, scale and features and becomes
    the layer every picker follows.
    """
    if is_owned(layer):
        return layer
    uid = layer_uid(layer)
    for lay in viewer.layers:
        md = zmeta(lay, create=False)
        if md.get("owned") is True and md.get("role") == "crystals" and (
            md.get("copy_of_id") == uid if uid else md.get("copy_of") == layer.name
        ):
            return lay
    md = {k: v for k, v in zmeta(layer, create=False).items() if k != "ground_truth"}
    md.update(owned=True, role="crystals", copy_of=layer.name, copy_of_id=uid)
    kwargs = {"scale": layer.scale, "translate": layer.translate}
    units = getattr(layer, "units", None)
    if units is not None:
        kwargs["units"] = units
    feats = getattr(layer, "features", None)
    if feats is not None and len(feats.columns):
        kwargs["features"] = feats.copy()
    return viewer.add_labels(
        np.array(layer.data, copy=True),
        name=f"{layer.name} (zonation)",
        metadata={META: md},
        **kwargs,
    )


def pixel_size_of(layer) -> tuple[float | None, str]:
    """Micrometres per pixel of a layer and where it came from.

    ``metadata["napari_zonation"]["pixel_size_um"]`` first, then an isotropic, non-unit
    ``scale`` of the last two axes; ``(None, "missing")`` when neither says anything.
    """
    if layer is None:
        return None, "missing"
    px = zmeta(layer, create=False).get("pixel_size_um")
    if px is not None:
        try:
            px = float(px)
            if np.isfinite(px) and px > 0:
                return px, "metadata"
        except (TypeError, ValueError):
            pass
    sy, sx = (float(s) for s in layer.scale[-2:])
    if np.isclose(sy, sx) and sy > 0 and not np.isclose(sy, 1.0):
        return sy, "scale"
    if np.isclose(sy, sx) and np.isclose(sy, 1.0):
        units = getattr(layer, "units", None)
        if units is not None and any(
            "um" in str(u) or "µm" in str(u) or "micro" in str(u) for u in units[-2:]
        ):
            return 1.0, "scale"
    return None, "missing"


def layer_image(layer) -> np.ndarray:
    """The layer's data as a numpy array (level 0 of a multiscale image)."""
    data = layer.data
    if getattr(layer, "multiscale", False):
        data = data[0]
    return np.asarray(data)


def unwrap(obj):
    """The object behind napari's public-only proxy (plugins get proxied viewers and
    layers; identity, ``id`` and weak references must use the real object)."""
    return getattr(obj, "__wrapped__", obj)


def same(a, b) -> bool:
    """True when two (possibly proxied) objects are the same object."""
    return unwrap(a) is unwrap(b)


def layer_uid(layer) -> str | None:
    return str(getattr(layer, "unique_id", "")) or None


def find_layer(viewer, name: str | None = None, uid: str | None = None):
    """A layer of the viewer by unique id (preferred) or name; None when absent."""
    if uid:
        for lay in viewer.layers:
            if layer_uid(lay) == uid:
                return lay
    if name is not None and name in viewer.layers:
        return viewer.layers[name]
    return None


def spin_box(
    value: float,
    lo: float,
    hi: float,
    step: float,
    decimals: int = 2,
    suffix: str = "",
    special: str | None = None,
) -> QDoubleSpinBox:
    """A QDoubleSpinBox with range, step, decimals, unit suffix and an optional text shown at
    its minimum (``special``, e.g. "auto" or "none")."""
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setDecimals(decimals)
    box.setSingleStep(step)
    box.setValue(value)
    if suffix:
        box.setSuffix(suffix)
    if special:
        box.setSpecialValueText(special)
    return box


def source_image(viewer, layer):
    """The image layer a plugin-owned layer was made from (None when it is gone)."""
    md = zmeta(layer, create=False)
    return find_layer(viewer, md.get("image_layer"), md.get("image_layer_id"))


def find_owned(viewer, role: str, source) -> Any:
    """The plugin-owned layer with this role made from ``source`` (a layer), or None."""
    uid = layer_uid(source)
    for lay in viewer.layers:
        md = zmeta(lay, create=False)
        if md.get("owned") is not True or md.get("role") != role:
            continue
        if (uid and md.get("image_layer_id") == uid) or (
            not md.get("image_layer_id") and md.get("image_layer") == source.name
        ):
            return lay
    return None


def upsert_layer(
    viewer,
    layer_type: str,
    data,
    *,
    role: str,
    source,
    name: str,
    meta: dict | None = None,
    features: pd.DataFrame | None = None,
    **kwargs,
):
    """Update the plugin-owned ``role`` layer of ``source`` in place, or add a new one.

    A user's layer with the same name is left alone: napari gives the new layer a numbered
    name. ``kwargs`` are layer attributes (``scale``, ``colormap``, ...).
    """
    layer = find_owned(viewer, role, source)
    md = {
        "owned": True,
        "role": role,
        "image_layer": source.name,
        "image_layer_id": layer_uid(source),
        **(meta or {}),
    }
    if layer is not None and layer.__class__.__name__.lower() == layer_type:
        if layer_type == "shapes":
            shape_type = kwargs.pop("shape_type", "line")
            edge_color = kwargs.pop("edge_color", None)
            edge_width = kwargs.pop("edge_width", 1)
            layer.selected_data = set()
            layer.data = []
            if len(data):
                layer.add(
                    data,
                    shape_type=shape_type,
                    edge_color="yellow" if edge_color is None else edge_color,
                    edge_width=edge_width,
                )
        else:
            layer.data = data
        for key, value in kwargs.items():
            if key in ("text", "size", "edge_width") and layer_type != "points":
                continue
            setattr(layer, key, value)
        if features is not None:
            layer.features = features
        zmeta(layer).update(md)
        return layer
    kwargs["metadata"] = {META: md}
    if features is not None:
        kwargs["features"] = features
    adder = getattr(viewer, f"add_{layer_type}")
    return adder(data, name=name, **kwargs)


# ------------------------------------------------------------------------------------------
# tables


def with_index(table: pd.DataFrame, key: str = "label") -> pd.DataFrame:
    """The table with an ``index`` column (first) holding the label ids, as napari wants."""
    t = table.drop(columns=["index"], errors="ignore").reset_index(drop=True).copy()
    if key in t.columns:
        t.insert(0, "index", pd.to_numeric(t[key], errors="coerce").fillna(-1).astype(int))
    return t


def table_of(layer) -> pd.DataFrame:
    """The layer's features without napari's ``index`` column (a copy)."""
    feats = getattr(layer, "features", None)
    if feats is None or len(feats.columns) == 0:
        return pd.DataFrame()
    return feats.drop(columns=["index"], errors="ignore").reset_index(drop=True).copy()


def merge_table(
    old: pd.DataFrame, new: pd.DataFrame, key: str = "label", how: str = "outer"
) -> pd.DataFrame:
    """``new`` joined onto ``old`` by ``key``: columns of ``new`` replace those of ``old``,
    the other columns of ``old`` are kept, and old rows keep their order (``how="left"``
    keeps exactly the rows of ``old``)."""
    old = old.drop(columns=["index"], errors="ignore")
    new = new.drop(columns=["index"], errors="ignore")
    if old.empty or key not in old.columns:
        return new.reset_index(drop=True)
    keep = [c for c in old.columns if c == key or c not in new.columns]
    new = new.drop_duplicates(subset=[key])
    return old[keep].merge(new, on=key, how=how, sort=False).reset_index(drop=True)


def set_table(layer, table: pd.DataFrame, key: str = "label") -> None:
    """Reassign a Labels layer's features (with the ``index`` column)."""
    layer.features = with_index(table, key)


def profiles_of(layer, calibrated: bool = False) -> pd.DataFrame | None:
    """The long profiles table a layer carries in its metadata, or None.

    With ``calibrated``, the calibrated copy (Profiles widget, Calibration tab:
    ``profiles_calibrated``, values in composition) when the layer has one.
    """
    if layer is None:
        return None
    md = zmeta(layer, create=False)
    if calibrated and isinstance(md.get("profiles_calibrated"), pd.DataFrame):
        return md["profiles_calibrated"]
    prof = md.get("profiles")
    return prof if isinstance(prof, pd.DataFrame) else None


def quantity_of(prof: pd.DataFrame | None) -> str | None:
    """The calibrated quantity of a profiles table (e.g. ``Fo (mol%)``), or None."""
    if prof is None or "quantity" not in prof.columns or not len(prof):
        return None
    return str(prof["quantity"].iloc[0])


def first_channel(prof: pd.DataFrame) -> pd.DataFrame:
    if "channel" in prof.columns and prof["channel"].nunique(dropna=False) > 1:
        return prof[prof["channel"] == prof["channel"].iloc[0]]
    return prof


def value_name(prof: pd.DataFrame | None) -> str:
    """Axis label for a profiles table's values."""
    if prof is not None and "channel" in prof.columns and len(prof):
        ch = str(prof["channel"].iloc[0])
        return "grey (BSE)" if ch == "bse" else ch
    return "value"


def profile_arrays(prof: pd.DataFrame, label) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (distance_um, value) of one profile (first channel)."""
    p = first_channel(prof)
    p = p[p["label"] == label].sort_values("distance_um")
    return p["distance_um"].to_numpy(float), p["value"].to_numpy(float)


# ------------------------------------------------------------------------------------------
# imported profiles (CSV / Excel): a per-viewer store


class _ProfileStore:
    """Imported profile tables, per viewer: ``{name: long profiles table}``."""

    changed = Signal()

    def __init__(self) -> None:
        self._tables: dict[int, dict[str, pd.DataFrame]] = {}
        self._results: dict[int, dict[str, pd.DataFrame]] = {}

    def tables(self, viewer) -> dict[str, pd.DataFrame]:
        return self._tables.setdefault(id(unwrap(viewer)), {})

    def results(self, viewer) -> dict[str, pd.DataFrame]:
        """Fit results (e.g. diffusion) of the imported tables, by table name."""
        return self._results.setdefault(id(unwrap(viewer)), {})

    def put(self, viewer, name: str, prof: pd.DataFrame) -> None:
        self.tables(viewer)[name] = prof
        self.changed.emit()

    def forget(self, viewer) -> None:
        self._tables.pop(id(unwrap(viewer)), None)
        self._results.pop(id(unwrap(viewer)), None)


profile_store = _ProfileStore()


# ------------------------------------------------------------------------------------------
# coordinates and colours


def shape_to_image_px(shapes_layer, image_layer, vertices: np.ndarray) -> np.ndarray:
    """Shape vertices (the Shapes layer's data coordinates) -> (row, col) pixel coordinates
    of the image, through world coordinates (scale, translate, rotation, affine)."""
    v = np.asarray(vertices, dtype=float)
    if image_layer is None:
        return v[:, -2:]
    if shapes_layer.ndim == image_layer.ndim:
        out = [image_layer.world_to_data(shapes_layer.data_to_world(p)) for p in v]
        return np.asarray(out, dtype=float)[:, -2:]
    s_scale = np.asarray(shapes_layer.scale[-2:], float)
    s_trans = np.asarray(shapes_layer.translate[-2:], float)
    i_scale = np.asarray(image_layer.scale[-2:], float)
    i_trans = np.asarray(image_layer.translate[-2:], float)
    return (v[:, -2:] * s_scale + s_trans - i_trans) / i_scale


def image_px_to_layer(layer, image_layer, rc: np.ndarray) -> np.ndarray:
    """(row, col) image pixel coordinates -> data coordinates of another 2D layer."""
    rc = np.asarray(rc, dtype=float)
    if image_layer is None or layer.ndim != image_layer.ndim:
        return rc
    return np.asarray([layer.world_to_data(image_layer.data_to_world(p)) for p in rc])


def to_hex(rgba) -> str:
    c = np.clip(np.asarray(rgba, dtype=float).ravel()[:3], 0, 1)
    return "#{:02x}{:02x}{:02x}".format(*(int(round(x * 255)) for x in c))


def phase_color(phase) -> tuple[float, float, float, float]:
    if not isinstance(phase, str):
        return UNKNOWN_COLOR
    return PHASE_COLORS.get(phase.lower(), UNKNOWN_COLOR)


def legend_html(items: Iterable[tuple[Any, str]]) -> str:
    """Rich text legend: one coloured square and its text per line."""
    rows = [
        f'<span style="color:{to_hex(c)}; font-size:14pt">&#9632;</span>&nbsp;{text}'
        for c, text in items
    ]
    return "<br>".join(rows)


def label_color(layer, label: int):
    """The RGBA a Labels layer shows for a label (None when unavailable)."""
    try:
        return np.asarray(layer.colormap.map(np.array([label]))[0], dtype=float)
    except Exception:  # pragma: no cover - colormap API differences
        try:
            return np.asarray(layer.get_color(label), dtype=float)
        except Exception:
            return None


def theme_colors(viewer) -> dict[str, str]:
    """Background, text and grid colours of the viewer's theme, for matplotlib."""
    out = {"bg": "#262930", "fg": "#f0f1f2", "grid": "#5a626c"}
    try:
        from napari.utils.theme import get_theme

        theme = get_theme(viewer.theme)
        out = {
            "bg": theme.background.as_hex(),
            "fg": theme.text.as_hex(),
            "grid": theme.highlight.as_hex(),
        }
    except Exception:  # pragma: no cover - theme API differences
        pass
    return out


# ------------------------------------------------------------------------------------------
# widgets


def layer_combo(viewer, kinds: tuple, label: str, predicate: Callable | None = None):
    """A magicgui ComboBox of the viewer's layers of the given types (kept up to date by
    :meth:`ZonationWidget.reset_choices`)."""
    from magicgui.widgets import ComboBox

    def choices(_widget=None):
        return [
            (lay.name, lay)
            for lay in viewer.layers
            if isinstance(lay, kinds)
            and not is_ground_truth(lay)
            and (predicate is None or predicate(lay))
        ]

    return ComboBox(label=label, choices=choices, nullable=False)


class PlotCanvas(QWidget):
    """A matplotlib figure in the dock, in the viewer's theme colours."""

    def __init__(
        self, viewer, parent=None, height: float = 2.6, min_height: int | None = None
    ) -> None:
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.colors = theme_colors(viewer)
        self.figure = Figure(
            figsize=(4, height), dpi=90, facecolor=self.colors["bg"], layout="constrained"
        )
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(int(height * 90) if min_height is None else min_height)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.canvas)

    def axes(self, n: int = 1, sharex: bool = True) -> list:
        """Clear the figure and return ``n`` stacked, styled axes."""
        self.figure.clear()
        axs = self.figure.subplots(n, 1, sharex=sharex, squeeze=False)[:, 0]
        for ax in axs:
            self.style(ax)
        return list(axs)

    def style(self, ax) -> None:
        c = self.colors
        ax.set_facecolor(c["bg"])
        for spine in ax.spines.values():
            spine.set_color(c["fg"])
        ax.tick_params(colors=c["fg"], labelsize=8)
        ax.xaxis.label.set_color(c["fg"])
        ax.yaxis.label.set_color(c["fg"])
        ax.title.set_color(c["fg"])
        ax.xaxis.label.set_size(8)
        ax.yaxis.label.set_size(8)
        ax.title.set_size(9)

    def message(self, text: str) -> None:
        ax = self.axes(1)[0]
        ax.set_axis_off()
        ax.text(
            0.5,
            0.5,
            text,
            ha="center",
            va="center",
            color=self.colors["fg"],
            fontsize=9,
            wrap=True,
            transform=ax.transAxes,
        )
        self.draw()

    def legend(self, ax, **kwargs) -> None:
        handles, _ = ax.get_legend_handles_labels()
        if not handles:
            return
        leg = ax.legend(fontsize=7, frameon=False, **kwargs)
        for text in leg.get_texts():
            text.set_color(self.colors["fg"])

    def draw(self) -> None:
        self.canvas.draw_idle()


class Section(QWidget):
    """A titled section that folds: a header button with an arrow and a body holding a form
    (``section.form``). Folded sections keep the main form small, as napari's "advanced"
    convention does."""

    def __init__(self, title: str, expanded: bool = False, parent=None) -> None:
        super().__init__(parent)
        self.header = QToolButton()
        self.header.setText(title)
        self.header.setCheckable(True)
        self.header.setChecked(expanded)
        self.header.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.header.setStyleSheet("QToolButton { border: none; font-weight: bold; }")
        self.body = QWidget()
        self.form = QFormLayout(self.body)
        self.form.setContentsMargins(12, 0, 0, 0)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 2, 0, 2)
        lay.setSpacing(2)
        lay.addWidget(self.header)
        lay.addWidget(self.body)
        self.header.toggled.connect(self.set_expanded)
        self.set_expanded(expanded)

    @property
    def expanded(self) -> bool:
        return self.header.isChecked()

    def set_expanded(self, expanded: bool) -> None:
        """Unfold (True) or fold (False) the section."""
        if self.header.isChecked() != expanded:
            self.header.setChecked(expanded)  # calls back here
            return
        self.header.setArrowType(
            Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow
        )
        self.body.setVisible(expanded)


def error_message(exc: BaseException) -> str:
    """A message a person can act on: the core's input errors as they are, others typed."""
    if isinstance(exc, ZonationInputError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class Cancelled(ZonationCancelled):
    """Raised inside a job when the user pressed Cancel."""


class Progress(NamedTuple):
    """A message a job yields when it knows how far it is: ``done`` of ``total`` (which may
    differ from the widget's ``_steps``), shown with ``text``."""

    done: int
    total: int
    text: str = ""


class ZonationWidget(QWidget):
    """Base dock widget: a form, Run and Cancel buttons, a progress bar and a status line.

    Subclasses implement

    - ``_collect() -> dict``: read the parameters and layer data (main thread; raise
      :class:`~napari_zonation.ZonationInputError` for bad input);
    - ``_steps(params) -> int``: how many times ``_work`` yields;
    - ``_work(params)``: a generator run in a napari thread worker; it yields progress
      messages (one per step) and returns the result; it must not touch layers or Qt;
    - ``_apply(params, result)``: write the result into layers (main thread).

    ``run()`` starts the thread worker (progress bar in the dock and in napari's activity
    dock). ``run(blocking=True)`` runs the same generator in the calling thread and applies
    its result: for scripts and tests.
    """

    title = "napari-zonation"
    run_text = "Run"

    def __init__(self, napari_viewer, parent=None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self._worker = None
        self._cancel_event = threading.Event()
        self._combos: list = []
        self._layer_name_hooks: set[int] = set()
        self.setMinimumWidth(410)  # the widest form (Profiles tabs) with a scroll bar

        # everything sits in a scroll area, so that several docks fit a 1280 x 800 screen
        # (a dock can shrink to a few rows and scroll, rather than push the window taller)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.scroll_area = QScrollArea()
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.scroll_area.setMinimumHeight(MIN_DOCK_HEIGHT)
        self.content = QWidget()
        self.scroll_area.setWidget(self.content)
        outer.addWidget(self.scroll_area)
        self._layout = QVBoxLayout(self.content)
        self._layout.setContentsMargins(6, 6, 6, 6)
        self._form = QFormLayout()
        self._form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        # a field too wide beside its label goes below it, so the dock stays narrow
        self._form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self._layout.addLayout(self._form)

        self.run_button = QPushButton(self.run_text)
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self._buttons = QHBoxLayout()
        self._buttons.addWidget(self.run_button, 2)
        self._buttons.addWidget(self.cancel_button, 1)
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumHeight(14)
        self.progress_bar.setTextVisible(False)
        self.progress_bar.hide()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        events = self.viewer.layers.events
        events.inserted.connect(self._on_layers_changed)
        events.removed.connect(self._on_layers_changed)
        events.moved.connect(self._on_layers_changed)
        for lay in self.viewer.layers:
            self._hook_name(lay)

    # ---------------------------------------------------------------- layout helpers
    def _finish_layout(self, stretch: bool = True) -> None:
        """Add the Run/Cancel row, the progress bar and the status line (call once)."""
        self._layout.addLayout(self._buttons)
        self._layout.addWidget(self.progress_bar)
        self._layout.addWidget(self.status)
        if stretch:
            self._layout.addStretch(1)

    def _add_combo(self, combo, form: QFormLayout | None = None):
        self._combos.append(combo)
        (form if form is not None else self._form).addRow(combo.label, combo.native)
        combo.reset_choices()
        # start on the plugin's own crystals layer when there is one
        for choice in combo.choices:
            if is_owned(choice) and zmeta(choice, create=False).get("role") == "crystals":
                combo.value = choice
                break
        return combo

    # ---------------------------------------------------------------- layer list
    def _hook_name(self, layer) -> None:
        if id(unwrap(layer)) in self._layer_name_hooks:
            return
        self._layer_name_hooks.add(id(unwrap(layer)))
        layer.events.name.connect(self._on_layers_changed)

    def _on_layers_changed(self, event=None) -> None:
        inserted = None
        if event is not None and getattr(event, "type", "") == "inserted":
            inserted = event.value
            self._hook_name(inserted)
        self.reset_choices()
        if inserted is not None and is_owned(inserted):
            # a new crystals layer made by the plugin becomes the current choice
            if zmeta(inserted, create=False).get("role") == "crystals":
                for combo in self._combos:
                    try:
                        if any(same(c, inserted) for c in combo.choices):
                            combo.value = inserted
                    except RuntimeError:  # pragma: no cover - widget deleted
                        pass

    def _follow_source_image(self, layer) -> None:
        """Show in ``self.image_combo`` the image a plugin-owned layer was made from."""
        image = None if layer is None else source_image(self.viewer, layer)
        if image is not None:
            self.image_combo.value = image

    def reset_choices(self, event=None) -> None:
        """Refresh the layer pickers (napari also calls this when the layer list changes)."""
        for combo in self._combos:
            try:
                combo.reset_choices()
            except RuntimeError:  # the Qt widget is already deleted
                pass

    # ---------------------------------------------------------------- status
    def set_status(self, text: str, error: bool = False) -> None:
        try:
            self.status.setStyleSheet("color: #ff7070;" if error else "")
            self.status.setText(text)
        except RuntimeError:  # pragma: no cover - widget deleted
            pass

    def _notify_error(self, message: str) -> None:
        self.set_status(message, error=True)
        try:
            from napari.utils.notifications import show_error

            show_error(f"{self.title}: {message}")
        except Exception:  # pragma: no cover - no notification manager
            logger.error("%s: %s", self.title, message)

    # ---------------------------------------------------------------- running
    @property
    def busy(self) -> bool:
        return self._worker is not None

    def check_cancel(self) -> None:
        """Call inside a job between steps: raises :class:`Cancelled` after Cancel."""
        if self._cancel_event.is_set():
            raise Cancelled()

    def calls_with_progress(
        self, fn: Callable, message: Callable[[int, int], Any], *args, **kwargs
    ) -> Generator:
        """Inside ``_work``: run ``fn(*args, progress=..., **kwargs)`` and yield its progress.

        ``fn`` runs in its own thread and reports ``progress(done, total)``; this generator
        yields ``message(done, total)`` for each report (to the progress bar and status line)
        and returns ``fn``'s result (``result = yield from self.calls_with_progress(...)``).
        After Cancel the next report raises :class:`Cancelled` inside ``fn``, which stops it.
        """
        updates: queue.Queue = queue.Queue()
        cancel = self._cancel_event

        def progress(done: int, total: int) -> None:
            if cancel.is_set():
                raise Cancelled()
            updates.put((done, total))

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-zonation")
        try:
            future = pool.submit(fn, *args, progress=progress, **kwargs)
            while True:
                if cancel.is_set():
                    raise Cancelled()
                try:
                    yield message(*updates.get(timeout=0.1))
                except queue.Empty:
                    if future.done() and updates.empty():
                        break
            return future.result()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def run(self, blocking: bool = False):
        """Collect the parameters and run the job (in a thread worker unless ``blocking``).

        Returns the worker (or, with ``blocking``, the job's result; None on failure).
        """
        if self.busy:
            self.set_status("Already running; press Cancel first.")
            return None
        try:
            params = self._collect()
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self._on_error(exc)
            return None
        if params is None:
            return None
        self._cancel_event = threading.Event()
        total = max(1, int(self._steps(params)))
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(0)
        self.progress_bar.show()
        self.set_status("Running…")
        if blocking:
            try:
                gen = self._work(params)
                result = yield_all(gen, self._on_yielded)
                if not self._on_returned(params, result):
                    return None
            except ZonationCancelled:
                self._on_aborted()
                return None
            except Exception as exc:  # noqa: BLE001
                self._on_error(exc)
                return None
            finally:
                self.progress_bar.hide()
            return result

        from napari.qt.threading import create_worker

        worker = create_worker(
            self._work,
            params,
            _progress={"total": total, "desc": self.title},
            _ignore_errors=True,
            _start_thread=False,
        )
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(lambda result: self._on_returned(params, result))
        worker.errored.connect(self._on_error)
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop the running job at its next step (answers already received are kept)."""
        self._cancel_event.set()
        if self._worker is not None:
            self._worker.quit()
            self.set_status("Cancelling…")

    def _on_yielded(self, message) -> None:
        """One step done; a :class:`Progress` message sets the bar's position and range."""
        try:
            bar = self.progress_bar
            if isinstance(message, Progress):
                bar.setRange(0, max(1, message.total))
                bar.setValue(min(message.done, bar.maximum()))
                message = message.text
            else:
                bar.setValue(min(bar.value() + 1, bar.maximum()))
        except RuntimeError:  # pragma: no cover - widget deleted
            return
        if isinstance(message, str) and message:
            self.set_status(message)

    def _on_returned(self, params, result) -> bool:
        try:
            self._apply(params, result)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self._on_error(exc)
            return False
        return True

    def _on_error(self, exc: BaseException) -> None:
        if isinstance(exc, ZonationCancelled):  # the widget's own or a core batch's
            self._on_aborted()
            return
        if not isinstance(exc, ZonationInputError):
            logger.error("%s failed", self.title, exc_info=exc)
        self._notify_error(error_message(exc))

    def _on_aborted(self) -> None:
        self.set_status("Cancelled.")

    def _on_finished(self) -> None:
        self._worker = None
        try:
            self.run_button.setEnabled(True)
            self.cancel_button.setEnabled(False)
            self.progress_bar.hide()
        except RuntimeError:  # pragma: no cover - widget deleted
            pass

    # ---------------------------------------------------------------- subclass API
    def _collect(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _steps(self, params: dict) -> int:
        return 1

    def _work(self, params: dict) -> Generator[str, None, Any]:  # pragma: no cover
        raise NotImplementedError

    def _apply(self, params: dict, result) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def concat(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """``pd.concat`` of tables whose ``attrs`` may hold DataFrames (pandas cannot compare
    those); the result has empty ``attrs``."""
    parts = []
    for f in frames:
        if f is None or not len(f):
            continue
        f = f.copy(deep=False)
        f.attrs = {}
        parts.append(f)
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True)


def yield_all(gen: Generator, on_yield: Callable[[Any], None]):
    """Drive a generator to its end in this thread; return its return value."""
    while True:
        try:
            on_yield(next(gen))
        except StopIteration as stop:
            return stop.value


def chunks(items, n_chunks: int) -> list:
    """Split a sequence into at most ``n_chunks`` contiguous, non-empty pieces."""
    items = list(items)
    if not items:
        return []
    n = max(1, min(n_chunks, len(items)))
    return [list(part) for part in np.array_split(np.array(items, dtype=object), n) if len(part)]


def weak_method(method) -> Callable:
    """A callable that calls a bound method while its object lives (for layer callbacks)."""
    ref = weakref.WeakMethod(method)

    def call(*args, **kwargs):
        m = ref()
        if m is None:
            return None
        try:
            return m(*args, **kwargs)
        except RuntimeError:  # the Qt widget is deleted
            return None

    return call
