"""Scoring a segmentation against ground truth (tests, benchmarks, users' own checks).

- :func:`match_instances`: one-to-one matching of true and predicted crystals at an IoU
  threshold, with precision, recall, F1 and the matched IoU.
- :func:`outline_distance`: how far apart two regions' outlines are, in pixels (the mean of
  the distances from every outline pixel of each region to the other's outline).
- :func:`outline_distances`: the same for every matched pair of two label images.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries


def match_instances(truth: np.ndarray, pred: np.ndarray, iou_min: float = 0.5) -> dict:
    """Match true and predicted instances one-to-one at IoU >= ``iou_min``.

    Built from the contingency table of the two label images; at ``iou_min >= 0.5`` a match
    is necessarily unique.

    Parameters
    ----------
    truth, pred : numpy.ndarray of int
        Label images of the same shape, 0 = background.
    iou_min : float
        Smallest intersection over union of a match.

    Returns
    -------
    dict
        ``tp``, ``precision``, ``recall``, ``f1``, ``mean_iou`` (of the matched pairs) and
        ``pairs`` (``{true_label: predicted_label}``).

    Examples
    --------
    Score labels against the synthetic generator's truth (here a copy with crystal 3
    deleted):

    >>> from napari_zonation import delete_labels, make_thin_section
    >>> from napari_zonation.metrics import match_instances
    >>> s = make_thin_section((160, 160), n_crystals=3, size_um=(40.0, 70.0), seed=1)
    >>> m = match_instances(s.labels, delete_labels(s.labels, [3]))
    >>> m["tp"], m["precision"], round(m["recall"], 3), m["pairs"]
    (2, 1.0, 0.667, {1: 1, 2: 2})
    """
    t = np.asarray(truth).ravel().astype(np.int64)
    p = np.asarray(pred).ravel().astype(np.int64)
    n_p = int(p.max()) + 1 if p.size else 1
    area_t = np.bincount(t)
    area_p = np.bincount(p, minlength=n_p)
    both = (t > 0) & (p > 0)
    key, inter = np.unique(t[both] * n_p + p[both], return_counts=True)
    ti, pi = np.divmod(key, n_p)
    iou = inter / (area_t[ti] + area_p[pi] - inter)
    ok = iou >= iou_min
    n_true = int(np.count_nonzero(area_t[1:]))
    n_pred = int(np.count_nonzero(area_p[1:]))
    tp = int(ok.sum())
    return {
        "tp": tp,
        "precision": tp / n_pred if n_pred else 0.0,
        "recall": tp / n_true if n_true else 0.0,
        "f1": 2 * tp / (n_true + n_pred) if n_true + n_pred else 1.0,
        "mean_iou": float(iou[ok].mean()) if tp else 0.0,
        "pairs": dict(zip(ti[ok].tolist(), pi[ok].tolist(), strict=True)),
    }


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of the region with a 4-neighbour outside it (the image's edge is not an
    outline: a region cut by the frame has no outline along it)."""
    return find_boundaries(mask.astype(np.uint8), connectivity=1, mode="inner")


def outline_distance(truth_mask: np.ndarray, pred_mask: np.ndarray) -> float:
    """Mean distance in pixels between the outlines of two regions.

    A region's outline is its pixels that have a 4-connected neighbour outside it (not the
    image's edge). The distance is symmetric: the mean, over the outline pixels of both
    regions together, of each pixel's Euclidean distance to the nearest outline pixel of the
    other region (pixel centres). Identical regions give 0; a region grown by one pixel on
    every side gives about 1.

    Parameters
    ----------
    truth_mask, pred_mask : numpy.ndarray of bool
        The two regions, of the same shape.

    Returns
    -------
    float
        The mean distance in pixels; ``nan`` when either region has no outline.
    """
    a = np.asarray(truth_mask, dtype=bool)
    b = np.asarray(pred_mask, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"the two masks differ in shape: {a.shape} and {b.shape}")
    rows, cols = np.nonzero(a | b)
    if rows.size == 0:
        return float("nan")
    H, W = a.shape
    sl = (
        slice(max(rows.min() - 1, 0), min(rows.max() + 2, H)),
        slice(max(cols.min() - 1, 0), min(cols.max() + 2, W)),
    )
    # the box grown by a pixel: its sides inside the image are background, its sides on the
    # image's edge stay the image's edge
    oa, ob = _outline(a[sl]), _outline(b[sl])
    if not oa.any() or not ob.any():
        return float("nan")
    to_b = ndi.distance_transform_edt(~ob)
    to_a = ndi.distance_transform_edt(~oa)
    return float((to_b[oa].sum() + to_a[ob].sum()) / (oa.sum() + ob.sum()))


def outline_distances(truth: np.ndarray, pred: np.ndarray, pairs: dict) -> dict:
    """:func:`outline_distance` of every matched pair of two label images.

    Parameters
    ----------
    truth, pred : numpy.ndarray of int
        Label images of the same shape, 0 = background.
    pairs : dict
        ``{true_label: predicted_label}``, e.g. ``match_instances(truth, pred)["pairs"]``.

    Returns
    -------
    dict
        ``{true_label: distance_px}``.
    """
    truth = np.asarray(truth)
    pred = np.asarray(pred)
    if truth.shape != pred.shape:
        raise ValueError(f"the label images differ in shape: {truth.shape} and {pred.shape}")
    boxes_t = ndi.find_objects(truth)
    boxes_p = ndi.find_objects(pred)
    H, W = truth.shape
    out = {}
    for t, p in pairs.items():
        bt, bp = boxes_t[t - 1], boxes_p[p - 1]
        r0 = max(min(bt[0].start, bp[0].start) - 2, 0)
        r1 = min(max(bt[0].stop, bp[0].stop) + 2, H)
        c0 = max(min(bt[1].start, bp[1].start) - 2, 0)
        c1 = min(max(bt[1].stop, bp[1].stop) + 2, W)
        # the crop keeps the image's edges where they are, a background margin elsewhere
        out[int(t)] = outline_distance(truth[r0:r1, c0:c1] == t, pred[r0:r1, c0:c1] == p)
    return out
