"""Hand corrections of crystal labels (napari_zonation.edit): hand-made cases and truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_zonation._validation import ZonationInputError
from napari_zonation.edit import delete_labels, merge_labels, split_label
from napari_zonation.synthetic import make_thin_section


@pytest.fixture
def three():
    lab = np.zeros((20, 30), dtype=np.int32)
    lab[2:8, 2:10] = 2
    lab[2:8, 12:20] = 5
    lab[10:18, 3:27] = 7
    return lab


def test_merge_gives_the_smallest_id_and_keeps_the_input(three):
    before = three.copy()
    out = merge_labels(three, [7, 5])
    np.testing.assert_array_equal(three, before)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out == 5, (before == 5) | (before == 7))
    np.testing.assert_array_equal(out == 2, before == 2)
    assert set(np.unique(out)) == {0, 2, 5}


def test_merge_needs_two_present_ids(three):
    with pytest.raises(ZonationInputError, match="at least two"):
        merge_labels(three, [5, 99])
    with pytest.raises(ZonationInputError, match="at least two"):
        merge_labels(three, [5])


def test_delete_clears_only_those_crystals(three):
    before = three.copy()
    out = delete_labels(three, [2, 7, 42])
    np.testing.assert_array_equal(three, before)
    np.testing.assert_array_equal(out, np.where(np.isin(before, [2, 7]), 0, before))
    with pytest.raises(ZonationInputError, match="none of the ids"):
        delete_labels(three, [42])


def test_split_straight_cut_biggest_keeps_the_id(three):
    before = three.copy()
    # vertical cut through crystal 7 (cols 3..26) at col 9, from above to below it
    out = split_label(three, 7, [(8.0, 9.0), (19.0, 9.0)])
    np.testing.assert_array_equal(three, before)
    # other crystals untouched, no pixel gained or lost
    np.testing.assert_array_equal(out[before != 7], before[before != 7])
    np.testing.assert_array_equal(out > 0, before > 0)
    new = int(before.max()) + 1
    assert set(np.unique(out[before == 7])) == {7, new}
    # the left piece (cols 3..8 plus perhaps the cut column) got the new id
    assert np.all(out[10:18, 3:9] == new)
    assert np.all(out[10:18, 10:27] == 7)
    # each piece is one connected component
    for i in (7, new):
        assert ndi.label(out == i)[1] == 1


def test_split_diagonal_one_pixel_line_cuts():
    lab = np.zeros((30, 30), dtype=np.int32)
    lab[5:25, 5:25] = 3
    out = split_label(lab, 3, [(0, 0), (29, 29)])
    assert set(np.unique(out)) == {0, 3, 4}
    a, b = (out == 3).sum(), (out == 4).sum()
    assert a + b == 400 and a >= b and b > 150
    # the pieces are the two sides of the diagonal
    rr, cc = np.nonzero(out == 4)
    side = np.sign(rr - cc)
    assert np.all(side == side[side != 0][0]) or np.all(np.abs(rr - cc) <= 1)


def test_split_polyline_in_three_pieces():
    lab = np.zeros((20, 40), dtype=np.int32)
    lab[5:15, 2:38] = 1
    # a "U"-less zigzag crossing the bar twice: down at col 12, up at col 26
    out = split_label(lab, 1, [(0, 12), (19, 12), (19, 26), (0, 26)])
    ids = set(np.unique(out)) - {0}
    assert ids == {1, 2, 3}
    # the middle piece is the biggest (cols 13..25) and keeps the id
    assert np.all(out[5:15, 14:25] == 1)


def test_split_line_must_cross(three):
    with pytest.raises(ZonationInputError, match="does not touch"):
        split_label(three, 2, [(15, 0), (15, 29)])  # crosses 7, not 2
    with pytest.raises(ZonationInputError, match="does not cut"):
        split_label(three, 7, [(14, 0), (14, 10)])  # ends inside the crystal
    with pytest.raises(ZonationInputError, match="not in the labels"):
        split_label(three, 3, [(0, 0), (19, 29)])
    with pytest.raises(ZonationInputError, match="two"):
        split_label(three, 7, [(14, 0)])


def _touching_pair(lab):
    """Two true crystals sharing the longest contact, and their contact pixels (of the first)."""
    best = None
    for a in np.unique(lab[lab > 0]):
        ring = ndi.binary_dilation(lab == a) & (lab != a) & (lab > 0)
        for b in np.unique(lab[ring]):
            contact = ndi.binary_dilation(lab == b) & (lab == a)
            n = int(contact.sum())
            if best is None or n > best[2]:
                best = (int(a), int(b), n, contact)
    return best


def test_merge_then_split_along_the_true_contact_gives_the_truth():
    s = make_thin_section((384, 384), n_crystals=8, seed=1, pixel_size_um=1.5)
    truth = s.labels
    a, b, n_contact, contact = _touching_pair(truth)
    assert n_contact >= 15  # the scene has a real grain boundary
    merged = merge_labels(truth, [a, b])
    assert (merged == min(a, b)).sum() == (truth == a).sum() + (truth == b).sum()
    # the contact pixels as a polyline, ordered along their principal axis, run 4 px past
    # both ends (as a user traces a grain boundary)
    rc = np.argwhere(contact).astype(float)
    centre = rc.mean(axis=0)
    _, _, vt = np.linalg.svd(rc - centre, full_matrices=False)
    axis = vt[0]
    t = (rc - centre) @ axis
    order = np.argsort(t, kind="stable")
    line = np.vstack([rc[order[0]] - 4 * axis, rc[order], rc[order[-1]] + 4 * axis])
    out = split_label(merged, min(a, b), line)
    new = int(merged.max()) + 1
    # each true crystal is found again, within a few pixels along the contact
    for true_id in (a, b):
        m = truth == true_id
        got = [i for i in (min(a, b), new) if (out[m] == i).mean() > 0.5]
        assert len(got) == 1
        wrong = int(((out == got[0]) != m).sum())
        assert wrong <= 3 * n_contact, (true_id, wrong, n_contact)
    np.testing.assert_array_equal(out[~np.isin(truth, [a, b])], truth[~np.isin(truth, [a, b])])
