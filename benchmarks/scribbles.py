"""Scribble training on large images: time and memory of ``train_scribbles``.

A synthetic thin section (``make_thin_section``) of ``--size`` pixels squared is painted with
a few strokes drawn from its ground truth, as a person would paint them (one short line in the
biggest crystal of each phase, four short lines in the groundmass, one across each of up to
two vesicles; ``napari_zonation.synthetic.strokes_from_truth``), then ``train_scribbles`` runs
with its defaults. Printed: painted pixels, wall time of the whole call and of its parts
(features, forest fit, prediction, instances), peak resident memory of the process, and the
instance recall / precision at IoU >= 0.5 against the truth; then a second training on the
same image with other strokes (what a user does in napari: the features are reused).

The parts are timed by running scikit-image's ``multiscale_basic_features`` and the forest the
same way ``train_scribbles`` does, in the same process, with the plain scikit-image prediction
of every pixel (``predict_segmenter``) beside the coarse-to-fine one ``train_scribbles`` uses
above 2 Mpx.

    python benchmarks/scribbles.py --size 4096     # the issue's 4k x 4k (a few minutes)
    python benchmarks/scribbles.py --size 1024     # quick
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _memory import reset_peak_rss, rss_mb
from skimage.feature import multiscale_basic_features
from skimage.future import fit_segmenter, predict_segmenter
from sklearn.ensemble import RandomForestClassifier

from napari_zonation.metrics import match_instances
from napari_zonation.scribble import _predict, train_scribbles
from napari_zonation.synthetic import make_thin_section, strokes_from_truth

PX = 1.5


def main(size: int, seed: int) -> None:
    t0 = time.perf_counter()
    n = max(8, int(8 * (size / 384) ** 2 * 0.5))
    s = make_thin_section((size, size), n_crystals=n, seed=seed, pixel_size_um=PX)
    scr = strokes_from_truth(s)
    print(
        f"scene {size}x{size} at {PX} um/px, {int(s.labels.max())} true crystals, "
        f"{int((scr > 0).sum())} painted pixels ({time.perf_counter() - t0:.1f} s to make)"
    )
    rss0 = rss_mb()
    reset_peak_rss()
    t = time.perf_counter()
    labels, clf = train_scribbles(s.image, scr, PX)
    total = time.perf_counter() - t
    rss1 = rss_mb("VmHWM")
    m = match_instances(s.labels, labels, 0.5)
    print(
        f"train_scribbles: {total:.1f} s wall, peak RSS {rss1:.0f} MB "
        f"(before the call {rss0:.0f} MB); recall {m['recall']:.3f}, precision "
        f"{m['precision']:.3f}, matched IoU {m['mean_iou']:.3f}"
    )
    # a second training on the same image with other strokes (one class fewer), as a user
    # retrains in napari: the image's features are reused
    fewer = np.where(scr == 2, 0, scr) if (scr == 2).any() else scr
    t = time.perf_counter()
    train_scribbles(s.image, fewer, PX)
    retrain = time.perf_counter() - t
    print(f"retraining on the same image with other strokes: {retrain:.1f} s wall")
    # the parts, the same way train_scribbles runs them
    smin, smax = max(0.5, 1.0 / PX), max(1.0, 16.0 / PX)
    t = time.perf_counter()
    feats = multiscale_basic_features(s.image.astype(float), sigma_min=smin, sigma_max=smax)
    t_feat = time.perf_counter() - t
    clf = RandomForestClassifier(n_estimators=50, max_depth=10, n_jobs=-1, random_state=0)
    t = time.perf_counter()
    clf = fit_segmenter(scr, feats, clf)
    t_fit = time.perf_counter() - t
    t = time.perf_counter()
    full = predict_segmenter(feats, clf)
    t_pred = time.perf_counter() - t
    t = time.perf_counter()
    fast = _predict(feats, clf, 4)
    t_fast = time.perf_counter() - t
    print(
        f"parts: features {t_feat:.1f} s ({feats.shape[-1]} per pixel, {feats.nbytes / 1e9:.2f} "
        f"GB), forest fit on the strokes {t_fit:.2f} s, prediction of every pixel "
        f"(skimage predict_segmenter) {t_pred:.1f} s, coarse-to-fine prediction (stride 4) "
        f"{t_fast:.1f} s, same class {100 * np.mean(fast == full):.2f} % of pixels"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    main(args.size, args.seed)
