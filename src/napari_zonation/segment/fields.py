"""Coarse block fields of a window: block means, the smoothed and detection images, and the
block texture (grey standard deviation: a microlite groundmass is rough, crystals smooth)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .._threads import SERIAL, Workers
from .state import CoarseFields, Levels


def local_texture(norm: np.ndarray, fine_px: float, window_px: float) -> np.ndarray:
    """Local standard deviation of the lightly smoothed image (microlites make it high)."""
    a = ndi.gaussian_filter(norm, fine_px) if fine_px > 0.3 else norm
    m1 = ndi.gaussian_filter(a, window_px)
    m2 = ndi.gaussian_filter(a * a, window_px)
    return np.sqrt(np.clip(m2 - m1 * m1, 0, None))


def block_mean(img: np.ndarray, f: int, square: bool = False) -> np.ndarray:
    """Mean over f x f blocks (the last partial blocks are padded by edge values), float32.

    Sums of strided views (f + f additions of whole rows): much faster than a reduction over
    the axes of a 4D reshape. With ``square``, the mean of ``img * img`` (float32 ``img``),
    without the squared image.
    """
    if f == 1:
        return img * img if square else img
    h, w = img.shape
    hp, wp = -(-h // f) * f, -(-w // f) * f
    if (hp, wp) != (h, w):
        img = np.pad(img, ((0, hp - h), (0, wp - w)), mode="edge")
    if square:
        cols = np.square(img[:, 0::f])
        for j in range(1, f):
            cols += np.square(img[:, j::f])
    else:
        cols = img[:, 0::f].astype(np.float32)
        for j in range(1, f):
            cols += img[:, j::f]
    out = cols[0::f].copy()
    for i in range(1, f):
        out += cols[i::f]
    out *= np.float32(1.0 / (f * f))
    return out


def upsample(arr: np.ndarray, f: int, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upsampling of a block image back to ``shape``."""
    if f == 1:
        return arr
    # two repeats (a new C-contiguous array): several times faster than a copy of a
    # broadcast 4D view
    return np.repeat(np.repeat(arr, f, axis=1)[:, : shape[1]], f, axis=0)[: shape[0]]


def _coarse_texture(norm: np.ndarray, cm: np.ndarray, lv: Levels) -> np.ndarray:
    """Texture of the blocks: grey standard deviation in each (smoothed), or of the pixels."""
    f = lv.f
    if f > 1:
        var = block_mean(norm, f, square=True) - cm.astype(np.float32) ** 2
        return np.sqrt(np.clip(ndi.gaussian_filter(var, lv.tex_c), 0, None))
    px = lv.px
    return local_texture(norm, max(0.5, 1.0 / px), max(1.5, 2.0 / px))


def coarse_fields(norm: np.ndarray, finite, lv: Levels, run: Workers = SERIAL) -> CoarseFields:
    """Block means and the fields derived from them, for one window (or the whole image).

    The three smoothed fields are independent: ``run`` computes them concurrently.
    """
    f = lv.f
    cm = block_mean(norm, f)
    fin_c = None if finite is None else block_mean(finite.astype(np.float32), f) > 0.5
    sig_c = lv.sig_c
    smooth_c, det, tex = run.calls(
        lambda: ndi.gaussian_filter(cm, sig_c) if sig_c > 0.3 else cm,
        lambda: ndi.gaussian_filter(cm, lv.det_c),
        lambda: _coarse_texture(norm, cm, lv),
    )
    return CoarseFields(cm=cm, fin_c=fin_c, smooth_c=smooth_c, det=det, tex=tex)


def coarse_halo(lv: Levels) -> int:
    """Pixels of context that make a window's coarse fields equal the whole image's."""
    sig = max(lv.sig_c, lv.det_c, lv.tex_c, 2.0 / lv.pc)
    return int(np.ceil(4.0 * sig + 3)) * lv.f
