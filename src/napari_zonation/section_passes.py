"""The passes over a whole section in strips of rows: the crystal index and the levels.

1. :func:`section_index`: one pass over the labels in strips of rows: every crystal's
   bounding box and pixel count.
2. :func:`section_levels`: two passes over the image in strips: the levels every crystal is
   compared with (robust grey range, pixel noise, groundmass mode and width, the detector's
   full scale, the grey range of the edge-halo check), computed as
   :func:`~napari_zonation.crystal_table` and :func:`~napari_zonation.rim_profiles` compute
   them on the whole image: from the same regular samples, the smoothing read with a halo of
   rows, so they are the same numbers.

Memory holds one strip per worker and the index (a few numbers per crystal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from ._stats import robust_sigma
from ._validation import ZonationInputError
from .segment.fields import local_texture
from .segment.levels import histogram_mode
from .segment.source import full_scale

__all__ = ["STRIP_PIXELS", "SectionIndex", "SectionLevels", "section_index", "section_levels"]

#: Pixels per strip of the passes over the whole section (rows of full width).
STRIP_PIXELS = 2**23
#: Regular samples of the levels (as :func:`~napari_zonation.segment.source.subsample`) and
#: of the halo check's grey range (as :func:`~napari_zonation.profiles.grey_range`).
_SAMPLE = 250_000
_RANGE_SAMPLE = 2**20

Box = tuple[int, int, int, int]


def _strips(shape: tuple[int, int], pixels: int = STRIP_PIXELS) -> list[tuple[int, int]]:
    h, w = shape
    rows = max(16, min(h, pixels // max(w, 1)))
    return [(a, min(h, a + rows)) for a in range(0, h, rows)]


def _read(arr, r0: int, r1: int, c0: int | None = None, c1: int | None = None) -> np.ndarray:
    out = np.asarray(arr[r0:r1] if c0 is None else arr[r0:r1, c0:c1])
    if out.dtype == bool:
        out = out.astype(np.uint8)
    return out


# --------------------------------------------------------------------------------------------
# 1. the index: bounding boxes and counts


def _index_strip(shared, strip: tuple[int, int]) -> dict:
    image, labels, float_image = shared
    a, b = strip
    lab = np.asarray(labels[a:b])
    if not np.issubdtype(lab.dtype, np.integer):
        raise ZonationInputError(f"labels have dtype {lab.dtype}; give integer labels.")
    if lab.size and lab.min() < 0:
        raise ZonationInputError("labels contain negative ids; use 0 for background.")
    if float_image:
        fin = np.isfinite(_read(image, a, b))
        n_finite, n_out = int(fin.sum()), int(np.count_nonzero((lab == 0) & fin))
    else:
        n_finite, n_out = lab.size, int(np.count_nonzero(lab == 0))
    pos = lab > 0
    if not pos.any():
        return {"boxes": None, "n_finite": n_finite, "n_out": n_out}
    mn, mx = int(lab[pos].min()), int(lab.max())
    if mx - mn < 2**22:
        ids_of = np.arange(mn, mx + 1)
        local = np.where(pos, lab - (mn - 1), 0).astype(np.int32)
    else:  # ids far apart: number them densely
        ids_of, inv = np.unique(lab[pos], return_inverse=True)
        local = np.zeros(lab.shape, np.int32)
        local[pos] = inv + 1
    counts = np.bincount(local.ravel(), minlength=ids_of.size + 1)[1:]
    found = [(i, sl) for i, sl in enumerate(ndi.find_objects(local)) if sl is not None]
    idx = np.array([i for i, _ in found], dtype=np.int64)
    boxes = pd.DataFrame(
        {
            "label": ids_of[idx].astype(np.int64),
            "r0": [sl[0].start + a for _, sl in found],
            "r1": [sl[0].stop + a for _, sl in found],
            "c0": [sl[1].start for _, sl in found],
            "c1": [sl[1].stop for _, sl in found],
            "n_pixels": counts[idx].astype(np.int64),
        }
    )
    return {"boxes": boxes, "n_finite": n_finite, "n_out": n_out}


@dataclass
class SectionIndex:
    """What one pass over the labels tells: bounding boxes and the strips' counts.

    Attributes
    ----------
    boxes : pandas.DataFrame
        One row per crystal, by label: ``label``, ``r0, r1, c0, c1`` (half-open, pixels),
        ``n_pixels``.
    strips : list of (int, int)
        The strips of rows of the passes.
    n_finite, n_out : numpy.ndarray
        Per strip: finite image pixels, and finite pixels outside every crystal.
    """

    boxes: pd.DataFrame
    strips: list
    n_finite: np.ndarray
    n_out: np.ndarray


def section_index(image, labels, *, runner=None, progress=None) -> SectionIndex:
    """Bounding boxes and pixel counts of every crystal, from one pass over the labels.

    Parameters
    ----------
    image, labels : array-like
        The section (2D, read by slicing: dask, zarr, numpy) and its integer labels.
    runner : Runner, optional
        Where the strips are read (default: this thread).
    progress : callable, optional
        ``progress(done, total)`` per strip.

    Returns
    -------
    SectionIndex
    """
    from ._runner import Runner

    runner = runner or Runner()
    shape = (int(labels.shape[0]), int(labels.shape[1]))
    if tuple(int(n) for n in image.shape) != shape:
        raise ZonationInputError(
            f"labels have shape {shape} but the image is {tuple(image.shape)}; give the labels "
            "of this section."
        )
    strips = _strips(shape)
    float_image = np.issubdtype(np.dtype(image.dtype), np.floating)
    parts = list(runner.map(_index_strip, (image, labels, float_image), strips,
                            progress=progress))
    frames = [p["boxes"] for p in parts if p["boxes"] is not None]
    if frames:
        boxes = (
            pd.concat(frames, ignore_index=True)
            .groupby("label", sort=True)
            .agg(r0=("r0", "min"), r1=("r1", "max"), c0=("c0", "min"), c1=("c1", "max"),
                 n_pixels=("n_pixels", "sum"))
            .reset_index()
        )
    else:
        boxes = pd.DataFrame({k: pd.Series(dtype=np.int64)
                              for k in ("label", "r0", "r1", "c0", "c1", "n_pixels")})
    return SectionIndex(
        boxes,
        strips,
        np.array([p["n_finite"] for p in parts], dtype=np.int64),
        np.array([p["n_out"] for p in parts], dtype=np.int64),
    )


# --------------------------------------------------------------------------------------------
# 2. the levels


@dataclass
class SectionLevels:
    """The whole section's levels that every crystal is compared with.

    ``lo``, ``hi``, ``median``: 0.1 / 99.9 percentiles and median of a regular sample of the
    finite pixels; ``full`` and ``black``: the detector's full scale and black level;
    ``noise``: the pixel noise (neighbour differences); ``gm_level``, ``gm_width``,
    ``masked``: the groundmass mode and its width (image units) or a background masked
    black; ``grey_range``: the edge-halo check's grey range of the raw image values.
    """

    shape: tuple[int, int]
    dtype: str
    lo: float = math.nan
    hi: float = math.nan
    median: float = math.nan
    full: float = math.nan
    black: float = 0.0
    noise: float = 0.0
    gm_level: float = math.nan
    gm_width: float = math.nan
    masked: bool = False
    grey_range: float = math.nan

    @property
    def span(self) -> float:
        return float(self.hi - self.lo) or 1.0


def _every(start_index: int, step: int) -> int:
    """The first offset k >= 0 with (start_index + k) a multiple of step."""
    return (-start_index) % step


def _sample_strip(shared, item) -> dict:
    image, steps, width = shared
    (a, b), before_finite = item
    raw = _read(image, a, b)
    grey = raw.astype(np.float64)
    fin = np.isfinite(grey)
    values = grey[fin] if not fin.all() else grey.ravel()
    # copies: a strided view would keep the whole strip alive with the result
    sample = values[_every(before_finite, steps["finite"]) :: steps["finite"]].copy()
    flat = raw.ravel()
    ranged = flat[_every(a * width, steps["range"]) :: steps["range"]].copy()
    wn = min(width, 4096)
    d = np.diff(np.where(fin, grey, 0.0)[:, :wn], axis=1)
    noise = d.ravel()[_every(a * (wn - 1), steps["noise"]) :: steps["noise"]].copy()
    return {"sample": sample, "range": ranged, "noise": noise}


def _fields_strip(shared, item) -> dict:
    image, labels, lv, px, step = shared
    (a, b), before_out = item
    h = lv.shape[0]
    sd = max(1.0, 3.0 / px)
    fine, window = max(0.5, 1.0 / px), max(1.5, 2.0 / px)
    halo = max(int(4.0 * sd + 0.5), int(4.0 * fine + 0.5) + int(4.0 * window + 0.5)) + 2
    a0, b0 = max(0, a - halo), min(h, b + halo)
    grey = _read(image, a0, b0).astype(np.float64)
    fin = np.isfinite(grey)
    norm = ((np.where(fin, grey, lv.median) - lv.lo) / lv.span).astype(np.float32)
    inner = slice(a - a0, b - a0)
    out = (np.asarray(labels[a:b]) == 0) & fin[inner]
    start = _every(before_out, step)
    det = ndi.gaussian_filter(norm, sd)[inner][out][start::step].copy()
    tex = local_texture(norm, fine, window)[inner][out][start::step].copy()
    return {"det": det, "tex": tex}


def section_levels(image, labels, px: float, index: SectionIndex, *, runner=None,
                   progress=None, progress_fields=None) -> SectionLevels:
    """The levels of a whole section, read in strips, as the in-memory functions set them.

    Parameters
    ----------
    image, labels : array-like
        The section and its labels (read by slicing).
    px : float
        Micrometres per pixel.
    index : SectionIndex
        From :func:`section_index` (the strips and their counts).
    runner : Runner, optional
        Where the strips are read.
    progress, progress_fields : callable, optional
        ``progress(done, total)`` per strip of the first pass (samples) and of the second
        (the smoothed image at the pixels outside crystals).

    Returns
    -------
    SectionLevels
    """
    from ._runner import Runner

    runner = runner or Runner()
    shape = (int(image.shape[0]), int(image.shape[1]))
    dtype = np.dtype(image.dtype)
    lv = SectionLevels(shape, str(dtype))
    n_finite = int(index.n_finite.sum())
    if n_finite == 0:
        return lv
    wn = min(shape[1], 4096)
    steps = {
        "finite": max(1, n_finite // _SAMPLE),
        "range": max(1, shape[0] * shape[1] // _RANGE_SAMPLE),
        "noise": max(1, shape[0] * (wn - 1) // _SAMPLE),
    }
    before = np.concatenate([[0], np.cumsum(index.n_finite)[:-1]])
    items = list(zip(index.strips, before.tolist(), strict=True))
    parts = list(runner.map(_sample_strip, (image, steps, shape[1]), items, progress=progress))
    sample = np.concatenate([p["sample"] for p in parts])
    ranged = np.concatenate([p["range"] for p in parts])
    if ranged.dtype.kind == "f":
        ranged = ranged[np.isfinite(ranged)]
    if ranged.size:
        r_lo, r_hi = np.percentile(ranged, [0.1, 99.9])
        lv.grey_range = float(r_hi) - float(r_lo)
    d = np.concatenate([p["noise"] for p in parts])
    d = d[np.isfinite(d)]
    if d.size:
        lv.noise = float(robust_sigma(d) / np.sqrt(2.0))
    lo, hi = np.percentile(sample, [0.1, 99.9])
    lv.lo, lv.hi, lv.median = float(lo), float(hi), float(np.median(sample))
    lv.full = full_scale(sample, dtype)
    integer = np.issubdtype(dtype, np.integer)
    lv.black = 0.0 if integer or sample.min() >= 0 else float(sample.min())
    n_out = int(index.n_out.sum())
    if n_out == 0:
        return lv
    step = max(1, n_out // _SAMPLE)
    before = np.concatenate([[0], np.cumsum(index.n_out)[:-1]])
    items = list(zip(index.strips, before.tolist(), strict=True))
    parts = list(runner.map(_fields_strip, (image, labels, lv, px, step), items,
                            progress=progress_fields))
    s_out = np.concatenate([p["det"] for p in parts])
    tex = np.concatenate([p["tex"] for p in parts])
    span = lv.span
    mode_all, width_all, _, _ = histogram_mode(s_out, -0.05, 1.05)
    if mode_all < 0.15 and np.mean(s_out < mode_all + 0.1) > 0.5:
        lv.gm_level, lv.gm_width, lv.masked = mode_all * span + lv.lo, width_all * span, True
        return lv
    rough = tex >= np.percentile(tex, 50)
    not_black = s_out > mode_all + 0.1 if mode_all < 0.15 else np.ones(s_out.shape, bool)
    level, _, _, _ = histogram_mode(s_out[rough & not_black], -0.05, 1.05)
    level, width, _, _ = histogram_mode(s_out[not_black], -0.05, 1.05, near=(level, 0.04))
    lv.gm_level, lv.gm_width = float(level * span + lv.lo), float(width * span)
    return lv
