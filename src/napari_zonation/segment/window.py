"""One window (or the whole image) segmented with the image's fixed levels: the stages in
order (cores, cutting and growth on blocks, edges at full resolution, merging, contacts,
cleaning), the independent ones run concurrently."""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage as ndi

from .._threads import SERIAL, Workers
from .attachments import cut_attachments
from .cleanup import fill_label_holes, final_labels
from .contacts import refine_contacts
from .cores import add_cores, bg_near_black, crystal_cores
from .edges import refine_edges, rim_thresholds
from .enclosing import extend_to_lines, line_bounded_cells, line_strength
from .fields import coarse_fields
from .growth import coarse_crystals
from .merging import merge_regions, rim_band
from .outerzone import extend_outer_zones
from .outline import snap_outlines
from .reference import ReferenceModel, reference_probability
from .state import CoarseFields, Levels, Options


def segment_one_window(
    norm: np.ndarray,
    finite,
    lv: Levels,
    opts: Options,
    *,
    min_area_um2: float,
    smooth_um: float,
    close_um: float,
    split_touching: bool,
    fields: CoarseFields | None = None,
    run: Workers = SERIAL,
    origin: tuple[int, int] = (0, 0),
    model: ReferenceModel | None = None,
) -> np.ndarray:
    """Crystal labels of one window (or the whole image) with the image's fixed levels.

    ``run`` computes independent stages concurrently: the full-resolution smoothing (needed
    only by the edge refinement) alongside the coarse stages, the coarse fields, the bright
    and dark cores, the gradient alongside the cutting, the rim band and the upsampling of the
    coarse labels alongside the edge refinement. Each stage computes what it would serially:
    the labels are the same.
    """
    sigma_px = smooth_um / lv.px
    smooth_job = run.submit(_smoothed, norm, sigma_px)
    try:
        return _segment_stages(
            norm,
            finite,
            lv,
            opts,
            smooth_job,
            min_area_um2=min_area_um2,
            smooth_um=smooth_um,
            close_um=close_um,
            split_touching=split_touching,
            fields=fields,
            run=run,
            origin=origin,
            model=model,
        )
    finally:
        smooth_job.cancel()


def _smoothed(norm: np.ndarray, sigma_px: float) -> np.ndarray:
    """The full-resolution image smoothed at ``sigma_px`` (edges and merging are judged on it)."""
    return ndi.gaussian_filter(norm, sigma_px) if sigma_px > 0.3 else norm


