"""Outer zones at the groundmass grey, found by the faint line or step that bounds them
(``napari_zonation.segment.outerzone``), against the true outline of drawn crystals."""

from __future__ import annotations

import numpy as np
import pytest

from napari_zonation import make_thin_section, segment_crystals
from napari_zonation.metrics import match_instances
from napari_zonation.segment.outerzone import extend_outer_zones, outside_trend
from napari_zonation.synthetic import SCENE_KINDS

NOISE = 0.03  # of the grey range
GLASS = 0.6


def _hexagon(shape, centre, radius):
    """Boolean mask of a regular hexagon (a crystal's facets)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    y, x = yy - centre[0], xx - centre[1]
    inside = np.ones(shape, dtype=bool)
    for k in range(6):
        a = np.pi / 3 * k
        inside &= x * np.cos(a) + y * np.sin(a) <= radius
    return inside


def _scene(cue: str, seed: int = 0, zone_px: int = 12):
    """A crystal whose outer zone (``zone_px`` wide) has the glass's grey over a darker core:
    the bound is a thin dark line outside it, a faint step, or nothing."""
    rng = np.random.default_rng(seed)
    shape = (200, 200)
    crystal = _hexagon(shape, (100, 100), 60)
    core = _hexagon(shape, (100, 100), 60 - zone_px)
    img = np.full(shape, GLASS)
    img[core] = GLASS - 0.15
    if cue == "line":
        ring = _hexagon(shape, (100, 100), 61) & ~crystal
        img[ring] -= 0.1
    elif cue == "step":
        img[crystal & ~core] += 0.02
    img = img + rng.normal(0.0, NOISE, shape)
    return img.astype(np.float32), crystal, core


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


@pytest.mark.parametrize("cue", ["line", "step"])
def test_the_zone_at_the_glass_grey_joins_its_crystal_up_to_its_bound(cue):
    img, crystal, core = _scene(cue)
    labels = core.astype(np.int32)
    assert _iou(labels > 0, crystal) < 0.75  # the first outline lost the zone
    out = extend_outer_zones(
        labels, img, NOISE, band_px=30, piece_px=12, min_offset=3, steps=cue == "step"
    )
    assert _iou(out > 0, crystal) >= 0.95
    assert not (out > 0)[~crystal].sum() > 0.03 * crystal.sum()


@pytest.mark.parametrize("steps", [False, True])
def test_no_bound_no_zone(steps):
    """Without a line or a step, the glass beside a crystal is not made part of it."""
    img, crystal, core = _scene("none")
    labels = core.astype(np.int32)
    out = extend_outer_zones(
        labels, img, NOISE, band_px=30, piece_px=12, min_offset=3, steps=steps
    )
    assert np.array_equal(out, labels)


def test_a_step_alone_is_not_a_bound_by_default():
    """A faint step of the glass's grey next to a crystal (schlieren, a boundary layer in the
    melt) looks like a zone's bound: by default only a thin line is taken as one."""
    img, crystal, core = _scene("step")
    labels = core.astype(np.int32)
    out = extend_outer_zones(labels, img, NOISE, band_px=30, piece_px=12, min_offset=3)
    assert np.array_equal(out, labels)


def test_textured_groundmass_is_not_taken_for_a_zone():
    """A crystal found whole in a microlite groundmass (bright specks, a slow grey drift)
    keeps its outline."""
    rng = np.random.default_rng(1)
    shape = (200, 200)
    crystal = _hexagon(shape, (100, 100), 50)
    img = np.full(shape, GLASS) + np.linspace(-0.02, 0.02, shape[1])[None, :]
    specks = rng.random(shape) < 0.05
    img[specks] += 0.25
    img[crystal] = GLASS + 0.2
    img = (img + rng.normal(0.0, NOISE, shape)).astype(np.float32)
    labels = crystal.astype(np.int32)
    out = extend_outer_zones(labels, img, NOISE, band_px=30, piece_px=12, min_offset=3)
    assert _iou(out > 0, crystal) >= 0.98


