"""The features crystals are clustered on: descriptor columns (derived, imputed,
standardised, categories one-hot encoded) and the profile-shape blocks."""


from __future__ import annotations

import numpy as np
import pandas as pd

from .._stats import robust_sigma
from .._validation import ZonationInputError, check_profiles

DEFAULT_FEATURES: tuple[str, ...] = (
    "zoning_span",
    "n_plateaus",
    "n_steps",
    "max_slope_per_um",
    "n_oscillations",
    "osc_amplitude",
    "first_step_frac",
    "core_start_frac",
    "zoning_type",
)
METHODS: tuple[str, ...] = ("kmeans", "gmm", "agglomerative", "hdbscan")
CATEGORICAL: tuple[str, ...] = ("zoning_type", "interpretation", "phase", "best_model")
UNCLUSTERED_RGBA: tuple[float, float, float, float] = (0.5, 0.5, 0.5, 1.0)
#: variance of the profile-shape block relative to the descriptor block (module notes)
SHAPE_WEIGHT: float = 0.1
#: distance, in standard deviations, between two categories of a one-hot feature
CATEGORY_WEIGHT: float = 10.0

# --------------------------------------------------------------------------------------
# features


def _feature_matrix(
    tab: pd.DataFrame,
    features: list[str] | None,
    profiles: pd.DataFrame | None,
    shape_points: int,
    category_weight: float,
    shape_weight: float = 1.0,
    return_categorical: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Clustering features; with ``return_categorical`` also a mask of the one-hot columns."""
    tab = tab.copy()
    _derive(tab)
    explicit = features is not None
    names = list(DEFAULT_FEATURES if features is None else features)
    if explicit:
        missing = [f for f in names if f not in tab.columns]
        if missing:
            raise ZonationInputError(
                f"feature(s) {missing} are not columns of the table; available: "
                f"{sorted(tab.columns)}."
            )
    names = [f for f in names if f in tab.columns]
    blocks, cat_flags = [], []
    numeric = [f for f in names if f not in CATEGORICAL]
    if numeric:
        num = tab[numeric].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        num = _standardise(_impute(num))
        if num.shape[1]:
            blocks.append(num)
            cat_flags.append(np.zeros(num.shape[1], dtype=bool))
    for f in (f for f in names if f in CATEGORICAL):
        cats = tab[f].astype("string").fillna("<NA>")
        onehot = pd.get_dummies(cats).to_numpy(dtype=float)
        if onehot.shape[1] > 1:
            blocks.append(onehot * category_weight / np.sqrt(2.0))
            cat_flags.append(np.ones(onehot.shape[1], dtype=bool))
    desc = np.hstack(blocks) if blocks else np.empty((len(tab), 0))
    is_cat = np.concatenate(cat_flags) if cat_flags else np.zeros(0, dtype=bool)
    n_desc = desc.shape[1]
    if profiles is not None:
        for shape in _shape_embedding(profiles, tab, shape_points):
            shape = _impute(shape)
            if desc.shape[1] and shape.shape[1]:
                var_d = float(np.sum(np.var(desc[:, : n_desc or desc.shape[1]], axis=0)))
                var_s = float(np.sum(np.var(shape, axis=0)))
                if var_s > 0:
                    shape = shape * np.sqrt(shape_weight * var_d / var_s)
            desc = np.hstack([desc, shape])
            is_cat = np.concatenate([is_cat, np.zeros(shape.shape[1], dtype=bool)])
    if not names and profiles is None:
        raise ZonationInputError(
            "no usable feature: the table has none of the descriptor columns "
            f"{list(DEFAULT_FEATURES)}; run describe_zoning first, pass features=[...], "
            "or pass profiles=."
        )
    return (desc, is_cat) if return_categorical else desc


def _derive(tab: pd.DataFrame) -> None:
    """Add abs_rel_contrast, rel_range, first_step_frac and core_start_frac in place."""
    if "rel_contrast" in tab.columns and "abs_rel_contrast" not in tab.columns:
        tab["abs_rel_contrast"] = pd.to_numeric(tab["rel_contrast"], errors="coerce").abs()
    if "rel_range" not in tab.columns and {"core_value", "contrast"} <= set(tab.columns):
        tab["rel_range"] = _relative_range(tab)
    if "zoning_span" not in tab.columns and "contrast" in tab.columns:
        tab["zoning_span"] = _span(tab)
    if "length_um" not in tab.columns:
        return
    length = pd.to_numeric(tab["length_um"], errors="coerce").to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if "step_positions_um" in tab.columns and "first_step_frac" not in tab.columns:
            first = np.array(
                [
                    float(p[0]) if isinstance(p, (tuple, list, np.ndarray)) and len(p) else np.nan
                    for p in tab["step_positions_um"]
                ]
            )
            tab["first_step_frac"] = np.where(np.isfinite(first), first / length, 1.0)
        if "core_start_um" in tab.columns and "core_start_frac" not in tab.columns:
            cs = pd.to_numeric(tab["core_start_um"], errors="coerce").to_numpy(dtype=float)
            tab["core_start_frac"] = cs / length


def _span(tab: pd.DataFrame) -> np.ndarray:
    """Zoning span in the profile's units: the highest minus the lowest plateau for step
    models, the peak-to-peak ``2 osc_amplitude`` of an oscillatory mantle, ``|contrast|``
    otherwise (whichever is largest)."""
    span = pd.to_numeric(tab["contrast"], errors="coerce").abs().to_numpy(dtype=float)
    if "plateau_levels" in tab.columns:
        levels = [
            np.ptp(np.asarray(p, dtype=float))
            if isinstance(p, (tuple, list, np.ndarray)) and len(p) > 1
            else np.nan
            for p in tab["plateau_levels"]
        ]
        span = np.fmax(span, np.asarray(levels, dtype=float))
    if "osc_amplitude" in tab.columns:
        amp = pd.to_numeric(tab["osc_amplitude"], errors="coerce").to_numpy(dtype=float)
        span = np.fmax(span, 2.0 * amp)
    return span


def _relative_range(tab: pd.DataFrame) -> np.ndarray:
    """Zoning amplitude over the core value: the span of the zoning, whatever its shape.

    The highest minus the lowest plateau for step models, ``|contrast|`` for a gradient (and
    for any row without plateau levels), the peak-to-peak ``2 osc_amplitude`` for an
    oscillatory mantle (or ``|contrast|`` if larger); all divided by ``|core_value|``. Unlike
    the net rim-core contrast it does not call an alternating multi-step weakly zoned.
    """
    core = pd.to_numeric(tab["core_value"], errors="coerce").to_numpy(dtype=float)
    span = _span(tab)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(core != 0, span / np.abs(core), np.nan)


def _impute(x: np.ndarray) -> np.ndarray:
    x = np.array(x, dtype=float)
    keep = np.any(np.isfinite(x), axis=0)
    x = x[:, keep]
    if x.size:
        med = np.nanmedian(np.where(np.isfinite(x), x, np.nan), axis=0)
        bad = ~np.isfinite(x)
        x[bad] = np.take(med, np.nonzero(bad)[1])
    return x


def _standardise(x: np.ndarray) -> np.ndarray:
    sd = x.std(axis=0)
    keep = sd > 1e-12 * np.maximum(np.abs(x).max(axis=0), 1e-300)
    return (x[:, keep] - x[:, keep].mean(axis=0)) / sd[keep]


def _shape_embedding(
    profiles: pd.DataFrame, tab: pd.DataFrame, points: int
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised profile shapes on relative depth and on micrometres from the rim.

    Each profile is mean-binned (``points`` bins) on its relative depth (0 at the rim, 1 at
    the deepest point) and on micrometres from the rim (0 to the 90th percentile of the
    profiles' lengths; a shorter profile continues at its core value), minus its core value
    (the deepest bin), flipped so that the rim's departure from the core is positive (the
    sign is in ``zoning_type``) and divided by its own zoning span, or three noise sigmas
    when that is larger: a gradient, a step or bands look alike whatever their amplitude,
    the mineral or its brightness, and an unzoned profile stays flat. The span and the noise
    come from the table (``zoning_span`` or the descriptors it derives from,
    ``noise_sigma``), else from the profile (5-95 % range, first differences).
    """
    check_profiles(profiles)
    prof = profiles
    if "channel" in prof.columns and prof["channel"].notna().any():
        prof = prof[prof["channel"] == pd.unique(prof["channel"].dropna())[0]]
    groups = {k: g for k, g in prof.groupby("label", sort=False)}
    labels = tab["label"].to_numpy()
    spans = tab["zoning_span"].to_numpy(float) if "zoning_span" in tab else None
    noises = (
        pd.to_numeric(tab["noise_sigma"], errors="coerce").to_numpy(float)
        if "noise_sigma" in tab
        else None
    )
    data = []
    for lab in labels:
        g = groups.get(lab)
        if g is None:
            data.append(None)
            continue
        d = pd.to_numeric(g["distance_um"], errors="coerce").to_numpy(dtype=float)
        v = pd.to_numeric(g["value"], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(d) & np.isfinite(v)
        order = np.argsort(d[ok])
        data.append((d[ok][order], v[ok][order]) if ok.sum() >= 2 else None)
    lengths = [np.ptp(x[0]) for x in data if x is not None and np.ptp(x[0]) > 0]
    u_max = float(np.percentile(lengths, 90)) if lengths else 1.0
    rel = np.full((len(labels), points), np.nan)
    um = np.full((len(labels), points), np.nan)
    edges = np.linspace(0.0, 1.0, points + 1)
    centres = 0.5 * (edges[:-1] + edges[1:])
    for i, x in enumerate(data):
        if x is None or np.ptp(x[0]) <= 0:
            continue
        d, v = x
        t = (d - d[0]) / np.ptp(d)
        row_rel = _binned(t, v, edges, centres)
        row_um = _binned(np.clip((d - d[0]) / u_max, 0.0, 1.0), v, edges, centres)
        core = row_rel[-1]
        span = spans[i] if spans is not None and np.isfinite(spans[i]) else np.nan
        if not np.isfinite(span):
            span = float(np.subtract(*np.percentile(v, [95, 5])))
        noise = noises[i] if noises is not None and np.isfinite(noises[i]) else np.nan
        if not np.isfinite(noise):
            noise = robust_sigma(np.diff(v))
            noise /= np.sqrt(2.0)
        scale = max(span, 3.0 * noise, 1e-12)
        row_rel, row_um = (row_rel - core) / scale, (row_um - core) / scale
        lead = row_rel[0] if row_rel[0] != 0 else row_rel[int(np.argmax(np.abs(row_rel)))]
        flip = -1.0 if lead < 0 else 1.0
        rel[i], um[i] = flip * row_rel, flip * row_um
    return rel, um


def _binned(t: np.ndarray, v: np.ndarray, edges: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Means of ``v`` in the bins of ``t`` (0..1), empty bins interpolated (held at the
    ends)."""
    points = centres.size
    b = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, points - 1)
    sums = np.bincount(b, weights=v, minlength=points)
    cnt = np.bincount(b, minlength=points)
    filled = cnt > 0
    return np.interp(centres, centres[filled], sums[filled] / cnt[filled])


