"""Full-resolution edges from the coarse block labels.

Pixels of the blocks along each crystal's outline keep their crystal when their smoothed grey
lies on the crystal's side of the midpoint between its rim grey and the reference; cracks that
reach the edge are closed and stray specks in background blocks dropped."""

from __future__ import annotations

import numpy as np
from skimage import morphology

from .._threads import SERIAL, Workers
from .fields import upsample
from .labelops import index_lut, inner_boundary, label_medians
from .morphology import dilate_square, flat_nonzero, gather_any, gather_max, near_mask
from .runs import mask_runs, run_components, run_pixels


def rim_thresholds(labels: np.ndarray, smooth: np.ndarray, ref: float, band: tuple):
    """Per-label midpoint between the rim grey and the reference, the crystal's sign, and the
    grey below which a pixel is no part of a darker crystal (half its rim grey, 0 being the
    image's near-black level: epoxy, holes and vesicles beside a dark crystal are no part of
    it although they are darker than the reference too)."""
    n = int(labels.max())
    edge = inner_boundary(labels)
    in_band = (labels > 0) & near_mask(edge, band[1]) & ~near_mask(edge, band[0], strict=True)
    rim = label_medians(smooth, np.where(in_band, labels, 0), n)
    missing = ~np.isfinite(rim)
    if missing.any():
        # labels without a band: the median of the whole label (of those labels only)
        lut = np.zeros(n + 1, dtype=bool)
        lut[1:] = missing
        sel = index_lut(lut, labels)
        rim[missing] = label_medians(smooth[sel], labels[sel], n)[missing]
    thr = np.concatenate([[0.0], ref + 0.5 * (rim - ref)]).astype(np.float32)
    sign = np.concatenate([[0.0], np.sign(rim - ref)]).astype(np.float32)
    floor = np.concatenate([[-np.inf], np.where(rim < ref, 0.5 * rim, -np.inf)]).astype(np.float32)
    return thr, sign, floor


def _full_labels(coarse: np.ndarray, f: int, shape: tuple[int, int]) -> np.ndarray:
    """Coarse labels upsampled to ``shape``: a writable, C-contiguous array of their own."""
    return coarse.copy() if f == 1 else upsample(coarse, f, shape)


