"""One-shot reference crystal, offline: how alike every crystal's zoning is to one example.

:func:`reference_similarity` compares each crystal with the reference on three things, each
scaled so that it counts about as much as the others:

``type``
    the offline ``zoning_type`` (``rim_brighter`` and ``rim_darker`` differ; a gradient, a
    multi-step or an oscillation is one kind whatever its sign);
``structure``
    sign-free numbers from the descriptors: plateaus, steps, oscillations, where the first
    step and the core plateau start along the profile (fractions of its length), the span of
    the zoning over its noise and the steepest slope times the length over the span;
``shape``
    the profile itself, mean-binned on the normalised depth (0 at the rim, 1 at the deepest
    point), minus its core, flipped so that the rim lies above the core and divided by the
    crystals' common spread (the median of their 5-95 % ranges): the same pattern at the
    same places, weak and strong zoning kept apart.

The numbers are standardised over the crystals compared (robust spreads), so a difference
is measured against how much the crystals of this sample differ; the shape bins are already
in units of the common spread. The squared
distance ``d2`` (type mismatch 1, plus the mean squared standardised differences of the
numbers and of the shape bins, each block weighted 1 / 3) becomes ``exp(-d2)``: 1 for the
reference and for crystals indistinguishable from it, about 0.7 for a crystal of the same
type whose numbers differ by one spread, at most ``exp(-1)`` (0.37) for any crystal of
another type.

The similarity ranks; it does not decide, and it is only as good as the offline
``zoning_type`` it rests on (``docs/llm.md`` gives the ranking's measured quality).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._stats import iqr_sigma
from ._validation import ZonationInputError, check_profiles
from .channels import select_channel

__all__ = ["reference_similarity", "SHAPE_POINTS"]

#: bins of the normalised-depth profile shape
SHAPE_POINTS = 24
#: weights of the type, structure and shape blocks in the squared distance
BLOCK_WEIGHTS = {"type": 1.0, "structure": 1.0 / 3.0, "shape": 1.0 / 3.0}


def reference_similarity(
    table: pd.DataFrame,
    reference: int,
    profiles: pd.DataFrame | None = None,
    *,
    channel: str | None = None,
    shape_points: int = SHAPE_POINTS,
) -> pd.Series:
    """Similarity of every crystal's zoning to a reference crystal, from 0 to 1.

    Parameters
    ----------
    table : pandas.DataFrame
        The descriptor table of :func:`~napari_zonation.describe_zoning` (one row per label).
    reference : int
        Label of the reference crystal (a row of ``table`` whose description is ``ok``).
    profiles : pandas.DataFrame, optional
        The profiles table; adds the profile-shape block (without it, type and structure).
    channel : str, optional
        The channel of a multi-channel profiles table (default: the table's ``channel``,
        else the first; :func:`napari_zonation.channels.select_channel`).
    shape_points : int
        Bins of the normalised-depth shape.

    Returns
    -------
    pandas.Series
        ``reference_similarity`` aligned with ``table``'s rows: 1 for the reference, NaN for
        crystals without an ``ok`` description.

    Raises
    ------
    ZonationInputError
        A reference that is not an ``ok`` row of the table.
    """
    if not isinstance(table, pd.DataFrame) or "label" not in table.columns:
        raise ZonationInputError("table must be the descriptor table of describe_zoning.")
    labels = pd.to_numeric(table["label"], errors="coerce")
    ok = (
        table["describe_status"].eq("ok").to_numpy()
        if "describe_status" in table.columns
        else np.ones(len(table), bool)
    )
    ref_rows = np.flatnonzero((labels == reference).to_numpy() & ok)
    if ref_rows.size == 0:
        raise ZonationInputError(
            f"reference crystal {reference!r} has no described profile; pick a label whose "
            "describe_status is 'ok'."
        )
    r = int(ref_rows[0])
    idx = np.flatnonzero(ok)
    d2 = np.zeros(len(table))
    blocks = {"type": _type_block(table), "structure": _structure_block(table)}
    if profiles is not None:
        check_profiles(profiles)
        if channel is None and "channel" in table.columns:
            chans = pd.unique(table["channel"].dropna())
            channel = chans[0] if len(chans) == 1 else None
        prof, _ = select_channel(profiles, channel, warn=False)
        blocks["shape"] = _shape_block(prof, labels.to_numpy(), int(shape_points))
    for name, x in blocks.items():
        if name == "type":
            d2 += BLOCK_WEIGHTS[name] * (x != x[r]).astype(float)
            continue
        z = x if name == "shape" else _standardise(x, idx)
        diff = z - z[r]
        with np.errstate(invalid="ignore"):
            msd = np.nanmean(diff**2, axis=1) if diff.shape[1] else np.zeros(len(table))
        d2 += BLOCK_WEIGHTS[name] * np.nan_to_num(msd, nan=0.0)
    sim = np.exp(-d2)
    sim[~ok] = np.nan
    return pd.Series(sim, index=table.index, name="reference_similarity")


# --------------------------------------------------------------------------------------------
# blocks


def _type_block(table: pd.DataFrame) -> np.ndarray:
    if "zoning_type" not in table.columns:
        return np.zeros(len(table), dtype=object)
    return table["zoning_type"].astype(object).fillna("").to_numpy()


def _num(table: pd.DataFrame, col: str, default: float = np.nan) -> np.ndarray:
    if col not in table.columns:
        return np.full(len(table), default)
    return pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=float)


def _first(seq) -> float:
    try:
        return float(seq[0]) if len(seq) else np.nan
    except (TypeError, ValueError):
        return np.nan


def _structure_block(table: pd.DataFrame) -> np.ndarray:
    length = _num(table, "length_um")
    length = np.where(length > 0, length, np.nan)
    noise = np.maximum(_num(table, "noise_sigma"), 1e-12)
    levels = table["plateau_levels"] if "plateau_levels" in table.columns else None
    span = np.abs(_num(table, "contrast"))
    if levels is not None:
        lv_span = np.array(
            [
                float(np.ptp(np.asarray(v, float))) if isinstance(v, (tuple, list)) and v else 0.0
                for v in levels
            ]
        )
        span = np.fmax(span, lv_span)
    span = np.fmax(span, 2.0 * np.nan_to_num(_num(table, "osc_amplitude"), nan=0.0))
    first_step = (
        np.array([_first(v) for v in table["step_positions_um"]])
        if "step_positions_um" in table.columns
        else np.full(len(table), np.nan)
    )
    first_frac = np.where(np.isfinite(first_step), first_step / length, 1.0)
    core_frac = np.clip(_num(table, "core_start_um") / length, 0, 1)
    steep = _num(table, "max_slope_per_um") * length / np.maximum(span, noise)
    cols = [
        np.log1p(span / noise),  # zoning strength against its noise
        _num(table, "n_plateaus"),
        _num(table, "n_steps"),
        np.log1p(np.nan_to_num(_num(table, "n_oscillations"), nan=0.0)),
        first_frac,
        core_frac,
        np.log1p(np.clip(steep, 0, None)),
        np.abs(_num(table, "monotonicity")),
    ]
    return np.column_stack(cols)


def _shape_block(prof: pd.DataFrame, labels: np.ndarray, points: int) -> np.ndarray:
    out = np.full((labels.size, points), np.nan)
    lab = pd.to_numeric(prof["label"], errors="coerce").to_numpy()
    d = pd.to_numeric(prof["distance_um"], errors="coerce").to_numpy(dtype=float)
    v = pd.to_numeric(prof["value"], errors="coerce").to_numpy(dtype=float)
    keep = np.isfinite(lab) & np.isfinite(d) & np.isfinite(v)
    lab, d, v = lab[keep], d[keep], v[keep]
    order = np.argsort(lab, kind="stable")
    lab, d, v = lab[order], d[order], v[order]
    starts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
    ends = np.r_[starts[1:], lab.size]
    rows = {int(lab[s]): (s, e) for s, e in zip(starts, ends, strict=True)}
    spreads = []
    for i, label in enumerate(labels):
        if not np.isfinite(label) or int(label) not in rows:
            continue
        s, e = rows[int(label)]
        dd, vv = d[s:e], v[s:e]
        span = dd.max() - dd.min()
        if dd.size < 3 or not span > 0:
            continue
        pos = np.minimum(((dd - dd.min()) / span * points).astype(int), points - 1)
        sums = np.bincount(pos, weights=vv, minlength=points)
        counts = np.bincount(pos, minlength=points)
        with np.errstate(invalid="ignore", divide="ignore"):
            binned = sums / counts
        binned = pd.Series(binned).interpolate(limit_direction="both").to_numpy()
        core = np.nanmean(binned[-max(1, points // 6) :])
        shape = binned - core
        rim = np.nanmean(shape[: max(1, points // 6)])
        if rim < 0 or (rim == 0 and np.nanmean(shape) < 0):
            shape = -shape
        out[i] = shape
        lo, hi = np.percentile(vv, [5, 95])
        spreads.append(hi - lo)
    spread = float(np.median(spreads)) if spreads else 1.0
    return out / (spread if spread > 0 else 1.0)


def _standardise(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Centre and scale each column by a robust spread over ``rows`` (the interquartile
    range, else the standard deviation, else 1)."""
    x = np.asarray(x, dtype=float)
    sub = x[rows]
    if x.shape[1] == 0 or sub.size == 0:
        return x
    med = np.nanmedian(sub, axis=0)
    scale = iqr_sigma(sub, axis=0)
    std = np.nanstd(sub, axis=0)
    scale = np.where(scale > 0, scale, std)
    scale = np.where(scale > 0, scale, 1.0)
    return (x - med) / scale
