"""The one-shot reference crystal: segment_crystals(image, px, reference=...) against the
synthetic truth, and every bad reference explained."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import measure

from napari_zonation import ZonationInputError, make_thin_section, segment_crystals
from napari_zonation.metrics import match_instances
from napari_zonation.synthetic import SCENE_KINDS


def _scene(kind: str, seed: int, size: int = 512):
    n = int(20 * (size / 768) ** 2) + 3
    options = SCENE_KINDS.get(kind, {})
    return make_thin_section(
        (size, size), n_crystals=n, pixel_size_um=1.0, noise=0.03, seed=seed, **options
    )


def _free_crystal(labels: np.ndarray) -> int:
    """The largest true crystal clear of the frame and of other crystals."""
    ids, area = np.unique(labels[labels > 0], return_counts=True)
    grown = ndi.grey_dilation(labels, size=(3, 3))
    shrunk = -ndi.grey_dilation(-np.where(labels > 0, labels, labels.max() + 1), size=(3, 3))
    touching = set(np.unique(labels[(grown != labels) & (labels > 0) & (shrunk != grown)]))
    frame = set(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]).tolist())
    for i in ids[np.argsort(-area)]:
        if int(i) not in frame and int(i) not in touching:
            return int(i)
    raise AssertionError("no free crystal in the scene")


@pytest.fixture(scope="module")
def glassy():
    s = _scene("glassy", 3)
    t = _free_crystal(s.labels)
    auto = segment_crystals(s.image, 1.0)
    one_shot, info = segment_crystals(s.image, 1.0, reference=s.labels == t, return_info=True)
    return s, t, auto, one_shot, info


def test_the_reference_comes_back_as_one_label_exactly(glassy):
    s, t, _, one_shot, _ = glassy
    mask = s.labels == t
    ids = np.unique(one_shot[mask])
    assert ids.size == 1 and ids[0] > 0
    np.testing.assert_array_equal(one_shot == ids[0], mask)
    assert sorted(np.unique(one_shot))[1:] == list(range(1, one_shot.max() + 1))


def test_one_shot_finds_the_crystals_of_the_scene(glassy):
    s, _, auto, one_shot, info = glassy
    m_auto, m_one = match_instances(s.labels, auto), match_instances(s.labels, one_shot)
    assert m_one["recall"] >= 0.9, m_one
    assert m_one["f1"] >= m_auto["f1"] - 0.05, (m_one, m_auto)
    assert m_one["mean_iou"] >= 0.9
    # the true crystal outline as reference: an edge runs along most of it
    assert info["reference_groundmass_share"] < 0.25


def test_a_polygon_reference_is_the_mask_it_encloses():
    s = _scene("default", 4, 384)
    t = _free_crystal(s.labels)
    mask = s.labels == t
    contour = measure.find_contours(np.pad(mask, 1).astype(float), 0.5)[0] - 1
    poly = measure.approximate_polygon(contour, 0.5)
    lab = segment_crystals(s.image, 1.0, reference=poly)
    got = lab == np.bincount(lab[mask]).argmax()
    iou = (got & mask).sum() / (got | mask).sum()
    assert iou >= 0.95, iou


def test_a_reference_covering_groundmass_warns_with_its_share():
    s = _scene("default", 5, 384)
    t = _free_crystal(s.labels)
    big = ndi.binary_dilation(s.labels == t, iterations=12) & (s.labels == 0) | (s.labels == t)
    with pytest.warns(
        UserWarning,
        match=r"about \d+ % of the reference.s outline runs where the image shows no edge",
    ):
        segment_crystals(s.image, 1.0, reference=big)


def test_a_groundmass_patch_is_used_and_checked():
    s = _scene("default", 5, 384)
    t = _free_crystal(s.labels)
    far = ndi.distance_transform_edt(s.labels == 0) > 15
    rows, cols = np.nonzero(far)
    patch = np.zeros(s.labels.shape, bool)
    patch[rows[0] : rows[0] + 5, cols[0] : cols[0] + 5] = True
    patch &= far
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lab = segment_crystals(s.image, 1.0, reference=s.labels == t, groundmass=patch)
    assert not (lab[patch] > 0).any()
    with pytest.raises(ZonationInputError, match="give reference= too"):
        segment_crystals(s.image, 1.0, groundmass=patch)


@pytest.fixture(scope="module")
def small():
    s = _scene("default", 6, 256)
    return s.image, s.labels == _free_crystal(s.labels)


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda m: np.zeros_like(m), "mask is empty"),
        (lambda m: np.zeros((10, 10), bool), "drawn on another image"),
        (lambda m: np.zeros((0, 2)), "polygon is empty"),
        (lambda m: np.array([[10.0, 10.0], [10.0, 60.0]]), "distinct vertices"),
        (
            lambda m: np.array([[10.0, 10.0], [60.0, 60.0], [10.0, 60.0], [60.0, 10.0]]),
            "crosses itself",
        ),
        (lambda m: np.array([[1e4, 1e4], [1e4, 1e4 + 50], [1e4 + 50, 1e4]]), "outside the image"),
        (lambda m: np.array([[-100.0, 10.0], [-100.0, 60.0], [60.0, 35.0]]), "lies outside"),
        (lambda m: np.array([[10.0, 10.0], [10.0, 14.0], [14.0, 12.0]]), "below the smallest"),
        (lambda m: np.zeros((4, 3)), "drawn on another image"),
        (lambda m: np.zeros((2, 2, 2)), "boolean mask of the image.s shape"),
        (lambda m: np.array([[10.0, np.nan], [10.0, 60.0], [60.0, 35.0]]), "finite numbers"),
    ],
)
def test_bad_references_are_explained(small, bad, message):
    image, mask = small
    with pytest.raises(ZonationInputError, match=message):
        segment_crystals(image, 1.0, reference=bad(mask))


def test_a_tiled_image_learns_the_same_reference():
    s = _scene("glassy", 3, 640)
    t = _free_crystal(s.labels)
    whole = segment_crystals(s.image, 1.0, reference=s.labels == t)
    tiled = segment_crystals(s.image, 1.0, reference=s.labels == t, tile_size=256)
    m = match_instances(whole, tiled)
    assert m["f1"] >= 0.95 and m["mean_iou"] >= 0.97, m
    np.testing.assert_array_equal(
        tiled == np.bincount(tiled[s.labels == t]).argmax(), s.labels == t
    )


def test_the_reference_stamp_keeps_what_other_labels_hold_outside_it():
    from napari_zonation.segment.reference import stamp_reference

    labels = np.zeros((40, 60), np.int32)
    labels[5:35, 5:30] = 1  # mostly inside the reference, with a large part outside
    labels[5:35, 40:55] = 2  # another crystal, untouched
    labels[30:35, 30:32] = 3  # a sliver that the reference leaves tiny
    mask = np.zeros_like(labels, bool)
    mask[5:35, 12:32] = True
    out = stamp_reference(labels, mask, min_px=20)
    ref_id = np.unique(out[mask])
    assert ref_id.size == 1 and ref_id[0] > 0
    np.testing.assert_array_equal(out == ref_id[0], mask)
    left = out[5:35, 5:12]
    assert np.unique(left).size == 1 and left[0, 0] not in (0, ref_id[0])  # kept, 210 px
    assert (out[5:35, 40:55] > 0).all()
    assert sorted(np.unique(out))[1:] == list(range(1, out.max() + 1))
