"""Clustering a feature matrix: k-means, Gaussian mixtures, agglomerative or HDBSCAN,
automatic k by silhouette, clusters of one category merged, sizes ordered."""


from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

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


