"""The typed state passed between the segmentation's stages.

- :class:`Options`: the fine-control options of :func:`~napari_zonation.segment_crystals`
  (lengths in micrometres), with their defaults.
- :class:`Levels`: what the first pass over the whole image measured (grey range, noise,
  smoothing scales in blocks, samples of the coarse fields) and the levels set from it
  (reference grey, contrast, texture threshold). Grey levels are in units of the robust
  range (0 at the 0.1 percentile, 1 at the 99.9 percentile) unless said otherwise; the same
  levels serve every tile of a tiled image.
- :class:`CoarseFields`: the block fields of one window (or of the whole image).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Options:
    """Fine-control options of the segmentation (lengths in micrometres).

    The meaning of each is given in :func:`napari_zonation.segment_crystals`' docstring.
    """

    work_um: float = 3.0  # block size of the coarse stages (detection, splitting, growing)
    detect_um: float | None = None  # smoothing (sigma) of the detection image; None = 2 x smooth
    open_um: float = 3.0  # opening radius that removes microlites from the crystal cores
    grow_um: float | None = None  # how far cores grow back to the crystal edge; None = open + 3
    split_h_um: float = 3.0  # h of the distance-transform h-maxima used as watershed markers
    max_deficit: float = 0.1  # convex-hull excess (of the smaller piece) that still joins two
    merge_grey: float | None = None  # grey step across a cut that keeps pieces apart
    max_hole_fraction: float = 0.5  # holes up to this fraction of their crystal are filled
    texture: bool = True  # reject textured (microlite-rich) cores when a groundmass is found
    smooth_texture: float = 0.75  # a block is smooth below this x the groundmass texture
    min_smooth_share: float = 0.25  # share of a core that must be smooth
    max_vesicle_share: float = 0.6  # cores mostly within 6 um of near-black pixels: vesicle walls
    dark_fraction: float = 0.2  # near-black share above which the background may be masked
    tile_halo_um: float = 400.0  # crystal extent a tile surely holds whole
    merge_rim: float | None = None  # rim grey step that keeps pieces apart; None = 0.4 x contrast
    contact_um: float = 24.0  # how far a contact may move onto the grain boundary; 0 = off
    trim_um: float = 4.0  # outline protrusions narrower than 2 x this are not crystal; 0 = off
    snap_um: float = 5.0  # band (each side) in which outlines move onto the edge; 0 = off
    outer_zone_um: float = 30.0  # widest outer zone at the outside grey looked for; 0 = off
    line_zones: bool = True  # crystals out to a closed thin line around them, and new ones
    zone_steps: bool = True  # a faint step all around a crystal also bounds its outer zone

    @classmethod
    def names(cls) -> list[str]:
        """The option names, sorted."""
        return sorted(f.name for f in dataclasses.fields(cls))

    @property
    def line_reach_um(self) -> float:
        """How far beyond an outline the closed-line stage looks for its line (um)."""
        return 2.0 * max(self.outer_zone_um, 10.0)

    @property
    def grow(self) -> float:
        """How far cores grow back to the crystal edge (um)."""
        return self.grow_um if self.grow_um is not None else self.open_um + 3.0


@dataclass
class Levels:
    """Levels of the whole image, measured once (the same for every tile).

    Set by :func:`~napari_zonation.segment.levels.sample_levels` (range, noise, scales,
    samples) and :func:`~napari_zonation.segment.levels.set_levels` (reference, contrast,
    thresholds).
    """

    px: float  # micrometres per pixel
    f: int  # block side (pixels) of the coarse stages
    pc: float  # micrometres per block
    stride: int  # the sample's row and column step (pixels)
    lo: float = np.nan  # grey at the 0.1 percentile (image units)
    hi: float = np.nan  # grey at the 99.9 percentile (image units)
    span: float = np.nan  # hi - lo
    fill: float = np.nan  # median grey, put in place of NaN pixels
    sample: np.ndarray | None = None  # the regular sample of pixels (image units)
    sig_c: float = np.nan  # smoothing sigma of the coarse image (blocks)
    det_c: float = np.nan  # smoothing sigma of the detection image (blocks)
    tex_c: float = np.nan  # smoothing sigma of the block texture (blocks)
    s_det: np.ndarray | None = None  # sample of the detection image (regular block grid)
    s_tex: np.ndarray | None = None  # sample of the block texture
    s_smooth_c: np.ndarray | None = None  # sample of the smoothed block means
    noise: float | None = None  # pixel noise sigma (robust range units); None: constant image
    noise_d: float = np.nan  # noise of the detection image
    mode: str = ""  # "groundmass" or "masked"
    tex_thr: float | None = None  # texture below which a block is smooth (None: no test)
    ref: float = np.nan  # reference grey: the groundmass (or masked background) mode
    c: float = np.nan  # contrast: deviation from ref that counts as crystal
    dark_thr: float = -np.inf  # near-black level (vesicles, epoxy)
    black_thr: float = -np.inf  # the image's own black: its darkest mode and spread


@dataclass
class CoarseFields:
    """Block fields of one window: block means ``cm``, their finite share ``fin_c`` (None:
    every pixel finite), the smoothed means ``smooth_c``, the detection image ``det`` and
    the block texture ``tex``; with the window's normalised grey ``norm`` and its finite mask
    ``finite`` when the whole image was read in one window (kept for the segmentation), and
    the near-black holes ``near_black`` once asked for (read-only,
    :func:`~napari_zonation.segment.cores.near_black_of`)."""

    cm: np.ndarray
    fin_c: np.ndarray | None
    smooth_c: np.ndarray
    det: np.ndarray
    tex: np.ndarray
    norm: np.ndarray | None = None
    finite: np.ndarray | None = None
    near_black: np.ndarray | None = None
