"""Scene geometry of the synthetic thin section: crystal outlines, microlite laths, disc
vesicles and distances inside a region."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import polygon

from .zoning import GREY


def _crystal_polygon(phase: str, length_px: float, rng: np.random.Generator) -> np.ndarray:
    """Vertices (row, col) of a crystal outline centred on 0, random orientation."""
    if phase == "plagioclase":  # lath
        aspect = rng.uniform(2.0, 3.5)
        h, w = length_px / 2, length_px / (2 * aspect)
        cut = 0.3 * w
        v = np.array(
            [
                [-h + cut, -w],
                [h - cut, -w],
                [h, -w + cut],
                [h, w - cut],
                [h - cut, w],
                [-h + cut, w],
                [-h, w - cut],
                [-h, -w + cut],
            ]
        )
    elif phase == "olivine":  # elongated hexagon
        aspect = rng.uniform(1.2, 1.8)
        h, w = length_px / 2, length_px / (2 * aspect)
        v = np.array(
            [[-h, 0], [-0.45 * h, -w], [0.45 * h, -w], [h, 0], [0.45 * h, w], [-0.45 * h, w]]
        )
    else:  # clinopyroxene: octagon
        aspect = rng.uniform(1.0, 1.5)
        h, w = length_px / 2, length_px / (2 * aspect)
        t = np.deg2rad(np.arange(8) * 45 + 22.5)
        v = np.stack([h * np.sin(t), w * np.cos(t)], axis=1)
    v = v * rng.uniform(0.9, 1.1, size=v.shape)  # irregular faces
    a = rng.uniform(0, np.pi)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return v @ rot.T


def _draw_shapes(canvas, rng, n, make_vertices, value, mask_allowed=None):
    """Draw n random polygons of a value into canvas where mask_allowed (if given)."""
    H, W = canvas.shape
    centres = rng.uniform([0, 0], [H, W], size=(n, 2))
    for c in centres:
        v = make_vertices() + c
        rr, cc = polygon(v[:, 0], v[:, 1], shape=canvas.shape)
        if mask_allowed is not None:
            keep = mask_allowed[rr, cc]
            rr, cc = rr[keep], cc[keep]
        canvas[rr, cc] = value


def _lath(rng, length_px, width_px):
    a = rng.uniform(0, np.pi)
    h, w = length_px / 2, width_px / 2
    v = np.array([[-h, -w], [h, -w], [h, w], [-h, w]])
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return v @ rot.T


def _disc_vesicle(canvas, centre, radius, px, rng) -> tuple:
    """A near-black disc with a bright crescent (``vesicle_style="disc"``) on its box."""
    H, W = canvas.shape
    m = int(np.ceil(radius)) + 1
    r0, r1 = max(int(centre[0]) - m, 0), min(int(centre[0]) + m + 1, H)
    c0, c1 = max(int(centre[1]) - m, 0), min(int(centre[1]) + m + 1, W)
    sl = (slice(r0, r1), slice(c0, c1))
    yy, xx = np.mgrid[r0:r1, c0:c1]
    rho = np.hypot(yy - centre[0], xx - centre[1])
    phi = np.arctan2(yy - centre[0], xx - centre[1])
    inside = rho < radius
    ring = inside & (rho > radius - max(1.5, 2.0 / px))
    ring &= np.cos(phi - rng.uniform(-np.pi, np.pi)) > 0.5
    box = canvas[sl]
    box[inside] = GREY["epoxy"]
    box[ring] = GREY["vesicle_wall"]
    return inside, ring, sl


def _inner_distance(mask_of: np.ndarray, sl: tuple[slice, slice], shape) -> tuple:
    """Distance transform of a boolean region on its bounding box grown by one pixel (equal to
    the whole image's transform there) and the box's origin."""
    r0, r1 = max(sl[0].start - 1, 0), min(sl[0].stop + 1, shape[0])
    c0, c1 = max(sl[1].start - 1, 0), min(sl[1].stop + 1, shape[1])
    return ndi.distance_transform_edt(mask_of[r0:r1, c0:c1]), r0, c0