def test_faint_rims_scene_outlines_closer_to_the_truth():
    """On the generator's faint-rim scene (olivine rims at the glass grey), the outer-zone
    stage brings the matched crystals' IoU with the true outlines up."""
    s = make_thin_section(
        (768, 768), n_crystals=23, pixel_size_um=1.0, noise=0.03, bit_depth=8, seed=0,
        **SCENE_KINDS["faint_rims"],
    )
    # this stage alone (the closed-line stage, segment.enclosing, off in both)
    off = match_instances(
        s.labels, segment_crystals(s.image, 1.0, outer_zone_um=0, line_zones=False)
    )
    on = match_instances(s.labels, segment_crystals(s.image, 1.0, line_zones=False))
    assert on["mean_iou"] > off["mean_iou"] + 0.02
    assert on["f1"] >= off["f1"]


def test_convex_image_is_skimages_convex_hull_image():
    """The hulls read outward from are those of skimage's convex_hull_image, pixel for pixel
    (random masks, blobs, thin lines and single pixels)."""
    from scipy import ndimage as ndi
    from skimage.morphology import convex_hull_image

    from napari_zonation.segment.outerzone import convex_image

    rng = np.random.default_rng(0)
    for k in range(400):
        h, w = (int(x) for x in rng.integers(1, 30, 2))
        if k % 3 == 0:
            mask = rng.random((h, w)) < rng.random()
        elif k % 3 == 1:
            mask = ndi.gaussian_filter(rng.random((h, w)), 2) > 0.5
        else:
            mask = np.zeros((h, w), dtype=bool)
            mask[rng.integers(0, h), :] = True
            mask[rng.integers(0, h), rng.integers(0, w)] = True
        if mask.any():
            assert np.array_equal(convex_image(mask), convex_hull_image(mask)), k


def test_nearest_offsets_are_scipys_feature_transform():
    """Offsets and integer squared distances to the nearest feature, ties as scipy breaks
    them."""
    from scipy import ndimage as ndi

    from napari_zonation.segment.outerzone import nearest_offsets

    rng = np.random.default_rng(1)
    outside = rng.random((70, 90)) > 0.02
    off, d2 = nearest_offsets(outside)
    dist, ft = ndi.distance_transform_edt(outside, return_indices=True)
    assert np.array_equal(off + np.indices(outside.shape), ft)
    assert np.array_equal(np.sqrt(d2.astype(float)), dist)


def test_the_screen_never_changes_a_bound(monkeypatch):
    """crystal_bounds with its all-distances screen gives what its bin-by-bin tests give."""
    from napari_zonation.segment import outerzone

    rng = np.random.default_rng(2)
    cases = []
    for k in range(1500):
        nb = int(rng.integers(8, 35))
        counts = rng.integers(0, 300, nb)
        prof = rng.normal(0.0, 1.0, nb) * rng.choice([0.01, 0.1, 1.0])
        at = int(rng.integers(1, nb))
        if k % 2:
            prof[at] += rng.normal(0.0, 0.3)
        else:
            prof[:at] += rng.normal(0.0, 0.3)
        noise = float(rng.choice([0.0, 0.02, 0.1]))
        kw = dict(factor=float(rng.uniform(1, 2)), min_z=float(rng.choice([3.0, 6.0])))
        cases.append((prof, counts, noise, kw))
    with np.errstate(all="ignore"):
        screened = [outerzone.crystal_bounds(p, c, n, **kw) for p, c, n, kw in cases]
        monkeypatch.setattr(outerzone, "may_exceed", lambda *a, **k: True)
        full = [outerzone.crystal_bounds(p, c, n, **kw) for p, c, n, kw in cases]
    assert any(b is not None for b in full) and any(b is None for b in full)
    assert screened == full


