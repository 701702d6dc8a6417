"""What goes wrong, crystal by crystal, in one scene class of the segmentation benchmark.

For each scene of ``--kinds`` (the development seeds of ``benchmarks/segmentation.py``), every
true crystal is put in one class of error against ``segment_crystals``' labels:

- ``ok``: matched (IoU >= 0.5) and IoU >= 0.9;
- ``missed``: no predicted label covers a tenth of it;
- ``merged``: its best predicted label covers it, but a larger share of that label lies on
  other crystals (two or more crystals in one label);
- ``split``: two or more predicted labels each cover a fifth of it;
- ``shrunk``: its best label lies mostly inside it but misses more than a tenth of it (a rim
  or an outer zone lost to the groundmass);
- ``grown``: its best label covers it but spills more than a tenth of its area outside it;
- ``other``: anything else below IoU 0.9;

and false crystals (predicted labels overlapping no true crystal by a tenth) are counted. It
also writes, with ``--png DIR``, an overlay of each scene: the image, true outlines in green,
predicted outlines in red (yellow where they agree).

    python benchmarks/segment_diagnose.py --kinds faint_rims,glass_laths --png /tmp/diag
"""

from __future__ import annotations

import argparse
import os
from collections import Counter

import numpy as np
from segmentation import DEV_SEEDS, KIND_NOISE, PIXEL_SIZES, make_scene, parse_option
from skimage import segmentation as skseg

from napari_zonation import segment_crystals


def classify(truth: np.ndarray, pred: np.ndarray) -> tuple[list[dict], int]:
    """One row per true crystal (``label``, ``kind`` of error, ``iou``, ``covered`` share of
    it under its best label, ``spill`` of that label outside it as a share of the crystal),
    and the number of false crystals."""
    n_t, n_p = int(truth.max()) + 1, int(pred.max()) + 1
    both = np.bincount(truth.ravel().astype(np.int64) * n_p + pred.ravel(), minlength=n_t * n_p)
    inter = both.reshape(n_t, n_p)
    at = inter.sum(1)
    ap = inter.sum(0)
    rows = []
    for t in range(1, n_t):
        if at[t] == 0:
            continue
        ov = inter[t, 1:]
        share = ov / at[t]
        best = int(np.argmax(ov)) + 1
        cov = float(share[best - 1])
        union = at[t] + ap[best] - inter[t, best]
        iou = inter[t, best] / union if union else 0.0
        on_others = inter[1:, best].sum() - inter[t, best]
        spill = (ap[best] - inter[t, best]) / at[t]
        if cov < 0.1:
            kind = "missed"
        elif iou >= 0.9:
            kind = "ok"
        elif on_others > 0.5 * inter[t, best]:
            kind = "merged"
        elif (share >= 0.2).sum() >= 2:
            kind = "split"
        elif cov < 0.9 and spill < 0.1:
            kind = "shrunk"
        elif spill >= 0.1 and cov >= 0.9:
            kind = "grown"
        else:
            kind = "other"
        rows.append(dict(label=t, kind=kind, iou=float(iou), covered=cov, spill=float(spill)))
    false = int(sum(1 for p in range(1, n_p) if ap[p] and inter[1:, p].sum() < 0.1 * ap[p]))
    return rows, false


def overlay(image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """RGB uint8: the image, true outlines green, predicted red, both yellow."""
    g = image.astype(np.float64)
    lo, hi = np.percentile(g, (0.5, 99.5))
    g = np.clip((g - lo) / max(hi - lo, 1e-9), 0, 1)
    rgb = np.stack([g, g, g], axis=-1) * 255
    bt = skseg.find_boundaries(truth, mode="inner")
    bp = skseg.find_boundaries(pred, mode="inner")
    rgb[bt & ~bp] = (0, 255, 0)
    rgb[bp & ~bt] = (255, 0, 0)
    rgb[bp & bt] = (255, 255, 0)
    return rgb.astype(np.uint8)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="faint_rims,glass_laths")
    parser.add_argument("--size", type=int, default=768)
    parser.add_argument("--px", type=float, nargs="*", default=list(PIXEL_SIZES))
    parser.add_argument("--seeds", type=int, nargs="*", default=list(DEV_SEEDS["kinds"]))
    parser.add_argument("--png", default=None, help="write an overlay per scene here")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    options = dict(parse_option(o) for o in args.option)
    if args.png:
        os.makedirs(args.png, exist_ok=True)
    for kind in args.kinds.split(","):
        total: Counter = Counter()
        n_false = 0
        for seed in args.seeds:
            for px in args.px:
                spec = dict(kind=kind, seed=seed, noise=KIND_NOISE, bits=8, px=px)
                s = make_scene(spec, args.size)
                pred = segment_crystals(s.image, px, **options)
                rows, false = classify(s.labels, pred)
                c = Counter(r["kind"] for r in rows)
                total += c
                n_false += false
                bad = [r for r in rows if r["kind"] != "ok"]
                print(f"{kind} seed {seed} px {px}: {dict(c)}, false {false}")
                for r in bad:
                    z = s.zonings.get(r["label"])
                    zs = "" if z is None else f"{z.zoning_type} {np.round(z.levels, 3).tolist()}"
                    glass = getattr(s, "glass_grey", np.nan)
                    print(f"    #{r['label']:<3} {r['kind']:<7} IoU {r['iou']:.2f} covered "
                          f"{r['covered']:.2f} spill {r['spill']:.2f}  {zs} glass {glass:.3f}")
                if args.png:
                    from skimage.io import imsave

                    name = f"{kind}_s{seed}_px{px}.png"
                    imsave(os.path.join(args.png, name), overlay(s.image, s.labels, pred),
                           check_contrast=False)
        print(f"== {kind}: {dict(total)}, false crystals {n_false}")


if __name__ == "__main__":
    main()
