"""``segment_crystals``: the checks of its arguments, the levels of the whole image, then the
image segmented whole or in overlapping tiles stitched by ownership."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from .._cluster import using
from .._threads import Workers, resolve_threads
from .._validation import ZonationInputError, check_pixel_size
from ..tiling import stitch_tiles, tile_grid
from .background import data_bar_rows
from .fields import coarse_fields, coarse_halo
from .levels import round_up, sample_levels, set_levels, work_factor
from .reference import learn_reference, outline_mask, stamp_reference, warn_groundmass_share
from .source import Serialised, full_scale, grey_source, normalise, read_window
from .state import Levels, Options
from .window import segment_one_window

#: Images with more pixels than this are tiled when ``tile_size`` is None.
TILE_AUTO_PIXELS = 4096 * 4096
#: Core side (pixels) of the tiles used when tiling is automatic.
TILE_AUTO_SIZE = 2048

_BACKGROUNDS = ("auto", "groundmass", "masked")
#: The fine-control options' defaults, defined once in :class:`~.state.Options`.
_DEFAULTS = Options()


def _context_px(lv: Levels, opts: Options, smooth_um: float, close_um: float) -> int:
    """Pixels of context around a crystal that make its labels in a window equal the whole's.

    The reach of every stage, in um: the detection and texture smoothing (4 sigma), the
    opening, closing and growth radii, the edge band of the refinement, the merging's look
    behind a cut, the outline's opening (``trim_um``); doubled for safety, and at least 32 blocks.
    """
    pc = lv.pc
    grow_um = opts.grow_um if opts.grow_um is not None else opts.open_um + 3.0
    reach_um = (
        4.0 * max(lv.det_c, lv.tex_c, lv.sig_c) * pc
        + opts.open_um
        + close_um
        + grow_um
        + 4.0 * smooth_um
        + 3.0 * pc
        + 3.0
        + 2.0 * opts.trim_um
        + 2.0 * opts.snap_um
        + max(2.0 * opts.outer_zone_um, opts.line_reach_um if opts.line_zones else 0.0)
        + 12.0
    )
    return max(int(np.ceil(2.0 * reach_um / lv.px)), 32 * lv.f)


def segment_crystals(
    image,
    pixel_size_um: float = 1.0,
    *,
    min_area_um2: float = 400.0,
    smooth_um: float = 1.5,
    contrast: float | None = None,
    close_um: float = 3.0,
    split_touching: bool = True,
    background: str = "auto",
    tile_size: int | None = None,
    return_info: bool = False,
    progress: Callable[[int, int], None] | None = None,
    threads: int | None = None,
    reference=None,
    groundmass=None,
    out=None,
    overwrite: bool = False,
    client=None,
    work_um: float = _DEFAULTS.work_um,
    detect_um: float | None = _DEFAULTS.detect_um,
    open_um: float = _DEFAULTS.open_um,
    grow_um: float | None = _DEFAULTS.grow_um,
    split_h_um: float = _DEFAULTS.split_h_um,
    max_deficit: float = _DEFAULTS.max_deficit,
    merge_grey: float | None = _DEFAULTS.merge_grey,
    merge_rim: float | None = _DEFAULTS.merge_rim,
    contact_um: float = _DEFAULTS.contact_um,
    max_hole_fraction: float = _DEFAULTS.max_hole_fraction,
    texture: bool = _DEFAULTS.texture,
    smooth_texture: float = _DEFAULTS.smooth_texture,
    min_smooth_share: float = _DEFAULTS.min_smooth_share,
    max_vesicle_share: float = _DEFAULTS.max_vesicle_share,
    dark_fraction: float = _DEFAULTS.dark_fraction,
    trim_um: float = _DEFAULTS.trim_um,
    snap_um: float = _DEFAULTS.snap_um,
    outer_zone_um: float = _DEFAULTS.outer_zone_um,
    line_zones: bool = _DEFAULTS.line_zones,
    zone_steps: bool = _DEFAULTS.zone_steps,
    tile_halo_um: float = _DEFAULTS.tile_halo_um,
):
    """Segment phenocrysts in a BSE image (or element maps) into integer labels.

    Parameters
    ----------
    image : array-like
        2D greyscale image of any integer or float dtype, RGB(A) (converted to grey with a
        warning), or a ``(channels, y, x)`` stack of element maps (combined into their first
        principal component). NaN pixels are never crystals. A 2D dask array (or any array
        read by slicing: zarr, h5py, memory maps) and a 2D numpy array are read one tile at a
        time, never copied whole as floats; RGB(A) and element maps are combined in memory
        first.
    pixel_size_um : float
        Micrometres per pixel. Every size parameter below is in micrometres and is converted
        with it, so the same section imaged at another pixel size gives the same crystals.
    min_area_um2 : float
        Smallest crystal area kept, in square micrometres.
    smooth_um : float
        Gaussian smoothing scale (sigma) in micrometres, against pixel noise; the edges are
        placed on the image smoothed at this scale.
    contrast : float or None
        Smallest grey deviation from the groundmass (or from the masked background) that counts
        as crystal, as a fraction of the robust grey range (0.1 to 99.9 percentiles). ``None``
        sets it from the width of the groundmass mode and the noise.
    close_um : float
        Closing radius in micrometres: cracks and gaps narrower than about twice this are
        bridged so they neither split a crystal nor cut into it.
    split_touching : bool
        Split crystals that touch: a watershed of the distance transform from its h-maxima cuts
        the crystal regions, a gradient watershed moves each cut onto the grain boundary, and two
        pieces are joined again when the grey just behind the cut is the same on both sides and
        their union is convex (a crack, not a grain boundary).
    background : {"auto", "groundmass", "masked"}
        ``"groundmass"``: crystals are brighter or darker than a dominant, textured groundmass
        mode. ``"masked"``: the background was masked black and everything clearly brighter is
        crystal. ``"auto"`` picks ``"masked"`` when the dominant smoothed grey mode is near black
        and covers a large share of the image.
    tile_size : int or None
        Side in pixels of the tiles a large image is segmented in (rounded to a multiple of
        the coarse block). ``None`` (default): images of more than 4096 x 4096 pixels are cut
        into tiles of 2048 pixels, smaller ones are segmented whole. Every level (grey range,
        noise, groundmass mode, contrast, texture threshold) is set once from the whole image;
        each tile is then segmented with a halo around it and keeps the crystals whose bounding
        box starts in it and that stay away from the halo's cut sides, so no crystal is cut
        or counted twice at a seam. A crystal larger than the halo (``tile_halo_um``) is
        segmented again in a window grown around it until it fits (up to four times the tile
        window; beyond that it is kept as cut, and ``info["n_truncated"]`` counts it).
    return_info : bool
        Also return a dict with the levels and parameters used.
    progress : callable, optional
        ``progress(done, total)`` after each tile of a tiled image (``total`` tiles), and
        ``progress(1, 1)`` when an image segmented whole is done. An exception it raises (a
        Cancel button's) stops the segmentation and propagates.
    threads : int or None
        Worker threads. ``None`` (default): ``min(4, CPUs available)``; 1: everything in the
        calling thread. A tiled image is segmented several tiles at a time; an image
        segmented whole runs independent stages concurrently (the full-resolution smoothing
        alongside the coarse stages, the bright and dark cores, ...). The labels are the same
        for every thread count.
    reference : array-like, optional
        One crystal outlined by the user, rim included: a boolean mask of the image's (y, x)
        shape, or an ``(N, 2)`` polygon of (row, col) pixel vertices (napari Shapes data). A
        pixel classifier learns from it what that crystal's inside looks like against its
        surroundings, and the blocks it calls crystal extend the crystal cores they touch:
        zones of crystals that look like it join them even where their grey equals the
        groundmass's. The reference
        itself comes back as one label, exactly its outline (other labels lose what lies
        inside it; what they keep outside stays where it is large enough).
        ``info["reference_groundmass_share"]`` is the share of its outline along
        which the image shows no edge (a warning above a quarter).
    groundmass : array-like, optional
        A patch of groundmass (mask or polygon, as ``reference``) that the classifier learns
        as not crystal, beside the ring around the reference. Only with ``reference``.
    out : str or path-like, optional
        A zarr store (``labels.zarr``) to write the labels to instead of returning them in
        memory: a tiled image is stitched into it band by band (the whole labels image is
        never held), with a multiscale pyramid, under a temporary name renamed when complete
        (see :mod:`napari_zonation.mosaic`). The labels are the same as in memory. Not with
        ``reference``.
    overwrite : bool
        Replace an existing ``out`` store (refused by default, before any work).
    client : dask.distributed.Client or str, optional
        Segment the tiles as tasks on this dask cluster (or on the scheduler at this
        address, ``tcp://HOST:PORT``); a task lost with a dying worker is run again. By
        default a dask array input uses the dask.distributed client made the default in this
        process, if any; everything else runs in this process's threads. The labels are the
        same either way.
    work_um : float
        Detection, splitting and growing run on blocks of about this size (um); edges and
        merging at full resolution.
    detect_um : float or None
        Smoothing (sigma, um) of the detection image; ``None``: ``2 * smooth_um``.
    open_um : float
        Radius (um) of the opening that removes microlites from the crystal cores.
    grow_um : float or None
        How far (um) cores grow back to the crystal edge; ``None``: ``open_um + 3``.
    split_h_um : float
        Depth (um) of a neck that separates two crystal bodies (h of the distance
        transform's h-maxima).
    max_deficit : float
        Convex-hull excess, as a fraction of the smaller piece, under which two pieces may be
        one crystal.
    merge_grey : float or None
        Grey step across a cut that keeps two pieces apart; ``None``: the contrast.
    merge_rim : float or None
        Difference of the pieces' rim greys, on their free faces, that keeps them apart;
        ``None``: 0.4 x the contrast; 0 turns the rim test off.
    contact_um : float
        How far (um) the boundary between two touching crystals may move onto their grain
        boundary (the thin dark seam or grey step between them); 0 keeps the cut of their
        cores.
    max_hole_fraction : float
        Holes up to this fraction of their crystal are filled.
    texture : bool
        Reject textured, microlite-rich cores when a groundmass is found.
    smooth_texture : float
        A block is smooth below this multiple of the groundmass texture.
    min_smooth_share : float
        Share of a core that must be smooth.
    max_vesicle_share : float
        Cores mostly (above this share) within 6 um of near-black pixels are vesicle walls.
    dark_fraction : float
        Near-black share above which the background may be a black mask.
    trim_um : float
        Each crystal is opened with a disc of this radius (um), so that specks and bumps
        narrower than its diameter stuck to the rim are left out; 0 = off.
    snap_um : float
        The band (um, each side of an outline) within which its free faces move onto the
        crystal's own edge, read on grey profiles across it; 0 = off.
    outer_zone_um : float
        Widest outer zone (um) looked for beyond each crystal's outline: a zone at the grey of
        the groundmass around it (an Fe-rich olivine rim in basaltic glass) whose bound shows
        only as a faint step or a thin line at the same distance all around the crystal
        (:mod:`napari_zonation.segment.outerzone`); 0 = off.
    line_zones : bool
        Extend each crystal out to a closed thin line (dark or bright) that runs all around
        it, up to twice ``outer_zone_um`` (at least 20 um) beyond its outline: the bound of
        an outer zone at the groundmass grey that shows only as such a line; and take as
        crystals the convex, smooth cells of their own grey that such a line closes (a
        crystal within a few grey levels of the glass)
        (:mod:`napari_zonation.segment.enclosing`).
    zone_steps : bool
        Also take a faint step alone (no line) as the bound of an outer zone at the
        groundmass grey, when the glass beyond it is as smooth as the detector's noise and
        the step has the same sign at the same distance all around the crystal (not along
        one side of it only, as a band of the glass's own grey would)
        (:func:`napari_zonation.segment.outerzone.extend_outer_zones`); False: lines only.
    tile_halo_um : float
        Extent (um) of a crystal that a tile surely holds whole; larger ones are segmented
        again in a larger window.

    Returns
    -------
    numpy.ndarray or (numpy.ndarray, dict)
        int32 labels of the image's (y, x) shape, 0 = not a crystal, 1..n crystals (with
        ``out``: a dask array reading them from the store); with
        ``return_info=True`` also a dict (``background``, ``reference``, ``contrast``,
        ``noise``, ``full_scale``, ``n_tiles``, ``threads``, ...; grey levels in the image's
        own units).

    Raises
    ------
    ZonationInputError
        Bad image (1D, empty, 4D, 3D that is neither channels nor RGB), bad pixel size, bad
        tile size or thread count, unknown background mode; a reference (or
        groundmass patch) that is empty, crosses itself, lies outside the image, is smaller
        than ``min_area_um2`` or was drawn on an image of another shape; an ``out`` store
        that exists (without ``overwrite``), ``out`` with ``reference``, a scheduler address
        that does not answer.
    TypeError
        An unknown keyword (a misspelt option), named in the message.

    Warns
    -----
    UserWarning
        RGB input (converted to grey), constant or all-NaN image (no crystals), crystals still
        cut by a tile seam after the largest window tried, a reference whose outline runs
        where the image shows no edge along more than a quarter of it (it seems to cover
        groundmass too; the warning names the share).

    Notes
    -----
    Steps: robust normalisation; block means of about ``work_um`` (and the grey variance in
    each block, the texture); the reference level from the histogram (the groundmass is the
    mode of the most textured half of the image; a near-black dominant mode means a masked
    background); crystal cores = deviation from the reference beyond the contrast on the
    detection-smoothed image, split by sign, opened, closed and hole-filled, kept when large
    enough and smooth enough (microlite clusters are textured); cores cut at the h-maxima of
    their distance transform; a gradient watershed grows the pieces against a background marker
    (groundmass-level or near-black blocks); pieces joined when the grey behind their contact
    agrees and their union stays convex; each crystal's edge is placed at full resolution
    where the smoothed grey crosses the midpoint between its rim and the reference, then its
    free faces move onto the crystal's own edge (:mod:`napari_zonation.segment.outline`: grey
    profiles across the edge, averaged along it, against the local outside level, so that an
    edge halo stays inside and epoxy or a vesicle beside the crystal sets its own level).
    Round near-black regions and what they enclose (vesicles and their bright floors) are
    never crystals. The levels come from regular samples of the image (about 250,000 pixels
    and coarse blocks), the same whether or not it is tiled.
    """
    opts = Options(
        work_um=work_um,
        detect_um=detect_um,
        open_um=open_um,
        grow_um=grow_um,
        split_h_um=split_h_um,
        max_deficit=max_deficit,
        merge_grey=merge_grey,
        merge_rim=merge_rim,
        contact_um=contact_um,
        max_hole_fraction=max_hole_fraction,
        texture=texture,
        smooth_texture=smooth_texture,
        min_smooth_share=min_smooth_share,
        max_vesicle_share=max_vesicle_share,
        dark_fraction=dark_fraction,
        trim_um=trim_um,
        snap_um=snap_um,
        outer_zone_um=outer_zone_um,
        line_zones=line_zones,
        zone_steps=zone_steps,
        tile_halo_um=tile_halo_um,
    )
    if background not in _BACKGROUNDS:
        raise ZonationInputError(
            f"background={background!r} is not one of {_BACKGROUNDS}; use 'auto' unless you "
            "know whether the image shows groundmass or a background masked black."
        )
    px = check_pixel_size(pixel_size_um)
    for name, val in (
        ("min_area_um2", min_area_um2),
        ("smooth_um", smooth_um),
        ("close_um", close_um),
        ("tile_halo_um", opts.tile_halo_um),
    ):
        if not (isinstance(val, (int, float, np.number)) and np.isfinite(val) and val >= 0):
            raise ZonationInputError(f"{name}={val!r} must be a non-negative number (um).")
    if contrast is not None and not (np.isfinite(contrast) and contrast > 0):
        raise ZonationInputError(
            f"contrast={contrast!r} must be a positive fraction of the grey range, or None."
        )
    if tile_size is not None and not (
        isinstance(tile_size, (int, np.integer))
        and not isinstance(tile_size, bool)
        and tile_size >= 64
    ):
        raise ZonationInputError(
            f"tile_size={tile_size!r} must be an integer number of pixels >= 64, or None "
            "(automatic: tiles of 2048 pixels above 4096 x 4096)."
        )
    n_threads = resolve_threads(threads)
    src, dtype = grey_source(image)
    shape = tuple(int(s) for s in src.shape)
    ref_mask = gm_mask = None
    if reference is not None:
        ref_mask = outline_mask(reference, shape, px, min_area_um2, "reference")
    if groundmass is not None:
        if reference is None:
            raise ZonationInputError(
                "groundmass= is a patch of groundmass that goes with a reference crystal; "
                "give reference= too (or leave both out)."
            )
        gm_mask = outline_mask(groundmass, shape, px, 0.0, "groundmass")
    info: dict = {
        "background": None,
        "pixel_size_um": px,
        "n_crystals": 0,
        "n_tiles": 1,
        "threads": n_threads,
    }
    if tile_size is None and shape[0] * shape[1] > TILE_AUTO_PIXELS:
        tile_size = TILE_AUTO_SIZE
    tiled = tile_size is not None and (shape[0] > tile_size or shape[1] > tile_size)
    if n_threads > 1 and not isinstance(src, np.ndarray):
        src = Serialised(src)  # lazy sources are read by one thread at a time
    if out is not None and reference is not None:
        raise ZonationInputError(
            "reference= (one-shot) is not available with out=; segment a crop around the "
            "reference crystals in memory, or leave out= out."
        )
    writer = None
    if out is not None:
        from ..mosaic import ZarrWriter

        writer = ZarrWriter(out, shape, np.int32, kind="labels", pixel_size_um=px,
                            overwrite=overwrite)
    try:
        with using(client, lazy=not isinstance(src, np.ndarray)) as cluster, Workers(
            n_threads
        ) as run:
            if cluster is not None:
                info["client"] = str(getattr(cluster, "scheduler", None) or cluster)
            result = _segment_source(
                src,
                shape,
                dtype,
                px,
                opts,
                info,
                run,
                min_area_um2=min_area_um2,
                smooth_um=smooth_um,
                close_um=close_um,
                split_touching=split_touching,
                contrast=contrast,
                background=background,
                tile_size=tile_size if tiled else None,
                return_info=return_info,
                progress=progress,
                reference=ref_mask,
                groundmass=gm_mask,
                writer=writer,
                client=cluster,
            )
        if writer is None:
            return result
        if return_info:
            info = result[1]
        writer.finish({"n_crystals": info["n_crystals"]})
        from ..mosaic import open_labels

        lazy = open_labels(writer.path).data
        return (lazy, info) if return_info else lazy
    finally:
        if writer is not None:
            writer.abort()


def _segment_source(
    src,
    shape: tuple[int, int],
    dtype: np.dtype,
    px: float,
    opts: Options,
    info: dict,
    run: Workers,
    *,
    min_area_um2: float,
    smooth_um: float,
    close_um: float,
    split_touching: bool,
    contrast,
    background: str,
    tile_size: int | None,
    return_info: bool,
    progress,
    reference: np.ndarray | None = None,
    groundmass: np.ndarray | None = None,
    writer=None,
    client=None,
):
    """:func:`segment_crystals` after the checks: levels, then the image whole or tiled
    (stitched into ``writer``'s store when given, its windows run on ``client`` when given)."""
    tiled = tile_size is not None

    def empty():
        out = np.zeros(shape, dtype=np.int32)
        return (out, info) if return_info else out

    f = work_factor(px, opts.work_um)
    lv, fields = sample_levels(src, shape, px, f, opts, smooth_um, tile_size, run)
    if lv is None:
        warnings.warn(
            "the image has no finite pixels; no crystals found.", UserWarning, stacklevel=3
        )
        return empty()
    info.update(full_scale=full_scale(lv.sample, dtype), grey_lo=lv.lo, grey_hi=lv.hi)
    if fields is None and lv.noise is None:
        warnings.warn(
            "the image is constant (no grey contrast); no crystals found. Check that the right "
            "image or channel was passed.",
            UserWarning,
            stacklevel=3,
        )
        return empty()
    info.update(noise=lv.noise * lv.span, work_factor=f)
    set_levels(lv, opts, contrast, background, info)
    bar = data_bar_rows(src, shape, lv.lo, lv.span, lv.dark_thr) if lv.mode != "masked" else 0
    info["data_bar_rows"] = bar
    model = None
    if reference is not None:
        model = _learn(src, shape, lv, fields, reference, groundmass, run.n)
        warn_groundmass_share(model)
        info["reference_groundmass_share"] = model.groundmass_share
    kwargs = dict(
        min_area_um2=min_area_um2,
        smooth_um=smooth_um,
        close_um=close_um,
        split_touching=split_touching,
        model=model,
    )
    if not tiled:
        if fields is not None and fields.norm is not None:
            norm, finite = fields.norm, fields.finite
            fields.norm = fields.finite = None
        else:
            norm, finite = normalise(
                read_window(src, 0, shape[0], 0, shape[1]), lv.lo, lv.span, lv.fill
            )
        if bar:
            finite = _without_bar(finite, norm.shape, 0, shape[0], bar)
            if fields is not None:
                fields = None  # their finite share must leave the bar out too
        labels = segment_one_window(norm, finite, lv, opts, fields=fields, run=run, **kwargs)
        if writer is not None:
            writer.write(labels)
        if progress is not None:
            progress(1, 1)
    else:
        margin = _context_px(lv, opts, smooth_um, close_um)
        after = margin + int(np.ceil(opts.tile_halo_um / px))
        tiles = tile_grid(shape, int(tile_size), before=margin, after=after, align=f)

        def segment_window(win):
            r0, r1, c0, c1 = win
            norm, finite = normalise(read_window(src, r0, r1, c0, c1), lv.lo, lv.span, lv.fill)
            if bar and r1 > shape[0] - bar:
                finite = _without_bar(finite, norm.shape, r0, shape[0], bar)
            return segment_one_window(norm, finite, lv, opts, origin=(r0, c0), **kwargs)

        # several tiles at a time, each segmented in its worker's thread
        labels, stats = stitch_tiles(
            shape,
            tiles,
            segment_window,
            margin=margin,
            align=f,
            progress=progress,
            threads=run.n,
            canvas=None if writer is None else writer.canvas(),
            client=client,
        )
        info.update(
            stats,
            tile_core_px=round_up(int(tile_size), f),
            tile_margin_px=margin,
            tile_after_px=after,
        )
        if stats["n_truncated"]:
            warnings.warn(
                f"{stats['n_truncated']} crystal(s) larger than the largest window tried are "
                "cut by a tile seam; pass a larger tile_size or tile_halo_um.",
                UserWarning,
                stacklevel=3,
            )
    if reference is not None:
        labels = stamp_reference(labels, reference, min_area_um2 / (px * px))
    info["n_crystals"] = int(labels.max()) if writer is None else info.get("n_labels", 0)
    if writer is not None and not tiled:
        info["n_crystals"] = int(labels.max())
    if return_info:
        return labels, info
    return labels


def _without_bar(finite, shape, r0: int, height: int, bar: int) -> np.ndarray:
    """The finite mask of a window starting at image row ``r0``, the data bar (the last
    ``bar`` rows of an image ``height`` rows tall) left out as if it were NaN."""
    out = np.ones(shape, dtype=bool) if finite is None else finite.copy()
    out[max(height - bar - r0, 0) :] = False
    return out


def _learn(src, shape, lv: Levels, fields, reference, groundmass, threads: int):
    """The reference model, learned on the whole image's coarse fields or, for a tiled image,
    on a window around the reference (and the groundmass patch)."""
    if fields is not None:
        return learn_reference(fields, lv, reference, groundmass, norm=fields.norm, threads=threads)
    f = lv.f
    both = reference if groundmass is None else reference | groundmass
    rows, cols = np.flatnonzero(both.any(axis=1)), np.flatnonzero(both.any(axis=0))
    m = int(np.ceil(60.0 / lv.px)) + coarse_halo(lv)
    r0 = max(rows[0] - m, 0) // f * f
    c0 = max(cols[0] - m, 0) // f * f
    r1, c1 = min(rows[-1] + m + 1, shape[0]), min(cols[-1] + m + 1, shape[1])
    norm, finite = normalise(read_window(src, r0, r1, c0, c1), lv.lo, lv.span, lv.fill)
    fl = coarse_fields(norm, finite, lv)
    gm = None if groundmass is None else groundmass[r0:r1, c0:c1]
    return learn_reference(fl, lv, reference[r0:r1, c0:c1], gm, norm=norm, threads=threads)