def _step_scene(step_noise: float, seed: int = 0, zone_px: int = 12):
    """A hexagonal crystal whose outer zone (``zone_px`` wide) differs from the glass only by
    ``step_noise`` pixel-noise widths (no line), over a core 5 noise widths darker."""
    rng = np.random.default_rng(seed)
    shape = (200, 200)
    crystal = _hexagon(shape, (100, 100), 60)
    core = _hexagon(shape, (100, 100), 60 - zone_px)
    img = np.full(shape, GLASS)
    img[core] = GLASS - 5 * NOISE
    img[crystal & ~core] += step_noise * NOISE
    img = img + rng.normal(0.0, NOISE, shape)
    return img.astype(np.float32), crystal, core


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("step_noise", [0.5, -0.5])
def test_a_faint_step_bounds_the_zone_with_steps_on(step_noise, seed):
    """A zone half a pixel-noise width brighter or darker than the glass, bounded by nothing
    else: found (the true crystal's IoU at least 0.95, little glass joined)."""
    img, crystal, core = _step_scene(step_noise, seed)
    labels = core.astype(np.int32)
    out = extend_outer_zones(
        labels, img, NOISE, band_px=30, piece_px=12, min_offset=3, steps=True
    )
    assert _iou(out > 0, crystal) >= 0.95
    assert (out > 0)[~crystal].sum() <= 0.03 * crystal.sum()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_step_below_the_noise_floor_is_not_taken(seed):
    """A zone 0.05 pixel-noise widths off the glass cannot be told from it around a crystal
    of this size: no glass is joined (the labels are unchanged)."""
    img, crystal, core = _step_scene(0.05, seed)
    labels = core.astype(np.int32)
    out = extend_outer_zones(
        labels, img, NOISE, band_px=30, piece_px=12, min_offset=3, steps=True
    )
    assert np.array_equal(out, labels)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_step_of_the_glass_on_one_side_is_not_a_bound(seed):
    """Schlieren: a band of glass one noise width brighter along one side of a crystal found
    whole (a step at a fixed distance, but not all around it) joins nothing."""
    rng = np.random.default_rng(seed)
    shape = (200, 200)
    crystal = _hexagon(shape, (100, 100), 60)
    img = np.full(shape, GLASS)
    img[crystal] = GLASS - 5 * NOISE
    band = _hexagon(shape, (100, 100), 72) & ~crystal
    band[:, 100:] = False  # the left half only
    img[band] += NOISE
    img = (img + rng.normal(0.0, NOISE, shape)).astype(np.float32)
    labels = crystal.astype(np.int32)
    out = extend_outer_zones(
        labels, img, NOISE, band_px=30, piece_px=12, min_offset=3, steps=True
    )
    assert (out > 0).sum() <= crystal.sum() * 1.01


def test_faint_steps_bring_faint_rims_closer_to_the_truth():
    """On the generator's faint-rim scene (olivine rims within 0.5-4 grey levels of the
    glass, a third of them bounded by nothing but that step), taking faint steps as bounds
    brings the matched crystals' IoU with the true outlines up and loses no crystal."""
    s = make_thin_section(
        (768, 768), n_crystals=23, pixel_size_um=1.0, noise=0.03, bit_depth=8, seed=0,
        **SCENE_KINDS["faint_rims"],
    )
    off = match_instances(s.labels, segment_crystals(s.image, 1.0, zone_steps=False))
    on = match_instances(s.labels, segment_crystals(s.image, 1.0, zone_steps=True))
    assert on["mean_iou"] > off["mean_iou"] + 0.02
    assert on["f1"] >= off["f1"]


