"""Attachments cut off the crystals: lumps of groundmass (clusters of microlites and the glass
between them) that a crystal's label took in beyond the crystal's own body.

A crystal's body is the part of its label on the crystal's side of the midpoint between the
label's median grey and the groundmass's, opened with a disc the size of the microlites (so
that bright specks in the glass do not count as body). What the label holds beyond the
convex hull of that body, farther than the disc's radius from it, along only part of the
hull's outline, wider than the disc and mostly within half the crystal's contrast of the
groundmass's grey, is an attachment and goes. Corners and facets of the crystal lie inside
the hull of its body and stay; so do an outer zone all around the crystal (touching most of
the hull's outline), a thin edge halo, an inclusion at the edge (not of the groundmass's
grey) and a part on the image's frame (a strip of a crystal cut by the frame, beyond a
crack).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import regionprops
from skimage.morphology import convex_hull_image
from skimage.segmentation import find_boundaries

from .morphology import open_mask


def cut_attachments(
    labels: np.ndarray,
    smooth: np.ndarray,
    ref: float,
    radius_px: float,
    min_px: float,
    *,
    reach_px: float | None = None,
    max_contact: float = 0.5,
    min_body: float = 0.3,
) -> np.ndarray:
    """Remove from each crystal the lumps that stick out beyond the hull of its body.

    Parameters
    ----------
    labels : numpy.ndarray
        int crystal labels (0 = not a crystal). Not changed.
    smooth : numpy.ndarray
        The smoothed grey image the labels were placed on.
    ref : float
        Grey of the groundmass (in ``smooth``'s units).
    radius_px : float
        Radius (pixels) of the disc that opens each crystal's body: specks and microlite
        clusters narrower than its diameter are not body.
    min_px : float
        Pieces of a body of at least this many pixels count (besides its largest piece).
    reach_px : float or None
        How far (pixels) beyond the hull of the body a part of the label must reach to be cut;
        None: ``radius_px``.
    max_contact : float
        A part is cut only when it touches less than this share of the hull's outline (an
        outer zone all around the crystal is kept).
    min_body : float
        A label whose body is less than this share of it is left as it is (a crystal with no
        clear body, such as one at the groundmass grey).

    Returns
    -------
    numpy.ndarray
        The labels with the attachments set to 0 (a copy when anything was cut).
    """
    reach = radius_px if reach_px is None else reach_px
    pad = int(np.ceil(radius_px + reach)) + 2
    disc = float(max(1, int(round(radius_px))))
    out = labels
    for reg in regionprops(labels):
        r0, c0, r1, c1 = reg.bbox
        m = np.pad(reg.image, pad)
        g = np.pad(smooth[r0:r1, c0:c1], pad, mode="edge")
        med = float(np.median(g[m]))
        side = np.sign(med - ref)
        if side == 0:
            continue
        own = m & ((g - 0.5 * (med + ref)) * side > 0)
        body = open_mask(own, disc)
        cl, n = ndi.label(body)
        if n == 0:
            continue
        area = np.bincount(cl.ravel())[1:]
        keep = np.zeros(n + 1, dtype=bool)
        keep[1:] = (area >= min_px) | (area == area.max())
        body = keep[cl]
        if body.sum() < min_body * m.sum():
            continue
        hull = convex_hull_image(body)
        rest, nr = ndi.label(m & ~hull)
        if nr == 0:
            continue
        idx = np.arange(1, nr + 1)
        far = ndi.maximum(ndi.distance_transform_edt(~hull), rest, index=idx) > reach
        if not far.any():
            continue
        edge = find_boundaries(hull, mode="outer")
        touch = ndi.sum(edge, ndi.grey_dilation(rest, size=3), index=idx)
        # a lump: wider than the disc somewhere (not a strip past a crack, nor a halo),
        # mostly of the groundmass's grey (not the crystal's, nor an inclusion's)
        wide = np.bincount(rest[open_mask(rest > 0, disc)], minlength=nr + 1)[1:] > 0
        glass = ndi.mean(np.abs(g - ref) < 0.5 * abs(med - ref), rest, index=idx)
        cut = np.zeros(nr + 1, dtype=bool)
        cut[1:] = far & wide & (glass > 0.5) & (touch < max_contact * edge.sum())
        # a part on the image's frame may be the crystal's own, cut by the frame
        cut[_on_frame(rest, pad, reg.bbox, labels.shape)] = False
        cut[0] = False
        if not cut.any():
            continue
        drop = cut[rest][pad:-pad, pad:-pad] & reg.image
        if out is labels:
            out = labels.copy()
        sub = out[r0:r1, c0:c1]
        sub[drop] = 0
    return out


def _on_frame(rest: np.ndarray, pad: int, bbox, shape) -> np.ndarray:
    """The piece numbers of ``rest`` (a crop padded by ``pad``) on the image's frame."""
    r0, c0, r1, c1 = bbox
    inner = rest[pad:-pad, pad:-pad]
    sides = []
    if r0 == 0:
        sides.append(inner[0])
    if c0 == 0:
        sides.append(inner[:, 0])
    if r1 == shape[0]:
        sides.append(inner[-1])
    if c1 == shape[1]:
        sides.append(inner[:, -1])
    return np.unique(np.concatenate(sides)) if sides else np.zeros(0, dtype=rest.dtype)
