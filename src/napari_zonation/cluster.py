"""Clustering crystals by their zoning: crystal table -> ``cluster`` column, label colours.

Crystals are grouped by what their profiles look like, so that a gradient crystal of one
mineral sits with the gradient crystals of another whatever their brightness or amplitude.

Features
--------
By default each crystal is described by :data:`DEFAULT_FEATURES`, standardised (zero mean,
unit variance; columns that do not vary are dropped):

- ``zoning_span``: the span of the zoning in the profile's units (highest minus lowest level
  for step models, peak-to-peak for bands, ``|rim - core|`` otherwise), its strength
  whatever its sign and shape (``rel_range``, the span over ``|core|``, and
  ``abs_rel_contrast`` are derived too and can be asked for),
- ``n_plateaus``, ``n_steps``, ``max_slope_per_um``,
- ``n_oscillations``, ``osc_amplitude``,
- ``first_step_frac`` and ``core_start_frac``: the first step's position and the depth where
  the core plateau starts, divided by the profile length (0 at the rim, 1 at the core; a
  profile without a step gets 1 = "no step before the core"),
- ``zoning_type``: the offline verdict, one-hot encoded, each category ``category_weight``
  (:data:`CATEGORY_WEIGHT`, 10) standard deviations from the others, so that crystals of one
  type stay together unless their numbers differ by more than that.

The sign of the zoning enters only through ``zoning_type`` (``rim_brighter`` /
``rim_darker``): a gradient, a multi-step or an oscillatory profile is the same pattern with
either sign. Signed features (``rel_contrast``, ``contrast``, ``mean_slope_per_um``,
``monotonicity``, ``interpretation``) part normal from reverse zoning; pass ``features=`` to
use them.

With ``profiles``, two profile-shape blocks are appended: each profile mean-binned into
``shape_points`` bins on its relative depth (0 at the rim, 1 at the deepest point) and on
micrometres from the rim (up to the 90th percentile of the profiles' lengths), minus its
core value, flipped so that the rim's departure from the core is positive, and divided by
its own zoning span (or three noise sigmas when that is larger): the shape is free of the
amplitude, the mineral and its brightness, and an unzoned profile stays flat. Each block is
weighted so that its total variance is ``shape_weight`` (:data:`SHAPE_WEIGHT`, 0.1) times
that of the descriptor block (or is used alone when ``features=[]``): the shapes separate
crystals the descriptors leave together.

Automatic k (silhouette over 2..``max_clusters``) can split one type into clusters whose
numbers differ by a few standard deviations; two clusters of one category whose centres, in
the other features, are closer than ``min_separation`` (default ``category_weight``) are
therefore merged: a type is split only when its crystals differ in their numbers as much as
two types differ.

Rows whose ``describe_status`` is not ``"ok"`` get ``cluster = -1`` (unclustered). Missing
(NaN) feature values of the other rows are replaced by the column median. Every clustered
row gets ``cluster_features``, the few features that set its cluster apart
(:func:`cluster_summary`).

The clusters inherit the errors of ``zoning_type``: their adjusted Rand index against the
true type equals or exceeds the type's own on the zoning benchmark (``benchmarks/zoning.py``;
``docs/zoning.md`` has the figures), where a plain recipe (profiles resampled on relative
depth, standardised, k-means with the true number of classes) scores near 0.
"""

from __future__ import annotations

import colorsys
import warnings

import numpy as np
import pandas as pd

from ._stats import robust_sigma
from ._validation import ZonationInputError, check_profiles

__all__ = [
    "cluster_crystals",
    "cluster_summary",
    "cluster_colors",
    "embed_crystals",
    "DEFAULT_FEATURES",
    "METHODS",
    "CATEGORY_WEIGHT",
]

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

_TAB10 = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
_TAB20 = (
    "#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896",
    "#9467bd", "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7",
    "#bcbd22", "#dbdb8d", "#17becf", "#9edae5",
)  # fmt: skip


# --------------------------------------------------------------------------------------
# public API


