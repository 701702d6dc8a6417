"""Scoring functions against hand-computed cases and independent references (scipy's
pairwise distances on outlines found pixel by pixel, scikit-image's matching)."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from skimage.draw import ellipse, polygon

from napari_zonation.metrics import match_instances, outline_distance, outline_distances


def _outline_by_hand(mask: np.ndarray) -> np.ndarray:
    """(row, col) of the region's pixels with a 4-neighbour inside the image and outside
    the region: a plain loop, independent of the module's morphology."""
    H, W = mask.shape
    out = []
    for r, c in zip(*np.nonzero(mask), strict=True):
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            rr, cc = r + dr, c + dc
            if 0 <= rr < H and 0 <= cc < W and not mask[rr, cc]:
                out.append((r, c))
                break
    return np.array(out, dtype=float)


def _reference(a: np.ndarray, b: np.ndarray) -> float:
    oa, ob = _outline_by_hand(a), _outline_by_hand(b)
    d = cdist(oa, ob)
    return float((d.min(axis=1).sum() + d.min(axis=0).sum()) / (len(oa) + len(ob)))


def test_square_grown_by_one_pixel_by_hand():
    """A 20 x 20 square against the same square grown by one pixel on every side: the 76
    outline pixels of the square are 1 px from the grown outline; of the grown outline's 84,
    the 4 corners are sqrt(2) away and the 80 others 1."""
    a = np.zeros((40, 40), bool)
    a[10:30, 10:30] = True
    b = np.zeros((40, 40), bool)
    b[9:31, 9:31] = True
    expected = (76 + 80 + 4 * np.sqrt(2)) / 160
    assert outline_distance(a, b) == pytest.approx(expected)
    assert outline_distance(b, a) == pytest.approx(expected)
    assert outline_distance(a, a) == 0.0


def test_shift_by_three_columns_by_hand():
    """A 10 x 10 square (rows 10-19, cols 5-14) against itself shifted 3 columns. From the
    first square's 36 outline pixels to the other outline: top and bottom rows 3+2+1 each
    (the rest lie on the other's top and bottom rows), left column rows 11-18 3 each (24),
    right column rows 11-18 min(r - 10, 19 - r, 3) (18): 54. By symmetry 54 back: 108 / 72."""
    a = np.zeros((30, 30), bool)
    a[10:20, 5:15] = True
    b = np.roll(a, 3, axis=1)
    assert outline_distance(a, b) == pytest.approx(1.5)
    assert _reference(a, b) == pytest.approx(1.5)


@pytest.mark.parametrize("seed", range(6))
def test_matches_pairwise_distances_on_random_shapes(seed):
    rng = np.random.default_rng(seed)
    shape = (80, 90)
    a = np.zeros(shape, bool)
    b = np.zeros(shape, bool)
    rr, cc = ellipse(40, 45, rng.uniform(10, 30), rng.uniform(10, 35), shape=shape,
                     rotation=rng.uniform(0, np.pi))
    a[rr, cc] = True
    v = rng.uniform([5, 5], [75, 85], size=(6, 2))
    v = v[np.argsort(np.arctan2(v[:, 0] - 40, v[:, 1] - 45))]
    rr, cc = polygon(v[:, 0], v[:, 1], shape=shape)
    b[rr, cc] = True
    assert outline_distance(a, b) == pytest.approx(_reference(a, b))


def test_the_image_edge_is_not_an_outline():
    """Two regions cut by the frame the same way: their outline along the frame does not
    count (against the reference that also leaves it out)."""
    a = np.zeros((30, 30), bool)
    a[0:10, 0:12] = True
    b = np.zeros((30, 30), bool)
    b[0:12, 0:12] = True
    assert outline_distance(a, b) == pytest.approx(_reference(a, b))
    # only the bottom sides (12 px each, 2 apart) and the right sides (which overlap) differ
    assert outline_distance(a, b) < 2.0


def test_outline_distances_of_matched_pairs():
    truth = np.zeros((60, 60), np.int32)
    truth[5:25, 5:25] = 1
    truth[30:55, 30:55] = 2
    pred = np.zeros_like(truth)
    pred[4:26, 4:26] = 7  # grown by one pixel
    pred[30:55, 30:55] = 3  # exact
    m = match_instances(truth, pred)
    assert m["pairs"] == {1: 7, 2: 3}
    d = outline_distances(truth, pred, m["pairs"])
    assert d[2] == 0.0
    assert d[1] == pytest.approx(outline_distance(truth == 1, pred == 7))
    assert d[1] == pytest.approx((76 + 80 + 4 * np.sqrt(2)) / 160)


def test_match_instances_against_hand_counts():
    truth = np.zeros((20, 20), np.int32)
    truth[0:10, 0:10] = 1
    truth[10:20, 10:20] = 2
    pred = np.zeros_like(truth)
    pred[0:10, 0:8] = 5  # IoU 0.8 with 1
    pred[10:13, 10:13] = 6  # IoU 0.09 with 2: no match
    m = match_instances(truth, pred)
    assert m["tp"] == 1 and m["pairs"] == {1: 5}
    assert m["precision"] == 0.5 and m["recall"] == 0.5 and m["f1"] == 0.5
    assert m["mean_iou"] == pytest.approx(0.8)
