"""The Segment dock on a lazily opened mosaic (a multiscale zarr store) in a real napari viewer:
labels streamed to a zarr store and shown as a multiscale Labels layer, equal to
``segment_crystals`` on the same image in memory; Cancel leaves no store (run under Xvfb with
QT_QPA_PLATFORM=xcb, as tests/test_widgets.py)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui
napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_helpers import TIMEOUT_MS, dock  # noqa: E402

from napari_zonation import make_thin_section, segment_crystals  # noqa: E402
from napari_zonation.mosaic import write_mosaic  # noqa: E402

PX = 1.0
TILE = 1024


@pytest.fixture(scope="module")
def mosaic_image():
    """A 2048 x 2048 px mosaic of four synthetic scenes of 1024 px (12 crystals each)."""
    scenes = [make_thin_section((TILE, TILE), n_crystals=12, seed=40 + k).image for k in range(4)]
    top = np.concatenate(scenes[:2], axis=1)
    bottom = np.concatenate(scenes[2:], axis=1)
    return np.clip(np.concatenate([top, bottom], axis=0), 0, 255).astype(np.uint8)


@pytest.fixture
def opened(make_napari_viewer, tmp_path, mosaic_image):
    """A viewer with the mosaic opened from its zarr store (multiscale, lazy) and the dock."""
    src = tmp_path / "in"
    src.mkdir()
    store = write_mosaic(src / "section.zarr", mosaic_image, PX, chunk=512)
    viewer = make_napari_viewer()
    layers = viewer.open(str(store), plugin="napari-zonation")
    image = layers[0]
    assert image.multiscale  # read lazily, level by level
    widget = dock(viewer, "Segment crystals")
    widget.image_combo.value = image
    return viewer, image, widget, tmp_path / "out"


def test_mosaic_labels_stream_to_zarr_and_equal_the_in_memory_segmentation(
    opened, qtbot, mosaic_image
):
    viewer, image, widget, out = opened
    store = out / "labels.zarr"
    widget.mosaic_store.setText(str(store))
    yielded = []
    worker = widget.run()
    assert worker is not None, widget.status.text()
    worker.yielded.connect(yielded.append)
    qtbot.waitUntil(lambda: not widget.busy, timeout=4 * TIMEOUT_MS)
    assert store.is_dir(), widget.status.text()
    layer = viewer.layers["section crystals"]
    assert layer.multiscale
    got = np.asarray(layer.data[0])
    ref = segment_crystals(
        mosaic_image, PX, min_area_um2=400.0, smooth_um=1.5, contrast=None, close_um=3.0,
        split_touching=True, background="auto",
    )
    assert got.max() > 20  # the scenes' crystals were found
    np.testing.assert_array_equal(got, ref)
    # the table: one row per crystal, its pixel count that of the labels
    table = layer.features
    ids, counts = np.unique(ref[ref > 0], return_counts=True)
    np.testing.assert_array_equal(np.sort(table["label"].to_numpy()), ids)
    np.testing.assert_array_equal(
        table.sort_values("label")["n_pixels"].to_numpy(), counts
    )
    # the bar counted items of each stage: "… k of n"
    texts = [getattr(m, "text", "") for m in yielded]
    assert any("Measuring the crystals: batch" in t and " of " in t for t in texts), texts
    # the in-memory widget's labels array was not built: the layer reads the store
    assert str(store) in str(layer.metadata["napari_zonation"]["labels_store"])


def test_cancel_leaves_no_store(opened, qtbot):
    viewer, image, widget, out = opened
    store = out / "labels.zarr"
    widget.mosaic_store.setText(str(store))
    worker = widget.run()
    assert worker is not None, widget.status.text()
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.busy, timeout=4 * TIMEOUT_MS)
    assert widget.status.text() == "Cancelled."
    assert not store.exists()
    leftovers = list(out.iterdir()) if out.exists() else []
    assert leftovers == []  # no half-written store beside it either
    assert "section crystals" not in viewer.layers


def test_an_existing_store_is_refused(opened, tmp_path):
    viewer, image, widget, out = opened
    store = out / "labels.zarr"
    store.mkdir(parents=True)
    widget.mosaic_store.setText(str(store))
    assert widget.run() is None
    assert "already exists" in widget.status.text()
    assert "section crystals" not in viewer.layers
