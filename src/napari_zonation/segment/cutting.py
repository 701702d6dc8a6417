"""Touching crystal cores cut apart: a watershed of their distance transform from its
h-maxima (found from the basins' passes, without a grey reconstruction)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage import morphology, segmentation

from .labelops import adjacent_pairs, contact_pixels, find_root, index_lut, relabel
from .morphology import distance_inside


def cut_cores(cores: np.ndarray, h_px: float) -> np.ndarray:
    """Cut core regions by a watershed of their distance transform from its h-maxima.

    ``cores`` is a label image of connected core regions; where two cores touch (a bright
    crystal against a dark one) the contact counts as an edge. The markers are the h-maxima of
    the distance transform in quarter pixels (one per crystal body: a maximum standing at
    least ``h_px`` above the highest pass to any higher one). They are found without the grey
    reconstruction of ``skimage.morphology.h_maxima`` (slow): every regional maximum floods
    its basin, and the basins are joined from the highest pass down while the dynamics of
    their maxima are read off (equal maxima both stay, as in ``h_maxima``); the surviving
    maxima then flood the cores. A core too thin to hold an h-maximum stays one piece.
    """
    inner = cores > 0
    if not inner.any():
        return cores
    contact = contact_pixels(cores)
    dist = distance_inside(inner & ~contact)
    q = np.where(inner, np.round(dist * 4).astype(np.int32), -1)
    peaks = morphology.local_maxima(q, allow_borders=True) & inner
    # one marker per maximum plateau and core (a plateau never spans two cores)
    plat, _ = ndi.label(peaks)
    big = np.int64(int(cores.max()) + 1)
    key = plat[peaks].astype(np.int64) * big + cores[peaks]
    _, marker_ids = np.unique(key, return_inverse=True)
    markers = np.zeros(cores.shape, dtype=np.int32)
    markers[peaks] = marker_ids.astype(np.int32) + 1
    n = int(marker_ids.max()) + 2
    height = np.zeros(n, dtype=np.int64)
    height[markers[peaks]] = q[peaks]
    core_of = np.zeros(n, dtype=np.int64)
    core_of[markers[peaks]] = cores[peaks]
    h = max(1, int(round(h_px * 4)))
    # a maximum lower than h joins every other through the zero distance of the background
    # and of the contacts: never an h-maximum
    dead = height < h
    # only cores with several maxima need their basins (corner neighbours too: then each
    # pixel joins its basin through pixels at least as high as itself)
    multi = np.bincount(core_of[1:], minlength=int(big) + 1) > 1
    multi[0] = False
    if multi.any():
        some = inner & index_lut(multi, cores)
        basins = segmentation.watershed(-dist, markers, mask=some, connectivity=2)
        la, lb, pa, pb = adjacent_pairs(basins, diagonal=True)
        same = core_of[la] == core_of[lb]
        if same.any():
            _dead_maxima(la[same], lb[same], q, pa[same], pb[same], height, dead, h)
    # the surviving maxima flood the cores again, as the h-maxima markers would (with the same
    # order of the queue: the flooding is not restricted to the cores that need it, as that
    # changes how ties are broken); a core with no maximum of its own (all of it in contact
    # with another) is one piece
    markers = np.where(index_lut(dead, markers), 0, markers)
    alive_per_core = np.bincount(core_of[~dead], minlength=int(big) + 1)
    alive_per_core[0] = 0
    lonely = inner & (index_lut(alive_per_core, cores) == 0)
    if lonely.any():
        markers = np.where(lonely, cores + n, markers)
    return relabel(segmentation.watershed(-dist, markers, mask=inner))


def _dead_maxima(la, lb, q, pa, pb, height, dead, h: int) -> None:
    """Mark (in ``dead``) the maxima whose dynamic is below ``h`` (in the units of ``q``).

    ``la``, ``lb`` are adjacent basins (one pair per boundary pixel pair ``pa``, ``pb``) and
    ``height`` the value of each basin's maximum. The pass between two basins is the highest
    boundary pair (the lower pixel of it); from the highest pass down, the basins are joined;
    the one with the lower top dies if its top stands less than h above the pass.
    """
    n = height.size
    qf = q.ravel()
    level = np.minimum(qf[pa], qf[pb])
    key = la.astype(np.int64) * n + lb
    order = np.lexsort((-level, key))
    key, level = key[order], level[order]
    first = np.r_[True, key[1:] != key[:-1]]
    key, level = key[first], level[first]
    parent = np.arange(n)
    top = height.copy()
    members = {i: [i] for i in range(n)}
    for k in np.argsort(-level, kind="stable"):
        a, b = divmod(int(key[k]), n)
        ra, rb = find_root(parent, a), find_root(parent, b)
        if ra == rb:
            continue
        low, high = (ra, rb) if top[ra] < top[rb] else (rb, ra)
        if top[low] < top[high] and top[low] - int(level[k]) < h:
            dead[members[low]] = True
        parent[low] = high
        members[high].extend(members.pop(low))