def test_faint_steps_join_no_plain_glass():
    """On a glassy scene (glass with schlieren, vesicles against crystals, no zone at the
    glass's grey) taking faint steps as bounds does not grow crystals into the glass: the
    matched IoU and F1 against the true outlines do not fall."""
    s = make_thin_section(
        (768, 768), n_crystals=23, pixel_size_um=1.0, noise=0.03, bit_depth=8, seed=3,
        **SCENE_KINDS["glassy"],
    )
    off = match_instances(s.labels, segment_crystals(s.image, 1.0, zone_steps=False))
    on = match_instances(s.labels, segment_crystals(s.image, 1.0, zone_steps=True))
    assert on["mean_iou"] >= off["mean_iou"] - 0.002
    assert on["f1"] >= off["f1"]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("cut", ["left", "top"])
def test_a_step_bounds_a_crystal_cut_by_the_frame(seed, cut):
    """A crystal cut by the image's frame shows its step along the part of its outline inside
    the image, all around the directions it has there: its zone is found (IoU with the true
    crystal at least 0.95, little glass joined)."""
    img, crystal, core = _step_scene(0.5, seed)
    sl = np.s_[:, 70:] if cut == "left" else np.s_[70:, :]
    img, crystal, core = img[sl], crystal[sl], core[sl]
    labels = core.astype(np.int32)
    assert _iou(labels > 0, crystal) < 0.8
    out = extend_outer_zones(
        labels, img, NOISE, band_px=30, piece_px=12, min_offset=3, steps=True
    )
    assert _iou(out > 0, crystal) >= 0.95
    assert (out > 0)[~crystal].sum() <= 0.03 * crystal.sum()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_step_of_the_glass_on_one_side_of_a_cut_crystal_is_not_a_bound(seed):
    """Schlieren beside a crystal cut by the frame: a band of brighter glass along one of the
    directions it has inside the image (not all of them) joins nothing."""
    rng = np.random.default_rng(seed)
    shape = (200, 200)
    crystal = _hexagon(shape, (100, 100), 60)
    img = np.full(shape, GLASS)
    img[crystal] = GLASS - 5 * NOISE
    band = _hexagon(shape, (100, 100), 72) & ~crystal
    band[100:, :] = False  # above the centre only
    img[band] += NOISE
    img = (img + rng.normal(0.0, NOISE, shape)).astype(np.float32)
    img, crystal = img[:, 70:], crystal[:, 70:]  # cut by the left edge of the frame
    labels = crystal.astype(np.int32)
    out = extend_outer_zones(
        labels, img, NOISE, band_px=30, piece_px=12, min_offset=3, steps=True
    )
    assert (out > 0).sum() <= crystal.sum() * 1.01


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_faint_step_is_found_under_shading_across_the_field(seed):
    """The brightness of a BSE image drifts across the field: a ramp of 1.4 pixel-noise
    widths across the glass around the crystal is not texture, and the zone half a noise
    width off the glass is still found (the true crystal's IoU at least 0.95)."""
    img, crystal, core = _step_scene(0.5, seed)
    ramp = np.linspace(-0.7, 0.7, img.shape[1])[None, :] * NOISE
    img = (img + ramp).astype(np.float32)
    labels = core.astype(np.int32)
    out = extend_outer_zones(
        labels, img, NOISE, band_px=30, piece_px=12, min_offset=3, steps=True
    )
    assert _iou(out > 0, crystal) >= 0.95
    assert (out > 0)[~crystal].sum() <= 0.03 * crystal.sum()


def test_outside_trend_is_the_plane_through_the_pieces():
    """The outside level's trend across a crystal is the plane through its pieces' means
    (here exactly a plane: recovered to rounding), with zero weighted mean."""
    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 100, size=(20, 2))
    level = 0.3 + 0.002 * centres[:, 0] - 0.001 * centres[:, 1]
    prof = np.repeat(level[:, None], 6, axis=1)
    counts = rng.integers(5, 50, size=(20, 6))
    trend = outside_trend(prof, counts, np.arange(2, 6), centres)
    w = counts[:, 2:].sum(axis=1)
    expected = level - np.average(level, weights=w)
    np.testing.assert_allclose(trend, expected, atol=1e-9)
