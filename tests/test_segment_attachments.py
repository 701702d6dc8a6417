"""Attachments cut off the crystals (:mod:`napari_zonation.segment.attachments`): a microlite
cluster stuck to a crystal's label leaves it, while corners, facets and an outer zone all
around the crystal stay; checked against the drawn truth and the generator's."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import polygon

from napari_zonation.segment.attachments import cut_attachments

GLASS, CRYSTAL, MICROLITE = 0.33, 0.70, 0.60


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _hexagon(shape, centre, radius) -> np.ndarray:
    t = np.deg2rad(np.arange(0, 360, 60) + 30)
    rr, cc = polygon(centre[0] + radius * np.sin(t), centre[1] + radius * np.cos(t), shape)
    m = np.zeros(shape, dtype=bool)
    m[rr, cc] = True
    return m


def _scene(seed: int = 0):
    """Glass with a bright hexagonal crystal and, touching it, a lump of glass carrying a
    dense cluster of bright microlite specks (2-4 px)."""
    rng = np.random.default_rng(seed)
    shape = (200, 200)
    crystal = _hexagon(shape, (100, 90), 50)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    lump = ((yy - 100) ** 2 + (xx - 160) ** 2 < 28**2) & ~crystal
    img = np.full(shape, GLASS)
    img[crystal] = CRYSTAL
    for _ in range(60):
        r, c = rng.integers(72, 128), rng.integers(135, 188)
        s = int(rng.integers(2, 5))
        img[r : r + s, c : c + s] = np.where(crystal[r : r + s, c : c + s], CRYSTAL, MICROLITE)
    img += rng.normal(0, 0.02, shape)
    smooth = ndi.gaussian_filter(img, 1.5)
    return smooth, crystal, lump


def test_microlite_cluster_attached_to_a_crystal_is_cut():
    smooth, crystal, lump = _scene()
    labels = (crystal | lump).astype(np.int32)
    assert _iou(labels > 0, crystal) < 0.8  # the lump is a large share of the label
    out = cut_attachments(labels, smooth, GLASS, radius_px=3.0, min_px=400)
    assert _iou(out == 1, crystal) > 0.95
    # (nearly) nothing of the cluster beyond the crystal is left in the label
    assert (out[lump] == 1).sum() < 0.05 * lump.sum()
    # the crystal itself is not eaten
    assert (out[crystal] == 1).mean() > 0.99
    assert not (out[labels == 0]).any()


def test_corners_and_facets_of_a_crystal_stay():
    rng = np.random.default_rng(1)
    shape = (220, 220)
    tri = np.zeros(shape, dtype=bool)
    rr, cc = polygon([30, 190, 190], [110, 30, 190], shape)  # 60 degree corners
    tri[rr, cc] = True
    rect = np.zeros(shape, dtype=bool)
    rect[20:40, 20:200] = True  # a thin lath (90 degree corners)
    img = np.full(shape, GLASS) + rng.normal(0, 0.02, shape)
    img[tri | rect] += CRYSTAL - GLASS
    smooth = ndi.gaussian_filter(img, 1.5)
    labels = tri.astype(np.int32) + 2 * rect
    out = cut_attachments(labels, smooth, GLASS, radius_px=3.0, min_px=400)
    np.testing.assert_array_equal(out, labels)


def test_outer_zone_all_around_the_crystal_stays():
    # a crystal whose outer zone (8 px) has the grey of the glass: it touches all of the
    # hull of the bright body, so it is a zone, not an attachment
    rng = np.random.default_rng(2)
    shape = (200, 200)
    whole = _hexagon(shape, (100, 100), 60)
    inner = _hexagon(shape, (100, 100), 50)
    img = np.full(shape, GLASS) + rng.normal(0, 0.02, shape)
    img[inner] = CRYSTAL
    img[whole & ~inner] = GLASS - 0.02
    smooth = ndi.gaussian_filter(img, 1.5)
    labels = whole.astype(np.int32)
    out = cut_attachments(labels, smooth, GLASS, radius_px=3.0, min_px=400)
    np.testing.assert_array_equal(out, labels)


def test_strip_beyond_a_crack_at_the_image_frame_stays():
    # a crystal cut by the image's left frame, with a crack (a dark line 8 px wide) 6 px
    # from the frame: the strip beyond the crack is the crystal's own
    rng = np.random.default_rng(3)
    shape = (160, 160)
    crystal = np.zeros(shape, dtype=bool)
    crystal[20:140, 0:100] = True
    img = np.full(shape, GLASS) + rng.normal(0, 0.02, shape)
    img[crystal] = CRYSTAL + rng.normal(0, 0.02, crystal.sum())
    img[20:140, 6:14] = GLASS - 0.05
    smooth = ndi.gaussian_filter(img, 1.5)
    labels = crystal.astype(np.int32)
    out = cut_attachments(labels, smooth, GLASS, radius_px=3.0, min_px=400)
    np.testing.assert_array_equal(out, labels)


def test_thin_edge_halo_of_a_dark_crystal_stays():
    # a crystal darker than the glass with a bright halo 3 px wide along one of its facets
    # (thinner than the disc's diameter, so not a lump)
    rng = np.random.default_rng(4)
    shape = (200, 200)
    crystal = np.zeros(shape, dtype=bool)
    crystal[40:160, 40:160] = True
    img = np.full(shape, GLASS) + rng.normal(0, 0.02, shape)
    img[crystal] = 0.15
    img[40:160, 40:43] = 0.8
    smooth = ndi.gaussian_filter(img, 1.5)
    labels = crystal.astype(np.int32)
    out = cut_attachments(labels, smooth, GLASS, radius_px=3.0, min_px=400)
    np.testing.assert_array_equal(out, labels)


def test_glass_laths_scene_bright_crystals_keep_to_their_truth():
    # the generator's microlite-rich glass: no bright phenocryst's label spills a tenth of
    # its area into the groundmass, and their median IoU is above 0.95
    from napari_zonation import make_thin_section, segment_crystals
    from napari_zonation.synthetic import SCENE_KINDS

    s = make_thin_section(
        (512, 512), n_crystals=12, pixel_size_um=1.0, noise=0.03, bit_depth=8, seed=5,
        **SCENE_KINDS["glass_laths"],
    )
    pred = segment_crystals(s.image, 1.0)
    truth = s.labels
    ious, spills = [], []
    for t in range(1, int(truth.max()) + 1):
        m = truth == t
        if not m.any() or np.median(s.clean[m]) < 0.5 * s.full_scale:
            continue  # the dark laths are another matter
        ids, n = np.unique(pred[m], return_counts=True)
        n, ids = n[ids > 0], ids[ids > 0]
        if not n.size:
            continue
        p = pred == ids[np.argmax(n)]
        if (truth[p] != t).sum() > (truth[p] == t).sum():
            continue  # merged with another crystal: not this stage's subject
        ious.append(_iou(p, m))
        spills.append(float((p & (truth == 0)).sum() / m.sum()))
    assert len(ious) >= 5
    assert np.median(ious) > 0.95
    assert max(spills) < 0.1
