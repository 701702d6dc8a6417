"""The stages after the segmentation, streamed over a whole section window by window.

A section's labels (a zarr store written by ``segment_crystals(..., out=...)``, or any lazy
labels array) and its image are never read whole; memory holds one strip or one window per
worker, plus the tables (a few hundred bytes per crystal):

1. :func:`section_index`: one pass over the labels in strips of rows: every crystal's
   bounding box and pixel count.
2. :func:`section_levels`: two passes over the image in strips: the levels every crystal is
   compared with (robust grey range, pixel noise, groundmass mode and width, the detector's
   full scale, the grey range of the edge-halo check), computed as
   :func:`~napari_zonation.crystal_table` and :func:`~napari_zonation.rim_profiles` compute
   them on the whole image: from the same regular samples, the smoothing read with a halo of
   rows, so they are the same numbers.
3. :func:`plan_batches`: crystals grouped by the tile of a grid that holds their bounding
   box's top-left corner; a batch's window holds its crystals with a margin.
4. :func:`measure_batch`: the crystal table's rows and the rim profiles of one batch, from
   its window. Everything they measure lies within a few micrometres of the crystal, which
   the margin holds, except the distance to the nearest free face of a crystal touching
   others (``contacts="exclude"``): that is checked per crystal, and a crystal whose free
   face may lie beyond the window is profiled again in a window large enough.
5. The phases, from all crystals' grey (one threshold over the whole table).
6. :func:`describe_batch`: the zoning description and diffusion fits of one batch.
7. The clustering, on the whole crystal table and its profiles.

The per-crystal results equal those of the in-memory functions on the whole image (tested).
Batches run in this process's threads or as tasks on a dask.distributed cluster
(:class:`~napari_zonation._runner.Runner`); results are gathered in batch order, so the
tables are the same wherever they ran.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from ._validation import ZonationInputError, check_labels
from .profiles import rim_profiles
from .segment.fields import local_texture
from .segment.labelops import adjacent_pairs
from .segment.levels import histogram_mode
from .segment.qa import rim_qa
from .segment.source import full_scale
from .segment.table import (
    DEFAULT_PHASE_NAMES,
    TABLE_COLUMNS,
    _cracked,
    grey_per_label,
    phase_by_grey,
)

__all__ = [
    "Batch",
    "SectionLevels",
    "TABLE_COLUMNS",
    "assign_phases",
    "describe_batch",
    "measure_batch",
    "plan_batches",
    "section_index",
    "section_levels",
]

#: Pixels per strip of the passes over the whole section (rows of full width).
STRIP_PIXELS = 2**23
#: Side (pixels) of the grid whose tiles group crystals into batches.
BATCH_PX = 2048
#: Regular samples of the levels (as :func:`~napari_zonation.segment.source.subsample`) and
#: of the halo check's grey range (as :func:`~napari_zonation.profiles.grey_range`).
_SAMPLE = 250_000
_RANGE_SAMPLE = 2**20
#: Columns the batch profiles keep for the clustering's shape embedding.
SHAPE_COLUMNS = ["label", "channel", "distance_um", "value"]

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
        mad = np.median(np.abs(d - np.median(d)))
        lv.noise = float(1.4826 * mad / np.sqrt(2.0))
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


# --------------------------------------------------------------------------------------------
# 3. batches


@dataclass(frozen=True)
class Batch:
    """Crystals measured together: ``labels`` (ids), their bounding ``boxes`` (n x 4:
    r0, r1, c0, c1, half-open) and the ``window`` (r0, r1, c0, c1) read for them."""

    index: int
    window: Box
    labels: np.ndarray
    boxes: np.ndarray

    @property
    def n_pixels(self) -> int:
        r0, r1, c0, c1 = self.window
        return (r1 - r0) * (c1 - c0)


def table_margin(px: float, width_um: float = 3.0) -> int:
    """Pixels around a crystal that its table row and profile read (edge profiles, rim band,
    crack filter, traverse width), with room to spare."""
    return int(max(32, math.ceil((32.0 + width_um) / px)))


def edge_grid(px: float) -> int:
    """The grid the rim QA cuts outlines on (anchored on the image): windows start on it."""
    tile = max(24, int(round(24.0 / px)))
    return tile * 4 // math.gcd(tile, 4)


def plan_batches(
    boxes: pd.DataFrame,
    shape: tuple[int, int],
    px: float,
    *,
    batch_px: int = BATCH_PX,
    margin: int | None = None,
) -> list[Batch]:
    """Group crystals by the tile (of ``batch_px`` pixels) holding their box's top-left
    corner; each batch's window is its crystals' boxes grown by ``margin``, starting on the
    rim QA's grid (:func:`edge_grid`), clipped to the section."""
    margin = table_margin(px) if margin is None else int(margin)
    align = edge_grid(px)
    if boxes.empty:
        return []
    key = (boxes["r0"].to_numpy() // batch_px) * (shape[1] // batch_px + 1) + (
        boxes["c0"].to_numpy() // batch_px
    )
    order = np.argsort(key, kind="stable")
    cols = boxes[["r0", "r1", "c0", "c1"]].to_numpy(dtype=np.int64)
    labels = boxes["label"].to_numpy(dtype=np.int64)
    batches = []
    for k in np.unique(key):
        sel = order[key[order] == k]
        sel = sel[np.argsort(labels[sel])]
        b = cols[sel]
        r0 = max(0, int(b[:, 0].min()) - margin) // align * align
        c0 = max(0, int(b[:, 2].min()) - margin) // align * align
        r1 = min(shape[0], int(b[:, 1].max()) + margin)
        c1 = min(shape[1], int(b[:, 3].max()) + margin)
        batches.append(Batch(len(batches), (r0, r1, c0, c1), labels[sel], b))
    return batches


