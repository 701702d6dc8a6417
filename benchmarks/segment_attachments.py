"""The cost of cutting microlite clusters off the crystals (``segment.attachments``).

For each scene of ``--kinds`` (development seeds of ``benchmarks/segmentation.py``, 1 um/px
unless ``--px``), times ``segment_crystals`` on the scene and ``cut_attachments`` alone on its
labels (the same call the segmentation makes, on the finished labels), and prints the stage's
share of the whole; medians of ``--repeat`` runs, measured in the same process.

    python benchmarks/segment_attachments.py --kinds glass_laths,default --repeat 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage as ndi
from segmentation import DEV_SEEDS, KIND_NOISE, make_scene

from napari_zonation import segment_crystals
from napari_zonation.segment.attachments import cut_attachments


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="glass_laths,default")
    parser.add_argument("--px", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=768)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    px = args.px
    for kind in args.kinds.split(","):
        for seed in DEV_SEEDS["kinds"]:
            spec = dict(kind=kind, seed=seed, noise=KIND_NOISE, bits=8, px=px)
            s = make_scene(spec, args.size)
            whole, stage = [], []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                labels = segment_crystals(s.image, px)
                whole.append(time.perf_counter() - t0)
                norm = s.image.astype(np.float64)
                smooth = ndi.gaussian_filter(norm, 1.5 / px)
                ref = float(np.median(smooth[labels == 0]))
                t0 = time.perf_counter()
                cut_attachments(labels, smooth, ref, 3.0 / px, 400.0 / px**2)
                stage.append(time.perf_counter() - t0)
            w, c = float(np.median(whole)), float(np.median(stage))
            print(
                f"{kind:12s} seed {seed} px {px}: {int(labels.max())} crystals, "
                f"segment_crystals {w:.3f} s, cut_attachments {c:.3f} s ({100 * c / w:.1f} %)"
            )


if __name__ == "__main__":
    main()
