"""Crystal pieces grown back to their edges: a marker watershed of the block gradient from the
eroded pieces against a background marker."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage import segmentation

from .._threads import Workers
from .cleanup import fill_label_holes
from .cutting import cut_cores
from .labelops import contact_pixels, index_lut, inner_boundary, relabel
from .morphology import near_mask
from .state import CoarseFields, Levels, Options


def marker_watershed(image: np.ndarray, markers: np.ndarray, mask: np.ndarray | None = None):
    """``skimage.segmentation.watershed`` that leaves out the inside of the markers.

    A marker pixel whose four neighbours are all marker pixels or outside the mask floods
    nothing; scikit-image would still queue it. Large markers (pieces eroded by a pixel, a
    background marker) are mostly such pixels, so they are taken out of the flooding and put
    back in the result. The result is the same except where equal grey levels meet (the queue
    breaks such ties by age, which the shorter queue changes): rare on a float gradient.
    """
    seeded = markers > 0
    blocked = seeded if mask is None else seeded | ~mask
    p = np.ones((blocked.shape[0] + 2, blocked.shape[1] + 2), dtype=bool)
    p[1:-1, 1:-1] = blocked  # np.pad's result, without its overhead (many small calls)
    inside = seeded & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    if mask is not None:
        inside &= mask
    if not inside.any():
        return segmentation.watershed(image, markers, mask=mask)
    flood = ~inside if mask is None else mask & ~inside
    out = segmentation.watershed(image, np.where(inside, 0, markers), mask=flood)
    out[inside] = markers[inside]
    return out


def grow(
    pieces: np.ndarray,
    grad: np.ndarray,
    background: np.ndarray,
    erode_px: float,
    cut_px: float,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Marker watershed on the gradient from eroded pieces and a background marker.

    Pixels outside ``mask`` (if given) are background; the mask must hold every background
    marker pixel next to the pixels it floods (then the result inside it is unchanged).

    The markers step back ``erode_px`` from the outer edge of each piece and ``cut_px`` from
    where two pieces meet, so the watershed, not the cut, places the boundary between them
    (on the grain-boundary line).
    """
    n = int(pieces.max())
    if n == 0:
        return pieces
    edge = inner_boundary(pieces) | (pieces == 0)
    keep = ~near_mask(edge, erode_px)
    contact = contact_pixels(pieces)
    if contact.any():
        keep &= ~near_mask(contact, cut_px)
    markers = np.where(keep, pieces, 0)
    # pieces too small to survive the erosion keep their original marker
    present = np.zeros(n + 1, dtype=bool)
    present[markers.ravel()] = True
    missing = ~present
    missing[0] = False
    if missing.any():
        markers = np.where((markers == 0) & index_lut(missing, pieces), pieces, markers)
    markers = np.where(background & (markers == 0), n + 1, markers)
    out = marker_watershed(grad, markers, mask=mask)
    out[out == n + 1] = 0
    return out.astype(np.int32)


def coarse_crystals(
    cores: np.ndarray,
    bg_marker: np.ndarray,
    fl: CoarseFields,
    lv: Levels,
    opts: Options,
    *,
    split_touching: bool,
    run: Workers,
) -> np.ndarray:
    """Block labels of the crystals: cores cut at their necks and grown back to the edges.

    The cores are cut by :func:`~napari_zonation.segment.cutting.cut_cores` (with
    ``split_touching``); the pieces grow over the block gradient against ``bg_marker`` and
    the blocks farther than ``grow_um`` from every piece (:func:`grow`); holes are filled.
    """
    pc = lv.pc
    grow_um = opts.grow_um if opts.grow_um is not None else opts.open_um + 3.0
    grad_job = run.submit(ndi.gaussian_gradient_magnitude, fl.cm, 0.7)
    pieces = cut_cores(cores, max(opts.split_h_um / pc, 1.0)) if split_touching else cores
    grad = grad_job.result()
    far = ~near_mask(pieces > 0, grow_um / pc)
    coarse = grow(
        pieces,
        grad,
        (bg_marker & (pieces == 0)) | far,
        erode_px=1.0,
        cut_px=1.0,
        mask=near_mask(pieces > 0, grow_um / pc + 1.5),
    )
    coarse = relabel(coarse)
    return fill_label_holes(coarse, opts.max_hole_fraction)
