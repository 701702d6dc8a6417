"""Array operations of the segmentation's hot paths against scipy / numpy references: the
square dilation, per-label medians, the outline's signed distances and the gradient read at
chosen pixels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_zonation.segment.labelops import label_medians
from napari_zonation.segment.morphology import dilate_square
from napari_zonation.segment.outline import _gradient_at, edge_profiles


def _lowest(dtype) -> float | bool | int:
    if dtype is bool or dtype == np.bool_:
        return False
    if np.issubdtype(dtype, np.floating):
        return -np.inf
    return np.iinfo(dtype).min


@pytest.mark.parametrize("dtype", [bool, np.int16, np.int32, np.float32])
def test_dilate_square_equals_maximum_filter(dtype):
    rng = np.random.default_rng(3)
    for _ in range(150):
        h, w = (int(v) for v in rng.integers(1, 45, 2))
        k = int(rng.integers(0, 30))  # windows shorter and longer than the image
        a = rng.integers(-60, 60, (h, w)).astype(dtype)
        # pixels beyond the border do not count: a constant border of the lowest value
        ref = ndi.maximum_filter(a, size=2 * k + 1, mode="constant", cval=_lowest(a.dtype))
        got = dilate_square(a, k)
        assert got.dtype == a.dtype
        np.testing.assert_array_equal(got, ref)


def test_label_medians_equal_numpy_median_per_label():
    rng = np.random.default_rng(4)
    for n in (1, 7, 300):
        labels = rng.integers(0, n + 1, 5000)
        labels[labels == n // 2 + 1] = 0  # an absent label
        values = rng.normal(0, 3, 5000).astype(np.float32)
        values[::9] = np.round(values[::9])  # ties
        values[::13] = -0.0
        got = label_medians(values, labels, n)
        for i in range(1, n + 1):
            sel = values[labels == i]
            if sel.size == 0:
                assert np.isnan(got[i - 1])
            else:
                assert got[i - 1] == np.median(sel)  # the mean of the middle two in float32


def test_edge_profiles_signed_distance_equals_scipy_distance_transform():
    rng = np.random.default_rng(5)
    labels = np.zeros((160, 200), dtype=np.int32)
    for i in range(1, 12):  # overlapping discs and boxes: touching crystals and free faces
        r, c, rad = rng.integers(10, 150), rng.integers(10, 190), rng.integers(5, 25)
        yy, xx = np.ogrid[:160, :200]
        if i % 2:
            labels[(yy - r) ** 2 + (xx - c) ** 2 <= rad * rad] = i
        else:
            labels[r : r + rad, c : c + 2 * rad] = i
    grey = rng.normal(0, 1, labels.shape).astype(np.float32)
    band = 6
    at, sd, owner, *_ = edge_profiles(labels, grey, band_px=band, tile_px=12)
    inside = labels > 0
    # distance of each pixel centre to the nearest centre of the other side, less half a pixel
    ref = np.where(inside, ndi.distance_transform_edt(inside), -ndi.distance_transform_edt(~inside))
    ref = (ref - 0.5 * np.sign(ref)).ravel()
    np.testing.assert_allclose(sd, ref[at], rtol=0, atol=1e-6)
    assert np.all(np.abs(sd) < band)
    # every crystal pixel within the band is there, with its own crystal
    in_band = np.flatnonzero(inside.ravel() & (np.abs(ref) < band))
    assert np.isin(in_band, at).all()
    mine = np.isin(at, in_band)
    np.testing.assert_array_equal(owner[mine], labels.ravel()[at[mine]])


def test_gradient_at_equals_numpy_gradient():
    rng = np.random.default_rng(6)
    field = rng.normal(0, 1, (37, 53)).astype(np.float32)
    gr_ref, gc_ref = np.gradient(field.astype(np.float64))  # one-sided at the border
    r = rng.integers(0, 37, 500)
    c = rng.integers(0, 53, 500)
    r[:4], c[:4] = [0, 36, 0, 36], [0, 52, 52, 0]  # the corners
    gr, gc = _gradient_at(field, r, c)
    np.testing.assert_allclose(gr, gr_ref[r, c], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gc, gc_ref[r, c], rtol=1e-6, atol=1e-6)