def cluster_crystals(
    table: pd.DataFrame,
    n_clusters: int | None = None,
    *,
    method: str = "kmeans",
    features: list[str] | None = None,
    profiles: pd.DataFrame | None = None,
    shape_points: int = 32,
    random_state: int = 0,
    max_clusters: int = 8,
    category_weight: float = CATEGORY_WEIGHT,
    shape_weight: float = SHAPE_WEIGHT,
    min_separation: float | None = None,
) -> pd.DataFrame:
    """Group crystals with similar zoning.

    Parameters
    ----------
    table : pandas.DataFrame
        Crystal table from :func:`describe_zoning` (one row per ``label``).
    n_clusters : int, optional
        Number of clusters. ``None`` chooses it: the best silhouette over 2..``max_clusters``
        for ``kmeans`` and ``agglomerative``, the lowest BIC over 1..``max_clusters`` for
        ``gmm``; ``hdbscan`` always picks its own (``n_clusters`` is then ignored).
    method : {"kmeans", "gmm", "agglomerative", "hdbscan"}
        scikit-learn ``KMeans``, ``GaussianMixture`` (diagonal covariances),
        ``AgglomerativeClustering`` (Ward) or ``HDBSCAN`` (points it calls noise get -1).
    features : list of str, optional
        Table columns to use; default :data:`DEFAULT_FEATURES` (those present). Numeric
        columns are standardised; ``rel_range`` is derived from ``plateau_levels``,
        ``osc_amplitude``, ``contrast`` and ``core_value``, ``abs_rel_contrast`` from
        ``rel_contrast``,
        ``first_step_frac`` and ``core_start_frac`` from ``step_positions_um``,
        ``core_start_um`` and ``length_um``; the categorical
        columns ``zoning_type``, ``interpretation``, ``phase`` and ``best_model`` are one-hot
        encoded. ``[]`` with ``profiles`` clusters on profile shape alone.
    profiles : pandas.DataFrame, optional
        The long profiles table; adds the profile-shape embedding (see the module notes).
    shape_points : int
        Bins of the profile-shape embedding.
    random_state : int
        Seed of the k-means / mixture initialisations.
    max_clusters : int
        Largest number of clusters tried when choosing it automatically.
    category_weight : float
        Distance, in standard deviations, between two categories of a one-hot feature.
    shape_weight : float
        Total variance of the profile-shape block relative to the descriptor block
        (:data:`SHAPE_WEIGHT`; see the module notes).
    min_separation : float, optional
        With automatic k (``kmeans``, ``agglomerative``) and categorical features, two
        clusters of the same category (their most common ``zoning_type``, ...) whose centres
        are closer than this in the other features (standardised numbers and the shape
        block) are merged. ``None``: ``category_weight``, so that a type is split only when
        its crystals differ in their numbers by as much as two types differ (module notes);
        0 turns the merge off. Ignored with a given ``n_clusters`` and without categorical
        features.

    Returns
    -------
    pandas.DataFrame
        A copy of ``table`` with ``cluster`` (int; 0 is the largest cluster, -1 unclustered)
        and ``cluster_confidence`` (0-1: the posterior probability for ``gmm``, HDBSCAN's
        membership strength, and ``1 - d1 / d2`` for ``kmeans`` and ``agglomerative``, where
        ``d1`` and ``d2`` are the distances to the nearest and second-nearest cluster
        centre; 1 for a single cluster; NaN when unclustered) and ``cluster_features``
        (the few features that set the crystal's cluster apart, from
        :func:`cluster_summary`). The input is not modified.

    Raises
    ------
    ZonationInputError
        For a table without ``label``, an unknown method or feature, or no usable feature.
    """
    if not isinstance(table, pd.DataFrame) or "label" not in table.columns:
        raise ZonationInputError(
            "table must be a crystal table (DataFrame with a 'label' column); "
            "run describe_zoning first."
        )
    if method not in METHODS:
        raise ZonationInputError(f"method={method!r} is unknown; choose one of {METHODS}.")
    if n_clusters is not None and int(n_clusters) < 1:
        raise ZonationInputError(f"n_clusters={n_clusters!r}; give a positive integer or None.")
    if int(max_clusters) < 1:
        raise ZonationInputError("max_clusters must be at least 1.")
    if int(shape_points) < 2:
        raise ZonationInputError("shape_points must be at least 2.")

    out = table.copy()
    out["cluster"] = -1
    out["cluster_confidence"] = np.nan
    usable = np.ones(len(out), dtype=bool)
    if "describe_status" in out.columns:
        usable &= (out["describe_status"] == "ok").to_numpy()
    idx = np.flatnonzero(usable)
    if idx.size == 0:
        out["cluster_features"] = ""
        return out

    x, is_cat = _feature_matrix(
        out.iloc[idx],
        features,
        profiles,
        int(shape_points),
        float(category_weight),
        float(shape_weight),
        return_categorical=True,
    )
    n = x.shape[0]
    if n == 1 or x.shape[1] == 0 or np.allclose(x, x[0]):
        if n_clusters is not None and int(n_clusters) > 1 and method != "hdbscan":
            warnings.warn(
                f"n_clusters={n_clusters} but all {n} crystals are alike (1 distinct); "
                "using one cluster.",
                UserWarning,
                stacklevel=2,
            )
        labels, conf = np.zeros(n, dtype=int), np.ones(n)
    else:
        labels, conf = _run(x, n_clusters, method, int(random_state), int(max_clusters))
        sep = float(category_weight) if min_separation is None else float(min_separation)
        if n_clusters is None and method in ("kmeans", "agglomerative") and is_cat.any():
            merged = _merge_within_category(x, is_cat, labels, sep)
            if len(np.unique(merged)) < len(np.unique(labels)):
                labels, conf = merged, _centre_confidence(x, merged)
    labels = _order_by_size(labels)
    col_c = out.columns.get_loc("cluster")
    col_p = out.columns.get_loc("cluster_confidence")
    out.iloc[idx, col_c] = labels
    out.iloc[idx, col_p] = np.where(labels >= 0, conf, np.nan)
    out["cluster"] = out["cluster"].astype(int)
    summary = cluster_summary(out)
    texts = dict(zip(summary["cluster"], summary["defining_features"], strict=True))
    out["cluster_features"] = [texts.get(c, "") for c in out["cluster"]]
    return out


