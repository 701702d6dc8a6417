"""Dock widgets in a real napari viewer (run under Xvfb with QT_QPA_PLATFORM=xcb).

QT_API=pyqt6 PYTEST_QT_API=pyqt6 QT_QPA_PLATFORM=xcb XDG_RUNTIME_DIR=$(mktemp -d) \
    xvfb-run -a -s "-screen 0 1280x1024x24 -nolisten tcp" \
    .venv/bin/python -m pytest tests/test_widgets.py -q

Expected values come from the synthetic generator's ground truth, from scikit-image
(``profile_line``, ``find_boundaries``) and from the core functions called directly (to check
that the widgets pass the right data and pixel size and merge the results without loss).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.gui
napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_helpers import (  # noqa: E402
    PX,
    TIMEOUT_MS,
    add_image,
    dock,
    make_sample,
    run_and_wait,
    segmented,
)

from napari_zonation import cluster, descriptors, profiles, segment  # noqa: E402
from napari_zonation.synthetic import make_profiles  # noqa: E402

WIDGETS = {
    "Segment crystals": "SegmentWidget",
    "Profiles": "ProfilesWidget",
    "Describe zoning": "DescribeWidget",
    "Cluster": "ClusterWidget",
    "Diffusion timescales": "DiffusionWidget",
}


@pytest.fixture(scope="module")
def sample():
    return make_sample()


# --------------------------------------------------------------------------------------------


def test_every_widget_docks_from_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    for name, cls in WIDGETS.items():
        widget = dock(viewer, name)
        assert type(widget).__name__ == cls
        # napari hands plugins a public-only proxy of the viewer
        assert getattr(widget.viewer, "__wrapped__", widget.viewer) is viewer
    # layer pickers follow the layer list
    seg = viewer.window.dock_widgets["Segment crystals (napari-zonation)"]
    assert seg.image_combo.value is None
    layer = viewer.add_image(np.zeros((8, 8)), name="late image")
    assert seg.image_combo.value is layer
    layer.name = "renamed"
    assert seg.image_combo.native.currentText() == "renamed"


def test_pipeline_through_thread_workers(make_napari_viewer, qtbot, sample, tmp_path):
    from skimage.segmentation import find_boundaries

    viewer = make_napari_viewer()
    image = add_image(viewer, sample)

    # --- segment
    seg = dock(viewer, "Segment crystals")
    assert seg.pixel_size.value() == pytest.approx(PX)
    run_and_wait(qtbot, seg)
    crystals = viewer.layers["bse crystals"]
    md = crystals.metadata["napari_zonation"]
    assert md["owned"] is True and md["image_layer"] == "bse"
    assert md["pixel_size_um"] == pytest.approx(PX)
    np.testing.assert_allclose(crystals.scale, (PX, PX))
    lab = np.asarray(crystals.data)
    np.testing.assert_array_equal(lab, segment.segment_crystals(sample.image, PX))
    ids = np.unique(lab[lab > 0])
    feats = crystals.features
    assert sorted(feats["index"]) == sorted(ids)
    assert (feats["index"] == feats["label"]).all()
    assert "phase" in feats and "area_um2" in feats

    bounds = viewer.layers["bse boundaries"]
    np.testing.assert_array_equal(bounds.data, find_boundaries(lab, mode="inner") * lab)
    np.testing.assert_allclose(bounds.scale, (PX, PX))
    phases = viewer.layers["bse phases"]
    names = dict(zip(phases.features["index"], phases.features["phase"], strict=True))
    for row in feats.itertuples():
        codes = np.unique(phases.data[lab == row.label])
        assert len(codes) == 1
        assert names[codes[0]] == (row.phase if isinstance(row.phase, str) else "unknown")
    flags = [c for c in ("low_contrast", "cracked", "touching", "touches_border") if c in feats]
    n_flagged = int(feats[flags].fillna(False).astype(bool).any(axis=1).sum())
    flagged = viewer.layers["bse flagged"]
    assert len(flagged.data) == n_flagged
    for (r, c), lab_id in zip(flagged.data, flagged.features["label"], strict=True):
        rows, cols = np.nonzero(lab == lab_id)
        assert abs(r - rows.mean()) < 1.5 and abs(c - cols.mean()) < 1.5
    for layer in (bounds, phases, flagged):
        assert layer.metadata["napari_zonation"]["owned"] is True

    # --- profiles of all crystals (shells)
    prw = dock(viewer, "Profiles")
    assert prw.labels_combo.value is crystals and prw.image_combo.value is image
    run_and_wait(qtbot, prw)
    prof = crystals.metadata["napari_zonation"]["profiles"]
    expected = profiles.rim_profiles(sample.image, lab, PX)
    assert set(prof["label"]) == set(expected["label"])
    assert set(prof["label"]) >= set(ids) - set(profiles.profile_failures(expected)["label"])
    pd.testing.assert_frame_equal(prof.reset_index(drop=True), expected.reset_index(drop=True))
    assert len(prw.plot.figure.axes[0].lines) == prof["label"].nunique()
    assert crystals.metadata["napari_zonation"]["profile_options"]["contacts"] == "exclude"
    # every face a rim: the core's table with contacts="rim", and the choice is kept
    prw.contacts.setCurrentText("rim")
    run_and_wait(qtbot, prw)
    got = crystals.metadata["napari_zonation"]["profiles"]
    want = profiles.rim_profiles(sample.image, lab, PX, contacts="rim")
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))
    assert crystals.metadata["napari_zonation"]["profile_options"]["contacts"] == "rim"
    if feats["touching"].fillna(False).astype(bool).any():
        assert got["n_pixels"].sum() > prof["n_pixels"].sum()
    prw.contacts.setCurrentText("exclude")
    run_and_wait(qtbot, prw)

    # clicking a crystal shows its profile and its row
    target = int(prof["label"].iloc[0])
    rows, cols = np.nonzero(lab == target)
    k = len(rows) // 2
    world = crystals.data_to_world((rows[k], cols[k]))
    click = SimpleNamespace(
        type="mouse_press", position=world, view_direction=None, dims_displayed=[0, 1]
    )
    prw._on_click(crystals, click)
    assert f"crystal {target}" in prw.info.text()
    assert f"crystal {target}" in prw.plot.figure.axes[0].get_title()

    # --- describe (offline); results equal one call of the core on the whole table
    before = crystals.features[["label", "phase", "area_um2"]].copy()
    dsw = dock(viewer, "Describe zoning")
    assert dsw.labels_combo.value is crystals
    run_and_wait(qtbot, dsw)
    feats = crystals.features
    assert "zoning_type" in feats and feats["zoning_type"].notna().all()
    assert (feats["index"] == feats["label"]).all()
    pd.testing.assert_frame_equal(
        feats[["label", "phase", "area_um2"]].reset_index(drop=True), before
    )
    # each crystal in the geometry its image shows, as run_pipeline describes it
    own = profiles.profiles_in_own_geometry(prof, sample.image, lab, PX)
    direct = descriptors.describe_zoning(
        own, "offline", crystals=segment.crystal_table(sample.image, lab, PX)
    )
    merged = feats.set_index("label").loc[direct["label"]]
    assert list(merged["zoning_type"]) == list(direct["zoning_type"])
    np.testing.assert_allclose(merged["core_value"], direct["core_value"], equal_nan=True)

    # --- cluster: every crystal takes its cluster's colour
    clw = dock(viewer, "Cluster")
    clw.n_clusters.setValue(2)
    original = crystals.colormap
    run_and_wait(qtbot, clw)
    feats = crystals.features
    assert "cluster" in feats and feats["cluster"].notna().all()
    colors = cluster.cluster_colors(feats.drop(columns=["index"]))
    for lab_id, rgba in colors.items():
        np.testing.assert_allclose(crystals.colormap.map(np.array([lab_id]))[0], rgba, atol=1e-6)
    np.testing.assert_allclose(crystals.colormap.map(np.array([0]))[0][3], 0.0)
    assert "cluster" in clw.legend.text()
    n_clusters = int((feats["cluster"].unique() >= 0).sum())
    assert len([ax for ax in clw.plot.figure.axes if ax.get_visible()]) == n_clusters
    clw.restore_colors()
    assert type(crystals.colormap) is type(original)
    some = np.asarray(sorted(colors))
    np.testing.assert_allclose(crystals.colormap.map(some), original.map(some))

    # --- diffusion with a plain D: t = (sqrt Dt)^2 / D
    dfw = dock(viewer, "Diffusion timescales")
    dfw.source_combo.value = crystals
    dfw.mineral.setCurrentText("plain D (any mineral)")
    d_um2_s = 0.01
    dfw.diffusivity.setValue(d_um2_s)
    run_and_wait(qtbot, dfw)
    feats = crystals.features
    for col in ("sqrt_dt_um", "sqrt_dt_err_um", "timescale_days", "fit_status"):
        assert col in feats
    ok = feats[feats["fit_status"] == "ok"]
    assert len(ok) > 0
    # timescale_days is the Monte Carlo median over the fit's (asymmetric) error: with a
    # plain D it sits beside s^2 / D, and s^2 / D lies inside the 5-95 % interval
    best = ok["sqrt_dt_um"] ** 2 / d_um2_s / 86400.0
    np.testing.assert_allclose(ok["timescale_days"], best, rtol=0.15)
    assert ((ok["timescale_days_lo"] <= best) & (best <= ok["timescale_days_hi"])).all()
    assert dfw.plot_population() is not None
    dfw.export_population(str(tmp_path / "pop.png"))
    assert (tmp_path / "pop.png").exists() and (tmp_path / "pop.csv").exists()
    assert "zoning_type" in feats and "cluster" in feats  # earlier results kept


def test_drawn_line_profile_equals_skimage_profile_line(make_napari_viewer, qtbot, sample):
    from skimage.measure import profile_line

    viewer = make_napari_viewer()
    translate = (10.0, 20.0)
    image = add_image(viewer, sample, translate=translate)
    prw = dock(viewer, "Profiles")
    # shapes in world units (scale 1): vertices must be mapped to the image's pixels
    shapes = viewer.add_shapes(name="my lines", ndim=2)
    prw.shapes_combo.value = shapes
    prw.line_image_combo.value = image
    prw.line_width.setValue(PX)  # one pixel wide

    def world(rc):
        return np.asarray(rc, float) * PX + np.asarray(translate)

    start, end = np.array([50.0, 60.0]), np.array([300.0, 250.0])
    shapes.add_lines([world([start, end])])
    qtbot.waitUntil(lambda: "length_um" in shapes.features, timeout=TIMEOUT_MS)

    expected = profile_line(sample.image.astype(float), start, end, linewidth=1, order=1)
    prof = shapes.metadata["napari_zonation"]["profiles"]
    np.testing.assert_allclose(prof["value"], expected, rtol=1e-9)
    length = np.hypot(*(end - start)) * PX
    np.testing.assert_allclose(prof["distance_um"].iloc[-1], length)
    row = shapes.features.iloc[0]
    assert row["label"] == 1
    np.testing.assert_allclose(row["length_um"], length)
    np.testing.assert_allclose(row["start_value"], expected[0])
    np.testing.assert_allclose(row["mean_value"], expected.mean())
    # the plot line has the shape's edge colour
    from matplotlib.colors import to_hex

    line = prw.plot.figure.axes[0].lines[0]
    assert to_hex(line.get_color()) == to_hex(shapes.edge_color[0][:3])
    np.testing.assert_allclose(line.get_ydata(), expected)

    # moving a vertex updates the profile live (events.data, throttled)
    new_end = np.array([200.0, 330.0])
    shapes.data = [world([start, new_end])]
    new_length = np.hypot(*(new_end - start)) * PX
    qtbot.waitUntil(
        lambda: np.isclose(shapes.features["length_um"].iloc[0], new_length), timeout=TIMEOUT_MS
    )
    expected = profile_line(sample.image.astype(float), start, new_end, linewidth=1, order=1)
    np.testing.assert_allclose(
        shapes.metadata["napari_zonation"]["profiles"]["value"], expected, rtol=1e-9
    )
    # the Run button path (thread worker) gives the same table
    prw.tabs.setCurrentIndex(1)
    run_and_wait(qtbot, prw)
    np.testing.assert_allclose(
        shapes.metadata["napari_zonation"]["profiles"]["value"], expected, rtol=1e-9
    )


def test_drawn_lines_sample_several_images(make_napari_viewer, qtbot, sample):
    """'Also sample': an element map at another pixel size is profiled along the same line,
    each image in its own pixels (skimage profile_line), one plot panel per image."""
    from skimage.measure import profile_line

    viewer = make_napari_viewer()
    image = add_image(viewer, sample)
    mg = sample.image[::2, ::2].astype(float) * 0.5 + 10.0  # a map at twice the pixel size
    mg_layer = viewer.add_image(mg, name="Mg map", scale=(2 * PX, 2 * PX))
    prw = dock(viewer, "Profiles")
    shapes = viewer.add_shapes(name="lines", ndim=2)
    prw.shapes_combo.value = shapes
    prw.line_image_combo.value = image
    prw.also_images.value = [mg_layer]
    prw.line_width.setValue(PX)
    start, end = np.array([40.0, 60.0]), np.array([300.0, 240.0])  # bse pixels
    shapes.add_lines([np.array([start, end]) * PX])
    qtbot.waitUntil(lambda: "length_um" in shapes.features, timeout=TIMEOUT_MS)
    prof = shapes.metadata["napari_zonation"]["profiles"]
    assert list(dict.fromkeys(prof["channel"])) == ["bse", "Mg map"]
    main = prof[prof["channel"] == "bse"]
    np.testing.assert_allclose(
        main["value"], profile_line(sample.image.astype(float), start, end, order=1), rtol=1e-9
    )
    other = prof[prof["channel"] == "Mg map"]
    np.testing.assert_allclose(
        other["value"], profile_line(mg, start / 2, end / 2, order=1), rtol=1e-9
    )
    length = np.hypot(*(end - start)) * PX  # the same line in micrometres on both
    assert main["distance_um"].iloc[-1] == pytest.approx(length)
    assert other["distance_um"].iloc[-1] == pytest.approx(length)
    axes = prw.plot.figure.axes
    assert [ax.get_ylabel() for ax in axes] == ["bse", "Mg map"]
    np.testing.assert_allclose(axes[1].lines[0].get_ydata(), other["value"])
    # the shapes' summary stays the main image's
    assert shapes.features["mean_value"].iloc[0] == pytest.approx(main["value"].mean())


def test_user_layers_are_never_overwritten(make_napari_viewer, sample):
    viewer = make_napari_viewer()
    image = add_image(viewer, sample)
    mine = np.zeros(sample.image.shape, dtype=np.int32)
    mine[10:20, 10:20] = 7
    user = viewer.add_labels(mine.copy(), name="bse crystals")
    seg = dock(viewer, "Segment crystals")
    assert seg.run(blocking=True) is not None, seg.status.text()
    assert viewer.layers["bse crystals"] is user
    np.testing.assert_array_equal(user.data, mine)
    owned = [
        lay
        for lay in viewer.layers
        if lay.metadata.get("napari_zonation", {}).get("role") == "crystals"
    ]
    assert len(owned) == 1 and owned[0] is not user and owned[0].name != "bse crystals"
    n_layers = len(viewer.layers)
    # a re-run updates the plugin's layers in place
    seg.min_area.setValue(4000.0)
    assert seg.run(blocking=True) is not None, seg.status.text()
    assert len(viewer.layers) == n_layers
    again = [
        lay
        for lay in viewer.layers
        if lay.metadata.get("napari_zonation", {}).get("role") == "crystals"
    ]
    assert again == owned
    np.testing.assert_array_equal(
        again[0].data, segment.segment_crystals(sample.image, PX, min_area_um2=4000.0)
    )
    np.testing.assert_array_equal(user.data, mine)
    assert image.metadata["napari_zonation"]["pixel_size_um"] == pytest.approx(PX)


def test_tiled_segmentation_follows_each_tile_and_cancels_between_tiles(
    make_napari_viewer, qtbot, sample, monkeypatch
):
    import time

    # the test image tiled as a mosaic above 4096 x 4096 pixels would be (in 128 px tiles)
    monkeypatch.setattr(segment.api, "TILE_AUTO_PIXELS", 100 * 100)
    monkeypatch.setattr(segment.api, "TILE_AUTO_SIZE", 128)
    want, info = segment.segment_crystals(sample.image, PX, tile_size=128, return_info=True)
    n = info["n_tiles"]
    assert n == 9
    real = segment.segment_crystals
    reports = []

    def slow(*args, progress=None, **kwargs):  # the core's own reports, slowed down
        def report(done, total):
            reports.append(done)
            time.sleep(0.3)
            progress(done, total)

        return real(*args, progress=report, **kwargs)

    monkeypatch.setattr(segment, "segment_crystals", slow)
    viewer = make_napari_viewer()
    add_image(viewer, sample)
    seg = dock(viewer, "Segment crystals")
    shown = []
    on_yielded = seg._on_yielded

    def spy(message):
        on_yielded(message)
        shown.append((seg.progress_bar.value(), seg.progress_bar.maximum(), seg.status.text()))

    monkeypatch.setattr(seg, "_on_yielded", spy)
    # Cancel after the first tile: the run stops between two tiles and writes no layer
    seg.run()
    qtbot.waitUntil(lambda: len(shown) > 0, timeout=TIMEOUT_MS)
    seg.cancel()
    qtbot.waitUntil(lambda: not seg.busy, timeout=TIMEOUT_MS)
    time.sleep(0.8)  # the segmentation's thread reaches its next report and stops there
    assert seg.status.text() == "Cancelled."
    assert "bse crystals" not in viewer.layers
    assert len(reports) < n
    # a whole run: the bar and the status line follow the tiles, then the two last steps
    shown.clear()
    run_and_wait(qtbot, seg)
    tiles = [s for s in shown if s[2].startswith("Segmenting: tile")]
    assert tiles == [(k, n + 2, f"Segmenting: tile {k} of {n}…") for k in range(1, n + 1)]
    assert shown[-1][0] == shown[-1][1] == n + 2
    np.testing.assert_array_equal(viewer.layers["bse crystals"].data, want)


def test_pixel_size_typed_in_segment_becomes_the_scale(make_napari_viewer, sample):
    viewer = make_napari_viewer()
    image = viewer.add_image(sample.image, name="bse")  # no pixel size anywhere
    seg = dock(viewer, "Segment crystals")
    assert "no pixel size" in seg.pixel_source.text()
    seg.pixel_size.setValue(PX)
    assert seg.run(blocking=True) is not None, seg.status.text()
    crystals = viewer.layers["bse crystals"]
    np.testing.assert_allclose(image.scale, (PX, PX))
    np.testing.assert_allclose(crystals.scale, (PX, PX))
    assert image.metadata["napari_zonation"]["pixel_size_um"] == pytest.approx(PX)
    np.testing.assert_array_equal(crystals.data, segment.segment_crystals(sample.image, PX))


def test_core_errors_go_to_the_status_line(make_napari_viewer, qtbot, sample):
    viewer = make_napari_viewer()
    _, crystals, _ = segmented(viewer, sample)
    prw = dock(viewer, "Profiles")
    assert prw.run(blocking=True) is not None
    dfw = dock(viewer, "Diffusion timescales")
    dfw.source_combo.value = crystals
    # grey profiles without XFe: the core refuses, the widget explains
    dfw.mineral.setCurrentText("olivine Fe-Mg, Dohmen & Chakraborty 2007")
    assert dfw.run() is None  # refused before any worker starts: nothing to fit yet
    assert "xfe" in dfw.status.text().lower()
    assert "calibrate them first" in dfw.status.text().lower()
    assert "timescale_days" not in crystals.features
    # nothing to work on: a message, no exception
    empty = make_napari_viewer()
    seg = dock(empty, "Segment crystals")
    assert seg.run() is None
    assert "no image" in seg.status.text().lower()


def test_editing_a_traverse_reprofiles_its_crystal(make_napari_viewer, qtbot, sample):
    from skimage.measure import profile_line

    viewer = make_napari_viewer()
    image, crystals, _ = segmented(viewer, sample)
    prw = dock(viewer, "Profiles")
    prw.method.setCurrentText("traverse")
    width_um = 3.0
    prw.width_um.setValue(width_um)
    assert prw.run(blocking=True) is not None, prw.status.text()
    trav_layer = viewer.layers["bse traverses"]
    trav = crystals.metadata["napari_zonation"]["traverses"]
    assert trav_layer.metadata["napari_zonation"]["owned"] is True
    assert list(trav_layer.features["label"]) == list(trav["label"])
    np.testing.assert_allclose(
        trav_layer.data[0],
        [
            [trav.rim_row.iloc[0], trav.rim_col.iloc[0]],
            [trav.core_row.iloc[0], trav.core_col.iloc[0]],
        ],
    )
    # move the core end of the first traverse
    label = int(trav["label"].iloc[0])
    rim = trav[["rim_row", "rim_col"]].to_numpy(float)[0]
    core = trav[["core_row", "core_col"]].to_numpy(float)[0]
    new_core = rim + 0.6 * (core - rim) + np.array([2.0, -2.0])
    data = list(trav_layer.data)
    data[0] = np.array([rim, new_core])
    trav_layer.data = data
    rim, new_core = (np.asarray(v, float) for v in trav_layer.data[0])  # as napari stores them

    def updated():
        t = crystals.metadata["napari_zonation"]["traverses"]
        return np.allclose(
            t.loc[t["label"] == label, ["core_row", "core_col"]].to_numpy(), new_core
        )

    qtbot.waitUntil(updated, timeout=TIMEOUT_MS)
    prof = crystals.metadata["napari_zonation"]["profiles"]
    got = prof[prof["label"] == label].sort_values("distance_um")
    lw = max(1, round(width_um / PX))
    expected = profile_line(sample.image.astype(float), rim, new_core, linewidth=lw, order=1)
    # samples evenly spaced from the rim point; the first pixel (blurred rim) is left out
    d_expected = np.linspace(0.0, np.hypot(*(new_core - rim)), expected.size) * PX
    expected = expected[d_expected >= PX * (1 - 1e-9)]
    np.testing.assert_allclose(got["value"], expected, rtol=1e-9)
    np.testing.assert_allclose(got["distance_um"].iloc[-1], np.hypot(*(new_core - rim)) * PX)
    # the other crystals' profiles are untouched
    other = int(trav["label"].iloc[1])
    assert (prof["label"] == other).sum() > 0


def test_imported_csv_profiles_feed_diffusion(make_napari_viewer, qtbot, tmp_path):
    from napari_zonation.widgets._profile_store import profile_store

    prof, truth = make_profiles(n_per_type=3, zoning_types=("rim_brighter",), noise=0.003, seed=3)
    csv = tmp_path / "traverses.csv"
    prof.rename(columns={"distance_um": "Distance (um)", "value": "grey", "label": "grain"}).to_csv(
        csv, index=False
    )
    viewer = make_napari_viewer()
    prw = dock(viewer, "Profiles")
    prw.tabs.setCurrentIndex(2)
    prw.path_edit.setText(str(csv))
    prw.value_col.setText("grey")
    prw.label_col.setText("grain")
    run_and_wait(qtbot, prw)
    stored = profile_store.tables(viewer)["traverses"]
    assert sorted(stored["label"].unique()) == sorted(truth["label"])
    dfw = dock(viewer, "Diffusion timescales")
    choice = "imported: traverses"
    assert choice in dfw.source_combo.choices
    dfw.source_combo.value = choice
    dfw.mineral.setCurrentText("plain D (any mineral)")
    dfw.diffusivity.setValue(0.001)
    run_and_wait(qtbot, dfw)
    res = profile_store.results(viewer)["traverses"].set_index("label")
    truth = truth.set_index("label")
    ok = res["fit_status"] == "ok"
    assert ok.sum() >= 2
    # the widths match the generator's erf relaxation (distance column read in um)
    np.testing.assert_allclose(
        res.loc[ok, "sqrt_dt_um"], truth.loc[ok[ok].index, "sqrt_dt_um"], rtol=0.35
    )
    assert dfw.plot.figure.axes and dfw.plot.figure.axes[0].lines


# --------------------------------------------------------------------------------------------
# LLM backend against the fake OpenAI-compatible server


@pytest.fixture
def llm_server():
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from llm_server import FakeOpenAIServer
    except ImportError:  # pragma: no cover
        pytest.skip("tests/llm_server.py is not available")
    finally:
        sys.path.pop(0)
    with FakeOpenAIServer() as server:
        yield server


def test_describe_with_the_llm_backend(
    make_napari_viewer, qtbot, sample, llm_server, monkeypatch, tmp_path
):
    from napari_zonation.widgets import _describe_llm

    monkeypatch.setenv("NAPARI_ZONATION_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    viewer = make_napari_viewer()
    _, crystals, _ = segmented(viewer, sample)
    dsw = dock(viewer, "Describe zoning")
    dsw.backend.setCurrentText("openai")
    dsw.base_url.setText(llm_server.base_url)
    secret = "sk-test-never-stored-123"
    dsw.api_key.setText(secret)
    dsw.criteria.setPlainText("has a bright rim\n\nis unzoned\n")

    # no consent: nothing is sent
    monkeypatch.setattr(_describe_llm, "_CONSENT_GIVEN", False)
    from qtpy.QtWidgets import QMessageBox

    monkeypatch.setattr(
        QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.No)
    )
    assert dsw.run() is None
    assert llm_server.n_requests == 0
    assert "consent" in dsw.status.text()

    monkeypatch.setattr(_describe_llm, "_CONSENT_GIVEN", True)
    # Cancel while answers arrive: the job stops, the features are left as they were
    monkeypatch.setenv("NAPARI_ZONATION_CACHE_DIR", str(tmp_path / "cache-cancelled"))
    llm_server.delay_s = 0.4
    before = crystals.features.copy()
    assert dsw.run() is not None
    qtbot.waitUntil(lambda: "LLM: " in dsw.status.text(), timeout=TIMEOUT_MS)
    dsw.cancel()
    qtbot.waitUntil(lambda: not dsw.busy, timeout=TIMEOUT_MS)
    assert dsw.status.text() == "Cancelled."
    pd.testing.assert_frame_equal(crystals.features, before)
    llm_server.delay_s = 0.0

    # pick a reference crystal by clicking it
    ids = np.unique(crystals.data[crystals.data > 0])
    ref = int(ids[len(ids) // 2])
    rows, cols = np.nonzero(crystals.data == ref)
    k = len(rows) // 2
    dsw.pick_button.setChecked(True)
    click = SimpleNamespace(
        type="mouse_press",
        position=crystals.data_to_world((rows[k], cols[k])),
        view_direction=None,
        dims_displayed=[0, 1],
    )
    for callback in list(crystals.mouse_drag_callbacks):
        callback(crystals, click)
    assert dsw.reference.value() == ref and not dsw.pick_button.isChecked()

    monkeypatch.setenv("NAPARI_ZONATION_CACHE_DIR", str(tmp_path / "cache"))
    run_and_wait(qtbot, dsw)
    feats = crystals.features
    prof = crystals.metadata["napari_zonation"]["profiles"]  # computed first (shells)
    described = feats[feats["label"].isin(prof["label"].unique())]
    assert (described["llm_status"] == "ok").all(), dsw.status.text()
    assert described["llm_zoning_type"].notna().all()
    assert "zoning_type" in feats  # numeric descriptors as well
    assert "llm_matches_reference" in feats
    assert (
        len(
            [
                c
                for c in feats.columns
                if c.startswith("criterion_") and not c.endswith("_rationale")
            ]
        )
        == 2
    )
    assert llm_server.problems == []
    # the typed key reached the server but is stored nowhere
    assert any(secret in str(r["headers"].get("authorization", "")) for r in llm_server.requests)
    assert secret not in repr(crystals.metadata)
    assert not feats.astype(str).apply(lambda col: col.str.contains(secret)).any().any()
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="ignore")


def test_cluster_map_click_selects_crystal_and_back(make_napari_viewer, qtbot):
    from matplotlib.backend_bases import MouseEvent

    # 24 crystals (squares) carrying synthetic profiles and their descriptors
    prof, truth = make_profiles(n_per_type=4, noise=0.01, seed=5, phase="mixed")
    table = descriptors.describe_zoning(prof, crystals=truth[["label", "phase"]])
    lab = np.zeros((5 * 20, 5 * 20), dtype=np.int32)
    for i, lab_id in enumerate(truth["label"]):
        r, c = divmod(i, 5)
        lab[r * 20 + 2 : r * 20 + 18, c * 20 + 2 : c * 20 + 18] = lab_id
    viewer = make_napari_viewer()
    crystals = viewer.add_labels(lab, name="crystals")
    crystals.features = table.assign(index=table["label"])
    crystals.metadata["napari_zonation"] = {"profiles": prof}

    clw = dock(viewer, "Cluster")
    clw.labels_combo.value = crystals
    run_and_wait(qtbot, clw)
    # a user's layer is not written into: the results go to the plugin's copy of it (#28)
    user = crystals
    crystals = viewer.layers["crystals (zonation)"]
    assert "cluster" not in user.features.columns
    assert clw.labels_combo.value is crystals
    np.testing.assert_array_equal(crystals.data, user.data)
    emb = clw.embedding
    assert sorted(emb["label"]) == sorted(truth["label"])
    clustered = cluster.cluster_crystals(table, profiles=prof)
    expected = cluster.embed_crystals(clustered, profiles=prof)
    np.testing.assert_allclose(
        emb.sort_values("label")[["pc1", "pc2"]], expected.sort_values("label")[["pc1", "pc2"]]
    )
    # points take their crystal's cluster colour
    colors = cluster.cluster_colors(crystals.features.drop(columns=["index"]))
    drawn = clw.map_plot.figure.axes[0].collections[0].get_facecolors()
    for row, rgba in zip(emb.itertuples(), drawn, strict=True):
        np.testing.assert_allclose(rgba, colors[int(row.label)], atol=1e-6)

    # a click on a point (a real matplotlib event through the canvas) selects its crystal
    target = int(emb["label"].iloc[len(emb) // 2])
    ax = clw.map_plot.figure.axes[0]
    clw.map_plot.canvas.draw()
    xy = emb.loc[emb["label"] == target, ["pc1", "pc2"]].to_numpy(float)[0]
    px, py = ax.transData.transform(xy)
    event = MouseEvent("button_press_event", clw.map_plot.canvas, px, py, button=1)
    clw.map_plot.canvas.callbacks.process("button_press_event", event)
    assert crystals.selected_label == target
    assert crystals.show_selected_label
    assert clw.highlighted_label == target

    # selecting a crystal in the viewer rings its point
    other = int(emb["label"].iloc[0])
    crystals.selected_label = other
    assert clw.highlighted_label == other
    ring = clw.map_plot.figure.axes[0].collections[-1]
    np.testing.assert_allclose(
        ring.get_offsets()[0], emb.loc[emb["label"] == other, ["pc1", "pc2"]].to_numpy()[0]
    )


def test_calibration_spots_fit_and_apply(make_napari_viewer, qtbot, sample):
    from scipy import ndimage as ndi

    viewer = make_napari_viewer()
    image, crystals, _ = segmented(viewer, sample)
    prw = dock(viewer, "Profiles")
    assert prw.run(blocking=True) is not None, prw.status.text()  # grey crystal profiles
    grey_prof = crystals.metadata["napari_zonation"]["profiles"].copy()

    prw.tabs.setCurrentIndex(3)
    assert not prw.run_button.isVisible()
    prw.cal_image_combo.value = image
    prw.cal_name.setText("Fo (mol%)")
    made = prw.spots_layer()
    spots = viewer.layers["bse calibration spots"]
    assert getattr(made, "__wrapped__", made) is spots
    assert spots.metadata["napari_zonation"]["owned"] is True
    again = prw.spots_layer()
    assert getattr(again, "__wrapped__", again) is spots  # made once
    assert len([lay for lay in viewer.layers if "calibration spots" in lay.name]) == 1
    # two spots at the cores of the darkest and the brightest crystal (true labels)
    truth = sample.truth.sort_values("core_value")
    pick = [int(truth["label"].iloc[0]), int(truth["label"].iloc[-1])]
    depth = ndi.distance_transform_edt(sample.labels > 0)
    rc = np.array(ndi.maximum_position(depth, sample.labels, pick), float)
    spots.add(rc)  # data coordinates of the spots layer = image pixels
    qtbot.waitUntil(lambda: prw.spots_table.rowCount() == 2, timeout=TIMEOUT_MS)
    comps = [88.0, 72.5]
    for i, value in enumerate(comps):
        prw.spots_table.item(i, 1).setText(str(value))
    np.testing.assert_allclose(spots.features["composition"], comps)

    prw.fit_button.click()
    stored = image.metadata["napari_zonation"]["calibration"]
    # grey = median of the image in the spot (3 um across at 1.5 um per pixel), computed here
    radius_px = 1.5 / PX
    rr, cc = np.mgrid[: sample.image.shape[0], : sample.image.shape[1]]
    greys = [np.median(sample.image[(rr - r) ** 2 + (cc - c) ** 2 <= radius_px**2]) for r, c in rc]
    assert greys[0] != greys[1]
    ref = profiles.calibrate(greys, comps, name="Fo (mol%)")
    assert stored["slope"] == pytest.approx(ref.slope, rel=1e-12)
    assert stored["intercept"] == pytest.approx(ref.intercept, rel=1e-12)
    assert stored["name"] == "Fo (mol%)"
    np.testing.assert_allclose(stored["residuals"], 0.0, atol=1e-9)  # two points: exact line
    assert "R²" in prw.cal_result.text()
    ax = prw.plot.figure.axes[0]
    np.testing.assert_allclose(np.sort(ax.lines[0].get_xdata()), np.sort(greys))

    prw.apply_cal_button.click()
    md = crystals.metadata["napari_zonation"]
    pd.testing.assert_frame_equal(md["profiles"], grey_prof)  # the grey profiles are kept
    cal_prof = md["profiles_calibrated"]
    np.testing.assert_allclose(
        cal_prof["value"], ref.slope * grey_prof["value"].to_numpy() + ref.intercept
    )
    np.testing.assert_allclose(cal_prof["value_grey"], grey_prof["value"])
    assert (cal_prof["quantity"] == "Fo (mol%)").all()
    assert prw.plot.figure.axes[0].get_ylabel() == "Fo (mol%)"

    # Describe: 'grey' describes the grey profiles, 'composition' the calibrated copy
    dzw = dock(viewer, "Describe zoning")
    dzw.labels_combo.value = crystals
    dzw.quantity.setCurrentText("grey")
    run_and_wait(qtbot, dzw)
    grey_core = crystals.features.set_index("label")["core_value"].astype(float)
    dzw.quantity.setCurrentText("composition")
    run_and_wait(qtbot, dzw)
    assert "Fo (mol%)" in dzw.status.text()
    cal_core = crystals.features.set_index("label")["core_value"].astype(float)
    both = grey_core.notna() & cal_core.notna()
    assert both.sum() >= 5
    # a plateau level maps through the line: Fo core = slope * grey core + intercept
    expected = ref.slope * grey_core[both] + ref.intercept
    assert np.median(np.abs(cal_core[both] - expected)) < 0.2  # mol %

    # Diffusion: Fo profiles give XFe themselves; the grey ones need it (clear error)
    dfw = dock(viewer, "Diffusion timescales")
    dfw.source_combo.value = crystals
    dfw.mineral.setCurrentText("olivine Fe-Mg, Dohmen & Chakraborty 2007")
    dfw.calibrated.setChecked(False)
    assert dfw.run() is None  # grey levels: refused before any worker starts
    assert "xfe" in dfw.status.text().lower() and "timescale_days" not in crystals.features
    dfw.calibrated.setChecked(True)
    run_and_wait(qtbot, dfw)
    assert "calibrated profiles, Fo (mol%)" in dfw.status.text(), dfw.status.text()
    fits = crystals.features
    assert (fits["fit_status"] == "ok").sum() >= 1 and fits["timescale_days"].notna().any()


# ---------------------------------------------------------------- correct (issue 3)


def test_merge_delete_split_edit_the_crystals_layer_undoably(make_napari_viewer, qtbot, sample):
    from napari_zonation import edit

    viewer = make_napari_viewer()
    image, crystals, seg = segmented(viewer, sample)
    old = np.array(crystals.data, copy=True)
    ids = [int(i) for i in np.unique(old) if i > 0]
    assert len(ids) >= 4
    a, b, c = ids[0], ids[1], ids[2]

    # merge: the layer holds the core function's result, the features its new crystal table
    seg.ids_edit.setText(f"{b}, {a}")
    assert seg.merge_selected(), seg.status.text()
    merged = edit.merge_labels(old, [a, b])
    np.testing.assert_array_equal(crystals.data, merged)
    expected = segment.crystal_table(sample.image, merged, PX)
    feats = crystals.features
    assert list(feats["index"]) == list(feats["label"]) == list(expected["label"])
    assert b not in set(feats["label"])
    np.testing.assert_allclose(feats["area_um2"], expected["area_um2"])
    # napari's undo restores the labels from before the edit, and the table follows
    crystals.undo()
    np.testing.assert_array_equal(crystals.data, old)
    before = segment.crystal_table(sample.image, old, PX)
    assert list(crystals.features["label"]) == list(before["label"])
    np.testing.assert_allclose(crystals.features["area_um2"], before["area_um2"])
    crystals.redo()
    np.testing.assert_array_equal(crystals.data, merged)
    assert b not in set(crystals.features["label"])
    crystals.undo()
    assert b in set(crystals.features["label"])
    # a brush stroke with a new label adds a crystal to the table
    new_id = int(old.max()) + 1
    crystals.selected_label = new_id
    hole = np.argwhere(old == 0)[len(np.argwhere(old == 0)) // 2]
    crystals.brush_size = 30
    crystals.paint(tuple(hole), new_id, refresh=True)
    qtbot.waitUntil(lambda: new_id in set(crystals.features["label"]), timeout=TIMEOUT_MS)
    painted = (np.asarray(crystals.data) == new_id).sum() * PX**2
    row = crystals.features.set_index("label").loc[new_id]
    assert row["area_um2"] == pytest.approx(painted)
    crystals.undo()
    assert new_id not in set(crystals.features["label"])
    np.testing.assert_array_equal(crystals.data, old)

    # delete
    seg.ids_edit.setText(str(c))
    assert seg.delete_selected(), seg.status.text()
    np.testing.assert_array_equal(crystals.data, edit.delete_labels(old, [c]))
    assert c not in set(crystals.features["label"])
    assert len(crystals.features) == len(ids) - 1
    crystals.undo()
    np.testing.assert_array_equal(crystals.data, old)

    # split along the last line of a Shapes layer (world coordinates, scale PX)
    big = int(np.argmax(np.bincount(old.ravel())[1:])) + 1
    from scipy import ndimage as ndi

    inner = ndi.distance_transform_edt(old == big)
    r, _ = np.unravel_index(np.argmax(inner), old.shape)
    cols = np.nonzero(old[r] == big)[0]
    line_px = np.array([[r, cols.min() - 3.0], [r, cols.max() + 3.0]])
    shapes = viewer.add_shapes(
        [np.array([[0, 0], [5, 5]]), line_px * PX], shape_type="line", name="cuts"
    )
    seg.line_combo.value = shapes
    seg.ids_edit.setText(str(big))
    assert seg.split_last_line(), seg.status.text()
    np.testing.assert_array_equal(crystals.data, edit.split_label(old, big, line_px))
    assert int(old.max()) + 1 in set(crystals.features["label"])
    # an error (a line that crosses nothing) goes to the status line, data unchanged
    before = np.array(crystals.data, copy=True)
    seg.ids_edit.setText(str(a))
    assert not seg.split_last_line()
    assert "does not touch" in seg.status.text()
    np.testing.assert_array_equal(crystals.data, before)


def test_training_on_scribbles_fills_the_plugin_crystals_layer(make_napari_viewer, qtbot, sample):
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from test_scribble import best_ious
    finally:
        sys.path.pop(0)
    from napari_zonation.synthetic import strokes_from_truth

    viewer = make_napari_viewer()
    add_image(viewer, sample)
    mine = np.zeros(sample.image.shape, dtype=np.int32)
    mine[5:9, 5:9] = 3
    user = viewer.add_labels(mine.copy(), name="bse crystals")  # a user's layer: left alone
    seg = dock(viewer, "Segment crystals")
    # training without strokes explains itself
    assert seg.train(blocking=True) is None
    assert "scribble" in seg.status.text()
    scr = seg.new_scribble_layer()
    assert scr.name == "bse scribbles" and scr.data.shape == sample.image.shape
    np.testing.assert_allclose(scr.scale, (PX, PX))
    assert seg.new_scribble_layer() is scr  # one per image
    scr.data = strokes_from_truth(sample)
    worker = seg.train()
    assert worker is not None, seg.status.text()
    qtbot.waitUntil(lambda: not seg.busy, timeout=TIMEOUT_MS)
    owned = [
        lay
        for lay in viewer.layers
        if lay.metadata.get("napari_zonation", {}).get("role") == "crystals"
    ]
    assert len(owned) == 1 and owned[0] is not user
    np.testing.assert_array_equal(user.data, mine)
    crystals = owned[0]
    lab = np.asarray(crystals.data)
    assert (best_ious(sample.labels, lab) >= 0.5).mean() >= 0.8
    feats = crystals.features
    assert list(feats["index"]) == [int(i) for i in np.unique(lab) if i > 0]
    np.testing.assert_allclose(
        feats["area_um2"], segment.crystal_table(sample.image, lab, PX)["area_um2"]
    )
    assert "scribbles" in seg.status.text()


def test_describe_offline_reference_criteria_and_highlight(make_napari_viewer, qtbot, sample):
    from napari_zonation.criteria import NEEDS_LLM

    viewer = make_napari_viewer()
    _, crystals, _ = segmented(viewer, sample)
    dsw = dock(viewer, "Describe zoning")
    ids = [int(i) for i in np.unique(crystals.data) if i > 0]
    ref = ids[0]
    dsw.pick_reference(ref)
    dsw.criteria.setPlainText("two plateaus\nhas a dark resorption band\n")
    dsw.threshold.setValue(0.0)  # every crystal passes the similarity: the criterion decides
    run_and_wait(qtbot, dsw)
    feats = crystals.features
    described = feats[feats["describe_status"] == "ok"]
    sim = described.set_index("label")["reference_similarity"]
    assert sim[ref] == pytest.approx(1.0) and sim.between(0, 1).all()
    # offline: the vocabulary's criterion is judged, the other needs the LLM
    assert described["criterion_two_plateaus"].notna().all()
    assert (
        described["criterion_two_plateaus"].astype(bool) == (described["n_plateaus"] == 2)
    ).all()
    assert described["criterion_has_a_dark_resorption_band"].isna().all()
    assert (described["criterion_has_a_dark_resorption_band_rationale"] == NEEDS_LLM).all()
    assert "needing the LLM" in dsw.status.text()
    # the highlight layer holds exactly the crystals with two plateaus, and the reference
    layer = viewer.layers["bse crystals matches"]
    assert layer.metadata["napari_zonation"]["owned"]
    two = set(described.loc[described["n_plateaus"] == 2, "label"].astype(int))
    shown = {int(i) for i in np.unique(layer.data) if i > 0}
    assert shown == two | {ref}
    np.testing.assert_array_equal(layer.data > 0, np.isin(crystals.data, list(two | {ref})))
    # the ranking lists the reference first
    assert dsw.ranking.isVisible() or dsw.ranking.rowCount() > 0
    assert dsw.ranking.item(0, 0).text() == str(ref)


def test_describe_llm_estimate_and_budget(make_napari_viewer, qtbot, sample, monkeypatch):
    from qtpy.QtWidgets import QMessageBox

    from napari_zonation.widgets import _describe_llm, describe_widget

    viewer = make_napari_viewer()
    segmented(viewer, sample)
    dsw = dock(viewer, "Describe zoning")
    dsw.backend.setCurrentText("openai")
    dsw.base_url.setText("https://api.openai.com/v1")
    dsw.model.setText("gpt-4o")
    dsw.api_key.setText("sk-test-not-used")
    dsw.budget.setValue(0.01)
    assert "request(s)" in dsw.estimate.text() and "USD" in dsw.estimate.text()
    assert dsw.llm_estimate()["usd"] > 0.01
    monkeypatch.setattr(_describe_llm, "_CONSENT_GIVEN", True)

    def no_network(*args, **kwargs):  # the test must never reach the hosted API
        raise AssertionError("describe_zoning was called")

    monkeypatch.setattr(describe_widget.descriptors, "describe_zoning", no_network)
    asked = []
    monkeypatch.setattr(
        QMessageBox,
        "question",
        staticmethod(lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.No),
    )
    assert dsw.run() is None  # over the budget, the user said no: nothing sent
    assert asked and "budget" in asked[0]
    assert "over the budget" in dsw.status.text()
    dsw.base_url.setText("http://127.0.0.1:9/v1")
    assert "local server: no charge" in dsw.estimate.text()
