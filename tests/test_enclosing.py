"""Outer zones bounded by a thin closed line (segment.enclosing), against drawn truth."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import draw

from napari_zonation import make_thin_section, match_instances, segment_crystals
from napari_zonation.segment.enclosing import extend_to_lines, line_strength
from napari_zonation.synthetic import SCENE_KINDS

NOISE = 0.03


def _hexagon(shape, centre, radius):
    t = np.arange(6) * np.pi / 3 + 0.2
    rr, cc = draw.polygon(centre[0] + radius * np.sin(t), centre[1] + radius * np.cos(t), shape)
    m = np.zeros(shape, dtype=bool)
    m[rr, cc] = True
    return m


def _scene(line: str, seed: int = 0, needle: bool = False):
    """Glass at 0.6 with one hexagonal crystal: a dark core, an outer zone at the glass's
    grey, and (``line``) a thin dark line just outside it, a bright one on its outermost pixel,
    or nothing. Returns the image, the crystal's true mask and the core's mask."""
    rng = np.random.default_rng(seed)
    shape = (260, 260)
    crystal = _hexagon(shape, (130, 130), 80)
    core = _hexagon(shape, (130, 130), 52)
    img = np.full(shape, 0.6)
    img[core] = 0.45
    if line == "dark":
        ring = _hexagon(shape, (130, 130), 81.5) & ~crystal
        img[ring] -= 0.06
    elif line == "bright":
        ring = crystal & ~_hexagon(shape, (130, 130), 79)
        img[ring] += 0.08
    if needle:  # an open straight line beside the crystal, not around it
        rr, cc = draw.line(20, 30, 240, 60)
        img[rr, cc] -= 0.06
    img = img + rng.normal(0.0, NOISE, shape)
    return img, crystal, core


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_line_strength_stands_out_on_a_faint_line_only():
    rng = np.random.default_rng(1)
    img = 0.5 + rng.normal(0.0, NOISE, (200, 200))
    img[100, 20:180] -= 1.5 * NOISE  # a line barely above the noise of one pixel
    z = line_strength(img)
    on = np.median(z[100, 40:160])
    off = np.median(np.abs(z[20:80, 20:180]))
    assert on > 4.0, on
    assert off < 1.5, off
    # the strength peaks on the line's own row
    assert 90 + int(np.argmax(np.median(z[90:111, 40:160], axis=1))) == 100


@pytest.mark.parametrize("line", ["dark", "bright"])
def test_a_closed_line_bounds_the_outer_zone(line):
    img, crystal, core = _scene(line)
    labels = core.astype(np.int32)
    assert _iou(labels > 0, crystal) < 0.5
    out = extend_to_lines(labels, line_strength(img))
    assert out is not labels
    assert _iou(out == 1, crystal) > 0.95


@pytest.mark.parametrize("needle", [False, True])
def test_no_line_around_it_leaves_the_crystal_alone(needle):
    img, crystal, core = _scene("none", needle=needle)
    labels = core.astype(np.int32)
    out = extend_to_lines(labels, line_strength(img))
    np.testing.assert_array_equal(out, labels)


def test_a_line_never_takes_another_crystal_or_a_vesicle():
    img, crystal, core = _scene("dark", seed=2)
    labels = core.astype(np.int32)
    # a neighbour inside the zone, and a vesicle (not valid) on the other side
    labels[60:80, 120:140] = 2
    valid = np.ones(img.shape, dtype=bool)
    valid[180:200, 110:150] = False
    out = extend_to_lines(labels, line_strength(img), valid=valid)
    assert (out[60:80, 120:140] == 2).all()
    assert (out[~valid] == 0).all()


def test_segment_crystals_finds_line_bounded_rims_of_the_generator():
    """On the generator's scene with everything real images carry (olivine rims at the
    glass's grey, bounded by a thin line or an edge halo), the crystals whose rim has the
    glass's grey come much closer to their true outline."""
    s = make_thin_section(
        (640, 640), n_crystals=16, pixel_size_um=1.0, noise=0.03, seed=6, **SCENE_KINDS["real"]
    )
    at_glass = [t for t, r in zip(s.truth.label, s.truth.rim_at_glass, strict=True) if r]
    assert len(at_glass) >= 6

    def mean_iou(labels):
        pairs = match_instances(s.labels, labels)["pairs"]
        return np.mean([
            _iou(s.labels == t, labels == pairs[t]) if t in pairs else 0.0 for t in at_glass
        ])

    off = mean_iou(segment_crystals(s.image, 1.0, line_zones=False))
    on = mean_iou(segment_crystals(s.image, 1.0))
    assert on > off + 0.1, (off, on)


def _ghost(contrast: float, needle: bool = False, seed: int = 3):
    """Glass at 0.6 with one hexagonal crystal ``contrast`` brighter than it, shown only by
    a thin dark line around it (and a needle across it)."""
    rng = np.random.default_rng(seed)
    shape = (240, 240)
    crystal = _hexagon(shape, (120, 120), 60)
    img = np.full(shape, 0.6)
    img[crystal] += contrast
    img[_hexagon(shape, (120, 120), 61.5) & ~crystal] -= 0.08
    if needle:
        rr, cc = draw.line(40, 60, 200, 170)
        img[rr, cc] -= 0.08
    return img + rng.normal(0.0, NOISE, shape), crystal


@pytest.mark.parametrize("needle", [False, True])
def test_a_crystal_of_the_glass_grey_closed_by_a_line_is_found(needle):
    from napari_zonation.segment.enclosing import line_bounded_cells

    img, crystal = _ghost(0.02, needle=needle)  # two thirds of the pixel noise
    labels = np.zeros(img.shape, dtype=np.int32)
    labels[5:25, 5:25] = 1  # some other crystal
    out = line_bounded_cells(labels, line_strength(img), img, NOISE)
    new = out == 2
    assert out.max() == 2  # one crystal, the needle's two halves joined
    assert _iou(new, crystal) > 0.9
    assert (out[5:25, 5:25] == 1).all()


def test_a_closed_patch_of_glass_or_a_vesicle_is_not_a_crystal():
    from napari_zonation.segment.enclosing import line_bounded_cells

    img, crystal = _ghost(0.0)  # a loop of line around glass of the glass's own grey
    labels = np.zeros(img.shape, dtype=np.int32)
    out = line_bounded_cells(labels, line_strength(img), img, NOISE)
    assert out is labels
    img, crystal = _ghost(0.02)
    rr, cc = draw.disk((120, 120), 25)
    img[rr, cc] = np.linspace(0.05, 0.9, rr.size)  # a vesicle's walls and floor inside
    out = line_bounded_cells(labels, line_strength(img), img, NOISE)
    assert out is labels
