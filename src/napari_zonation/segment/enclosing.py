"""Outer zones bounded by a thin line that runs all around the crystal.

A crystal's outer zone can have the grey of the glass around it (the Fe-rich rim of an
olivine in basaltic glass); the segmentation's edges then stop at the inner side of that zone.
Often what still bounds the crystal is a thin line: a dark film just outside it, a bright
halo on its outermost pixels. Such a line is faint pixel by pixel but long and straight along
each facet, so it is found with oriented line filters (a second derivative of a Gaussian
across the line, averaged along it, in 12 orientations: :func:`line_strength`).

For every crystal, rays are cast from its centroid. On each ray the first line beyond the
crystal's own edge (skipping the edge's own response) and before any other crystal, vesicle
or epoxy is the ray's hit. The crystal is extended to the convex hull of its hits only when
the line is found all around it:

- at least half of the rays hit a line (the others may cross a gap in it);
- hits far beyond their neighbours (a gap that let the ray run on to another line) are
  dropped;
- the hull's outline lies on a line along at least ``min_line`` of its length (a closed line
  around the crystal, not a needle or a vesicle wall beside one side of it);
- the zone it adds is smooth (no line across it) and between ``min_grow`` and ``max_grow``
  times the crystal's area.

Only groundmass pixels join: other crystals, vesicles and epoxy keep their labels.

A crystal whose grey is within a few levels of the glass's is not found from its grey at all;
:func:`line_bounded_cells` takes the cells that such a line closes (convex, smooth, of their
own grey) as new crystals.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError
from skimage import draw, measure

#: block side (pixels) of the line filter's overlap-save FFTs
_BLOCK = 512
#: a pixel lies on a line when the strength within one pixel of it exceeds this share of the
#: strength that makes a hit
_ON_LINE = 0.6
#: median strength above which lines cross a zone or cell (it is not a smooth inside)
_CROSSED = 1.5


def _line_kernels(sigma_px: float, length_px: float, n_orient: int) -> list[np.ndarray]:
    """Zero-mean, unit-norm line kernels: a Mexican hat across, a box along each orientation."""
    half = int(np.ceil(max(length_px / 2.0, 3.0 * sigma_px))) + 1
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    out = []
    for t in np.arange(n_orient) * np.pi / n_orient:
        along = x * np.cos(t) + y * np.sin(t)
        across = -x * np.sin(t) + y * np.cos(t)
        hat = (across**2 / sigma_px**2 - 1.0) * np.exp(-(across**2) / (2.0 * sigma_px**2))
        support = (np.abs(across) <= 4.0 * sigma_px) & (np.abs(along) < length_px / 2.0 + 0.5)
        weight = np.clip(length_px / 2.0 + 0.5 - np.abs(along), 0.0, 1.0)
        k = np.where(support, hat * weight, 0.0)
        k[support] -= k[support].mean()
        out.append(k / np.sqrt((k**2).sum()))
    return out


def line_strength(
    grey: np.ndarray,
    *,
    sigma_px: float = 1.0,
    length_px: float = 15.0,
    n_orient: int = 12,
    workers: int = 1,
) -> np.ndarray:
    """How strongly each pixel lies on a thin straight line (dark or bright).

    Parameters
    ----------
    grey : numpy.ndarray
        2D grey image (NaN pixels are read as the image's median).
    sigma_px : float
        Gaussian scale of the line's width (pixels).
    length_px : float
        Length (pixels) along which each orientation's filter averages.
    n_orient : int
        Number of orientations (evenly spread over 180 degrees).
    workers : int
        Threads of the FFTs.

    Returns
    -------
    numpy.ndarray
        float32 image: the largest absolute response over the orientations, as robust
        z-scores (its median subtracted, divided by 1.4826 x its median absolute deviation).
    """
    g = np.asarray(grey, dtype=np.float32)
    if not np.isfinite(g).all():
        g = np.where(np.isfinite(g), g, np.float32(np.nanmedian(g)))
    kernels = _line_kernels(sigma_px, length_px, n_orient)
    span = kernels[0].shape[0] - 1  # the kernel's extent beyond one pixel
    half = span // 2
    padded = np.pad(g, half, mode="reflect")
    h, w = g.shape
    # overlap-save in blocks: the kernels' spectra are computed once, at the block's size
    size = [sfft.next_fast_len(min(_BLOCK, n) + span, real=True) for n in (h, w)]
    step = [n - span for n in size]
    specs = [sfft.rfft2(k.astype(np.float32), size, workers=workers) for k in kernels]
    best = np.empty((h, w), dtype=np.float32)
    for r0 in range(0, h, step[0]):
        for c0 in range(0, w, step[1]):
            bh, bw = min(step[0], h - r0), min(step[1], w - c0)
            block = padded[r0 : r0 + bh + span, c0 : c0 + bw + span]
            spec = sfft.rfft2(block, size, workers=workers)
            out = best[r0 : r0 + bh, c0 : c0 + bw]
            for j, ks in enumerate(specs):
                r = sfft.irfft2(spec * ks, size, workers=workers)
                r = r[span : span + bh, span : span + bw]
                if j == 0:
                    np.abs(r, out=out)
                else:
                    np.maximum(out, np.abs(r), out=out)
    med = np.float32(np.median(best))
    mad = np.float32(1.4826 * np.median(np.abs(best - med)))
    best -= med
    best /= max(mad, np.float32(1e-12))
    return best.astype(np.float32, copy=False)


def extend_to_lines(
    labels: np.ndarray,
    strength: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    z_line: float = 4.0,
    skip_px: float = 3.0,
    reach_px: float = 60.0,
    n_rays: int = 180,
    min_hits: float = 0.5,
    min_line: float = 0.85,
    min_grow: float = 0.05,
    max_grow: float = 3.0,
    min_px: float = 50.0,
) -> np.ndarray:
    """Labels whose crystals are extended out to a closed thin line around them.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer crystal labels (0: not crystal).
    strength : numpy.ndarray
        :func:`line_strength` of the image.
    valid : numpy.ndarray of bool, optional
        Pixels that may join a crystal (not vesicles, epoxy or NaN); rays stop at the others.
    z_line : float
        Line strength that makes a ray's hit.
    skip_px : float
        Distance beyond the crystal's outline where the search starts (past the response of
        the crystal's own edge).
    reach_px : float
        Farthest a line is looked for beyond the outline (pixels).
    n_rays : int
        Rays per crystal.
    min_hits : float
        Share of rays that must hit a line.
    min_line : float
        Share of the hull's outline that must lie on a line (strength above 0.6 x ``z_line``
        within one pixel).
    min_grow, max_grow : float
        The zone added, as a share of the crystal's area, must lie between these.
    min_px : float
        Crystals smaller than this (pixels) are left as they are.

    Returns
    -------
    numpy.ndarray
        A new label image, or ``labels`` itself when no crystal changes.
    """
    h, w = labels.shape
    ang = np.linspace(0.0, 2.0 * np.pi, n_rays, endpoint=False)
    ca, sa = np.cos(ang), np.sin(ang)
    out = None
    for lab, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        own = labels[sl] == lab
        area = int(own.sum())
        if area < max(min_px, 1.0):
            continue
        rr, cc = np.nonzero(own)
        cy, cx = rr.mean() + sl[0].start, cc.mean() + sl[1].start
        radius = np.sqrt(area / np.pi)
        extent = 0.5 * np.hypot(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start)
        rs = np.arange(0.0, min(2.2 * radius + 20.0, extent + reach_px), 0.5)
        ys, xs = cy + sa[:, None] * rs, cx + ca[:, None] * rs
        inside = (ys >= 0) & (ys <= h - 1) & (xs >= 0) & (xs <= w - 1)
        yi = np.clip(np.rint(ys).astype(np.intp), 0, h - 1)
        xi = np.clip(np.rint(xs).astype(np.intp), 0, w - 1)
        lab_on = labels[yi, xi]
        mine = lab_on == lab
        jj = np.arange(rs.size)[None, :]
        last = np.where(mine.any(1), rs.size - 1 - np.argmax(mine[:, ::-1], axis=1), 0)
        start = last + 1 + int(round(skip_px / 0.5))
        bad = (lab_on != 0) & ~mine | ~inside
        if valid is not None:
            bad |= ~valid[yi, xi]
        bad &= jj > last[:, None]
        stop = np.where(bad.any(1), np.argmax(bad, axis=1), rs.size)
        zz = strength[yi, xi]
        open_ = (jj >= start[:, None]) & (jj < stop[:, None])
        cand = open_ & (zz > z_line)
        hit = cand.any(1)
        if hit.mean() < min_hits:
            continue
        first = np.argmax(cand, axis=1)
        # the hit: the line's peak within 3 px beyond its first sample above z_line
        win = np.clip(first[:, None] + np.arange(6)[None, :], 0, rs.size - 1)
        zw = np.where(win < stop[:, None], np.take_along_axis(zz, win, axis=1), -np.inf)
        peak = np.take_along_axis(win, np.argmax(zw, axis=1)[:, None], axis=1)[:, 0]
        hit_r = np.where(hit, rs[peak], np.nan)
        fill = np.where(hit, hit_r, np.nanmedian(hit_r))
        typical = ndi.median_filter(fill, size=9, mode="wrap")
        keep = hit & (hit_r <= 1.15 * typical + 2.0)
        if keep.sum() < 8:
            continue
        pts = np.c_[cy + sa[keep] * hit_r[keep], cx + ca[keep] * hit_r[keep]]
        try:
            poly = pts[ConvexHull(pts).vertices]
        except QhullError:
            continue
        # the share of the hull's outline that lies on a line
        ends = np.r_[poly, poly[:1]]
        steps = [
            a + np.linspace(0.0, 1.0, max(int(np.hypot(*(b - a))), 1), endpoint=False)[:, None]
            * (b - a)
            for a, b in zip(ends[:-1], ends[1:], strict=True)
        ]
        per = np.concatenate(steps)
        on_line = _max_near(strength, per) > _ON_LINE * z_line
        if on_line.mean() < min_line:
            continue
        pr, pc = draw.polygon(poly[:, 0], poly[:, 1], (h, w))
        if pr.size == 0:
            continue
        r0, c0 = pr.min(), pc.min()
        m = np.zeros((pr.max() - r0 + 1, pc.max() - c0 + 1), dtype=bool)
        m[pr - r0, pc - c0] = True
        box = (slice(r0, r0 + m.shape[0]), slice(c0, c0 + m.shape[1]))
        zone = m & (labels[box] == 0)
        if valid is not None:
            zone &= valid[box]
        grow = zone.sum() / area
        if grow < min_grow or grow > max_grow:
            continue
        if _crossed_by_lines(zone, m, strength[box]):
            continue  # not a smooth outer zone
        if out is None:
            out = labels.copy()
        sub = out[box]
        sub[zone & (sub == 0)] = lab
    return labels if out is None else out


def _max_near(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The largest value of ``image`` in the 3 x 3 pixels around each of ``points`` (rows,
    columns; rounded to the nearest pixel, clipped to the image)."""
    r = np.rint(points[:, 0]).astype(np.intp)
    c = np.rint(points[:, 1]).astype(np.intp)
    h, w = image.shape
    return np.max(
        [image[np.clip(r + dr, 0, h - 1), np.clip(c + dc, 0, w - 1)]
         for dr in (-1, 0, 1) for dc in (-1, 0, 1)],
        axis=0,
    )


