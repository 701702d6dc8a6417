"""The Segment widget's one-shot reference ("Use as reference") and rim QA layer in a real
napari viewer (run under Xvfb with QT_QPA_PLATFORM=xcb, as tests/test_widgets.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import measure

pytestmark = pytest.mark.gui
napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_zonation.segment.qa import rim_band  # noqa: E402
from napari_zonation.synthetic import SCENE_KINDS, make_thin_section  # noqa: E402

PX = 1.5  # um per pixel: not 1, so a lost scale shows


@pytest.fixture(scope="module")
def sample():
    return make_thin_section(
        (384, 384), n_crystals=10, seed=3, pixel_size_um=PX, noise=0.03, **SCENE_KINDS["glassy"]
    )


def _free_crystal(labels):
    """The largest true crystal clear of the frame and of other crystals."""
    ids, area = np.unique(labels[labels > 0], return_counts=True)
    frame = set(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]).tolist())
    for i in ids[np.argsort(-area)]:
        mask = labels == i
        ring = ndi.binary_dilation(mask) & ~mask
        if int(i) not in frame and not (labels[ring] > 0).any():
            return int(i)
    raise AssertionError("no free crystal")


def _viewer_with_crystals(make_napari_viewer, sample):
    viewer = make_napari_viewer()
    image = viewer.add_image(sample.image, name="bse", scale=(PX, PX))
    _, seg = viewer.window.add_plugin_dock_widget("napari-zonation", "Segment crystals")
    assert seg.run(blocking=True) is not None, seg.status.text()
    return viewer, image, seg


def test_use_a_drawn_polygon_as_reference(make_napari_viewer, sample):
    viewer, image, seg = _viewer_with_crystals(make_napari_viewer, sample)
    t = _free_crystal(sample.labels)
    truth = sample.labels == t
    contour = measure.find_contours(np.pad(truth, 1).astype(float), 0.5)[0] - 1
    poly = measure.approximate_polygon(contour, 0.5)
    # drawn in world coordinates (the Shapes layer has the image's scale)
    shapes = viewer.add_shapes([poly], shape_type="polygon", name="outline", scale=(PX, PX))
    seg.line_combo.value = shapes
    assert seg.use_reference("shape", blocking=True) is not None, seg.status.text()
    assert "one-shot reference" in seg.status.text()
    crystals = viewer.layers["bse crystals"]
    lab = np.asarray(crystals.data)
    got = lab == np.bincount(lab[truth]).argmax()
    assert (got & truth).sum() / (got | truth).sum() >= 0.95
    # the crystal table and the rim QA layer follow the new labels
    assert set(crystals.features["index"]) == set(np.unique(lab[lab > 0]))
    assert {"edge_contrast", "faint_edge", "rim_near_groundmass"} <= set(crystals.features)
    band = np.asarray(viewer.layers["bse rim band"].data)
    np.testing.assert_array_equal(band, rim_band(lab, PX))
    assert band.any() and ((band == 0) | (band == lab)).all()
    np.testing.assert_allclose(viewer.layers["bse rim band"].scale, (PX, PX))


def test_use_the_selected_crystal_as_reference(make_napari_viewer, sample):
    viewer, image, seg = _viewer_with_crystals(make_napari_viewer, sample)
    crystals = viewer.layers["bse crystals"]
    before = np.asarray(crystals.data).copy()
    chosen = int(np.bincount(before[before > 0]).argmax())
    crystals.selected_label = chosen
    assert seg.use_reference("label", blocking=True) is not None, seg.status.text()
    after = np.asarray(crystals.data)
    ids = np.unique(after[before == chosen])
    assert ids.size == 1 and ids[0] > 0
    np.testing.assert_array_equal(after == ids[0], before == chosen)


def test_a_bad_reference_keeps_the_previous_labels(make_napari_viewer, sample):
    viewer, image, seg = _viewer_with_crystals(make_napari_viewer, sample)
    crystals = viewer.layers["bse crystals"]
    before = np.asarray(crystals.data).copy()
    bow_tie = np.array([[10.0, 10.0], [100.0, 100.0], [10.0, 100.0], [100.0, 10.0]])
    shapes = viewer.add_shapes([bow_tie], shape_type="polygon", name="bad", scale=(PX, PX))
    seg.line_combo.value = shapes
    assert seg.use_reference("shape", blocking=True) is None
    assert "crosses itself" in seg.status.text()
    np.testing.assert_array_equal(np.asarray(crystals.data), before)
    # no label selected that exists: a clear message, nothing changed
    crystals.selected_label = int(before.max()) + 5
    assert seg.use_reference("label", blocking=True) is None
    assert "label picker" in seg.status.text()
    np.testing.assert_array_equal(np.asarray(crystals.data), before)
