"""Levels of the whole image: robust grey range and noise from regular samples, the coarse
fields sampled on a regular block grid, then the reference grey (groundmass mode, or a black
mask), the contrast and the texture threshold. Read once, the same for every tile."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .._stats import robust_sigma
from .._threads import SERIAL, Workers
from ..tiling import Tile, tile_grid
from .fields import coarse_fields, coarse_halo
from .source import normalise, read_window, subsample
from .state import Levels, Options


def quantiles(values: np.ndarray, qs, integer: bool = False) -> np.ndarray:
    """``np.percentile(values, qs)`` (linear interpolation); from a histogram for integers.

    With ``integer`` (the values are whole numbers of a moderate range, e.g. an 8- or 16-bit
    image) the order statistics are read from cumulative counts instead of a sort.
    """
    qs = np.atleast_1d(np.asarray(qs, dtype=np.float64))
    if not integer or values.size == 0:
        return np.percentile(values, qs)
    if np.issubdtype(values.dtype, np.integer):  # no float copy
        vmin_i = values.min()
        shifted = np.subtract(values, vmin_i, dtype=np.int64)
        vmin = float(vmin_i)
    else:
        vmin = float(values.min())
        shifted = (values - vmin).astype(np.int64)
    if shifted.max() >= 1 << 22:
        return np.percentile(values, qs)
    cum = np.cumsum(np.bincount(shifted))
    pos = qs / 100.0 * (values.size - 1)
    lo = np.floor(pos)
    a = np.searchsorted(cum, lo, side="right").astype(np.float64)
    b = np.searchsorted(cum, np.minimum(lo + 1, values.size - 1), side="right")
    t = pos - lo
    return vmin + a + (b - a) * t


def noise_sigma(img: np.ndarray) -> float:
    """Robust pixel-noise sigma from neighbour differences (median absolute deviation)."""
    d = np.diff(img[:, : min(img.shape[1], 4096)], axis=1)
    d = subsample(d)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return 0.0
    return float(robust_sigma(d) / np.sqrt(2.0))


def histogram_mode(values: np.ndarray, lo: float, hi: float, bins: int = 256, near=None):
    """Mode of a 1D sample and the half width at half maximum of its peak (narrower side).

    With ``near`` = (centre, radius), the mode is the highest bin within that window: the local
    peak of the full sample nearest to a level found another way.
    """
    hist, edges = np.histogram(values, bins=bins, range=(lo, hi))
    hist = ndi.uniform_filter1d(hist.astype(float), 3)
    centres = 0.5 * (edges[1:] + edges[:-1])
    if near is None:
        k = int(np.argmax(hist))
    else:
        window = np.nonzero(np.abs(centres - near[0]) <= near[1])[0]
        k = int(window[np.argmax(hist[window])]) if window.size else int(np.argmax(hist))
    half = hist[k] / 2.0
    left = k
    while left > 0 and hist[left] > half:
        left -= 1
    right = k
    while right < bins - 1 and hist[right] > half:
        right += 1
    width = (edges[1] - edges[0]) * max(0.5, min(k - left, right - k))
    return float(centres[k]), float(width), hist, centres


def black_level(values: np.ndarray, dark_thr: float, noise: float) -> float:
    """Upper edge of the image's own black (epoxy, holes, vesicle interiors).

    The darkest mode of a sample of normalised greys below ``dark_thr`` (the near-black
    level), plus three times its spread (half width at half maximum, as a sigma, and never
    less than the noise ``noise``). Near-black blocks that never reach it are no hole: they
    are the dark zones of a crystal. ``-inf`` when no sample lies below ``dark_thr``.
    """
    dark = values[values < dark_thr]
    if dark.size == 0:
        return -np.inf
    lo = float(dark.min())
    top = max(float(dark_thr), lo + 1e-6)
    mode, width, _, _ = histogram_mode(dark, lo, top, bins=64)
    sigma = max(width / 1.1774, float(noise) if np.isfinite(noise) else 0.0)
    return float(min(mode + 3.0 * sigma, dark_thr))


def work_factor(px: float, work_um: float) -> int:
    """Integer block size that brings the pixel size near ``work_um`` for the coarse stages."""
    if work_um is None or work_um <= 0:
        return 1
    return max(1, int(round(work_um / px)))


_SAMPLE = 250_000  # pixels in the regular samples that set the global levels


def sample_levels(
    src,
    shape,
    px: float,
    f: int,
    opts: Options,
    smooth_um: float,
    tile_size: int | None,
    run: Workers = SERIAL,
):
    """First pass: robust range, noise, and the coarse-field samples of the whole image.

    Returns ``(lv, fields)``: the levels dict (grey range, noise, smoothing scales, the samples
    of the detection image, texture and smoothed image at a regular grid of blocks) and, when
    the image was read in one window, its coarse fields (reused by the segmentation).
    ``run`` reads and samples the tiles of a tiled image concurrently (the fields of one
    window, of an image read whole).
    """
    h, w = shape
    s = max(1, int(np.ceil(np.sqrt(h * w / _SAMPLE))))
    integer = np.issubdtype(np.dtype(src.dtype), np.integer) or src.dtype == bool
    # integer images stay integers (exact, and their order statistics need no float copies)
    rows = np.asarray(src[::s, :]).astype(np.int64 if integer else np.float64)
    sample = rows[:, ::s].ravel()
    lv = Levels(px=px, f=f, pc=px * f, stride=s)
    if not integer:
        fin = np.isfinite(sample)
        if not fin.all():
            sample = sample[fin]
    if sample.size == 0:
        return None, None
    lo, med, hi = (float(v) for v in quantiles(sample, [0.1, 50, 99.9], integer))
    if not hi - lo > 1e-12 * max(1.0, abs(hi)):
        lo, hi = float(np.min(sample)), float(np.max(sample))
    lv.lo, lv.hi, lv.span, lv.fill, lv.sample = lo, hi, hi - lo, med, sample
    if not hi - lo > 1e-12 * max(1.0, abs(hi)):
        return lv, None
    span = hi - lo
    noise_job = run.submit(_pixel_noise, rows, s, w, integer, span)
    pc = px * f
    detect_um = opts.detect_um if opts.detect_um is not None else 2.0 * smooth_um
    det_c = max(detect_um / pc, 1.0)
    lv.sig_c, lv.det_c, lv.tex_c = smooth_um / pc, det_c, max(0.7, 1.0 / pc)
    # coarse fields, sampled on a regular grid of blocks (the same grid in every window)
    hc, wc = -(-h // f), -(-w // f)
    sc = max(1, int(np.ceil(np.sqrt(hc * wc / _SAMPLE))))
    keys = ("det", "tex", "smooth_c")
    parts: dict = {k: [] for k in keys}
    one = tile_size is None or (h <= tile_size and w <= tile_size)
    tiles = (
        [Tile((0, h, 0, w), (0, h, 0, w))]
        if one
        else tile_grid(shape, tile_size, before=coarse_halo(lv), after=coarse_halo(lv), align=f)
    )

    def sample(tile: Tile):
        r0, r1, c0, c1 = tile.window
        norm, finite = normalise(read_window(src, r0, r1, c0, c1), lo, span, lv.fill)
        fl = coarse_fields(norm, finite, lv, run if one else SERIAL)
        if one:  # the whole image in one window: kept for the segmentation
            fl.norm, fl.finite = norm, finite
        del norm
        # the core's blocks on the global sampling grid
        i0, i1 = tile.core[0] // f, -(-tile.core[1] // f)
        j0, j1 = tile.core[2] // f, -(-tile.core[3] // f)
        ii = np.arange(round_up(i0, sc), i1, sc) - r0 // f
        jj = np.arange(round_up(j0, sc), j1, sc) - c0 // f
        sel = np.ix_(ii, jj)
        ok = np.ones((ii.size, jj.size), bool) if fl.fin_c is None else fl.fin_c[sel]
        return {k: getattr(fl, k)[sel][ok] for k in keys}, (fl if one else None)

    fields = None
    for got, fl in run.map(sample, tiles):
        for k in keys:
            parts[k].append(got[k])
        if fl is not None:
            fields = fl
    for k in keys:
        setattr(lv, "s_" + k, np.concatenate(parts[k]).astype(np.float64))
    noise = noise_job.result()
    lv.noise, lv.noise_d = noise, noise / f / max(1.0, 2.0 * np.sqrt(np.pi) * det_c)
    return lv, fields


def _pixel_noise(rows: np.ndarray, s: int, w: int, integer: bool, span: float) -> float:
    """Pixel noise (robust sigma, in units of ``span``) from neighbour differences along the
    rows sampled every ``s`` rows of an image ``w`` pixels wide."""
    d = (rows[:, 1:w:s] - rows[:, 0 : w - 1 : s]).ravel()  # columns 0, s, 2s, ... < w - 1
    if not integer:
        d = d[np.isfinite(d)]
    if not d.size:
        return 0.0
    # twice the differences: whole numbers for integer images, so is twice their median
    d2 = 2 * d
    m2 = quantiles(d2, 50, integer)[0]
    dev = np.abs(d2 - np.int64(m2)) if integer and m2 == np.round(m2) else np.abs(d2 - m2)
    mad2 = quantiles(dev, 50, integer)[0]
    return float(1.4826 * 0.5 * mad2 / span / np.sqrt(2.0))


def round_up(value: int, step: int) -> int:
    return -(-int(value) // step) * step


def set_levels(lv: Levels, opts: Options, contrast, background: str, info: dict) -> None:
    """Reference level, contrast and texture threshold from the samples (updates ``lv``)."""
    s_fin, t_fin, sm_fin = lv.s_det, lv.s_tex, lv.s_smooth_c
    lo, span = lv.lo, lv.span
    mode_all, width_all, _, _ = histogram_mode(s_fin, -0.05, 1.05)
    if background == "auto":
        dark_share = float(np.mean(s_fin < mode_all + 0.1))
        masked = mode_all < 0.15 and dark_share > opts.dark_fraction
        mode = "masked" if masked else "groundmass"
    else:
        mode = background
    lv.mode = mode
    info["background"] = mode
    lv.tex_thr = None
    if mode == "masked":
        ref = mode_all
        c = (
            contrast
            if contrast is not None
            else max(0.05, 4.0 * max(width_all / 1.1774, lv.noise_d))
        )
        lv.ref, lv.c, lv.dark_thr = ref, c, -np.inf
        info.update(reference=ref * span + lo, contrast=c)
        return
    # the groundmass is the textured mode: histogram of the most textured half of the image
    # (smooth crystal interiors drop out, whatever their share of the image), then the peak of
    # the full histogram near that level gives its level and width
    tex_mid = float(np.percentile(t_fin, 50))
    rough = t_fin >= tex_mid
    not_black = s_fin > mode_all + 0.1 if mode_all < 0.15 else np.ones(s_fin.shape, bool)
    ref, _, _, _ = histogram_mode(s_fin[rough & not_black], -0.05, 1.05)
    ref, ref_w, _, _ = histogram_mode(s_fin[not_black], -0.05, 1.05, near=(ref, 0.04))
    c = contrast if contrast is not None else max(3.0 * ref_w / 1.1774, 4.0 * lv.noise_d, 0.03)
    dark_thr = 0.45 * ref
    # the smoothest blocks that are not near-black (a black mask, epoxy or a data bar is
    # smoother than any crystal: its noise is clipped at black)
    lit = sm_fin > dark_thr
    tex_low = float(np.percentile(t_fin[lit] if lit.any() else t_fin, 5))
    lv.ref, lv.c, lv.dark_thr = ref, c, dark_thr
    lv.black_thr = black_level(s_fin, dark_thr, lv.noise_d)
    info["black_level"] = lv.black_thr * span + lo
    info.update(reference=ref * span + lo, contrast=c, dark_level=dark_thr * span + lo)
    if opts.texture:
        # smooth crystal interiors set the low texture level, the groundmass the high one
        gm = (np.abs(sm_fin - ref) < 0.5 * c) & (sm_fin > dark_thr)
        tex_gm = float(np.median(t_fin[gm])) if gm.any() else np.inf
        tex_thr = float(max(opts.smooth_texture * tex_gm, 2.0 * tex_low))
        lv.tex_thr = tex_thr
        info.update(texture_threshold=tex_thr * span, texture_groundmass=tex_gm * span)