def _crossed_by_lines(pixels: np.ndarray, region: np.ndarray, strength: np.ndarray) -> bool:
    """Do lines cross ``pixels`` (their median strength above :data:`_CROSSED`, read more than
    3 px inside ``region``, away from the line that bounds it)?"""
    deep = pixels & (ndi.distance_transform_edt(region) > 3.0)
    return bool(deep.any() and np.median(strength[deep]) > _CROSSED)


def _union_box(boxes: list, margin: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    """The bounding box of several boxes, widened by ``margin`` within ``shape``."""
    return tuple(
        slice(max(min(b[a].start for b in boxes) - margin, 0),
              min(max(b[a].stop for b in boxes) + margin, shape[a]))
        for a in (0, 1)
    )


def _solidity(mask: np.ndarray) -> float:
    """Area over convex-hull area of a mask (1 for a convex one)."""
    return float(measure.regionprops(mask.astype(np.uint8))[0].solidity)


def line_bounded_cells(
    labels: np.ndarray,
    strength: np.ndarray,
    grey: np.ndarray,
    noise: float,
    *,
    valid: np.ndarray | None = None,
    z_line: float = 4.0,
    min_px: float = 400.0,
    min_solidity: float = 0.9,
    min_line: float = 0.85,
    max_spread: float = 1.5,
    min_contrast: float = 0.3,
    join_solidity: float = 0.85,
) -> np.ndarray:
    """Labels with new crystals: convex cells of groundmass grey closed by a thin line.

    A crystal whose grey is within a few levels of the glass's (an Fe-rich olivine in a
    bright glass) is not found from its grey, but a thin line (a halo, a film) often runs all
    around it. The pixels that are neither line (``strength`` above ``z_line``, widened by a
    pixel) nor crystal form cells; a cell becomes a crystal when it is closed (it touches
    neither the image's border nor, along more than 30 % of its outline, another crystal),
    convex (solidity at least ``min_solidity``), bounded by a line along at least
    ``min_line`` of its outline, smooth (no line across it, a grey spread within
    ``max_spread`` pixel noise, as a crystal's inside is and glass with vesicles, needles and
    epoxy is not) and of its own grey (its median at least ``min_contrast`` pixel noise away
    from the median of the ring 4-10 px outside it). Cells that a thin line parts (a needle
    or a crack across one crystal) are joined when their union is convex (solidity at least
    ``join_solidity``).

    Parameters
    ----------
    labels : numpy.ndarray
        Integer crystal labels (0: not crystal).
    strength : numpy.ndarray
        :func:`line_strength` of the image.
    grey : numpy.ndarray
        The image's grey, in the units of ``noise``.
    noise : float
        Pixel noise (standard deviation) of ``grey``.
    valid : numpy.ndarray of bool, optional
        Pixels that may be crystal (not vesicles, epoxy or NaN).
    z_line, min_px, min_solidity, min_line, max_spread, min_contrast, join_solidity : float
        See above; ``min_px``: the smallest crystal (pixels).

    Returns
    -------
    numpy.ndarray
        A new label image with the cells as new labels after ``labels.max()``, or ``labels``
        itself when there is none.
    """
    if noise is None or not noise > 0:
        return labels
    free = ~ndi.binary_dilation(strength > z_line) & (labels == 0)
    if valid is not None:
        free &= valid
    cells, n = ndi.label(free)
    if n == 0:
        return labels
    h, w = labels.shape
    area = np.bincount(cells.ravel(), minlength=n + 1)
    boxes = ndi.find_objects(cells)

    def window(sl, margin):
        return tuple(
            slice(max(s.start - margin, 0), min(s.stop + margin, d))
            for s, d in zip(sl, (h, w), strict=True)
        )

    keep = []
    for i, sl in enumerate(boxes, start=1):
        if sl is None or area[i] < 0.25 * min_px:
            continue
        if sl[0].start == 0 or sl[1].start == 0 or sl[0].stop == h or sl[1].stop == w:
            continue
        box = window(sl, 12)
        m = cells[box] == i
        if _solidity(m) < min_solidity:
            continue
        ring = ndi.binary_dilation(m, iterations=2) & ~m
        if (ndi.maximum_filter(strength[box], size=3)[ring] > _ON_LINE * z_line).mean() < min_line:
            continue
        if (labels[box][ring] > 0).mean() > 0.3:
            continue
        if _crossed_by_lines(m, m, strength[box]):
            continue
        inside = grey[box][m]
        q1, q3 = np.percentile(inside, [25, 75])
        if (q3 - q1) / 1.349 > max_spread * noise:
            continue
        outer = ndi.binary_dilation(m, iterations=10) & ~ndi.binary_dilation(m, iterations=4)
        outer &= (labels[box] == 0) & (cells[box] != i)
        if valid is not None:
            outer &= valid[box]
        if outer.sum() < 20:
            continue
        if abs(np.median(inside) - np.median(grey[box][outer])) < min_contrast * noise:
            continue
        keep.append(i)
    if not keep:
        return labels
    # join the kept cells that a thin line parts, when their union is convex
    group = {i: i for i in keep}

    def root(a):
        while group[a] != a:
            a = group[a]
        return a

    lut = np.zeros(n + 1, dtype=np.int32)
    lut[keep] = keep
    for i in keep:
        box = window(boxes[i - 1], 8)
        kept = lut[cells[box]]
        touch = np.unique(kept[ndi.binary_dilation(kept == i, iterations=6)])
        for j in touch[(touch != 0) & (touch != i)]:
            a, b = root(i), root(int(j))
            if a == b:
                continue
            members = [k for k in keep if root(k) in (a, b)]
            both = _union_box([boxes[k - 1] for k in members], 4, (h, w))
            union = ndi.binary_closing(np.isin(cells[both], members), iterations=3)
            if _solidity(union) >= join_solidity:
                group[b] = a
    out = labels.copy()
    nxt = int(labels.max()) + 1
    for r in sorted({root(i) for i in keep}):
        members = [k for k in keep if root(k) == r]
        both = _union_box([boxes[k - 1] for k in members], 5, (h, w))
        m = np.isin(cells[both], members)
        m = ndi.binary_closing(m, iterations=3) | m
        if m.sum() < min_px:
            continue
        # out to the line's centre (the cell stops where the widened line begins)
        m = ndi.binary_dilation(m, iterations=2) & (out[both] == 0)
        if valid is not None:
            m &= valid[both]
        out[both][m] = nxt
        nxt += 1
    return labels if nxt == int(labels.max()) + 1 else out
