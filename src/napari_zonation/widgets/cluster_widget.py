"""Cluster: group crystals by their zoning descriptors and recolour the Labels layer.

Writes ``cluster`` into the crystals layer's ``features``, recolours the layer with a
:class:`napari.utils.colormaps.DirectLabelColormap` built from ``cluster.cluster_colors``
(grey for unclustered, -1), shows a legend with counts and one panel per cluster drawn by
:func:`napari_zonation.cluster_plots.draw_cluster_panel` (as in the report): each crystal
relative to its core value on a shared scale, the median (thick) only for a coherent cluster.
"Restore colours" puts back the colormap the layer had before.

A 2D map of the crystals (``cluster.embed_crystals``: PCA of the standardised clustering
features), coloured by cluster, is linked to the viewer both ways: clicking a point selects
that crystal in the Labels layer (``selected_label`` with ``show_selected_label``), and
selecting a crystal in the layer rings its point.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from qtpy.QtWidgets import QComboBox, QLabel, QPushButton, QSpinBox

from .. import cluster as zcluster
from .._validation import ZonationInputError
from ..cluster_plots import draw_cluster_panel
from ..report import quantity_label
from ._base import ZonationWidget, weak_method
from ._canvas import PlotCanvas
from ._colors import TRANSPARENT, legend_html, to_hex
from ._forms import layer_combo
from ._layers import KEY, unwrap, writable_crystals, zmeta
from ._layers import is_crystals as _is_crystals
from ._tables import (
    described_profiles_of,
    first_channel,
    merge_table,
    profiles_of,
    set_table,
    table_of,
)

METHODS = ("kmeans", "gmm", "agglomerative", "hdbscan")
#: a principal component explaining less than this fraction of the variance is noise (its
#: axis would read "0 %")
MIN_PC_VARIANCE = 0.005


def cluster_colormap(colors: dict):
    """A DirectLabelColormap: each label its cluster's colour, background transparent."""
    from napari.utils.colormaps import DirectLabelColormap

    color_dict = {None: TRANSPARENT, 0: TRANSPARENT}
    color_dict.update({int(k): np.asarray(v, dtype=np.float32) for k, v in colors.items()})
    return DirectLabelColormap(color_dict=color_dict, name="clusters")