#: the columns :func:`cluster_summary` looks at to say what defines a cluster
SUMMARY_FEATURES: tuple[str, ...] = (
    "zoning_type",
    "n_plateaus",
    "zoning_span",
    "max_slope_per_um",
    "n_oscillations",
    "osc_period_um",
    "first_step_frac",
    "core_start_frac",
    "interpretation",
    "phase",
)


def cluster_summary(table: pd.DataFrame, n_features: int = 3) -> pd.DataFrame:
    """The few features that define each cluster.

    For every cluster the features of :data:`SUMMARY_FEATURES` (those present) are compared
    with the other crystals: a number by the difference of its medians inside and outside
    the cluster over its standard deviation, a category (``zoning_type``, ``phase``, ...) by
    its share inside minus its share outside (times 3: a category the cluster has and the
    others lack counts as three standard deviations). The ``n_features`` largest
    differences are kept.

    Parameters
    ----------
    table : pandas.DataFrame
        A crystal table with ``cluster`` (from :func:`cluster_crystals`).
    n_features : int
        Features listed per cluster.

    Returns
    -------
    pandas.DataFrame
        One row per cluster (``cluster`` >= 0): ``cluster``, ``n_crystals``,
        ``defining_features`` (text, e.g. ``"zoning_type=gradient (9/9); n_plateaus low
        (1 vs 2)"``) and the medians of ``n_plateaus`` and ``zoning_span`` when present.
    """
    if not isinstance(table, pd.DataFrame) or "cluster" not in table.columns:
        raise ZonationInputError("table needs a 'cluster' column; run cluster_crystals first.")
    tab = table[pd.to_numeric(table["cluster"], errors="coerce") >= 0].copy()
    _derive(tab)
    clusters = sorted(int(c) for c in pd.unique(tab["cluster"]))
    rows = []
    for c in clusters:
        inside = (tab["cluster"] == c).to_numpy()
        found = []
        for f in (f for f in SUMMARY_FEATURES if f in tab.columns):
            col = tab[f]
            if f in CATEGORICAL:
                cats = col.astype("string").fillna("<NA>").to_numpy()
                for cat in pd.unique(cats[inside]):
                    share_in = float(np.mean(cats[inside] == cat))
                    share_out = float(np.mean(cats[~inside] == cat)) if (~inside).any() else 0.0
                    n_cat = int(np.sum(cats[inside] == cat))
                    effect = 3.0 * (share_in - share_out)
                    if effect > 0:
                        found.append((effect, f"{f}={cat} ({n_cat}/{int(inside.sum())})"))
                continue
            x = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
            sd = float(np.nanstd(x)) if np.isfinite(x).sum() > 1 else 0.0
            if sd <= 0 or not (~inside).any() or not np.isfinite(x[inside]).any():
                continue
            if not np.isfinite(x[~inside]).any():
                continue
            m_in, m_out = float(np.nanmedian(x[inside])), float(np.nanmedian(x[~inside]))
            effect = abs(m_in - m_out) / sd
            if effect > 0:
                word = "high" if m_in > m_out else "low"
                found.append((effect, f"{f} {word} ({m_in:.3g} vs {m_out:.3g})"))
        found.sort(key=lambda t: -t[0])
        row = {
            "cluster": c,
            "n_crystals": int(inside.sum()),
            "defining_features": "; ".join(t for _, t in found[: int(n_features)]),
        }
        for f in ("n_plateaus", "zoning_span"):
            if f in tab.columns:
                row[f"median_{f}"] = float(
                    np.nanmedian(pd.to_numeric(tab.loc[inside, f], errors="coerce"))
                )
        rows.append(row)
    return pd.DataFrame(
        rows,
        columns=["cluster", "n_crystals", "defining_features"]
        + [k for k in (rows[0] if rows else {}) if k.startswith("median_")],
    )


