"""Run-based connected components and hole filling of the segmentation against scipy.ndimage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_zonation.segment.cleanup import fill_label_holes
from napari_zonation.segment.runs import fill_holes, mask_runs, run_components


def _random_masks(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        h, w = (int(v) for v in rng.integers(1, 48, 2))
        yield rng.random((h, w)) < rng.uniform(0.05, 0.95)


def _run_image(shape, row, c0, c1, values) -> np.ndarray:
    out = np.full(shape, -1, dtype=np.int64)
    for r, a, b, v in zip(row, c0, c1, values, strict=True):
        out[r, a:b] = v
    return out


def test_mask_runs_cover_the_mask_exactly():
    for mask in _random_masks(200):
        row, c0, c1 = mask_runs(mask)
        assert np.all(c1 > c0)
        painted = _run_image(mask.shape, row, c0, c1, np.zeros(row.size)) >= 0
        np.testing.assert_array_equal(painted, mask)
        # runs are maximal: no two runs of a row touch
        same_row = row[1:] == row[:-1]
        assert np.all(c0[1:][same_row] > c1[:-1][same_row])


def test_run_components_partition_equals_ndi_label():
    for mask in _random_masks(300, seed=1):
        ref, n_ref = ndi.label(mask)  # side neighbours
        row, c0, c1 = mask_runs(mask)
        comp, n = run_components(row, c0, c1, mask.shape[1])
        assert n == n_ref
        img = _run_image(mask.shape, row, c0, c1, comp)
        # one-to-one correspondence of the components
        pairs = set(zip(ref[mask].tolist(), img[mask].tolist(), strict=True))
        assert len(pairs) == n_ref


@pytest.mark.parametrize("seed", [2, 3])
def test_fill_holes_matches_binary_fill_holes(seed):
    # with max_fraction 1 every enclosed background part is filled: scipy's definition
    for mask in _random_masks(150, seed=seed):
        np.testing.assert_array_equal(fill_holes(mask, 1.0), ndi.binary_fill_holes(mask))


def test_fill_holes_respects_the_size_limit():
    mask = np.zeros((40, 40), dtype=bool)
    mask[5:35, 5:35] = True  # a 30 x 30 region (900 px)
    mask[10:12, 10:12] = False  # a 4 px hole
    mask[15:30, 15:30] = False  # a 225 px hole
    out = fill_holes(mask, 0.1)  # at most 90 px of the 900 px region
    assert out[10:12, 10:12].all()
    assert not out[15:30, 15:30].any()
    assert fill_holes(mask, 0.5)[15:30, 15:30].all()


def test_fill_label_holes_gives_holes_the_surrounding_label():
    lab = np.zeros((30, 30), dtype=np.int32)
    lab[2:14, 2:14] = 1
    lab[4:7, 4:7] = 0  # hole in 1
    lab[16:28, 16:28] = 2
    lab[20:22, 20:22] = 0  # hole in 2
    out, areas = fill_label_holes(lab, 0.5, np.bincount(lab.ravel()))
    assert (out[4:7, 4:7] == 1).all() and (out[20:22, 20:22] == 2).all()
    assert np.array_equal(areas, np.bincount(out.ravel()) * (np.arange(3) > 0))
    assert (out[lab > 0] == lab[lab > 0]).all()
    assert (out[0] == 0).all()  # the outside stays background