def _segment_stages(
    norm: np.ndarray,
    finite,
    lv: Levels,
    opts: Options,
    smooth_job,
    *,
    min_area_um2: float,
    smooth_um: float,
    close_um: float,
    split_touching: bool,
    fields: CoarseFields | None,
    run: Workers,
    origin: tuple[int, int],
    model: ReferenceModel | None,
) -> np.ndarray:
    """The stages of :func:`segment_one_window` (``smooth_job``: the full-resolution smoothing)."""
    px, f, pc = lv.px, lv.f, lv.pc
    ref, c = lv.ref, lv.c
    fl = fields if fields is not None else coarse_fields(norm, finite, lv, run)
    cm, smooth_c = fl.cm, fl.smooth_c
    cores, bg_marker = crystal_cores(
        fl, lv, opts, min_area_um2=min_area_um2, close_um=close_um, run=run
    )
    if model is not None:
        # blocks that look like the reference crystal extend the cores they touch
        prob = reference_probability(fl, lv, model)
        extra = (prob > 0.8) & ~bg_near_black(fl, lv)
        if fl.fin_c is not None:
            extra &= fl.fin_c
        cores = add_cores(
            cores, extra, lv, opts, min_area_um2=min_area_um2, close_um=close_um, new=False
        )
    if not cores.any():
        return np.zeros(norm.shape, dtype=np.int32)
    # cut, grow back to the edges
    coarse = coarse_crystals(cores, bg_marker, fl, lv, opts, split_touching=split_touching, run=run)

    # ---- full resolution: each crystal's edge at the midpoint of its rim and the reference
    band = (max(1.0, (smooth_um + 1.5) / pc), max(2.0, (smooth_um + 5.0) / pc))
    thr, sign, floor = rim_thresholds(coarse, smooth_c, ref, band)
    smooth = smooth_job.result()
    # the rims of the pieces for the merging (below), while the edges are refined
    rim_job = None
    if lv.mode != "masked" and (opts.merge_rim is None or opts.merge_rim > 0):
        # the block means of a band of the rim beyond the blur's reach of the outside (and
        # beyond the blocks on the edge), one block or 3 um wide; judged on at least 20 um
        # of a free face
        near, width = max(1.5, (2.0 * smooth_um + px) / pc), max(1.0, 3.0 / pc)
        rim_job = run.submit(rim_band, coarse, cm, (near, near + width), close_um / pc)
    labels = refine_edges(
        coarse, f, smooth, thr, sign, floor, line_px=int(np.ceil(1.0 / px)), run=run
    )
    if opts.snap_um > 0:
        labels = snap_outlines(
            labels,
            norm,
            lv.noise,
            band_px=max(6, int(np.ceil(opts.snap_um / px))),
            tile_px=max(12, int(round(12.0 / px))),
            max_move_px=max(6.0, opts.snap_um / px),
            origin=origin,
            threads=run.n,
        )
    # join what one crystal lost to a cut or a crack (judged at full resolution; the rims of
    # the pieces, on the coarse blocks, which carry the same labels)
    rim = None
    if rim_job is not None:
        rim_lab, rim_val = rim_job.result()
        rim = (
            rim_lab,
            rim_val,
            opts.merge_rim if opts.merge_rim is not None else 0.4 * c,
            width * 20.0 / pc,
            lv.noise / f,  # of a block mean
        )
    merge = functools.partial(
        merge_regions,
        small_px=2.0 * min_area_um2 / (px * px),
        merge_grey=opts.merge_grey if opts.merge_grey is not None else c,
        max_deficit=opts.max_deficit if split_touching else np.inf,
        band_px=max(2, int(round(3.0 / px))),
        lenient=lv.mode == "masked",
        return_areas=True,
        return_map=True,
    )
    labels, area, new_id = merge(labels, smooth, rim=rim)
    labels, area = fill_label_holes(labels, opts.max_hole_fraction, area, in_place=True)
    if lv.mode != "masked" and labels.any():
        # lumps of groundmass (microlite clusters) taken in beyond the crystal's own body
        cut = cut_attachments(
            labels, smooth, float(ref), opts.open_um / px, min_area_um2 / (px * px)
        )
        if cut is not labels:
            labels = cut
            area = np.bincount(labels.ravel(), minlength=area.size)
    # pixels that may join a crystal's outer zone: not near-black (vesicles, epoxy), finite
    valid = smooth > np.float64(lv.dark_thr)
    if finite is not None:
        valid &= finite
    if opts.line_zones and lv.mode != "masked" and labels.any():
        # outer zones bounded only by a thin line all around the crystal
        strength = line_strength(norm, workers=run.n)
        grown = extend_to_lines(
            labels,
            strength,
            valid=valid,
            reach_px=opts.line_reach_um / px,
            min_px=min_area_um2 / (px * px),
        )
        # crystals of the groundmass's grey that only a closed line shows
        grown = line_bounded_cells(
            grown, strength, norm, lv.noise, valid=valid, min_px=min_area_um2 / (px * px)
        )
        if grown is not labels:
            labels = grown
            area = np.bincount(labels.ravel(), minlength=area.size)
    if opts.outer_zone_um > 0 and lv.mode != "masked":
        # outer zones at the groundmass grey, up to the faint step or line that bounds them
        grown = extend_outer_zones(
            labels,
            norm,
            lv.noise,
            band_px=max(6, int(np.ceil(opts.outer_zone_um / px))),
            piece_px=max(12, int(round(12.0 / px))),
            origin=origin,
            valid=valid,
            min_px=min_area_um2 / (px * px),
            min_offset=max(2, int(np.ceil(3.0 / px))),
            skip=max(1, int(round(1.0 / px))),
            texture_px=max(1.0, 1.0 / px),
            steps=opts.zone_steps,
        )
        if grown is not labels:
            labels = grown
            area = np.bincount(labels.ravel(), minlength=area.size)
    # the contacts between the crystals that still touch, onto their grain boundaries; then
    # the pieces of one crystal whose cut now runs along its crack (where the grey just
    # behind the contact agrees) are joined
    if (
        split_touching
        and opts.contact_um > 0
        and refine_contacts(labels, smooth, opts.contact_um / px)
    ):
        if rim is not None:
            top = int(rim[0].max()) + 1 if rim[0].size else 0
            lut = np.zeros(max(top, new_id.size), dtype=np.int32)
            lut[: new_id.size] = new_id
            rim = (lut[rim[0]], *rim[1:])
        labels, area, _ = merge(labels, smooth, rim=rim)
    return final_labels(labels, area, smooth, finite, lv, opts, min_area_um2=min_area_um2)