def cluster_colors(
    table: pd.DataFrame, cmap: str = "tab10"
) -> dict[int, tuple[float, float, float, float]]:
    """RGBA colour of every crystal label by its cluster, for napari's ``DirectLabelColormap``.

    Parameters
    ----------
    table : pandas.DataFrame
        Crystal table with ``label`` and ``cluster`` (from :func:`cluster_crystals`).
    cmap : str
        ``"tab10"`` or ``"tab20"`` (built in), or any matplotlib colormap name (matplotlib is
        then imported, without a GUI backend). Cluster ``i`` takes colour ``i``; clusters
        beyond the colormap's colours get further distinct hues.

    Returns
    -------
    dict
        ``{label: (r, g, b, a)}`` with floats in 0-1; unclustered crystals (cluster -1 or NaN)
        are grey :data:`UNCLUSTERED_RGBA`. Add ``None``/``0`` (background) entries yourself
        when building a napari colormap.
    """
    if not isinstance(table, pd.DataFrame) or not {"label", "cluster"} <= set(table.columns):
        raise ZonationInputError(
            "table needs 'label' and 'cluster' columns; run cluster_crystals first."
        )
    clusters = pd.to_numeric(table["cluster"], errors="coerce")
    ids = sorted({int(c) for c in clusters.dropna() if c >= 0})
    palette = _palette(cmap, (max(ids) + 1) if ids else 0)
    colours = {}
    for lab, c in zip(table["label"], clusters, strict=True):
        if pd.isna(lab):
            continue
        colours[int(lab)] = UNCLUSTERED_RGBA if pd.isna(c) or c < 0 else palette[int(c)]
    return colours