def refine_edges(
    coarse: np.ndarray,
    f: int,
    smooth: np.ndarray,
    thr: np.ndarray,
    sign: np.ndarray,
    floor: np.ndarray,
    line_px: int = 1,
    run: Workers = SERIAL,
) -> np.ndarray:
    """Full-resolution labels from coarse ones: edges placed by each crystal's midpoint grey.

    Pixels in blocks within two blocks of a coarse boundary take the label of their block (or,
    in background blocks, of the neighbouring crystal) when their grey is on the crystal's side
    of the midpoint between its rim and the reference; the other pixels keep their block's label.
    Only the pixels of those blocks are visited. (``run`` upsamples the coarse labels while
    the pixels of the band are tested.)
    """
    shape = smooth.shape
    labels_job = run.submit(_full_labels, coarse, f, shape)
    crystal = coarse > 0
    # crystal blocks next to the background, background blocks up to two blocks out, and the
    # blocks where two crystals meet (whose pixels keep their block's label)
    outer = crystal & dilate_square(~crystal, 1)
    ring = ~crystal & dilate_square(crystal, 2)
    band_c = outer | ring
    cand_c = np.where(crystal, coarse, dilate_square(coarse, 2))
    # the pixels of the band blocks, block by block (no full-resolution mask)
    bi, bj = flat_nonzero(band_c)
    if bi.size == 0:
        return labels_job.result()
    # one row per band block, one column per pixel of the block; the tests run on the block's
    # candidate label, threshold and sign, broadcast over its pixels (no per-pixel look-ups)
    h, w = shape
    d = np.arange(f)
    within = ((d * w)[:, None] + d[None, :]).ravel()
    idx = (bi * (f * w) + bj * f)[:, None] + within[None, :]
    valid = None  # pixels of the blocks inside the image (None: all)
    if h % f or w % f:
        valid = ((bi * f)[:, None] + d.repeat(f)[None, :] < h) & (
            (bj * f)[:, None] + np.tile(d, f)[None, :] < w
        )
        idx = np.where(valid, idx, 0)
    cand = cand_c[bi, bj]
    in_crystal = crystal[bi, bj][:, None]
    v = smooth.ravel()[idx]
    keep = (v - index_lut(thr, cand)[:, None]) * index_lut(sign, cand)[:, None] > 0
    keep &= v > index_lut(floor, cand)[:, None]
    keep &= (cand > 0)[:, None]
    if valid is not None:
        keep &= valid
    # inside crystal blocks only pixels near the failing pixels of background blocks (the
    # outside) are removed: an inclusion close to the edge is not the outside
    test = in_crystal & ~keep
    if valid is not None:
        test &= valid
    if test.any():
        outside = np.zeros(shape, dtype=bool)
        failed = ~keep & ~in_crystal
        if valid is not None:
            failed &= valid
        outside.ravel()[idx[failed]] = True
        # within a square of 2 * max(1, f // 2) + 1 pixels of the outside: one dilation of
        # the whole (sparse, boolean) image is cheaper than gathering the square's offsets
        at = np.flatnonzero(test)
        near_out = dilate_square(outside, max(1, f // 2)).ravel()[idx.ravel()[at]]
        keep.ravel()[at[~near_out]] = True
    labels = labels_job.result()
    new = np.where(keep, cand[:, None], 0).astype(labels.dtype, copy=False)
    if valid is None:
        labels.ravel()[idx] = new
    else:
        labels.ravel()[idx[valid]] = new[valid]
    # cracks that reach the edge must not notch their crystal: a small closing, inside
    # crystal blocks only (only removed pixels of crystal blocks can be such gaps)
    gap = in_crystal & ~keep
    if valid is not None:
        gap &= valid
    if line_px >= 1 and gap.any():
        foot = morphology.disk(line_px).astype(bool)
        dilated = near_mask(labels > 0, float(line_px))  # the dilation by the same disk
        gr, gc = np.divmod(idx[gap], w)
        # the erosion (beyond the border is outside), at the removed pixels only
        closed = ~gather_any(~dilated, gr, gc, foot, border=True)
        if closed.any():
            gr, gc = gr[closed], gc[closed]
            labels[gr, gc] = gather_max(labels, gr, gc, 2 * line_px + 1)
    # specks (microlites) in background blocks that do not touch their crystal are dropped:
    # a part of the labels with pixels in background blocks is anchored when it also holds a
    # pixel of a crystal block of the band (a crystal block next to a background block); the
    # closing changed crystal blocks only, so the kept pixels of background blocks are these
    if (keep & ~in_crystal).any():
        _drop_unanchored(labels, f, outer, ring)
    return labels


def _drop_unanchored(labels: np.ndarray, f: int, outer: np.ndarray, ring: np.ndarray) -> None:
    """Zero (in place) the parts of ``labels > 0`` that lie in ``ring`` blocks only.

    ``outer`` and ``ring`` are the crystal and background blocks (``f`` x ``f`` pixels) of the
    edge band; the other blocks hold their block's label (0 in background blocks). A part
    (side-connected) with a pixel in a ring block is kept when it also holds a pixel of an
    outer block; any path from a ring block to a crystal block passes through an outer one,
    so a part that is not kept lies in ring blocks only. Judged on the row runs of the parts.
    """
    row, c0, c1 = mask_runs(labels > 0)
    comp, n_comp = run_components(row, c0, c1, labels.shape[1])
    b_row, j0, j1 = row // f, c0 // f, (c1 - 1) // f

    def crosses(blocks: np.ndarray) -> np.ndarray:
        # whether each run crosses a block of ``blocks`` (counts along its block row)
        cum = np.zeros((blocks.shape[0], blocks.shape[1] + 1), dtype=np.int32)
        np.cumsum(blocks, axis=1, out=cum[:, 1:])
        return cum[b_row, j1 + 1] > cum[b_row, j0]

    anchored = np.zeros(n_comp, dtype=bool)
    anchored[comp[crosses(outer)]] = True
    drop = ~anchored[comp] & crosses(ring)
    if drop.any():
        labels.ravel()[run_pixels(row[drop], c0[drop], c1[drop], labels.shape[1])] = 0
