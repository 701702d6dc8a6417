"""Crystal cores: blocks that clearly depart from the reference grey, cleaned per sign.

On the coarse block image the detection image departs from the reference level (the
groundmass mode, or a masked background) by more than the contrast: bright and dark cores
are found separately (near-black holes, :func:`.background.near_black_blocks`, are vesicles or
epoxy, never dark cores; a dark lath below the near-black level that never reaches the image's
own black is a dark core), opened
(microlites), closed (cracks) and hole-filled (inclusions), then kept when large enough, smooth
enough (a microlite cluster is textured) and not hugging a near-black disc (a vesicle's
polished wall).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .._threads import Workers
from .background import near_black_blocks, vesicle_cores, vesicle_discs
from .labelops import index_lut
from .morphology import close_mask, near_mask, open_mask
from .runs import fill_holes
from .state import CoarseFields, Levels, Options


def core_labels(part: np.ndarray, open_px: float, close_px: float, max_hole: float):
    """Labels of the cores of one sign: opened, closed, hole-filled; (labels, n)."""
    m = open_mask(part, open_px)
    m = close_mask(m, close_px)
    m = fill_holes(m, max_hole)
    return ndi.label(m)


def crystal_cores(
    fl: CoarseFields,
    lv: Levels,
    opts: Options,
    *,
    min_area_um2: float,
    close_um: float,
    run: Workers,
) -> tuple[np.ndarray, np.ndarray]:
    """Core labels of the blocks and the background marker (blocks surely not crystal).

    Returns ``(cores, bg_marker)``: int32 core labels of the block image (0 = none), and the
    blocks at the reference level (or near black, or not finite) from which the background
    floods the gradient when the cores grow back to their edges.
    """
    pc = lv.pc
    ref, c, dark_thr = lv.ref, lv.c, lv.dark_thr
    fin_c, smooth_c, det, tex = fl.fin_c, fl.smooth_c, fl.det, fl.tex
    if lv.mode == "masked":
        pos = det > ref + c
        neg = np.zeros_like(pos)
        bg_marker = smooth_c < ref + 0.5 * c
        black = None
    else:
        dev = det - ref
        pos = dev > c
        # near-black parts that never reach the image's black are a crystal's dark zones
        black = near_black_of(fl, lv)
        neg = (dev < -c) & ~black & ((det > dark_thr) | (smooth_c < dark_thr))
        bg_marker = (np.abs(smooth_c - ref) < 0.5 * c) | black
    if fin_c is not None:
        pos &= fin_c
        neg &= fin_c
        bg_marker |= ~fin_c

    # open away microlites, bridge cracks, fill inclusions; sign by sign
    open_px, close_px = opts.open_um / pc, close_um / pc
    min_px_c = min_area_um2 / (pc * pc)
    cores = np.zeros(fl.cm.shape, dtype=np.int32)
    n_cores = 0
    parts = [part for part in (pos, neg) if part.any()]
    found = run.map(
        lambda part: core_labels(part, open_px, close_px, opts.max_hole_fraction), parts
    )
    for lab, n in found:
        cores = np.where(lab > 0, lab + n_cores, cores)
        n_cores += n
    if n_cores:
        area = np.bincount(cores.ravel(), minlength=n_cores + 1)
        keep = area >= 0.25 * min_px_c
        keep[0] = False
        if lv.tex_thr is not None and keep.any():
            smooth_share = np.bincount(
                cores.ravel(), weights=(tex < lv.tex_thr).ravel(), minlength=n_cores + 1
            ) / np.maximum(area, 1)
            keep &= smooth_share >= opts.min_smooth_share
            # the bright polished walls of vesicles hug a near-black disc: not crystals
            dark = black if black is not None else np.zeros(smooth_c.shape, bool)
            if dark.any():
                near_dark = near_mask(dark, max(1.0, 6.0 / pc))
                dark_share = np.bincount(
                    cores.ravel(), weights=near_dark.ravel(), minlength=n_cores + 1
                ) / np.maximum(area, 1)
                keep &= dark_share <= opts.max_vesicle_share
                # the bright floor of a vesicle, seen through it, lies within the vesicle's disc
                discs = vesicle_discs(dark, (5.0 / pc) ** 2)
                if discs.any():
                    in_disc = np.bincount(
                        cores.ravel(), weights=discs.ravel(), minlength=n_cores + 1
                    ) / np.maximum(area, 1)
                    keep &= in_disc <= 0.5
                keep &= ~vesicle_cores(
                    np.where(index_lut(keep, cores), cores, 0),
                    dark,
                    n_cores,
                    reach_px=max(2, int(round(6.0 / pc))),
                )
        cores = np.where(index_lut(keep, cores), cores, 0)
    return cores, bg_marker


def add_cores(
    cores: np.ndarray,
    extra: np.ndarray,
    lv: Levels,
    opts: Options,
    *,
    min_area_um2: float,
    close_um: float,
    new: bool = True,
) -> np.ndarray:
    """Cores with the blocks of ``extra`` (blocks called crystal another way) added.

    ``extra`` is cleaned as the cores are (:func:`core_labels`); its parts that overlap a core
    grow that core over them (the core's label floods them); with ``new`` the others become
    new cores when they are as large as ``min_area_um2`` on their own.
    """
    from skimage.segmentation import watershed

    pc = lv.pc
    lab, n = core_labels(extra, opts.open_um / pc, close_um / pc, opts.max_hole_fraction)
    if n == 0:
        return cores
    area = np.bincount(lab.ravel(), minlength=n + 1)
    small = area < 0.25 * min_area_um2 / (pc * pc)
    small[0] = True
    lab = np.where(small[lab], 0, lab)
    region = (cores > 0) | (lab > 0)
    grown = (
        watershed(np.zeros(cores.shape, np.float32), cores, mask=region)
        if cores.any()
        else (np.zeros_like(cores))
    )
    rest = (grown == 0) & (lab > 0)
    n0 = int(cores.max())
    parts, k = ndi.label(rest)
    if k and new:
        # a new core must be as large as a crystal on its own (not a quarter of one)
        big = np.bincount(parts.ravel(), minlength=k + 1) >= min_area_um2 / (pc * pc)
        big[0] = False
        rest &= big[parts]
    elif k:
        rest[:] = False
    return np.where(rest, parts + n0, grown).astype(np.int32)


def near_black_of(fl: CoarseFields, lv: Levels) -> np.ndarray:
    """The near-black holes of a window's blocks (:func:`.background.near_black_blocks`).

    Computed once per window with the image's levels ``lv`` and kept on ``fl``
    (``fl.near_black``, read-only): the cores and the reference model's extra blocks ask for
    the same mask.
    """
    if fl.near_black is None:
        black = near_black_blocks(fl.smooth_c, lv, fl.fin_c)
        black.flags.writeable = False
        fl.near_black = black
    return fl.near_black


def bg_near_black(fl: CoarseFields, lv: Levels) -> np.ndarray:
    """Blocks within 6 um of near-black blocks (vesicle walls and halos, epoxy edges)."""
    dark = near_black_of(fl, lv)
    if not dark.any():
        return dark
    return near_mask(dark, max(1.0, 6.0 / lv.pc))
