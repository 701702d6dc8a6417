"""The report figure: what it says (labels, titles, numbers, scales) and how it looks.

The scene is drawn here by hand (no segmentation, no generator) so that the figure depends
on the report code only: four crystals in two clusters, one cut by the image edge, one cluster
mixing a brighter and a darker rim, and timescales with intervals for the dated ones.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import matplotlib.style as mpl_style
import numpy as np
import pandas as pd
import pytest
from matplotlib.testing.compare import compare_images
from scipy import ndimage as ndi
from skimage.draw import disk, ellipse, rectangle

from napari_zonation.report import (
    FILL_ALPHA,
    OKABE_ITO,
    build_report,
    quantity_label,
    report_figure,
)

matplotlib.use("Agg")
BASELINE = Path(__file__).parent / "baseline" / "report.png"
PX = 2.0


def _step(d, rim, core, at, width=1.5):
    return core + (rim - core) / (1 + np.exp((d - at) / width))


@pytest.fixture(scope="module")
def scene():
    shape = (120, 160)
    rng = np.random.default_rng(7)
    image = 100 + rng.normal(0, 2, shape)
    labels = np.zeros(shape, np.int32)
    masks = {
        1: disk((35, 40), 22, shape=shape),
        2: disk((35, 110), 20, shape=shape),
        3: rectangle((70, 0), end=(110, 30), shape=shape),  # cut by the left edge
        4: ellipse(85, 100, 25, 16, shape=shape),
    }
    for lab, (rr, cc) in masks.items():
        labels[rr, cc] = lab
    rows = []
    spec = {1: (150, 135, 8), 2: (152, 136, 10), 3: (118, 135, 6), 4: (160, 140, 9)}
    for lab, (rim, core, at) in spec.items():
        d = np.arange(0, 40, PX) + 1.0
        v = _step(d, rim, core, at) + rng.normal(0, 0.4, d.size)
        rows.append(pd.DataFrame({"label": lab, "channel": "bse", "distance_um": d, "value": v,
                                  "source": "rim"}))
        inside = labels == lab
        depth = ndi.distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1][inside] * PX
        image[inside] = _step(depth, rim, core, at) + rng.normal(0, 2, depth.size)
    profiles = pd.concat(rows, ignore_index=True)
    crystals = pd.DataFrame({
        "label": [1, 2, 3, 4],
        "cluster": [0, 0, 1, 1],
        "zoning_type": ["rim_brighter", "rim_brighter", "rim_darker", "rim_brighter"],
        "core_value": [135.0, 136.0, 135.0, 140.0],
        "rim_value": [150.0, 152.0, 118.0, 160.0],
        "touches_border": [False, False, True, False],
        "timescale_days": [12.0, 30.0, np.nan, 4.0],
        "timescale_days_lo": [8.0, 20.0, np.nan, 2.5],
        "timescale_days_hi": [20.0, 45.0, np.nan, 7.0],
        "fit_status": ["ok", "ok", "cut by the image edge", "ok"],
    })
    return image, labels, crystals, profiles


@pytest.fixture(scope="module")
def figure(scene):
    image, labels, crystals, profiles = scene
    return build_report(image, labels, crystals, profiles, pixel_size_um=PX, title="scene")


def _axes(fig):
    ax_map = fig.axes[0]
    panels = [ax for ax in fig.axes[1:] if ax.get_title().startswith("cluster")]
    times = [ax for ax in fig.axes if "dated" in ax.get_title()]
    return ax_map, panels, times


def test_every_axis_has_its_unit(figure):
    ax_map, panels, times = _axes(figure)
    assert ax_map.get_xlabel() == "x (µm)" and ax_map.get_ylabel() == "y (µm)"
    assert panels[0].get_ylabel() == "value − core value (grey levels)"
    assert all(ax.get_xlabel() in ("", "distance from rim (µm)") for ax in panels)
    assert any(ax.get_xlabel() == "distance from rim (µm)" for ax in panels)
    texts = [t.get_text() for ax in figure.axes for t in (ax.xaxis.label, ax.yaxis.label)]
    assert not any("(um)" in t for t in texts)
    # 2.5 to 45 days: more than a decade, a log axis
    assert times and times[0].get_xscale() == "log" and "days" in times[0].get_xlabel()


def test_panels_share_one_y_scale(figure):
    _, panels, _ = _axes(figure)
    assert len(panels) == 2
    assert panels[0].get_ylim() == panels[1].get_ylim()
    # the shared scale spans both clusters' rims: -17 and +20 grey levels from the core
    lo, hi = panels[0].get_ylim()
    assert lo < -15 and hi > 18


def test_titles_count_every_zoning_type_and_say_mixed(figure):
    _, panels, _ = _axes(figure)
    coherent, mixed = (ax.get_title() for ax in panels)
    assert coherent == "cluster 0 (n=2)\nrim_brighter 2"
    assert mixed.startswith("cluster 1 (n=2, mixed)")
    assert "rim_brighter 1" in mixed and "rim_darker 1" in mixed


def test_mixed_cluster_shows_members_not_a_median(figure):
    _, panels, _ = _axes(figure)
    coherent, mixed = panels
    assert [ln.get_label() for ln in coherent.lines].count("median") == 1
    assert "median" not in [ln.get_label() for ln in mixed.lines]
    # both members are drawn, each numbered at its core end
    assert {t.get_text() for t in mixed.texts} == {"3", "4"}


def test_crystal_numbers_sit_inside_their_crystals(scene, figure):
    _, labels, _, _ = scene
    ax_map = figure.axes[0]
    numbers = {t.get_text(): t.get_position() for t in ax_map.texts}
    assert set(numbers) == {"1", "2", "3", "4"}
    for text, (x, y) in numbers.items():
        assert labels[int(y / PX), int(x / PX)] == int(text)


def test_border_crystal_is_dashed_and_fill_is_translucent(scene, figure):
    _, labels, _, _ = scene
    ax_map = figure.axes[0]
    dashed = [ln for ln in ax_map.lines if ln.get_linestyle() != "-"]
    solid = [ln for ln in ax_map.lines if ln.get_linestyle() == "-"]
    assert dashed and solid
    for ln in dashed:  # the dashed outline runs around crystal 3 (rows 70-110, cols 0-30)
        x, y = ln.get_data()
        assert x.max() / PX < 32 and y.min() / PX > 68
    overlay = ax_map.images[1].get_array()
    assert overlay[..., 3].max() == pytest.approx(FILL_ALPHA) and FILL_ALPHA <= 0.3
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert "cut by the image edge (1)" in legend


def test_cluster_colours_are_distinct_colour_blind_safe(figure):
    ax_map = figure.axes[0]
    colours = {matplotlib.colors.to_hex(ln.get_color()) for ln in ax_map.lines}
    assert colours == {OKABE_ITO[0].lower(), OKABE_ITO[1].lower()}


def test_timescales_are_drawn_with_their_intervals(figure):
    _, _, (times,) = _axes(figure)
    assert times.get_title() == "3 of 4 crystals dated; not dated: cut by the image edge 1"
    assert [t.get_text() for t in times.get_yticklabels()] == ["1", "2", "4"]
    bars = [ln for ln in times.lines if len(ln.get_xdata()) == 2]
    spans = sorted(tuple(ln.get_xdata()) for ln in bars)
    assert spans == [(2.5, 7.0), (8.0, 20.0), (20.0, 45.0)]


def test_quantity_comes_from_the_profiles():
    prof = pd.DataFrame({"label": [1], "distance_um": [0.0], "value": [1.0]})
    assert quantity_label(prof) == "grey levels"
    assert quantity_label(prof.assign(quantity="An (mol %)")) == "An (mol %)"
    assert quantity_label(prof.assign(channel="ch1")) == "ch1, image units"
    assert quantity_label(prof.assign(channel="Fo")) == "Fo"
    assert quantity_label(prof, "Fo (mol %)") == "Fo (mol %)"


def test_report_without_crystals_says_why(scene, tmp_path):
    image, labels, _, _ = scene
    empty = pd.DataFrame(columns=["label"])
    fig = build_report(image, np.zeros_like(labels), empty,
                       pd.DataFrame(columns=["label", "distance_um", "value"]),
                       pixel_size_um=PX, note="no crystal found: the image is noise")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "no crystal found: the image is noise" in texts


def test_report_looks_like_its_baseline(scene, tmp_path):
    """Pixel comparison with the committed baseline (regenerate it, after looking at the new
    figure, with ``NZ_UPDATE_BASELINE=1``)."""
    image, labels, crystals, profiles = scene
    out = tmp_path / "report.png"
    style = {"font.family": "DejaVu Sans", "text.hinting": "auto", "text.antialiased": True}
    with mpl_style.context("default"), matplotlib.rc_context(style):
        report_figure(image, labels, crystals, profiles, out, pixel_size_um=PX, title="scene")
    if os.environ.get("NZ_UPDATE_BASELINE"):
        BASELINE.parent.mkdir(exist_ok=True)
        BASELINE.write_bytes(out.read_bytes())
    assert compare_images(str(BASELINE), str(out), tol=5) is None
