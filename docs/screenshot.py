"""Render the napari viewer with the napari-zonation widgets docked, for the docs.

Runs the synthetic sample through the widgets (Segment crystals -> Profiles -> Describe
zoning -> Cluster -> Diffusion timescales) and saves

- ``docs/images/viewer.png``: the whole window with the docks;
- ``docs/images/clusters.png``: the crystals coloured by cluster beside the Cluster dock
  (legend and per-cluster profiles).

With ``--profiles``, only ``docs/images/profiles.png``: a line drawn across a zoned crystal
of the synthetic sample and the Profiles dock's live plot of it (with a composition map
sampled along the same line). With ``--scribbles``, only ``docs/images/scribbles.png``: the
Segment crystals dock after training on painted strokes and merging two crystals. With
``--describe``, only ``docs/images/describe.png``: the Describe zoning dock with a reference
crystal, the crystals ranked by their similarity to it, criterion columns, and the matching
crystals highlighted (offline backend).
With ``--docks``, only ``docs/images/dock_*.png``: each of the five docks, opened from the
Plugins menu, in a 1280 x 800 window after the synthetic sample ran through them.
With ``--reference``, only ``docs/images/reference_before.png`` and ``reference_after.png``: a
glassy scene (vesicles, halos) segmented automatically with one crystal outlined by a drawn
polygon, then segmented again with that polygon as one-shot reference, the rim band QA layer
and the flagged crystals shown.

Needs a display; headless, run it under Xvfb::

    QT_API=pyqt6 QT_QPA_PLATFORM=xcb XDG_RUNTIME_DIR=$(mktemp -d) \\
        xvfb-run -a -s "-screen 0 2200x1300x24 -nolisten tcp" \\
        .venv/bin/python docs/screenshot.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WINDOW = (2100, 1180)


def _settle(app, seconds: float = 0.5) -> None:
    end = time.time() + seconds
    while time.time() < end:
        app.processEvents()
        time.sleep(0.02)


def _run(widget, app) -> None:
    """Run a widget's job through its thread worker and wait for it."""
    worker = widget.run()
    if worker is None:
        raise RuntimeError(f"{widget.title}: {widget.status.text()}")
    t0 = time.time()
    while widget.busy:
        app.processEvents()
        time.sleep(0.02)
        if time.time() - t0 > 600:
            raise TimeoutError(widget.title)
    _settle(app, 0.3)
    text = widget.status.text()
    print(f"{widget.title}: {text}")
    if "rror" in text:
        raise RuntimeError(text)


