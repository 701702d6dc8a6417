"""The input image as a 2D grey source read window by window: element maps and RGB combined
into grey, lazy arrays (dask, zarr) read by slicing, windows normalised to the robust grey
range."""

from __future__ import annotations

import threading

import numpy as np

from .._stats import iqr_sigma
from .._validation import as_image


def full_scale(values: np.ndarray, dtype: np.dtype) -> float:
    """Full scale of the detector for an image: 2**k - 1 for the smallest usual bit depth."""
    finite = values[np.isfinite(values)]
    vmax = float(finite.max()) if finite.size else 1.0
    if np.issubdtype(dtype, np.floating) and vmax <= 1.0:
        return 1.0
    for bits in (8, 10, 12, 14, 16, 32):
        full = float(2**bits - 1)
        if vmax <= full:
            return full
    return vmax


def subsample(arr: np.ndarray, n: int = 250_000) -> np.ndarray:
    """A regular subsample of a flat array (fast, deterministic)."""
    flat = arr.ravel()
    step = max(1, flat.size // n)
    return flat[::step]


def _combine_channels(stack: np.ndarray) -> np.ndarray:
    """First principal component of robustly standardised channels, as one grey image.

    The sign is chosen so that the result grows with the first channel (put the BSE image or
    the map that is bright where BSE is bright first). NaNs stay NaN.
    """
    n_ch = stack.shape[0]
    z = np.empty(stack.shape, dtype=np.float64)
    for c in range(n_ch):
        ch = stack[c]
        fin = ch[np.isfinite(ch)]
        if fin.size == 0:
            z[c] = 0.0
            continue
        med = np.median(subsample(fin))
        scale = iqr_sigma(subsample(fin))
        if not scale > 0:
            scale = float(np.std(fin)) or 1.0
        z[c] = (ch - med) / scale
    valid = np.all(np.isfinite(z), axis=0)
    if n_ch == 1 or valid.sum() < 3:
        out = z[0] if n_ch == 1 else np.nansum(z, axis=0)
        out[~valid] = np.nan
        return out
    samples = np.stack([subsample(z[c][valid]) for c in range(n_ch)], axis=1)
    samples = samples - samples.mean(axis=0)
    cov = np.cov(samples, rowvar=False)
    cov = np.atleast_2d(cov)
    evals, evecs = np.linalg.eigh(cov)
    w = evecs[:, np.argmax(evals)]
    if w[0] < 0:  # the first channel sets the orientation
        w = -w
    out = np.tensordot(w, np.where(np.isfinite(z), z, 0.0), axes=1)
    out[~valid] = np.nan
    return out


def to_grey(image) -> tuple[np.ndarray, np.dtype]:
    """Checked image as a 2D float grey image (element maps combined), and its input dtype."""
    raw = image if isinstance(image, np.ndarray) else np.asarray(image)
    arr = as_image(raw, allow_channels=True)
    is_rgb = raw.ndim == 3 and raw.shape[-1] in (3, 4) and raw.shape[0] > 4
    if arr.ndim == 3 and not is_rgb:
        return _combine_channels(arr), np.dtype(np.float64)
    dtype = raw.dtype if not is_rgb else np.dtype(np.float64)
    return arr, dtype


def _is_lazy(image) -> bool:
    """An array-like read by slicing (dask, zarr, h5py, memmap-like), not a numpy array."""
    return (
        not isinstance(image, np.ndarray)
        and all(hasattr(image, a) for a in ("shape", "dtype", "ndim", "__getitem__"))
        and not isinstance(image, (list, tuple))
    )


def grey_source(image):
    """The image as a 2D array-like to read by windows, and its dtype.

    2D numpy and lazy (dask, ...) arrays are read as they are, window by window (no whole-image
    float copy); RGB(A) and element-map stacks are first combined into one float64 grey image
    in memory.
    """
    if (isinstance(image, np.ndarray) or _is_lazy(image)) and image.ndim == 2:
        shape = tuple(int(s) for s in image.shape)
        if 0 in shape:
            as_image(np.zeros(shape))  # raises the 'empty' error
        as_image(np.asarray(image[:1, :1]))  # raises for non-numeric dtypes
        return image, np.dtype(image.dtype)
    raw = np.asarray(image)
    if raw.ndim == 2:  # e.g. nested lists
        arr = as_image(raw)
        return arr, np.dtype(arr.dtype)
    return to_grey(raw)


def read_window(src, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """One window of the source as a numeric numpy array."""
    w = np.asarray(src[r0:r1, c0:c1])
    if w.dtype == bool:
        w = w.astype(np.uint8)
    return w


def normalise(w: np.ndarray, lo: float, span: float, fill: float):
    """Window -> (float32 grey in units of the robust range, finite mask or None)."""
    finite = None
    if np.issubdtype(w.dtype, np.floating):
        fin = np.isfinite(w)
        if not fin.all():
            finite = fin
            w = np.where(fin, w, fill)
    if w.dtype.itemsize <= 2 or w.dtype == np.float32:
        norm = w.astype(np.float32)
        norm -= np.float32(lo)
        norm *= np.float32(1.0 / span)
        return norm, finite
    return ((w - lo) * (1.0 / span)).astype(np.float32), finite


class Serialised:
    """An array-like whose windows are read under a lock (one reading thread at a time)."""

    def __init__(self, src) -> None:
        self._src = src
        self._lock = threading.Lock()
        self.shape, self.dtype, self.ndim = src.shape, src.dtype, src.ndim

    def __getitem__(self, key) -> np.ndarray:
        with self._lock:
            return np.asarray(self._src[key])

    def __getstate__(self):  # sent to another process (a dask worker): a lock of its own
        return self._src

    def __setstate__(self, src) -> None:
        self.__init__(src)
