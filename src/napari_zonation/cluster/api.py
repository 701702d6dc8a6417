"""Clustering crystals by their zoning, the clusters' defining features and a 2D embedding."""


from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .._validation import ZonationInputError
from ._clustering import _centre_confidence, _merge_within_category, _order_by_size, _run
from .features import CATEGORICAL, CATEGORY_WEIGHT, METHODS, SHAPE_WEIGHT, _derive, _feature_matrix

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