def _qimage_to_array(image) -> np.ndarray:
    from qtpy.QtGui import QImage

    image = image.convertToFormat(QImage.Format.Format_RGBA8888)
    w, h = image.width(), image.height()
    buf = image.constBits()
    buf.setsize(h * image.bytesPerLine())
    arr = np.frombuffer(buf, np.uint8).reshape(h, image.bytesPerLine() // 4, 4)
    return arr[:, :w].copy()


def _save(arr: np.ndarray, path: Path) -> None:
    from qtpy.QtGui import QImage

    arr = np.ascontiguousarray(
        arr[..., :4]
        if arr.shape[-1] == 4
        else np.dstack([arr, np.full(arr.shape[:2], 255, np.uint8)])
    )
    h, w = arr.shape[:2]
    QImage(arr.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy().save(str(path))
    print(f"saved {path} ({w}x{h})")


def _viewer(size: tuple[int, int]):
    """A titled napari viewer of ``size`` pixels, and the Qt application."""
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(title="napari-zonation")
    viewer.window.resize(*size)
    return viewer, QApplication.instance()


def _viewer_with(sample, name: str, size: tuple[int, int], widget_cls, dock_name: str):
    """A viewer showing a synthetic sample's image (in um) with one dock widget."""
    viewer, app = _viewer(size)
    px = sample.pixel_size_um
    viewer.add_image(sample.image, name=name, scale=(px, px), units=("um", "um"))
    widget = widget_cls(viewer)
    viewer.window.add_dock_widget(widget, name=dock_name, area="right")
    _settle(app)
    return viewer, app, widget


def main(out_dir: Path = HERE / "images") -> tuple[Path, Path]:
    from napari_zonation.widgets.cluster_widget import ClusterWidget
    from napari_zonation.widgets.describe_widget import DescribeWidget
    from napari_zonation.widgets.diffusion_widget import DiffusionWidget
    from napari_zonation.widgets.profiles_widget import ProfilesWidget
    from napari_zonation.widgets.segment_widget import SegmentWidget

    out_dir.mkdir(parents=True, exist_ok=True)
    viewer, app = _viewer(WINDOW)
    viewer.open_sample("napari-zonation", "synthetic")
    image = viewer.layers["synthetic BSE"]

    # the same classes the manifest registers; docked two by two in tabs on the right
    seg = SegmentWidget(viewer)
    prw = ProfilesWidget(viewer)
    dsw = DescribeWidget(viewer)
    clw = ClusterWidget(viewer)
    dfw = DiffusionWidget(viewer)
    from qtpy.QtCore import Qt

    win = viewer.window
    # two columns on the right: [Segment | Describe | Diffusion tabs over Profiles] [Cluster]
    d_seg = win.add_dock_widget(seg, name="Segment crystals", area="right")
    d_clu = win.add_dock_widget(clw, name="Cluster", area="right")
    d_pro = win.add_dock_widget(prw, name="Profiles", area="right")
    qt_main = win._qt_window
    qt_main.splitDockWidget(d_seg, d_clu, Qt.Orientation.Horizontal)
    qt_main.splitDockWidget(d_seg, d_pro, Qt.Orientation.Vertical)
    d_dsw = win.add_dock_widget(dsw, name="Describe zoning", area="right")
    d_dfw = win.add_dock_widget(dfw, name="Diffusion timescales", area="right")
    qt_main.tabifyDockWidget(d_seg, d_dsw)
    qt_main.tabifyDockWidget(d_seg, d_dfw)
    d_seg.raise_()
    qt_main.resizeDocks([d_seg, d_clu], [400, 420], Qt.Orientation.Horizontal)
    qt_main.resizeDocks([d_seg, d_pro], [430, 720], Qt.Orientation.Vertical)
    _settle(app)

    seg.image_combo.value = image
    _run(seg, app)
    crystals = viewer.layers["synthetic BSE crystals"]
    prw.labels_combo.value = crystals
    prw.image_combo.value = image
    prw.method.setCurrentText("shells")  # robust to cracks and inclusions
    _run(prw, app)
    dsw.labels_combo.value = crystals
    _run(dsw, app)
    clw.labels_combo.value = crystals
    _run(clw, app)
    dfw.source_combo.value = crystals
    dfw.mineral.setCurrentText("plain D (any mineral)")
    dfw.diffusivity.setValue(1e-3)
    _run(dfw, app)

    # show one well-described crystal in the Profiles plot, as a click would
    feats = crystals.features
    pick = feats[feats["zoning_type"].isin(["rim_brighter", "rim_darker", "multi_step"])]
    label = int((pick if len(pick) else feats).sort_values("area_um2").iloc[-1]["label"])
    prw.show_crystal(crystals, label)
    for name in ("synthetic BSE boundaries", "synthetic BSE phases"):
        viewer.layers[name].visible = False
    viewer.layers["synthetic BSE flagged"].visible = False  # toggled in the Segment dock
    seg.show_flagged.setChecked(False)
    crystals.opacity = 0.55
    viewer.layers.selection.active = crystals
    viewer.reset_view()
    _settle(app, 1.0)

    qt_main.resizeDocks([d_seg, d_pro], [420, 760], Qt.Orientation.Vertical)
    _settle(app, 0.5)
    for plot in (prw.plot, clw.plot, dfw.plot):  # render at the docks' final sizes
        plot.canvas.draw()
    _settle(app, 0.3)
    viewer_png = out_dir / "viewer.png"
    _save(_qimage_to_array(win._qt_window.grab().toImage()), viewer_png)

    # clusters: the canvas (crystals by cluster) beside the Cluster dock
    for name in ("synthetic BSE flagged", "synthetic BSE traverses"):
        if name in viewer.layers:
            viewer.layers[name].visible = False
    crystals.opacity = 0.8
    _settle(app, 0.5)
    canvas = viewer.screenshot(canvas_only=True, flash=False)
    # crop the canvas's black letterbox around the image
    lit = canvas[..., :3].max(axis=-1) > 8
    rows, cols = np.flatnonzero(lit.any(axis=1)), np.flatnonzero(lit.any(axis=0))
    if rows.size and cols.size:
        canvas = canvas[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    dock = _qimage_to_array(clw.grab().toImage())
    bottom = clw.plot.mapTo(clw, clw.plot.rect().bottomLeft()).y()
    dock = dock[: bottom + 12]  # the legend and the plots, not the empty dock below
    h = max(canvas.shape[0], dock.shape[0])
    bg = np.array([38, 41, 48, 255], np.uint8)

    def pad(a):
        a = a if a.shape[-1] == 4 else np.dstack([a, np.full(a.shape[:2], 255, np.uint8)])
        out = np.tile(bg, (h, a.shape[1], 1))
        out[: a.shape[0]] = a
        return out

    clusters_png = out_dir / "clusters.png"
    _save(np.hstack([pad(canvas), pad(dock)]), clusters_png)
    viewer.close()
    return viewer_png, clusters_png


DOCK_FILES = {
    "Segment crystals": "dock_segment.png",
    "Profiles": "dock_profiles.png",
    "Describe zoning": "dock_describe.png",
    "Cluster": "dock_cluster.png",
    "Diffusion timescales": "dock_diffusion.png",
}


def docks_main(out_dir: Path = HERE / "images", size: tuple[int, int] = (1280, 800)) -> list:
    """The five docks, opened from the Plugins menu as a user would, in a 1280 x 800 window.

    The synthetic sample runs through them (Segment -> Profiles -> Describe -> Cluster ->
    Diffusion); the docks share one tabbed area on the right and each is raised in turn
    and saved as ``docs/images/dock_<name>.png``.
    """
    from qtpy.QtCore import Qt

    out_dir.mkdir(parents=True, exist_ok=True)
    viewer, app = _viewer(size)
    viewer.open_sample("napari-zonation", "synthetic")
    win = viewer.window
    docks, widgets = {}, {}
    for name in DOCK_FILES:
        docks[name], widgets[name] = win.add_plugin_dock_widget("napari-zonation", name)
    qt_main = win._qt_window
    first = docks["Segment crystals"]
    for d in docks.values():
        if d is not first:
            qt_main.tabifyDockWidget(first, d)
    qt_main.resizeDocks([first], [430], Qt.Orientation.Horizontal)
    win.resize(*size)
    _settle(app)
    print(f"main window minimum height with the five docks: {qt_main.minimumSizeHint().height()}")
    seg, prw, dsw = (widgets[n] for n in ("Segment crystals", "Profiles", "Describe zoning"))
    clw, dfw = widgets["Cluster"], widgets["Diffusion timescales"]
    _run(seg, app)
    prw.method.setCurrentText("shells")
    _run(prw, app)
    _run(dsw, app)
    _run(clw, app)
    dfw.mineral.setCurrentText("plain D (any mineral)")
    dfw.diffusivity.setValue(1e-3)
    _run(dfw, app)
    crystals = dsw.labels_combo.value
    crystals.opacity = 0.55
    feats = crystals.features
    pick = feats[feats["zoning_type"].isin(["rim_brighter", "rim_darker", "multi_step"])]
    label = int((pick if len(pick) else feats).sort_values("area_um2").iloc[-1]["label"])
    dsw.results.select(label)
    prw.show_crystal(crystals, label)
    viewer.layers.selection.active = crystals
    viewer.reset_view()
    paths = []
    for name, file in DOCK_FILES.items():
        docks[name].raise_()
        _settle(app, 0.8)
        for plot in (prw.plot, clw.plot, clw.map_plot, dfw.plot, dsw.results.plot):
            plot.canvas.draw()
        _settle(app, 0.3)
        path = out_dir / file
        _save(_qimage_to_array(qt_main.grab().toImage()), path)
        paths.append(path)
    viewer.close()
    return paths


def profiles_main(out_dir: Path = HERE / "images") -> Path:
    """A drawn line across a zoned crystal and the Profiles dock's live plot of it."""
    from napari_zonation.synthetic import make_thin_section
    from napari_zonation.widgets.profiles_widget import ProfilesWidget

    out_dir.mkdir(parents=True, exist_ok=True)
    s = make_thin_section((768, 768), n_crystals=20, seed=0)  # the napari sample
    px = s.pixel_size_um
    viewer, app, prw = _viewer_with(s, "synthetic BSE", (1500, 860), ProfilesWidget, "Profiles")

    # the largest clean crystal with a step (olivine first): a line from the groundmass
    # through its centre, along its short axis (perpendicular to its long faces)
    t = s.truth
    clean = ~t["touches_border"] & ~t["touching"] & ~t["cracked"] & (t["n_inclusions"] == 0)
    pick = t[clean & t["zoning_type"].isin(["multi_step", "rim_brighter", "rim_darker"])]
    if (pick["phase"] == "olivine").any():
        pick = pick[pick["phase"] == "olivine"]
    row = (pick if len(pick) else t).sort_values("area_um2").iloc[-1]
    # a composition map of the crystal's phase at twice the pixel size, as an EPMA map would
    # be (the generator's grey -> composition line, with its own noise), profiled along the
    # same line ("Also sample")
    name, (a0, a1) = {
        "olivine": ("Fo map (mol%)", (1.12, -0.006)),
        "clinopyroxene": ("Mg# map", (0.79, -0.003)),
        "plagioclase": ("An map (mol%)", (0.225, 0.0015)),
    }[row["phase"]]
    rng = np.random.default_rng(1)
    comp = (s.clean[::2, ::2] / 255.0 - a0) / a1
    comp = np.clip(comp + rng.normal(0.0, 0.5, comp.shape), 0.0, 100.0)
    comp_layer = viewer.add_image(
        comp,
        name=name,
        scale=(2 * px, 2 * px),
        units=("um", "um"),
        colormap="viridis",
        visible=False,
    )
    viewer.layers.move(viewer.layers.index(comp_layer), 0)
    prw.line_image_combo.value = viewer.layers["synthetic BSE"]
    prw.also_images.value = [comp_layer]
    rr, cc = np.nonzero(s.labels == row["label"])
    centre = np.array([rr.mean(), cc.mean()])
    w, v = np.linalg.eigh(np.cov(np.stack([rr, cc])))
    axis = v[:, 0]
    half = 1.9 * np.sqrt(w[0]) + 8  # a uniform slab's half-width is 1.73 sigma
    start, end = centre - axis * half, centre + axis * half
    shapes = prw.new_shapes_layer()
    prw.line_width.setValue(3.0)
    shapes.add_lines([np.array([start, end]) * px])
    t0 = time.time()
    while "length_um" not in shapes.features and time.time() - t0 < 30:
        app.processEvents()
        time.sleep(0.02)
    shapes.edge_width = 2.5
    shapes.mode = "pan_zoom"
    viewer.reset_view()  # the whole image fills the canvas; then zoom onto the crystal
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.zoom *= 0.7 * max(s.image.shape) / (2.0 * np.sqrt(w[1]) * 2.0 + 20)
    camera.center = tuple(centre * px)
    _settle(app, 1.0)
    prw.plot.canvas.draw()
    _settle(app, 0.3)
    path = out_dir / "profiles.png"
    _save(_qimage_to_array(viewer.window._qt_window.grab().toImage()), path)
    print(f"profiled crystal {int(row['label'])} ({row['zoning_type']}); {prw.status.text()}")
    viewer.close()
    return path


def scribbles_main(out_dir: Path = HERE / "images") -> Path:
    """The Segment crystals dock after a scribble-trained run and an edit (a merge)."""
    from napari_zonation.synthetic import make_thin_section, strokes_from_truth
    from napari_zonation.widgets.segment_widget import SegmentWidget

    out_dir.mkdir(parents=True, exist_ok=True)
    s = make_thin_section((384, 384), n_crystals=8, seed=1, pixel_size_um=1.5)
    viewer, app, seg = _viewer_with(s, "bse", (1280, 860), SegmentWidget, "Segment crystals")
    scr = seg.new_scribble_layer()
    scr.data = strokes_from_truth(s)
    scr.opacity = 1.0
    assert seg.train(blocking=True) is not None, seg.status.text()
    _settle(app)
    crystals = viewer.layers["bse crystals"]
    # an edit: merge two crystals (the first two ids)
    ids = [int(i) for i in np.unique(crystals.data) if i > 0][:2]
    seg.ids_edit.setText(", ".join(str(i) for i in ids))
    seg.merge_selected()
    crystals.opacity = 0.45
    viewer.layers.selection.active = crystals
    viewer.reset_view()
    _settle(app, 1.0)
    path = out_dir / "scribbles.png"
    _save(_qimage_to_array(viewer.window._qt_window.grab().toImage()), path)
    print(seg.status.text())
    viewer.close()
    return path


def describe_main(out_dir: Path = HERE / "images") -> Path:
    """The Describe zoning dock: a reference crystal, its similarity ranking, criteria."""
    from napari_zonation.synthetic import make_thin_section
    from napari_zonation.widgets.describe_widget import DescribeWidget
    from napari_zonation.widgets.segment_widget import SegmentWidget

    out_dir.mkdir(parents=True, exist_ok=True)
    s = make_thin_section((640, 640), n_crystals=16, seed=3, pixel_size_um=1.5)
    viewer, app, seg = _viewer_with(s, "bse", (1500, 1000), SegmentWidget, "Segment crystals")
    assert seg.run(blocking=True) is not None, seg.status.text()
    crystals = viewer.layers["bse crystals"]
    desc = DescribeWidget(viewer)
    dock = viewer.window.add_dock_widget(desc, name="Describe zoning", area="right")
    # the reference: the largest crystal the generator made with a darker rim
    truth = s.truth[s.truth["zoning_type"] == "rim_darker"]
    true_id = int(
        truth.sort_values("area_um2" if "area_um2" in truth else "label").iloc[-1]["label"]
    )
    ids, counts = np.unique(crystals.data[s.labels == true_id], return_counts=True)
    ref = int(ids[np.argmax(np.where(ids > 0, counts, 0))])
    desc.pick_reference(ref)
    desc.criteria.setPlainText(
        "rim darker\nrim at least 5 % darker than the core\nhas a dark resorption band"
    )
    _run(desc, app)
    viewer.window.remove_dock_widget(seg)  # room for the ranking
    from qtpy.QtCore import Qt

    viewer.window._qt_window.resizeDocks([dock], [560], Qt.Orientation.Horizontal)
    _settle(app, 0.5)
    for layer in viewer.layers:
        if layer.name.startswith("bse ") and layer.name != "bse crystals matches":
            layer.visible = False
    viewer.layers["bse crystals matches"].opacity = 0.7
    viewer.layers.selection.active = viewer.layers["bse crystals matches"]
    viewer.reset_view()
    _settle(app, 1.0)
    path = out_dir / "describe.png"
    _save(_qimage_to_array(viewer.window._qt_window.grab().toImage()), path)
    viewer.close()
    return path


def reference_main(out_dir: Path = HERE / "images") -> tuple[Path, Path]:
    """A glassy scene before and after the one-shot reference, with the rim band QA layer."""
    from scipy import ndimage as ndi
    from skimage import measure

    from napari_zonation.synthetic import SCENE_KINDS, make_thin_section
    from napari_zonation.widgets.segment_widget import SegmentWidget

    out_dir.mkdir(parents=True, exist_ok=True)
    s = make_thin_section(
        (640, 640), n_crystals=17, seed=3, pixel_size_um=1.0, noise=0.03, **SCENE_KINDS["glassy"]
    )
    px = s.pixel_size_um
    viewer, app, seg = _viewer_with(s, "glassy BSE", (1500, 900), SegmentWidget, "Segment")
    _run(seg, app)
    # the largest crystal clear of the frame and of the others, outlined as a user would
    lab = s.labels
    frame = set(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]).tolist())
    ids, area = np.unique(lab[lab > 0], return_counts=True)
    pick = next(
        int(i)
        for i in ids[np.argsort(-area)]
        if int(i) not in frame and not (lab[ndi.binary_dilation(lab == i) & (lab != i)] > 0).any()
    )
    contour = measure.find_contours(np.pad(lab == pick, 1).astype(float), 0.5)[0] - 1
    poly = measure.approximate_polygon(contour, 1.0)
    shapes = viewer.add_shapes(
        [poly * px],
        shape_type="polygon",
        name="reference outline",
        edge_color="cyan",
        face_color="transparent",
        edge_width=2.0,
        units=("um", "um"),
    )
    seg.line_combo.value = shapes
    image = viewer.layers["glassy BSE"]
    viewer.layers["glassy BSE crystals"].opacity = 0.45
    viewer.layers["glassy BSE boundaries"].visible = True
    viewer.reset_view()
    _settle(app, 1.0)
    before = out_dir / "reference_before.png"
    _save(_qimage_to_array(viewer.window._qt_window.grab().toImage()), before)
    seg.image_combo.value = image
    seg._next_job, seg._reference_from = "reference", "shape"
    try:
        _run(seg, app)
    finally:
        seg._next_job = "segment"
    seg.show_rim_band.setChecked(True)
    viewer.layers["glassy BSE crystals"].opacity = 0.3
    viewer.layers.selection.active = viewer.layers["glassy BSE rim band"]
    _settle(app, 1.0)
    after = out_dir / "reference_after.png"
    _save(_qimage_to_array(viewer.window._qt_window.grab().toImage()), after)
    viewer.close()
    return before, after


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "images")
    parser.add_argument("--profiles", action="store_true", help="only docs/images/profiles.png")
    parser.add_argument("--scribbles", action="store_true", help="only docs/images/scribbles.png")
    parser.add_argument("--describe", action="store_true", help="only docs/images/describe.png")
    parser.add_argument("--docks", action="store_true",
                        help="only docs/images/dock_*.png (the five docks at 1280 x 800)")
    parser.add_argument("--reference", action="store_true", help="only docs/images/reference_*.png")
    args = parser.parse_args()
    if args.docks:
        docks_main(args.out)
    elif args.describe:
        describe_main(args.out)
    elif args.reference:
        reference_main(args.out)
    elif args.profiles:
        profiles_main(args.out)
    elif args.scribbles:
        scribbles_main(args.out)
    else:
        main(args.out)