class ClusterWidget(ZonationWidget):
    """Dock widget: cluster crystals, recolour them, and plot each cluster's profiles."""

    title = "Cluster"
    run_text = "Cluster crystals"

    def __init__(self, napari_viewer, parent=None) -> None:
        super().__init__(napari_viewer, parent)
        from napari.layers import Labels

        self.labels_combo = self._add_combo(
            layer_combo(self.viewer, (Labels,), "Crystals", _is_crystals)
        )
        self.method = QComboBox()
        self.method.addItems(list(METHODS))
        self._form.addRow("Method", self.method)
        self.n_clusters = QSpinBox()
        self.n_clusters.setRange(0, 50)
        self.n_clusters.setValue(0)
        self.n_clusters.setSpecialValueText("auto")
        self.n_clusters.setToolTip("0 = choose the number of clusters automatically.")
        self._form.addRow("Clusters", self.n_clusters)
        self.restore_button = QPushButton("Restore original colours")
        self.restore_button.clicked.connect(self.restore_colors)
        self._finish_layout(stretch=False)
        self._layout.insertWidget(self._layout.indexOf(self.progress_bar), self.restore_button)
        self.legend = QLabel("")
        self.legend.setWordWrap(True)
        self._layout.addWidget(self.legend)
        self.map_plot = PlotCanvas(self.viewer, height=2.6)
        self.map_plot.setToolTip(
            "PCA map of the clustering features: click a point to select its crystal."
        )
        self._layout.addWidget(self.map_plot, 1)
        self.map_plot.message("The crystal map appears after clustering.")
        self.map_plot.canvas.mpl_connect("button_press_event", self._on_map_click)
        #: the map's rows (label, pc1, pc2, cluster) and the layer they belong to
        self.embedding = None
        self.highlighted_label: int | None = None
        self._map_layer = None
        self._map_ax = None
        self._map_ring = None
        self._watched: set[int] = set()
        self.plot = PlotCanvas(self.viewer, height=3.2)
        self._layout.addWidget(self.plot, 1)
        self.plot.message("Cluster the described crystals to see\neach cluster's profiles.")
        self._original: dict[int, object] = {}

    # ------------------------------------------------------------------ job
    def _collect(self) -> dict:
        labels = self.labels_combo.value
        if labels is None:
            raise ZonationInputError("no crystals layer: run Segment crystals first.")
        table = table_of(labels)
        if "label" not in table.columns or table.empty:
            raise ZonationInputError(
                f"'{labels.name}' has no crystal table in its features: run Segment crystals "
                "and Describe zoning first."
            )
        n = self.n_clusters.value()
        return {
            "labels_layer": labels,
            "table": table,
            # the profiles Describe read (each crystal in its own geometry) when it left them
            "prof": described_profiles_of(labels),
            "method": self.method.currentText(),
            "n_clusters": None if n == 0 else n,
        }

    def _steps(self, p: dict) -> int:
        return 2

    def _work(self, p: dict):
        yield f"Clustering ({p['method']})…"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = zcluster.cluster_crystals(
                p["table"], n_clusters=p["n_clusters"], method=p["method"], profiles=p["prof"]
            )
            try:
                embedding = zcluster.embed_crystals(result, profiles=p["prof"])
            except ZonationInputError:
                embedding = None
        colors = zcluster.cluster_colors(result)
        yield "Done."
        notes = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
        return {"table": result, "colors": colors, "notes": notes, "embedding": embedding}

    def _apply(self, p: dict, r: dict) -> None:
        labels = p["labels_layer"]
        if labels not in self.viewer.layers:
            raise ZonationInputError(f"the layer '{labels.name}' was removed meanwhile.")
        labels = p["labels_layer"] = writable_crystals(self.viewer, labels)
        result, colors = r["table"], r["colors"]
        new_cols = [c for c in result.columns if c not in p["table"].columns or c == "cluster"]
        merged = merge_table(
            table_of(labels), result[["label", *[c for c in new_cols if c != "label"]]]
        )
        set_table(labels, merged)
        self.recolor(labels, colors)
        self.show_clusters(labels, result, colors)
        self.show_map(labels, r.get("embedding"), colors)
        counts = result["cluster"].value_counts()
        n = int((counts.index >= 0).sum())
        msg = f"{n} cluster(s) of {len(result)} crystals in '{labels.name}'"
        if len(result) < 3 or n <= 1:
            msg += (
                f". Not a clustering: {len(result)} crystal(s) in {n} cluster(s) (it needs 3 or "
                "more described crystals that differ)"
            )
        if r["notes"]:
            msg += " (" + "; ".join(r["notes"][:2]) + ")"
        self.set_status(msg + ".")

    # ------------------------------------------------------------------ colours
    def recolor(self, labels, colors: dict) -> None:
        """Colour each crystal with its cluster's colour (keeps the original to restore)."""
        md = zmeta(labels)
        if not md.get(KEY.cluster_colored):
            self._original[id(unwrap(labels))] = labels.colormap
        labels.colormap = cluster_colormap(colors)
        md[KEY.cluster_colored] = True

    def restore_colors(self) -> None:
        """Put back the colours the crystals layer had before clustering."""
        labels = self.labels_combo.value
        if labels is None:
            return
        original = self._original.pop(id(unwrap(labels)), None)
        if original is None:
            from napari.utils.colormaps import label_colormap

            original = label_colormap()
        labels.colormap = original
        zmeta(labels).pop(KEY.cluster_colored, None)
        self.set_status(f"Original colours of '{labels.name}' restored.")

    # ------------------------------------------------------------------ legend and plot
    def show_clusters(self, labels, table, colors: dict) -> None:
        clusters = sorted(int(c) for c in table["cluster"].dropna().unique())
        ccol = {}
        for c in clusters:
            labs = table.loc[table["cluster"] == c, "label"]
            ccol[c] = next(
                (colors[int(lab)] for lab in labs if int(lab) in colors), (0.6, 0.6, 0.6, 1.0)
            )
        counts = table["cluster"].value_counts()
        self.legend.setText(
            "<b>Clusters</b><br>"
            + legend_html(
                (
                    ccol[c],
                    f"{'unclustered' if c < 0 else f'cluster {c}'}: "
                    f"{int(counts.get(c, 0))} crystal(s)",
                )
                for c in clusters
            )
        )
        prof = profiles_of(labels)
        if prof is None or not len(prof):
            self.plot.message("No profiles on this layer to plot.")
            return
        shown = [c for c in clusters if c >= 0] or clusters
        n = len(shown)
        ncols = 1 if n <= 3 else 2
        nrows = math.ceil(n / ncols)
        self.plot.figure.clear()
        self.plot.canvas.setMinimumHeight(max(240, 150 * nrows))
        axs = self.plot.figure.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
        for ax in axs.ravel():
            self.plot.style(ax)
        for ax in axs.ravel()[n:]:
            ax.set_visible(False)
        one = first_channel(prof)
        for ax, c in zip(axs.ravel(), shown, strict=False):
            col = to_hex(ccol[c])
            members = table[table["cluster"] == c]
            # the same panel as the report: each crystal relative to its core value, a median
            # only for one phase and one zoning type
            draw_cluster_panel(ax, one, members, name=f"cluster {c}", color=col,
                               text_color=self.plot.colors["fg"])
            ax.title.set_color(col)
        for ax in axs[-1, :]:
            ax.set_xlabel("distance from rim (µm)")
        for ax in axs[:, 0]:
            ax.set_ylabel(f"value − core value ({quantity_label(one)})", fontsize=8)
        self.plot.draw()

    # ------------------------------------------------------------------ crystal map
    def show_map(self, labels, embedding, colors: dict) -> None:
        """Scatter the crystals on their PCA map, coloured like the layer, linked to it."""
        self._map_layer = labels
        self.embedding = embedding
        self._map_ring = None
        if embedding is None or not len(embedding):
            self._map_ax = None
            self.map_plot.message("No described crystal to map.")
            return
        ratio = embedding.attrs.get("explained_variance_ratio", (np.nan, np.nan))
        if len(embedding) < 3 or not ratio[1] > MIN_PC_VARIANCE:
            self._map_ax = None
            if len(embedding) < 3:
                why = (f"{len(embedding)} crystal(s): too few for a crystal map (it needs 3 or "
                       "more crystals whose descriptors differ in two directions).")
            elif not ratio[0] > MIN_PC_VARIANCE:
                why = (f"The {len(embedding)} crystals' descriptors do not differ: no crystal "
                       "map (every crystal would sit on one point).")
            else:
                why = (f"The {len(embedding)} crystals' descriptors differ along one direction "
                       "only: no 2D crystal map (its second axis would show rounding noise).")
            self.map_plot.message(why)
            return
        ax = self.map_plot.axes(1)[0]
        rgba = [colors.get(int(lab), (0.6, 0.6, 0.6, 1.0)) for lab in embedding["label"]]
        ax.scatter(embedding["pc1"], embedding["pc2"], c=rgba, s=22, edgecolors="none")
        ax.set_xlabel(f"PC1 ({100 * ratio[0]:.0f} %)")
        ax.set_ylabel(f"PC2 ({100 * ratio[1]:.0f} %)")
        ax.set_title("crystal map (click a point)", fontsize=9)
        self._map_ax = ax
        key = id(unwrap(labels))
        if key not in self._watched:
            labels.events.selected_label.connect(weak_method(self._on_selected_label))
            self._watched.add(key)
        self.highlight(int(labels.selected_label) if labels.show_selected_label else None)

    def label_near(self, x: float, y: float) -> int | None:
        """The crystal whose point is nearest to ``(x, y)`` on the map (in display units)."""
        if self.embedding is None or not len(self.embedding) or self._map_ax is None:
            return None
        pts = self._map_ax.transData.transform(self.embedding[["pc1", "pc2"]].to_numpy(float))
        here = self._map_ax.transData.transform((x, y))
        dist = np.hypot(*(pts - here).T)
        i = int(np.argmin(dist))
        return int(self.embedding["label"].iloc[i]) if dist[i] <= 12.0 else None

    def _on_map_click(self, event) -> None:
        if event.inaxes is None or event.inaxes is not self._map_ax or event.xdata is None:
            return
        lab = self.label_near(event.xdata, event.ydata)
        if lab is not None:
            self.select_crystal(lab)

    def select_crystal(self, label: int) -> None:
        """Select ``label`` in the crystals layer (only it shown) and ring its point."""
        layer = self._map_layer
        if layer is None or layer not in self.viewer.layers:
            return
        layer.selected_label = int(label)
        layer.show_selected_label = True
        self.viewer.layers.selection.active = layer
        self.highlight(int(label))
        self.set_status(f"Crystal {int(label)} selected in '{layer.name}'.")

    def _on_selected_label(self, event=None) -> None:
        layer = self._map_layer
        if layer is None:
            return
        self.highlight(int(layer.selected_label))

    def highlight(self, label: int | None) -> None:
        """Ring the point of ``label`` on the map (no ring when it is not mapped)."""
        if self._map_ring is not None:
            try:
                self._map_ring.remove()
            except (ValueError, NotImplementedError):
                pass
            self._map_ring = None
        self.highlighted_label = None
        emb = self.embedding
        if label is None or emb is None or self._map_ax is None:
            self.map_plot.draw()
            return
        row = emb[emb["label"] == label]
        if not len(row):
            self.map_plot.draw()
            return
        self._map_ring = self._map_ax.scatter(
            row["pc1"], row["pc2"], s=140, facecolors="none",
            edgecolors=self.map_plot.colors["fg"], linewidths=1.8,
        )  # fmt: skip
        self.highlighted_label = int(label)
        self.map_plot.draw()