# --------------------------------------------------------------------------------------------
# 4. the table's rows and the profiles of one batch


def _compact(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels numbered 1..k in the order of their ids, and the ids (``ids[0] = 0``)."""
    pos = lab > 0
    if not pos.any():
        return np.zeros(lab.shape, np.int32), np.zeros(1, np.int64)
    mn, mx = int(lab[pos].min()), int(lab.max())
    if mx - mn < 2**24:
        present = np.zeros(mx - mn + 2, bool)
        present[lab[pos] - mn + 1] = True
        present[0] = True
        lut = np.cumsum(present) - 1
        ids = np.flatnonzero(present) + mn - 1
        ids[0] = 0
        out = np.where(pos, lut[np.where(pos, lab - mn + 1, 0)], 0).astype(np.int32)
        return out, ids.astype(np.int64)
    ids, inv = np.unique(lab, return_inverse=True)
    if ids[0] != 0:
        ids = np.concatenate([[0], ids])
        inv = inv + 1
    return inv.reshape(lab.shape).astype(np.int32), ids.astype(np.int64)


def _table_rows(raw: np.ndarray, lab: np.ndarray, ids: np.ndarray, origin, lv: SectionLevels,
                px: float) -> pd.DataFrame:
    """The crystal table's rows of crystals ``ids`` (window ids) but their phase, as
    :func:`~napari_zonation.crystal_table` measures them on the whole image."""
    from skimage import measure

    grey = raw.astype(np.float64)
    finite = np.isfinite(grey)
    sel = np.where(np.isin(lab, ids), lab, 0)
    regions = measure.regionprops(sel, offset=origin)
    table = pd.DataFrame(
        {
            "label": np.array([r.label for r in regions], dtype=np.int64),
            "n_pixels": np.array([r.area for r in regions]).astype(np.int64),
            "centroid_row": [r.centroid[0] for r in regions],
            "centroid_col": [r.centroid[1] for r in regions],
            "equivalent_diameter_um": np.array([r.equivalent_diameter_area for r in regions])
            * px,
            "solidity": [r.solidity for r in regions],
        }
    )
    table["area_um2"] = table["n_pixels"] * px * px
    lab_fin = np.where(finite, lab, 0)
    ids_t = table["label"].to_numpy()
    table["mean_value"], table["median_value"] = grey_per_label(grey, lab, lab_fin, finite, ids_t)
    la, lb, _, _ = adjacent_pairs(lab)
    table["touching"] = table["label"].isin(np.unique(np.concatenate([la, lb])))
    wide = max(lv.gm_width if np.isfinite(lv.gm_width) else 0.0,
               2.0 * lv.noise / max(1.0, 2 * np.sqrt(np.pi)))
    table["low_contrast"] = (table["median_value"] - lv.gm_level).abs() < 3.0 * wide
    table["cracked"] = _cracked(grey, lab, px, lv.noise, ids_t,
                                table["median_value"].to_numpy(float), lv.black)
    qa = rim_qa(
        np.where(finite, grey, 0.0),
        lab_fin,
        px,
        lv.noise,
        ids_t,
        np.nan if lv.masked else lv.gm_level,
        np.nan if lv.masked else lv.gm_width,
    )
    for col in qa.columns:
        table[col] = qa[col].to_numpy()
    return table


def _window_profiles(image, labels, window: Box, ids: np.ndarray, lv: SectionLevels, px: float,
                     options: dict) -> pd.DataFrame:
    """Rim profiles of crystals ``ids`` (section ids) read from ``window``."""
    r0, r1, c0, c1 = window
    raw = _read(image, r0, r1, c0, c1)
    lab, lut = _compact(check_labels(_read(labels, r0, r1, c0, c1), raw.shape))
    return _profiles_of(raw, lab, lut, ids, lv, px, options)


def _profiles_of(raw, lab, lut, ids, lv, px, options) -> pd.DataFrame:
    local = np.searchsorted(lut, ids)
    ranges = None if not np.isfinite(lv.grey_range) else {"bse": lv.grey_range}
    prof = rim_profiles(raw, lab, px, grey_ranges=ranges, **options)
    mine = set(local.tolist())
    failures = [(int(lut[k]), why) for k, why in prof.attrs.get("failures", ()) if k in mine]
    keep = prof["label"].isin(local)
    prof = prof[keep].copy()
    prof["label"] = lut[prof["label"].to_numpy()].astype(np.int32)
    prof.attrs["failures"] = tuple(failures)
    return prof


def _far_free_faces(lab: np.ndarray, ids: np.ndarray, window: Box, shape) -> np.ndarray:
    """Of crystals ``ids`` (window ids), those touching another crystal whose pixels may have
    their nearest free face (background pixel) beyond the window, and for each the margin a
    window needs to hold it: ``(ids, margins)``.

    The distance to the background measured in the window is never below the true one (the
    window holds a subset of the background), so a pixel whose measured distance does not
    reach past the window (a side inside the section) has the true one.
    """
    import edt

    la, lb, _, _ = adjacent_pairs(lab)
    touching = np.intersect1d(np.unique(np.concatenate([la, lb])), ids)
    if touching.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    free = np.sqrt(edt.edtsq((lab != 0).view(np.uint8) if lab.dtype == np.uint8 else
                             (lab != 0).astype(np.uint8), black_border=False, parallel=1))
    r0, r1, c0, c1 = window
    h, w = lab.shape
    big = float(h + w)
    rows = np.arange(h, dtype=np.float64)
    cols = np.arange(w, dtype=np.float64)
    to_top = rows if r0 > 0 else np.full(h, big)
    to_bottom = (h - 1 - rows) if r1 < shape[0] else np.full(h, big)
    to_left = cols if c0 > 0 else np.full(w, big)
    to_right = (w - 1 - cols) if c1 < shape[1] else np.full(w, big)
    room = np.minimum(np.minimum(to_top, to_bottom)[:, None], np.minimum(to_left, to_right)[None])
    mask = np.isin(lab, touching)
    excess = np.where(mask & np.isfinite(free), free - room, -np.inf)
    worst = ndi.maximum(excess, lab, index=touching)
    reach = ndi.maximum(np.where(mask & np.isfinite(free), free, 0.0), lab, index=touching)
    far = np.asarray(worst) >= 0
    return touching[far], np.ceil(np.asarray(reach)[far]).astype(np.int64) + 2


def measure_batch(shared, batch: Batch) -> dict:
    """The crystal table rows (without phase) and rim profiles of one batch.

    ``shared``: ``(image, labels, px, levels, profile_options)``. Returns ``table``,
    ``profiles``, ``failures`` (crystals without a profile, and why) and ``n_regrown``
    (crystals profiled again in a larger window).
    """
    image, labels, px, lv, options = shared
    r0, r1, c0, c1 = batch.window
    raw = _read(image, r0, r1, c0, c1)
    lab, lut = _compact(check_labels(_read(labels, r0, r1, c0, c1), raw.shape))
    local = np.minimum(np.searchsorted(lut, batch.labels), lut.size - 1)
    if not np.array_equal(lut[local], batch.labels):
        raise ZonationInputError(
            "the labels changed while the section was measured (a crystal of the index is "
            "missing from its window); measure finished labels."
        )
    table = _table_rows(raw, lab, local, (r0, c0), lv, px)
    table["label"] = lut[table["label"].to_numpy()]
    boxes = batch.boxes
    edge = (boxes[:, 0] == 0) | (boxes[:, 2] == 0) | (boxes[:, 1] == lv.shape[0]) | (
        boxes[:, 3] == lv.shape[1]
    )
    table["touches_border"] = pd.Series(edge, index=table.index).to_numpy()
    prof = _profiles_of(raw, lab, lut, batch.labels, lv, px, options)
    n_regrown = 0
    exclude = options.get("method", "shells") == "shells" and options.get(
        "contacts", "exclude"
    ) == "exclude"
    if exclude:
        far, need = _far_free_faces(lab, local, batch.window, lv.shape)
        if far.size:
            del raw, lab
            failures = list(prof.attrs["failures"])
            drop = set(lut[far].tolist())
            parts = [prof[~prof["label"].isin(drop)]]
            failures = [f for f in failures if f[0] not in drop]
            for k, m in zip(lut[far], need, strict=True):
                i = int(np.searchsorted(batch.labels, k))
                br0, br1, bc0, bc1 = (int(v) for v in batch.boxes[i])
                win = (max(0, br0 - m), min(lv.shape[0], br1 + m),
                       max(0, bc0 - m), min(lv.shape[1], bc1 + m))
                one = _window_profiles(image, labels, win, np.array([k]), lv, px, options)
                parts.append(one)
                failures.extend(one.attrs["failures"])
                n_regrown += 1
            # each crystal's rows in their own order, the crystals by label
            prof = pd.concat(parts, ignore_index=True)
            prof = prof.sort_values("label", kind="stable").reset_index(drop=True)
            prof.attrs["failures"] = tuple(sorted(failures))
    return {"table": table, "profiles": prof, "failures": prof.attrs["failures"],
            "n_regrown": n_regrown}


# --------------------------------------------------------------------------------------------
# 5. phases


def assign_phases(table: pd.DataFrame, lv: SectionLevels, phase_names: dict | None = None
                  ) -> pd.DataFrame:
    """The ``phase`` column from every crystal's median grey, as
    :func:`~napari_zonation.crystal_table` sets it (one threshold over the whole table),
    and the table in its column order."""
    names = {**DEFAULT_PHASE_NAMES, **(phase_names or {})}
    table = table.sort_values("label", kind="stable").reset_index(drop=True)
    if table.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in TABLE_COLUMNS})
    full, black = lv.full, lv.black
    frac = (table["median_value"].to_numpy() - black) / (full - black)
    gm_frac = (lv.gm_level - black) / (full - black) if np.isfinite(lv.gm_level) else np.nan
    if lv.masked:
        gm_frac = np.nan
    phase = phase_by_grey(frac, gm_frac, names)
    table["phase"] = phase
    return table[TABLE_COLUMNS].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# 6. description and diffusion per batch


def describe_batch(shared, item) -> dict:
    """Zoning description (and diffusion fits) of one batch's profiles.

    ``shared``: ``(backend, describe_options, diffusion_options, date_border_crystals)``;
    ``item``: ``(profiles, crystals)`` of the batch. Returns ``table`` (the description
    merged with the crystals' rows) and ``fits`` (None without diffusion options).
    """
    from .descriptors import describe_zoning
    from .diffusion import fit_diffusion

    backend, describe_options, diffusion_options, date_border = shared
    prof, crystals = item
    table = describe_zoning(prof, backend=backend, crystals=crystals, **(describe_options or {}))
    fits = None
    if diffusion_options:
        border: set = set()
        if not date_border and "touches_border" in crystals:
            cut = crystals["touches_border"].fillna(False).astype(bool)
            border = set(crystals.loc[cut, "label"])
        rest = prof[~prof["label"].isin(border)]
        if len(rest):
            fits = fit_diffusion(rest, **diffusion_options)
    return {"table": table, "fits": fits}


# --------------------------------------------------------------------------------------------
# the stages in order


@dataclass
class StreamResult:
    """What :func:`stream_stages` produces.

    Attributes
    ----------
    crystals : pandas.DataFrame
        The crystal table with descriptors, ``cluster`` and (with diffusion options) the
        diffusion columns, by label.
    profile_files : list of pathlib.Path
        The profiles, one pickled DataFrame per batch, in batch order (each crystal's rows
        together); :func:`iter_profiles` reads them back.
    n_profile_rows : int
        Rows in all of them.
    failures : tuple
        ``(label, reason)`` of the crystals without a profile.
    timings : dict
        Seconds per stage.
    notes : list of str
        What was skipped and why.
    stats : dict
        ``n_crystals``, ``n_batches``, ``n_regrown`` (profiles read again in a larger window).
    fits : pandas.DataFrame or None
        The diffusion fits of the batches (``diffusion_options`` given), not yet merged into
        ``crystals`` (:func:`napari_zonation.pipeline.merge_fits` does, as
        :func:`~napari_zonation.pipeline.run_mosaic_pipeline` does).
    """

    crystals: pd.DataFrame
    profile_files: list
    n_profile_rows: int
    failures: tuple
    timings: dict = dataclasses.field(default_factory=dict)
    notes: list = dataclasses.field(default_factory=list)
    stats: dict = dataclasses.field(default_factory=dict)
    fits: pd.DataFrame | None = None


def iter_profiles(files, columns: list[str] | None = None):
    """The batch profiles of a :class:`StreamResult`, one DataFrame at a time."""
    for f in files:
        prof = pd.read_pickle(f)
        yield prof if columns is None else prof[[c for c in columns if c in prof.columns]]


ProgressFn = Callable[[str, int, int], None]


def stream_stages(
    image,
    labels,
    pixel_size_um: float,
    workdir,
    *,
    profile_method: str = "shells",
    profile_options: dict | None = None,
    backend: str = "offline",
    describe_options: dict | None = None,
    n_clusters: int | None = None,
    cluster_method: str = "kmeans",
    diffusion_options: dict | None = None,
    date_border_crystals: bool = False,
    runner=None,
    progress: ProgressFn | None = None,
    batch_px: int = BATCH_PX,
) -> StreamResult:
    """Crystal table, profiles, description, clustering and diffusion of a whole section,
    streamed window by window (the module's steps 1-7).

    Parameters
    ----------
    image, labels : array-like
        The section (2D grey, read by slicing: a dask array from :func:`open_mosaic`, a zarr
        array, numpy) and its labels (e.g. the dask array ``segment_crystals(..., out=...)``
        returns).
    pixel_size_um : float
        Micrometres per pixel.
    workdir : path-like
        A folder for the batches' profiles (created; on storage the workers can reach when
        they run on other machines is not needed: results come back to this process).
    profile_method, profile_options, backend, describe_options, n_clusters, cluster_method,
    diffusion_options, date_border_crystals
        As for :func:`~napari_zonation.pipeline.run_pipeline` (``backend="offline"`` only).
    runner : Runner, optional
        Threads of this process or a dask cluster (default: automatic threads).
    progress : callable, optional
        ``progress(stage, done, total)`` as the strips and batches of each stage finish
        (stages ``"index"``, ``"levels"``, ``"fields"``, ``"measure"``, ``"describe"``,
        ``"cluster"``);
        an exception it raises stops the run.
    batch_px : int
        Side of the grid whose tiles group crystals into batches.

    Returns
    -------
    StreamResult
    """
    import time
    from pathlib import Path

    from ._runner import Runner
    from ._threads import auto_threads
    from .cluster import cluster_crystals

    if backend != "offline":
        raise ZonationInputError(
            "a whole-section mosaic is described with backend='offline'; run the LLM "
            "description on a crop, or on the crystals of interest, in memory."
        )
    runner = runner or Runner(threads=auto_threads())
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    px = float(pixel_size_um)
    timings: dict = {}
    notes: list = []

    def step(name):
        if progress is None:
            return None
        return lambda done, total: progress(name, done, total)

    t = time.perf_counter()
    index = section_index(image, labels, runner=runner, progress=step("index"))
    timings["index"] = time.perf_counter() - t
    t = time.perf_counter()
    lv = section_levels(image, labels, px, index, runner=runner, progress=step("levels"),
                        progress_fields=step("fields"))
    timings["levels"] = time.perf_counter() - t
    batches = plan_batches(index.boxes, lv.shape, px, batch_px=batch_px)
    options = {"method": profile_method, **(profile_options or {})}
    t = time.perf_counter()
    rows, files, failures, n_rows, n_regrown = [], [], [], 0, 0
    measured = runner.map(measure_batch, (image, labels, px, lv, options), batches,
                          progress=step("measure"))
    with warnings.catch_warnings():  # process-wide: the batches' threads see it too
        # the profiles each batch skips are told once, for the whole section, below
        warnings.filterwarnings("ignore", message=r"\d+ profile\(s\) skipped",
                                category=UserWarning)
        for batch, got in zip(batches, measured, strict=True):
            rows.append(got["table"])
            path = workdir / f"profiles-{batch.index:06d}.pkl"
            got["profiles"].to_pickle(path)  # on disk as they come: memory holds one batch
            files.append(path)
            failures.extend(got["failures"])
            n_rows += len(got["profiles"])
            n_regrown += got["n_regrown"]
    timings["measure"] = time.perf_counter() - t
    table = assign_phases(pd.concat(rows, ignore_index=True) if rows else
                          pd.DataFrame(columns=TABLE_COLUMNS), lv)
    stats = {"n_crystals": len(table), "n_batches": len(batches), "n_regrown": n_regrown,
             "levels": dataclasses.asdict(lv)}
    failures = tuple(sorted(failures))
    if failures:
        shown = "; ".join(f"{lab}: {why}" for lab, why in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        warnings.warn(f"{len(failures)} profile(s) skipped: {shown}{more}", UserWarning,
                      stacklevel=2)
        notes.append(f"{len(failures)} crystal(s) without a profile (too small or thin)")
    if table.empty:
        return StreamResult(table, files, 0, failures, timings, notes, stats)

    t = time.perf_counter()
    by_label = table.set_index("label", drop=False)

    def described():
        for batch, path in zip(batches, files, strict=True):
            yield pd.read_pickle(path), by_label.loc[batch.labels].reset_index(drop=True)

    shared = (backend, describe_options, diffusion_options, date_border_crystals)
    parts, fits = [], []
    for got in runner.map(describe_batch, shared, described(), progress=step("describe")):
        parts.append(got["table"])
        if got["fits"] is not None:
            fits.append(got["fits"])
    described_table = (
        pd.concat(parts, ignore_index=True).sort_values("label", kind="stable")
        .reset_index(drop=True)
    )
    timings["describe"] = time.perf_counter() - t

    t = time.perf_counter()
    if progress is not None:
        progress("cluster", 0, 1)
    shapes = pd.concat(list(iter_profiles(files, SHAPE_COLUMNS)), ignore_index=True)
    clustered = cluster_crystals(described_table, n_clusters=n_clusters, method=cluster_method,
                                 profiles=shapes)
    del shapes
    if progress is not None:
        progress("cluster", 1, 1)
    timings["cluster"] = time.perf_counter() - t
    fitted = None
    if diffusion_options:
        fitted = pd.concat(fits, ignore_index=True) if fits else None
        notes.append("the diffusion fits ran beside the description (timed with it)")
    return StreamResult(clustered, files, n_rows, failures, timings, notes, stats, fitted)
