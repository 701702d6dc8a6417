"""Crystals measured in batches: the windows, the crystal table's rows and rim profiles of
one batch, the phases over the whole table, the description of one batch.

3. :func:`plan_batches`: crystals grouped by the tile of a grid that holds their bounding
   box's top-left corner; a batch's window holds its crystals with a margin.
4. :func:`measure_batch`: the crystal table's rows and the rim profiles of one batch, from
   its window, and the profiles to describe (each crystal in the geometry its image shows,
   :func:`~napari_zonation.profiles.profiles_in_own_geometry`, which reads only the
   crystal's own pixels). Everything they measure lies within a few micrometres of the
   crystal, which the margin holds, except the distance to the nearest free face of a
   crystal touching others (``contacts="exclude"``): that is checked per crystal, and a
   crystal whose free face may lie beyond the window is profiled again in a window large
   enough.
5. :func:`assign_phases`: the phases, from all crystals' grey (one threshold over the whole
   table).
6. :func:`describe_batch`: the zoning description and diffusion fits of one batch.

The per-crystal results equal those of the in-memory functions on the whole image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from ._validation import ZonationInputError, check_labels
from .profiles import rim_profiles
from .profiles.geometry import NOT_TESTED, profiles_to_describe
from .section_passes import Box, SectionLevels, _read
from .segment.labelops import adjacent_pairs
from .segment.qa import rim_qa
from .segment.table import (
    DEFAULT_PHASE_NAMES,
    TABLE_COLUMNS,
    _cracked,
    grey_per_label,
    phase_by_grey,
)

__all__ = [
    "BATCH_PX",
    "Batch",
    "assign_phases",
    "describe_batch",
    "edge_grid",
    "measure_batch",
    "plan_batches",
    "table_batch",
    "table_margin",
]

#: Side (pixels) of the grid whose tiles group crystals into batches.
BATCH_PX = 2048


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
    table["cracked"] = _cracked(
        grey, lab, px, lv.noise, ids_t, table["median_value"].to_numpy(float), lv.black
    )
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


def _batch_window(image, labels, batch: Batch):
    """The batch's window: raw image, compacted labels, their ids, the batch's local ids."""
    r0, r1, c0, c1 = batch.window
    raw = _read(image, r0, r1, c0, c1)
    lab, lut = _compact(check_labels(_read(labels, r0, r1, c0, c1), raw.shape))
    local = np.minimum(np.searchsorted(lut, batch.labels), lut.size - 1)
    if not np.array_equal(lut[local], batch.labels):
        raise ZonationInputError(
            "the labels changed while the section was measured (a crystal of the index is "
            "missing from its window); measure finished labels."
        )
    return raw, lab, lut, local


def _batch_table(raw, lab, lut, local, batch: Batch, lv: SectionLevels, px: float
                 ) -> pd.DataFrame:
    r0, _, c0, _ = batch.window
    table = _table_rows(raw, lab, local, (r0, c0), lv, px)
    table["label"] = lut[table["label"].to_numpy()]
    boxes = batch.boxes
    edge = (boxes[:, 0] == 0) | (boxes[:, 2] == 0) | (boxes[:, 1] == lv.shape[0]) | (
        boxes[:, 3] == lv.shape[1]
    )
    table["touches_border"] = pd.Series(edge, index=table.index).to_numpy()
    return table


def table_batch(shared, batch: Batch) -> pd.DataFrame:
    """The crystal table rows (without phase) of one batch, without its profiles.

    ``shared``: ``(image, labels, px, levels)``.
    """
    image, labels, px, lv = shared
    raw, lab, lut, local = _batch_window(image, labels, batch)
    return _batch_table(raw, lab, lut, local, batch, lv, px)


def _described_of(raw, lab, lut, local, prof: pd.DataFrame, px: float,
                  depth_geometry: str) -> pd.DataFrame:
    """The batch's profiles to describe, as ``run_pipeline`` makes them
    (:func:`~napari_zonation.profiles.geometry.profiles_to_describe`)."""
    if depth_geometry == "distance":
        return profiles_to_describe(prof, raw, lab, px, depth_geometry)
    # the batch's crystals only (the test reads each crystal's own pixels; the neighbours
    # cut by the window are another batch's), in the window's compact numbering
    own = np.where(np.isin(lab, local), lab, 0)
    mine = prof.assign(label=np.searchsorted(lut, prof["label"].to_numpy()))
    out = profiles_to_describe(mine, raw, own, px, depth_geometry)
    out["label"] = lut[out["label"].to_numpy()].astype(prof["label"].dtype)
    return out


def _regrown_described(described: pd.DataFrame, prof: pd.DataFrame, regrown: set
                       ) -> pd.DataFrame:
    """``described`` with the rows of the ``regrown`` crystals read on their rim-distance
    shells replaced by their new profiles of record (a crystal's scaled profile reads only
    its own pixels, which the batch's window held)."""
    first = described.groupby("label", sort=False)[["depth_geometry", "geometry_note"]].first()
    stale = first.index[first.index.isin(list(regrown)) & (first["depth_geometry"] != "scaled")]
    if stale.empty:
        return described
    new = prof[prof["label"].isin(stale)]
    new = new.assign(depth_geometry="distance",
                     geometry_note=new["label"].map(first["geometry_note"]).to_numpy())
    out = pd.concat([described[~described["label"].isin(stale)], new], ignore_index=True)
    return out.sort_values("label", kind="stable").reset_index(drop=True)


def measure_batch(shared, batch: Batch) -> dict:
    """The crystal table rows (without phase) and rim profiles of one batch.

    ``shared``: ``(image, labels, px, levels, profile_options)``, and optionally
    ``depth_geometry`` (``"auto"``, the default, or ``"distance"``, as for
    :func:`~napari_zonation.pipeline.run_pipeline`). Returns ``table``, ``profiles`` (of
    record: the rim-distance shells), ``described`` (the profiles to describe, with
    ``depth_geometry`` and ``geometry_note``), ``failures`` (crystals without a profile, and
    why) and ``n_regrown`` (crystals profiled again in a larger window).
    """
    image, labels, px, lv, options, *rest = shared
    depth_geometry = rest[0] if rest else "auto"
    raw, lab, lut, local = _batch_window(image, labels, batch)
    table = _batch_table(raw, lab, lut, local, batch, lv, px)
    prof = _profiles_of(raw, lab, lut, batch.labels, lv, px, options)
    n_regrown = 0
    exclude = options.get("method", "shells") == "shells" and options.get(
        "contacts", "exclude"
    ) == "exclude"
    described = _described_of(raw, lab, lut, local, prof, px, depth_geometry)
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
            described = _regrown_described(described, prof, drop)
    return {"table": table, "profiles": prof, "described": described,
            "failures": prof.attrs["failures"], "n_regrown": n_regrown}


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
    ``item``: ``(profiles, crystals)`` or ``(profiles, crystals, described)`` of the batch:
    the profiles of record (diffusion is fitted on them) and the profiles to describe
    (:func:`measure_batch`'s ``described``; without them, the profiles of record, marked
    not tested). Returns ``table`` (the description merged with the crystals' rows) and
    ``fits`` (None without diffusion options).
    """
    from .descriptors import describe_zoning
    from .diffusion import fit_diffusion

    backend, describe_options, diffusion_options, date_border = shared
    prof, crystals, *rest = item
    described = rest[0] if rest else None
    if described is None:
        described = prof.assign(depth_geometry="distance", geometry_note=NOT_TESTED)
    table = describe_zoning(described, backend=backend, crystals=crystals,
                            **(describe_options or {}))
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
