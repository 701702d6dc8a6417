"""How a petrologist works in napari (issue #28), each item in a real napari viewer under Xvfb.

QT_API=pyqt6 PYTEST_QT_API=pyqt6 QT_QPA_PLATFORM=xcb XDG_RUNTIME_DIR=$(mktemp -d) \
    xvfb-run -a -s "-screen 0 1280x1024x24 -nolisten tcp" \
    .venv/bin/python -m pytest tests/test_widget_workflow.py -q

Expected values come from the synthetic generator's ground truth, from the layers as they were
before the widgets ran, and from the core functions called directly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.gui
napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_helpers import TIMEOUT_MS, dock, make_sample, run_and_wait, segmented  # noqa: E402

from napari_zonation import descriptors, diffusion  # noqa: E402
from napari_zonation.synthetic import make_profiles  # noqa: E402

DOCKS = ("Segment crystals", "Profiles", "Describe zoning", "Cluster", "Diffusion timescales")


@pytest.fixture(scope="module")
def sample():
    return make_sample()


# --------------------------------------------------------------------------------------------
# 1. a user's layer (or the sample's ground truth) is never a target


def test_pickers_skip_ground_truth_and_results_go_to_a_copy(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-zonation", "synthetic")
    truth = viewer.layers["synthetic BSE ground truth"]
    truth_feats = truth.features.copy()
    truth_data = np.array(truth.data, copy=True)
    prw, dsw, clw, dfw = (dock(viewer, n) for n in DOCKS[1:])
    # before any segmentation no picker offers the ground truth
    for combo in (prw.labels_combo, dsw.labels_combo, clw.labels_combo, dfw.source_combo):
        assert truth not in [c for c in combo.choices], combo.label
        assert combo.value is None
    # a user's own Labels layer may be chosen, but results go to the plugin's copy of it
    mine = viewer.add_labels(truth_data.copy(), name="my crystals", scale=truth.scale)
    prw.labels_combo.value = mine
    prw.method.setCurrentText("shells")
    run_and_wait(qtbot, prw)
    copy = viewer.layers["my crystals (zonation)"]
    md = copy.metadata["napari_zonation"]
    assert md["owned"] is True and md["role"] == "crystals" and md["copy_of"] == "my crystals"
    assert "profiles" in md and "profiles" not in mine.metadata.get("napari_zonation", {})
    np.testing.assert_array_equal(copy.data, truth_data)
    # the pickers follow the copy; Describe writes there, again not into the user's layer
    assert dsw.labels_combo.value is copy
    run_and_wait(qtbot, dsw)
    assert "zoning_type" in copy.features.columns
    assert "zoning_type" not in mine.features.columns
    # the ground truth is untouched: same pixels, same table (no zoning_type replaced)
    np.testing.assert_array_equal(truth.data, truth_data)
    pd.testing.assert_frame_equal(truth.features, truth_feats)
    # a second run reuses the copy rather than adding another
    n_layers = len(viewer.layers)
    prw.labels_combo.value = mine
    run_and_wait(qtbot, prw)
    assert len(viewer.layers) == n_layers


# --------------------------------------------------------------------------------------------
# 2. five docks fit a 1,280 x 800 screen


def test_five_docks_fit_a_1280_by_800_window(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-zonation", "synthetic")
    widgets = [dock(viewer, n) for n in DOCKS]
    win = viewer.window._qt_window
    win.resize(1280, 800)
    qtbot.wait(200)
    # the main window can be as small as a laptop screen with all five docks open
    assert win.minimumSizeHint().height() <= 800
    assert win.height() <= 800
    for w in widgets:
        # each dock scrolls what it cannot show instead of pushing the window taller
        assert w.minimumSizeHint().height() < 200
        assert w.scroll_area.widget() is w.content
    seg = widgets[0]
    # settings beyond the main form, QA layers and corrections start folded
    for section in (seg.advanced, seg.qa_section, seg.correct_section):
        assert not section.expanded and not section.body.isVisibleTo(seg)
    seg.advanced.set_expanded(True)
    assert seg.advanced.body.isVisibleTo(seg) and seg.smooth.isVisibleTo(seg)
    # the LLM settings only with the openai backend
    dsw = widgets[2]
    assert not dsw.llm_box.isVisibleTo(dsw)
    dsw.backend.setCurrentText("openai")
    assert dsw.llm_box.isVisibleTo(dsw)


# --------------------------------------------------------------------------------------------
# 5. the reader's pixel-size dialog records nothing the user did not type


def test_pixel_size_dialog_starts_empty_and_enter_records_nothing(make_napari_viewer, qtbot):
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication, QInputDialog

    from napari_zonation._napari_io import ask_pixel_size, parse_pixel_size

    make_napari_viewer()
    seen = []

    def answer(text):
        def press():
            dialog = QApplication.activeModalWidget()
            if not isinstance(dialog, QInputDialog):
                QTimer.singleShot(20, press)
                return
            seen.append(dialog.textValue())
            if text:
                dialog.setTextValue(text)
            dialog.accept()  # what Enter does

        QTimer.singleShot(20, press)

    answer("")
    assert ask_pixel_size("scan.tif") is None
    assert seen == [""]  # no pre-filled 1.0
    answer("0,85 µm")
    assert ask_pixel_size("scan.tif") == pytest.approx(0.85)
    assert seen[1] == ""
    assert parse_pixel_size("abc") is None and parse_pixel_size("-1") is None


def test_reader_without_pixel_size_keeps_pixels_when_nothing_is_typed(tmp_path):
    import tifffile

    from napari_zonation._napari_io import _read

    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64))
    with pytest.warns(UserWarning, match="no pixel size"):
        [(_, kwargs, _)] = _read(str(path), ask=lambda name: None)
    md = kwargs["metadata"]["napari_zonation"]
    assert md["pixel_size_source"] == "missing" and "pixel_size_um" not in md
    [(_, kwargs, _)] = _read(str(path), ask=lambda name: 0.5)
    md = kwargs["metadata"]["napari_zonation"]
    assert md["pixel_size_source"] == "entered by the user" and md["pixel_size_um"] == 0.5


# --------------------------------------------------------------------------------------------
# 4. a drawn line across epoxy is refused with the reason; its axis says what it is


def test_line_across_a_gap_is_refused_and_axes_name_the_distance(make_napari_viewer, qtbot):
    # two grains (grey 150 and 160 with a relaxed step in the first) separated by epoxy (0)
    img = np.full((60, 200), 90.0)
    img[10:50, 20:90] = 150.0
    img[10:50, 20:40] = 190.0
    img[10:50, 110:180] = 160.0
    img[:, 90:110] = 0.0
    viewer = make_napari_viewer()
    image = viewer.add_image(img, name="bse", scale=(1.0, 1.0), units=("um", "um"))
    prw = dock(viewer, "Profiles")
    shapes = prw.new_shapes_layer()
    prw.line_image_combo.value = image
    prw.line_width.setValue(1.0)
    shapes.add_lines([np.array([[30.0, 25.0], [30.0, 175.0]]),  # across the gap
                      np.array([[30.0, 22.0], [30.0, 85.0]])])  # within one grain
    qtbot.waitUntil(lambda: len(shapes.features) == 2 and "length_um" in shapes.features,
                    timeout=TIMEOUT_MS)
    assert prw.plot.figure.axes[-1].get_xlabel() == "distance along the line (µm)"
    dfw = dock(viewer, "Diffusion timescales")
    dfw.source_combo.value = shapes
    dfw.mineral.setCurrentText("plain D (any mineral)")
    dfw.diffusivity.setValue(1e-3)
    dfw.model.setCurrentText("erf")
    run_and_wait(qtbot, dfw)
    table = dfw._last[1].set_index("label")
    assert table.loc[1, "fit_status"] == "crosses_gap"
    assert "gap" in table.loc[1, "fit_note"] and "gap" in dfw.status.text()
    assert table.loc[2, "fit_status"] != "crosses_gap"
    assert dfw.plot.figure.axes[-1].get_xlabel() == "distance along the line (µm)"


# --------------------------------------------------------------------------------------------
# 3. Diffusion says where it disagrees with Describe, and starts from Describe's steps


def test_diffusion_names_the_crystals_describe_calls_zoned_but_it_finds_no_step(
    make_napari_viewer, qtbot
):
    prof, truth = make_profiles(n_per_type=2, noise=0.01, seed=4)
    table = descriptors.describe_zoning(prof)
    fits = diffusion.fit_diffusion(prof, model="step", diffusivity_um2_s=1e-3, zoning=table)
    merged = fits.merge(table[["label", "zoning_type"]], on="label")
    expected = set(
        merged.loc[
            (merged["zoning_type"] != "unzoned") & (merged["fit_status"] == "no step"), "label"
        ]
    )
    lab = np.zeros((20, 20 * len(truth)), dtype=np.int32)
    for i, label in enumerate(truth["label"]):
        lab[2:18, 20 * i + 2 : 20 * i + 18] = label
    viewer = make_napari_viewer()
    crystals = viewer.add_labels(lab, name="crystals")
    crystals.features = table.assign(index=table["label"])
    crystals.metadata["napari_zonation"] = {"profiles": prof, "owned": True, "role": "crystals"}
    dfw = dock(viewer, "Diffusion timescales")
    dfw.source_combo.value = crystals
    dfw.mineral.setCurrentText("plain D (any mineral)")
    dfw.diffusivity.setValue(1e-3)
    dfw.model.setCurrentText("step")
    run_and_wait(qtbot, dfw)
    out = crystals.features.set_index("label")
    flagged = set(out.index[out["describe_vs_fit"].fillna("").str.len() > 0])
    assert expected  # this sample has crystals Describe calls zoned and the step fit does not
    assert flagged == expected
    assert "Describe calls zoned" in dfw.status.text()
    note = out.loc[next(iter(expected)), "describe_vs_fit"]
    assert "Describe:" in note and "no step" in note


def test_diffusion_fits_the_step_describe_found(make_napari_viewer, qtbot):
    """Synthetic profiles with their true steps: by default Diffusion fits what Describe
    found in each crystal and says so per crystal (one decision across the widgets)."""
    prof, truth = make_profiles(n_per_type=2, noise=0.01, seed=7)
    table = descriptors.describe_zoning(prof)
    lab = np.zeros((20, 20 * len(truth)), dtype=np.int32)
    for i, label in enumerate(truth["label"]):
        lab[2:18, 20 * i + 2 : 20 * i + 18] = label
    viewer = make_napari_viewer()
    crystals = viewer.add_labels(lab, name="crystals")
    crystals.features = table.assign(index=table["label"])
    crystals.metadata["napari_zonation"] = {"profiles": prof, "owned": True, "role": "crystals"}
    dfw = dock(viewer, "Diffusion timescales")
    dfw.source_combo.value = crystals
    assert dfw.model.currentText() == "as described"  # the default
    dfw.mineral.setCurrentText("plain D (any mineral)")
    dfw.diffusivity.setValue(1e-3)
    run_and_wait(qtbot, dfw)
    out = crystals.features.set_index("label")
    tr = truth.set_index("label")
    assert out["describe_status"].str.len().gt(0).all()  # every crystal has its decision
    one_step = ("rim_brighter", "rim_darker")
    checked = 0
    for label, row in out.iterrows():
        said = row["zoning_type"]
        if said == "unzoned":
            assert row["describe_status"] == "Describe found no step: not fitted"
            assert not np.isfinite(row["timescale_days"])
        elif said in one_step and tr.loc[label, "zoning_type"] in one_step:
            assert row["describe_status"].startswith("fitted the step Describe found at")
            assert row["fit_status"] == "ok"
            # the fitted step is the true step (ground truth), not another feature
            assert abs(row["step_position_um"] - tr.loc[label, "step_positions_um"][0]) < 2.0
            checked += 1
        elif said == "multi_step":
            assert "fitted the outer step only" in row["describe_status"]
    assert checked >= 4
    assert "described step(s) confirmed" in dfw.status.text()
    # the plot of a crystal names its decision
    dfw.plot_label.setValue(int(out.index[out["zoning_type"].isin(one_step)][0]))
    assert "Describe found" in dfw.plot.figure.axes[0].get_title()


def test_real_plagioclase_diffusion_fits_the_outer_step_describe_found(
    make_napari_viewer, qtbot
):
    """The real plagioclase (Lubbers et al. 2022, MIT): Describe calls the main crystal
    multi_step; Diffusion must fit its outer step (not say "no step") and say so."""
    import napari_zonation as nz
    from napari_zonation._napari_io import PLAGIOCLASE_TIFF

    img = nz.read_sem_tiff(PLAGIOCLASE_TIFF)[0]
    px = 1.18
    viewer = make_napari_viewer()
    viewer.add_image(img, name="plag", scale=(px, px))
    seg = dock(viewer, "Segment crystals")
    assert seg.run(blocking=True) is not None, seg.status.text()
    crystals = viewer.layers["plag crystals"]
    prw = dock(viewer, "Profiles")
    assert prw.run(blocking=True) is not None, prw.status.text()
    dsw = dock(viewer, "Describe zoning")
    assert dsw.run(blocking=True) is not None, dsw.status.text()
    described = crystals.features.set_index("label").copy()
    dfw = dock(viewer, "Diffusion timescales")
    dfw.source_combo.value = crystals
    dfw.mineral.setCurrentText("plain D (any mineral)")
    dfw.diffusivity.setValue(1e-3)
    run_and_wait(qtbot, dfw)
    feats = crystals.features.set_index("label")
    # Describe's columns are not overwritten by the fit's (kept as fit_<name>)
    pd.testing.assert_series_equal(feats["step_positions_um"], described["step_positions_um"])
    assert "fit_step_positions_um" in feats
    main = int(np.bincount(np.asarray(crystals.data).ravel())[1:].argmax() + 1)
    row = feats.loc[main]
    assert row["zoning_type"] == "multi_step"
    outer = min(row["step_positions_um"])
    assert row["describe_status"].startswith(
        f"Describe: multi_step ({len(row['step_positions_um'])} steps); fitted the outer step "
        f"only (at {outer:.3g} µm"
    )
    assert row["fit_status"] == "ok", row["describe_status"]
    # the fitted step is the described outer step: within the profile cut before the next
    second = sorted(row["step_positions_um"])[1]
    assert row["step_position_um"] < 0.5 * (outer + second)
    assert abs(row["step_position_um"] - outer) < 3 * px
    # Describe's results table shows the same decision beside the description
    res = dsw.results
    cols = [res.table.horizontalHeaderItem(i).text() for i in range(res.table.columnCount())]
    assert "describe_status" in cols and "fit_status" in cols
    rows = {res.table.item(r, cols.index("label")).text(): r for r in range(res.table.rowCount())}
    cell = res.table.item(rows[str(main)], cols.index("describe_status")).text()
    assert cell == row["describe_status"]
    # no crystal is left with two contradicting verdicts: a failed fit says why
    for _, r in feats.iterrows():
        if r["fit_status"] not in ("ok", "not fitted (Describe: no step)"):
            assert f"does not confirm it ({r['fit_status']}" in r["describe_status"]


# --------------------------------------------------------------------------------------------
# 6. plots that say when they cannot mean anything


def _cluster_dock_on_squares(viewer, prof, truth, table):
    """A plugin-owned crystals layer of one square per profile (features ``table``) and the
    Cluster dock pointed at it; returns both."""
    lab = np.zeros((20, 20 * len(truth)), dtype=np.int32)
    for i, label in enumerate(truth["label"]):
        lab[2:18, 20 * i + 2 : 20 * i + 18] = label
    crystals = viewer.add_labels(lab, name="crystals")
    crystals.features = table.assign(index=table["label"])
    crystals.metadata["napari_zonation"] = {"profiles": prof, "owned": True, "role": "crystals"}
    clw = dock(viewer, "Cluster")
    clw.labels_combo.value = crystals
    return crystals, clw


def test_cluster_of_two_crystals_says_it_is_no_clustering(make_napari_viewer, qtbot):
    prof, truth = make_profiles(n_per_type=1, zoning_types=("rim_brighter", "unzoned"),
                                noise=0.01, seed=2)
    table = descriptors.describe_zoning(prof)
    viewer = make_napari_viewer()
    crystals, clw = _cluster_dock_on_squares(viewer, prof, truth, table)
    run_and_wait(qtbot, clw)
    assert "Not a clustering" in clw.status.text()
    # no PCA map with a meaningless second axis
    assert clw._map_ax is None
    texts = [t.get_text() for ax in clw.map_plot.figure.axes for t in ax.texts]
    assert any("too few" in t for t in texts)
    assert not any("PC2" in ax.get_ylabel() for ax in clw.map_plot.figure.axes)


def test_cluster_panels_of_mixed_phases_draw_no_median(make_napari_viewer, qtbot):
    prof, truth = make_profiles(n_per_type=3, noise=0.01, seed=5, phase="mixed")
    table = descriptors.describe_zoning(prof, crystals=truth[["label", "phase"]])
    viewer = make_napari_viewer()
    crystals, clw = _cluster_dock_on_squares(viewer, prof, truth, table)
    clw.n_clusters.setValue(2)
    run_and_wait(qtbot, clw)
    feats = crystals.features
    panels = [ax for ax in clw.plot.figure.axes if ax.get_visible()]
    assert len({ax.get_ylim() for ax in panels}) == 1  # one shared scale
    for ax in panels:
        assert ax.get_ylabel() in ("", "value − core value (grey levels)")
        c = int(ax.get_title().split()[1])
        members = feats[feats["cluster"] == c]
        phases = set(members["phase"])
        types = set(members["zoning_type"])
        crystals_drawn = [ln for ln in ax.lines if str(ln.get_gid()).startswith("crystal ")]
        medians = [ln for ln in ax.lines if ln.get_gid() == "median"]
        assert len(crystals_drawn) == len(members)  # each crystal drawn
        if len(phases) > 1:
            assert "phases" in ax.get_title() and "no median" in ax.get_title()
        if len(phases) > 1 or len(types) > 1:
            assert not medians
        # each crystal relative to its own core value (not absolute grey)
        for ln in crystals_drawn:
            lab = int(ln.get_gid().split()[1])
            d, v = profile_arrays_of(prof, lab)
            core = float(members.loc[members["label"] == lab, "core_value"].iloc[0])
            np.testing.assert_allclose(ln.get_ydata(), v - core)


def profile_arrays_of(prof, label):
    p = prof[prof["label"] == label].sort_values("distance_um")
    return p["distance_um"].to_numpy(float), p["value"].to_numpy(float)


def test_report_and_cluster_dock_draw_the_same_panel(make_napari_viewer, qtbot):
    """One plotting function for the per-cluster profiles: the dock's panel and the report's
    panel of the same cluster hold the same curves."""
    from napari_zonation import report

    prof, truth = make_profiles(n_per_type=2, zoning_types=("rim_brighter", "rim_darker"),
                                noise=0.01, seed=3)
    table = descriptors.describe_zoning(prof)
    viewer = make_napari_viewer()
    crystals, clw = _cluster_dock_on_squares(viewer, prof, truth, table)
    clw.n_clusters.setValue(2)
    run_and_wait(qtbot, clw)
    feats = crystals.features.drop(columns=["index"])
    lab = np.asarray(crystals.data)
    fig = report.build_report(lab.astype(float), lab, feats, prof)
    for ax in [a for a in clw.plot.figure.axes if a.get_visible()]:
        c = int(ax.get_title().split()[1])
        twin = next(a for a in fig.axes if a.get_title().startswith(f"cluster {c} "))
        assert twin.get_title() == ax.get_title()
        mine = {ln.get_gid(): ln.get_ydata() for ln in ax.lines}
        theirs = {ln.get_gid(): ln.get_ydata() for ln in twin.lines}
        assert mine.keys() == theirs.keys()
        for k in mine:
            np.testing.assert_allclose(mine[k], theirs[k])


def test_crystal_map_says_when_a_second_axis_means_nothing(make_napari_viewer, qtbot):
    prof, truth = make_profiles(n_per_type=2, zoning_types=("rim_brighter", "rim_darker"),
                                noise=0.01, seed=3)
    table = descriptors.describe_zoning(prof)
    viewer = make_napari_viewer()
    crystals, clw = _cluster_dock_on_squares(viewer, prof, truth, table)
    emb = pd.DataFrame({"label": truth["label"], "pc1": np.arange(len(truth), dtype=float),
                        "pc2": np.full(len(truth), 1e-15)})
    emb.attrs["explained_variance_ratio"] = (1.0, 1e-30)
    clw.show_map(crystals, emb, {})
    assert clw._map_ax is None
    texts = [t.get_text() for ax in clw.map_plot.figure.axes for t in ax.texts]
    assert any("one direction only" in t for t in texts)
    assert not any("PC2" in ax.get_ylabel() for ax in clw.map_plot.figure.axes)


# --------------------------------------------------------------------------------------------
# 7. QA flags on demand; the phase legend only with the phases shown


def test_flags_shown_on_demand_and_filtered(make_napari_viewer, sample):
    viewer = make_napari_viewer()
    image, crystals, seg = segmented(viewer, sample)
    flagged = viewer.layers["bse flagged"]
    assert not flagged.visible  # not drawn over the image until asked for
    # the status line counts each flag in words (not one "flagged" total)
    feats = crystals.features
    for f in ("touches_border", "touching", "cracked", "faint_edge"):
        n = int(feats[f].fillna(False).astype(bool).sum()) if f in feats else 0
        if n:
            assert f"{n} {f.replace('_', ' ')}" in seg.status.text()
    assert not seg.legend.isVisibleTo(seg) and not viewer.layers["bse phases"].visible
    seg.show_phases.setChecked(True)
    phases = viewer.layers["bse phases"]
    assert seg.legend.isVisibleTo(seg) and phases.visible
    # the legend's colours are the phases layer's colours on screen
    import re

    legend = dict(re.findall(r'color:(#[0-9a-f]{6}).*?&nbsp;([\w ]+?) \(', seg.legend.text()))
    for i, name in enumerate(phases.metadata["napari_zonation"]["phase_names"]):
        rgba = phases.colormap.map(np.array([i + 1]))[0]
        hexa = "#" + "".join(f"{int(round(x * 255)):02x}" for x in rgba[:3])
        assert legend[hexa] == name
    # hiding the layer from the layer list hides its legend too
    phases.visible = False
    assert not seg.legend.isVisibleTo(seg) and not seg.show_phases.isChecked()
    phases.visible = True
    assert seg.legend.isVisibleTo(seg) and seg.show_phases.isChecked()
    if not len(flagged.data):
        pytest.skip("no crystal flagged in this sample")
    flag = next(f for f in ("touches_border", "touching", "cracked", "faint_edge")
                if f in flagged.features and flagged.features[f].any())
    seg.flag_filter.setCurrentText(flag.replace("_", " "))
    assert flagged.visible
    np.testing.assert_array_equal(flagged.shown, flagged.features[flag].to_numpy(bool))
    table = crystals.features.set_index("label")
    shown = set(flagged.features.loc[flagged.shown, "label"])
    assert shown == set(table.index[table[flag].fillna(False).astype(bool)])
    seg.flag_filter.setCurrentText("any flag")
    assert flagged.shown.all()


# --------------------------------------------------------------------------------------------
# 8. Describe shows its result: a sortable table linked to the crystals


def test_describe_results_table_selects_crystal_and_plots_it(make_napari_viewer, sample):
    viewer = make_napari_viewer()
    image, crystals, _ = segmented(viewer, sample)
    dsw = dock(viewer, "Describe zoning")
    assert dsw.labels_combo.value is crystals
    assert dsw.run(blocking=True) is not None, dsw.status.text()
    res = dsw.results
    assert res.isVisibleTo(dsw)
    feats = crystals.features
    assert res.table.rowCount() == len(feats)
    cols = [res.table.horizontalHeaderItem(i).text() for i in range(res.table.columnCount())]
    assert cols[:2] == ["label", "zoning_type"]
    # sorting by label descending puts the largest id first
    res.table.sortItems(0, order=__import__("qtpy.QtCore").QtCore.Qt.SortOrder.DescendingOrder)
    assert int(res.table.item(0, 0).text()) == int(feats["label"].max())
    # clicking a row selects its crystal and plots its profile with its type
    res.table.selectRow(2)
    label = int(res.table.item(2, 0).text())
    assert crystals.selected_label == label
    zt = feats.loc[feats["label"] == label, "zoning_type"].iloc[0]
    title = res.plot.figure.axes[0].get_title()
    assert f"crystal {label}" in title and str(zt) in title
    prof = crystals.metadata["napari_zonation"]["profiles"]
    expected = prof[prof["label"] == label].sort_values("distance_um")["value"].to_numpy()
    np.testing.assert_allclose(res.plot.figure.axes[0].lines[0].get_ydata(), expected)
    # selecting a crystal in the viewer selects its row
    other = int(feats["label"].min())
    crystals.selected_label = other
    assert res.selected_label == other


# --------------------------------------------------------------------------------------------
# 5. Diffusion's defaults explain themselves on grey profiles


def test_diffusion_on_grey_profiles_explains_what_to_do(make_napari_viewer, qtbot):
    prof, truth = make_profiles(n_per_type=2, zoning_types=("rim_brighter",), seed=6)
    lab = np.zeros((20, 20 * len(truth)), dtype=np.int32)
    for i, label in enumerate(truth["label"]):
        lab[2:18, 20 * i + 2 : 20 * i + 18] = label
    viewer = make_napari_viewer()
    crystals = viewer.add_labels(lab, name="crystals")
    crystals.metadata["napari_zonation"] = {"profiles": prof, "owned": True, "role": "crystals"}
    dfw = dock(viewer, "Diffusion timescales")
    dfw.source_combo.value = crystals
    # the minerals are offered with their models
    laws = [dfw.mineral.itemText(i) for i in range(dfw.mineral.count())]
    assert any(t.startswith("olivine") for t in laws) and any("plagioclase" in t for t in laws)
    assert any("Arrhenius" in t for t in laws) and any(t.startswith("plain D") for t in laws)
    # the default olivine law on grey levels: what to do, in words, no API keywords, shown
    # before Run with the XFe field highlighted
    assert dfw.mineral.currentText().startswith("olivine")
    hint = dfw.hint.text()
    assert "grey levels" in hint and "Calibrate" in hint and "0.15 for Fo85" in hint
    assert "border" in dfw.xfe.styleSheet() and "border" not in dfw.diffusivity.styleSheet()
    assert dfw.run() is None  # nothing runs into the core's error
    text = dfw.status.text()
    assert "Calibrate" in text and "plain D" in text and "xfe=" not in text
    # giving XFe completes the conditions: the highlight and the hint go, Run works
    dfw.xfe.setValue(0.15)
    assert dfw.hint.text() == "" and dfw.xfe.styleSheet() == ""
    # a plain D without a value: Run is off, with the reason; giving D turns it on
    dfw.mineral.setCurrentText("plain D (any mineral)")
    assert not dfw.run_button.isEnabled()
    assert "Give D" in dfw.hint.text() and "border" in dfw.diffusivity.styleSheet()
    assert dfw.run() is None
    assert "Give D" in dfw.status.text()
    dfw.diffusivity.setValue(1e-3)
    assert dfw.run_button.isEnabled() and dfw.hint.text() == ""
    run_and_wait(qtbot, dfw)
    assert (crystals.features["fit_status"] == "ok").any()


def test_diffusion_takes_xfe_from_fo_profiles(make_napari_viewer):
    prof, truth = make_profiles(n_per_type=1, zoning_types=("rim_brighter",), seed=6)
    prof = prof.assign(value=70.0 + (prof["value"] - prof["value"].min()) / 10.0,
                       quantity="Fo (mol%)")
    viewer = make_napari_viewer()
    crystals = viewer.add_labels(np.ones((8, 8), dtype=np.int32) * int(truth["label"][0]),
                                 name="crystals")
    crystals.metadata["napari_zonation"] = {"profiles": prof, "owned": True, "role": "crystals"}
    dfw = dock(viewer, "Diffusion timescales")
    dfw.source_combo.value = crystals
    assert dfw.mineral.currentText().startswith("olivine")
    assert "from the Fo values" in dfw.hint.text() and dfw.xfe.styleSheet() == ""
    assert dfw.readiness() == ("", None)


# --------------------------------------------------------------------------------------------
# #29: the core's warnings reach the user instead of being silenced


def test_describe_shows_the_core_warnings(make_napari_viewer, sample, monkeypatch):
    import warnings

    viewer = make_napari_viewer()
    image, crystals, _ = segmented(viewer, sample)
    real = descriptors.describe_zoning

    def warning_describe(*args, **kwargs):
        warnings.warn("profiles have 3 channels; describing the first", UserWarning,
                      stacklevel=2)
        return real(*args, **kwargs)

    monkeypatch.setattr(descriptors, "describe_zoning", warning_describe)
    dsw = dock(viewer, "Describe zoning")
    assert dsw.run(blocking=True) is not None, dsw.status.text()
    text = dsw.status.text()
    assert "Notes: profiles have 3 channels; describing the first" in text
    assert text.count("profiles have 3 channels") == 1  # said once, not once per chunk
    assert "zoning_type" in crystals.features.columns
