"""Crystals from painted strokes (napari_zonation.scribble) against synthetic ground truth.

Strokes are drawn from the truth as a person would paint them: one short line inside the
biggest crystal of each phase (one class per phase, 3, 4, 5), four short lines in the
groundmass (1) and one across each of up to two vesicles (2): about 200-270 painted pixels
of 147 456.

Measured (384 x 384, 8 crystals, 1.5 um/px, defaults): instance recall at IoU >= 0.5 of
1.0 / 1.0 / 1.0 / 0.875 for seeds 1-4, 0.875 / 0.875 / 1.0 / 0.875 / 0.875 for seeds 6-10,
and 0.375 for seed 5 (a clinopyroxene-rich scene of strongly zoned, touching crystals: one
stroke per phase is not enough there); mean 0.875 over seeds 1-10. With one class for all
crystals instead of one per phase, recall drops (0.75, 1.0, 1.0, 0.75 for seeds 1-4, measured
before zoned cores were absorbed into their rims); the distance-transform split over-cuts
zoned crystals (0.375-0.75), hence off by default. The test asserts >= 0.8 on seeds 1-3
(lowest measured there 1.0; 0.875 is the usual value on other seeds).
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from napari_zonation._validation import ZonationInputError
from napari_zonation.scribble import train_scribbles
from napari_zonation.synthetic import make_thin_section, strokes_from_truth

PX = 1.5


def best_ious(truth_lab: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """For each true crystal, the best IoU with a predicted crystal."""
    out = []
    for i in np.unique(truth_lab[truth_lab > 0]):
        m = truth_lab == i
        cand, cnt = np.unique(pred[m], return_counts=True)
        best = 0.0
        for p, n in zip(cand, cnt, strict=True):
            if p > 0:
                best = max(best, n / (m.sum() + (pred == p).sum() - n))
        out.append(best)
    return np.asarray(out)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_strokes_from_truth_find_the_crystals(seed):
    s = make_thin_section((384, 384), n_crystals=8, seed=seed, pixel_size_um=PX)
    scr = strokes_from_truth(s)
    assert (scr > 0).sum() < 0.005 * scr.size  # a few strokes, not a mask
    labels, clf = train_scribbles(s.image, scr, PX)
    assert labels.dtype == np.int32 and labels.shape == s.image.shape
    ious = best_ious(s.labels, labels)
    assert (ious >= 0.5).mean() >= 0.8, np.round(ious, 2)
    # crystals only: nothing in the vesicles, and ids are 1..n
    assert set(np.unique(labels)) == set(range(int(labels.max()) + 1))
    assert isinstance(clf, RandomForestClassifier)
    assert clf.n_estimators == 50 and clf.max_depth == 10
    assert set(clf.classes_) == set(np.unique(scr[scr > 0]))


def test_min_area_and_names_dict():
    s = make_thin_section((384, 384), n_crystals=8, seed=1, pixel_size_um=PX)
    scr = strokes_from_truth(s, per_phase=False)
    # the same strokes renumbered under another convention, given by names
    alt = np.select([scr == 1, scr == 2, scr == 3], [7, 3, 1], 0).astype(np.int32)
    names = {7: "groundmass", 3: "epoxy", 1: "olivine"}
    a, _ = train_scribbles(s.image, scr, PX)
    b, _ = train_scribbles(s.image, alt, PX, classes=names)
    assert (a > 0).sum() > 0
    assert np.mean((a > 0) == (b > 0)) > 0.98
    big = train_scribbles(s.image, scr, PX, min_area_um2=5000.0)[0]
    areas = np.bincount(big.ravel())[1:] * PX * PX
    assert areas.size and areas.min() >= 5000.0


def test_bad_strokes_are_explained():
    s = make_thin_section((128, 128), n_crystals=2, seed=0)
    scr = np.zeros(s.image.shape, np.int32)
    scr[5, 5:20] = 1
    with pytest.raises(ZonationInputError, match="at least one crystal stroke"):
        train_scribbles(s.image, scr)
    with pytest.raises(ZonationInputError, match="shape"):
        train_scribbles(s.image, scr[:-1])
    scr[50, 50:60] = 4
    with pytest.raises(ZonationInputError, match="no name"):
        train_scribbles(s.image, scr, classes={1: "groundmass"})


def test_coarse_to_fine_prediction_equals_the_full_one():
    """Predicting on a 4-pixel grid, then at full resolution next to class changes, gives
    the classes of the full prediction (scikit-image's predict_segmenter)."""
    from skimage.feature import multiscale_basic_features
    from skimage.future import fit_segmenter, predict_segmenter

    from napari_zonation.scribble import _predict

    s = make_thin_section((384, 384), n_crystals=8, seed=2, pixel_size_um=PX)
    scr = strokes_from_truth(s)
    feats = multiscale_basic_features(s.image.astype(float), sigma_min=0.67, sigma_max=10.7)
    clf = fit_segmenter(scr, feats, RandomForestClassifier(n_estimators=20, random_state=0))
    full = predict_segmenter(feats, clf)
    fast = _predict(feats, clf, 4)
    assert fast.shape == full.shape
    # only isolated pixels thinner than the grid inside another class may differ
    assert np.mean(fast == full) > 0.995
    labels_full, _ = train_scribbles(s.image, scr, PX, predict_stride=1)
    labels_fast, _ = train_scribbles(s.image, scr, PX, predict_stride=4)
    assert np.mean((labels_full > 0) == (labels_fast > 0)) > 0.995
    assert labels_full.max() == labels_fast.max()


def test_retraining_on_the_same_image_reuses_its_features(monkeypatch):
    import skimage.feature  # scribble imports it when it computes features

    calls = []
    real = skimage.feature.multiscale_basic_features
    monkeypatch.setattr(
        skimage.feature,
        "multiscale_basic_features",
        lambda *a, **k: calls.append(1) or real(*a, **k),
    )
    s = make_thin_section((256, 256), n_crystals=4, seed=3, pixel_size_um=PX)
    scr = strokes_from_truth(s)
    first, _ = train_scribbles(s.image, scr, PX)
    fewer = np.where(scr == 2, 0, scr)  # other strokes, same image (a copy of it)
    train_scribbles(s.image.copy(), fewer, PX)
    again, _ = train_scribbles(s.image, scr, PX)
    assert len(calls) == 1
    np.testing.assert_array_equal(first, again)
    other = s.image.copy()
    other[0, 0] ^= 1  # another image (one pixel differs): features computed again
    train_scribbles(other, scr, PX)
    assert len(calls) == 2