def embed_crystals(
    table: pd.DataFrame,
    *,
    features: list[str] | None = None,
    profiles: pd.DataFrame | None = None,
    shape_points: int = 32,
    category_weight: float = CATEGORY_WEIGHT,
    shape_weight: float = SHAPE_WEIGHT,
) -> pd.DataFrame:
    """2D map of the crystals: PCA of the standardised clustering features.

    The features are built exactly as :func:`cluster_crystals` builds them (same
    ``features``, ``profiles``, ``shape_points`` and ``category_weight``), so that crystals
    close on the map are close for the clustering.

    Parameters
    ----------
    table : pandas.DataFrame
        Crystal table from :func:`describe_zoning` (or :func:`cluster_crystals`).
    features, profiles, shape_points, category_weight, shape_weight
        As in :func:`cluster_crystals`.

    Returns
    -------
    pandas.DataFrame
        ``label``, ``pc1``, ``pc2`` (scores on the first two principal components; ``pc2``
        is 0 when the features span one dimension, both are 0 when they do not vary), plus
        ``cluster`` when the table has one. Rows whose ``describe_status`` is not ``"ok"``
        are left out. ``attrs["explained_variance_ratio"]`` holds the two ratios.

    Raises
    ------
    ZonationInputError
        For a table without ``label``, an unknown feature, or no usable feature.
    """
    if not isinstance(table, pd.DataFrame) or "label" not in table.columns:
        raise ZonationInputError(
            "table must be a crystal table (DataFrame with a 'label' column); "
            "run describe_zoning first."
        )
    usable = np.ones(len(table), dtype=bool)
    if "describe_status" in table.columns:
        usable &= (table["describe_status"] == "ok").to_numpy()
    rows = table.iloc[np.flatnonzero(usable)]
    out = pd.DataFrame({"label": rows["label"].to_numpy(), "pc1": 0.0, "pc2": 0.0})
    if "cluster" in rows.columns:
        out["cluster"] = rows["cluster"].to_numpy()
    ratio = np.zeros(2)
    if len(rows):
        x = _feature_matrix(
            rows,
            features,
            profiles,
            int(shape_points),
            float(category_weight),
            float(shape_weight),
        )
        n_comp = min(2, x.shape[0], x.shape[1])
        if n_comp >= 1 and not np.allclose(x, x[0]):
            from sklearn.decomposition import PCA

            pca = PCA(n_components=n_comp, random_state=0)
            scores = pca.fit_transform(x)
            out["pc1"] = scores[:, 0]
            if n_comp > 1:
                out["pc2"] = scores[:, 1]
            ratio[:n_comp] = pca.explained_variance_ratio_
    out.attrs["explained_variance_ratio"] = tuple(float(r) for r in ratio)
    return out


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


# --------------------------------------------------------------------------------------
# clustering


