"""Scoring a segmentation against ground truth (tests, benchmarks, users' own checks)."""

from __future__ import annotations

import numpy as np


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
