"""Crystal segmentation of BSE images: image -> int32 crystal labels, and the crystal table.

Every length is in micrometres and converted with the pixel size, so a section imaged at
another pixel size gives the same crystals. The steps of :func:`segment_crystals`:

1. Input: a 2D image (numpy, or a dask/zarr-like array read by slicing) is read window by
   window as it is; element maps ``(channels, y, x)`` are combined in memory into their first
   principal component (robustly standardised channels, oriented like the first channel), RGB
   into grey. NaN pixels are never crystals. Grey is normalised robustly (0.1 and 99.9
   percentiles of a regular sample).
2. Coarse stage, on blocks of about ``work_um`` (3 um): block means, and the grey variance
   inside each block (texture: microlite-rich groundmass is rough, crystals are smooth).
3. Reference level from the histogram: the groundmass is the mode of the most textured half of
   the image (so it is found even when crystals cover most of it); a near-black dominant mode
   means the background was masked black (``background="auto"`` decides). Every such level
   (range, noise, reference, contrast, texture threshold) comes from regular samples of the
   whole image, so it is the same whether the image is segmented whole or in tiles.
4. Crystal cores: deviation from the reference beyond ``contrast`` (automatic: three widths
   of the groundmass peak, at least four noise sigmas) on the detection-smoothed image, bright
   and dark separately, not near-black (vesicles, epoxy: near-black parts that reach the
   image's own black or are round or crescent-shaped; a solid dark lath is a crystal);
   opened (microlites), closed and hole-filled (cracks, inclusions); kept when large enough,
   smooth enough (microlite clusters are textured) and not hugging a near-black disc
   (vesicle walls).
5. Touching crystals: the cores are cut by a watershed of their distance transform from its
   h-maxima; the pieces grow back to the edges by a gradient watershed against a background
   marker (groundmass-level or near-black blocks).
6. Full resolution: each crystal's edge is placed where the smoothed grey (``smooth_um``)
   crosses the midpoint between its rim grey and the reference (a darker crystal stops at
   half its rim grey: epoxy beside it is not crystal); cracks that reach the edge are closed,
   stray microlite specks dropped. Then the free faces move onto the crystal's own edge
   (``snap_um``), read on grey profiles across it per piece of outline, against the local
   outside level; a bright edge halo stays inside (:mod:`.outline`).
7. Pieces are joined again when the grey just behind their contact agrees, their union is
   as convex as they are and their rims (the grey just inside their free faces) agree (a crack
   through one crystal, not a grain boundary between two: one crystal has one rim);
   within a round of joins, a piece accepted by two neighbours joins only one of them when
   their own pair was rejected or their rims differ (the other join is judged again on the
   joined pieces); holes (inclusions) are filled; the boundaries between the crystals that
   still touch are moved onto their grain boundary (within ``contact_um``: a marker watershed
   of the full-resolution image over its dark-line strength and gradient, from the rest of
   each crystal) and the pieces are judged once more (a cut that now runs along a crack
   joins); each crystal is opened with a disc of ``trim_um``: what sticks out of its outline
   narrower than the disc's diameter (an oxide or microlite speck at the rim, a bump of
   groundmass the blur joined to it) is not crystal; crystals under ``min_area_um2`` are
   dropped.
8. Large images (``tile_size``; automatic above 4096 x 4096): steps 2 and 4-7 run on
   overlapping tiles with the levels of step 3, and the labels are stitched by ownership
   (:mod:`napari_zonation.tiling`): no crystal is cut or counted twice at a seam.
9. Threads (``threads``; automatic: up to four): tiles are segmented several at a time; an
   image segmented whole runs its independent stages concurrently. The labels are the same
   for every thread count.

:func:`crystal_table` measures each crystal and guesses its phase from grey levels (a
heuristic, documented there).

Modules, one per stage: :mod:`.source` (input), :mod:`.levels` (levels of the whole image),
:mod:`.fields` (coarse block fields), :mod:`.background` (vesicles, data bar),
:mod:`.cores`, :mod:`.cutting`, :mod:`.growth`, :mod:`.edges`, :mod:`.outline`,
:mod:`.merging` (with :mod:`.hulls`), :mod:`.contacts`, :mod:`.cleanup`, :mod:`.reference`
(the one-shot reference crystal), :mod:`.qa` (rim QA),
:mod:`.window` (the stages of one window in order), :mod:`.api` (``segment_crystals``, tiling),
:mod:`.table` (``crystal_table``); :mod:`.state` holds the typed state passed between them
and :mod:`.morphology`, :mod:`.runs`, :mod:`.labelops` the array helpers they share.
"""

from __future__ import annotations

from .api import TILE_AUTO_PIXELS, TILE_AUTO_SIZE, segment_crystals
from .table import DEFAULT_PHASE_NAMES, crystal_table

__all__ = [
    "crystal_table",
    "segment_crystals",
    "DEFAULT_PHASE_NAMES",
    "TILE_AUTO_PIXELS",
    "TILE_AUTO_SIZE",
]