def _run(
    x: np.ndarray, n_clusters: int | None, method: str, seed: int, max_clusters: int
) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.metrics import silhouette_score

    n = x.shape[0]
    if method == "hdbscan":
        from sklearn.cluster import HDBSCAN

        if n < 3:
            return np.zeros(n, dtype=int), np.ones(n)
        model = HDBSCAN(min_cluster_size=max(3, min(5, n // 2)), copy=True).fit(x)
        return model.labels_.astype(int), np.asarray(model.probabilities_, dtype=float)

    n_distinct = len(np.unique(np.round(x, 12), axis=0))
    if n_clusters is not None:
        k = int(n_clusters)
        if k > n_distinct:
            warnings.warn(
                f"n_clusters={k} but only {n_distinct} distinct crystals; using {n_distinct}.",
                UserWarning,
                stacklevel=3,
            )
            k = n_distinct
        return _fit_k(x, k, method, seed)

    kmax = min(max_clusters, n_distinct, n - 1) if method != "gmm" else min(max_clusters, n)
    if method == "gmm":
        best = None
        for k in range(1, max(kmax, 1) + 1):
            gm = _gmm(x, k, seed)
            bic = gm.bic(x)
            if best is None or bic < best[0]:
                best = (bic, gm)
        gm = best[1]
        return gm.predict(x), gm.predict_proba(x).max(axis=1)
    if kmax < 2:
        return np.zeros(n, dtype=int), np.ones(n)
    best = None
    for k in range(2, kmax + 1):
        lab, conf = _fit_k(x, k, method, seed)
        if len(np.unique(lab)) < 2:
            continue
        s = silhouette_score(x, lab)
        if best is None or s > best[0] + 1e-12:
            best = (s, lab, conf)
    if best is None:
        return np.zeros(n, dtype=int), np.ones(n)
    return best[1], best[2]


def _gmm(x: np.ndarray, k: int, seed: int):
    from sklearn.mixture import GaussianMixture

    return GaussianMixture(
        k, covariance_type="diag", n_init=3, random_state=seed, reg_covar=1e-4
    ).fit(x)


def _fit_k(x: np.ndarray, k: int, method: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n = x.shape[0]
    if k <= 1:
        return np.zeros(n, dtype=int), np.ones(n)
    if method == "gmm":
        gm = _gmm(x, k, seed)
        return gm.predict(x), gm.predict_proba(x).max(axis=1)
    if method == "kmeans":
        from sklearn.cluster import KMeans

        km = KMeans(k, n_init=10, random_state=seed).fit(x)
        return km.labels_.astype(int), _centre_confidence(x, km.labels_, km.cluster_centers_)
    from sklearn.cluster import AgglomerativeClustering

    lab = AgglomerativeClustering(k, linkage="ward").fit_predict(x).astype(int)
    return lab, _centre_confidence(x, lab)


def _merge_within_category(
    x: np.ndarray, is_cat: np.ndarray, labels: np.ndarray, min_separation: float
) -> np.ndarray:
    """Merge clusters of one category whose centres are closer than ``min_separation``.

    A cluster's category is its most common row of the one-hot columns (``is_cat``); the
    distance between two clusters of one category is that of their centres over the other
    columns. The closest such pair is merged first, and centres are recomputed after each
    merge, until no pair is closer than ``min_separation``.
    """
    labels = np.asarray(labels, dtype=int).copy()
    if min_separation <= 0:
        return labels
    cat, other = x[:, is_cat], x[:, ~is_cat]
    while True:
        ids = [c for c in np.unique(labels) if c >= 0]
        modal = {}
        for c in ids:
            rows, counts = np.unique(np.round(cat[labels == c], 9), axis=0, return_counts=True)
            modal[c] = rows[int(np.argmax(counts))].tobytes()
        centres = {c: other[labels == c].mean(axis=0) for c in ids}
        best = None
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                if modal[a] != modal[b]:
                    continue
                dist = float(np.sqrt(np.sum((centres[a] - centres[b]) ** 2)))
                if dist < min_separation and (best is None or dist < best[0]):
                    best = (dist, a, b)
        if best is None:
            return labels
        labels[labels == best[2]] = best[1]


def _centre_confidence(
    x: np.ndarray, labels: np.ndarray, centres: np.ndarray | None = None
) -> np.ndarray:
    """``1 - d1 / d2`` from the distances to the nearest and second-nearest cluster centre
    (``centres``: the clusters' means by default)."""
    if centres is None:
        ids = np.unique(labels)
        if ids.size < 2:
            return np.ones(x.shape[0])
        centres = np.vstack([x[labels == c].mean(axis=0) for c in ids])
    dist = np.sqrt(((x[:, None, :] - centres[None, :, :]) ** 2).sum(-1))
    dist.sort(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(dist[:, 1] > 0, 1.0 - dist[:, 0] / dist[:, 1], 1.0)


def _order_by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0, 1, ... by decreasing size (first appearance breaks ties)."""
    labels = np.asarray(labels, dtype=int)
    ids = [c for c in pd.unique(labels) if c >= 0]
    ids.sort(key=lambda c: -int(np.sum(labels == c)))
    mapping = {c: i for i, c in enumerate(ids)}
    return np.array([mapping.get(c, -1) for c in labels], dtype=int)


# --------------------------------------------------------------------------------------
# colours


def _hex_rgba(h: str) -> tuple[float, float, float, float]:
    h = h.lstrip("#")
    return (int(h[0:2], 16) / 255, int(h[2:4], 16) / 255, int(h[4:6], 16) / 255, 1.0)


def _palette(cmap: str, n: int) -> list[tuple[float, float, float, float]]:
    if cmap == "tab10":
        base = [_hex_rgba(h) for h in _TAB10]
    elif cmap == "tab20":
        base = [_hex_rgba(h) for h in _TAB20]
    else:
        try:
            import matplotlib

            cm = matplotlib.colormaps[cmap]
        except (ImportError, KeyError) as exc:
            raise ZonationInputError(
                f"cmap={cmap!r} is not a known colormap; use 'tab10', 'tab20' or a "
                "matplotlib colormap name."
            ) from exc
        count = getattr(cm, "N", 256)
        if count <= 20:  # qualitative: its own colours in order
            base = [tuple(float(c) for c in cm(i)) for i in range(count)]
        else:
            base = [tuple(float(c) for c in cm(t)) for t in np.linspace(0, 1, max(n, 1))]
    # never reuse grey for a cluster: it means "unclustered"
    base = [c for c in base if not _is_grey(c)]
    colours = list(base[:n])
    i = 0
    while len(colours) < n:  # more clusters than colours: golden-ratio hues
        hue = (0.13 + 0.618033988749895 * i) % 1.0
        sat, val = (0.65, 0.95) if (i // len(_TAB10)) % 2 == 0 else (0.9, 0.7)
        colours.append((*colorsys.hsv_to_rgb(hue, sat, val), 1.0))
        i += 1
    return colours


def _is_grey(c) -> bool:
    r, g, b = c[:3]
    return max(r, g, b) - min(r, g, b) < 0.02
