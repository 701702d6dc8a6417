"""Cluster: group crystals by their zoning descriptors and recolour the Labels layer.

Writes ``cluster`` into the crystals layer's ``features``, recolours the layer with a
:class:`napari.utils.colormaps.DirectLabelColormap` built from ``cluster.cluster_colors``
(grey for unclustered, -1), shows a legend with counts and a plot of each cluster's
profiles (thin) with its median profile (thick). "Restore colours" puts back the colormap
the layer had before.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from qtpy.QtWidgets import QComboBox, QLabel, QPushButton, QSpinBox

from .. import cluster as zcluster
from .._validation import ZonationInputError
from ._common import (
    TRANSPARENT,
    PlotCanvas,
    ZonationWidget,
    layer_combo,
    legend_html,
    median_profile,
    merge_table,
    profile_arrays,
    profiles_of,
    set_table,
    table_of,
    to_hex,
    unwrap,
    value_name,
    zmeta,
)
from .profiles_widget import _is_crystals

METHODS = ("kmeans", "gmm", "agglomerative", "hdbscan")


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
            "prof": profiles_of(labels),
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
        colors = zcluster.cluster_colors(result)
        yield "Done."
        notes = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
        return {"table": result, "colors": colors, "notes": notes}

    def _apply(self, p: dict, r: dict) -> None:
        labels = p["labels_layer"]
        if labels not in self.viewer.layers:
            raise ZonationInputError(f"the layer '{labels.name}' was removed meanwhile.")
        result, colors = r["table"], r["colors"]
        new_cols = [c for c in result.columns if c not in p["table"].columns or c == "cluster"]
        merged = merge_table(
            table_of(labels), result[["label", *[c for c in new_cols if c != "label"]]]
        )
        set_table(labels, merged)
        self.recolor(labels, colors)
        self.show_clusters(labels, result, colors)
        counts = result["cluster"].value_counts()
        n = int((counts.index >= 0).sum())
        msg = f"{n} cluster(s) of {len(result)} crystals in '{labels.name}'"
        if r["notes"]:
            msg += " (" + "; ".join(r["notes"][:2]) + ")"
        self.set_status(msg + ".")

    # ------------------------------------------------------------------ colours
    def recolor(self, labels, colors: dict) -> None:
        """Colour each crystal with its cluster's colour (keeps the original to restore)."""
        md = zmeta(labels)
        if not md.get("cluster_colored"):
            self._original[id(unwrap(labels))] = labels.colormap
        labels.colormap = cluster_colormap(colors)
        md["cluster_colored"] = True

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
        zmeta(labels).pop("cluster_colored", None)
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
        for ax, c in zip(axs.ravel(), shown, strict=False):
            col = to_hex(ccol[c])
            labs = table.loc[table["cluster"] == c, "label"].astype(int)
            curves = [profile_arrays(prof, lab) for lab in labs]
            for d, v in curves:
                ax.plot(d, v, color=col, lw=0.7, alpha=0.35)
            grid, med = median_profile(curves)
            if grid.size:
                ax.plot(grid, med, color=col, lw=2.4)
            ax.set_title(f"cluster {c} ({len(labs)})", color=col)
        for ax in axs[-1, :]:
            ax.set_xlabel("distance from rim (µm)")
        for ax in axs[:, 0]:
            ax.set_ylabel(value_name(prof))
        self.plot.draw()
