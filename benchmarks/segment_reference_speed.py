"""What the one-shot reference costs on a large image: ``segment_crystals`` with and without
``reference=`` on a 4096 x 4096 section (a mosaic of 2 x 2 distinct 2048 x 2048 synthetic
scenes at 1 um/px, as ``segmentation.py --large`` builds its 8192 x 8192 one), interleaved
rounds, medians; and the accuracy of both against the truth.

    python benchmarks/segment_reference_speed.py [--rounds 3] [--cache FILE.npz]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from segmentation import large_mosaic, reference_mask, score

from napari_zonation import segment_crystals


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache", default=None, help="npz file keeping the mosaic")
    args = parser.parse_args(argv)
    image, truth = large_mosaic(side=4096, piece=2048, cache=args.cache)
    ref = reference_mask(truth)
    times: dict[str, list[float]] = {"automatic": [], "one-shot reference": []}
    labels = {}
    for _ in range(args.rounds):
        for name, kwargs in (("automatic", {}), ("one-shot reference", {"reference": ref})):
            t0 = time.perf_counter()
            labels[name] = segment_crystals(image, 1.0, **kwargs)
            times[name].append(time.perf_counter() - t0)
    mpix = image.size / 1e6
    for name, ts in times.items():
        m = score(truth, labels[name])
        print(
            f"{image.shape[0]} x {image.shape[1]}, {name}: median {np.median(ts):.1f} s "
            f"({mpix / np.median(ts):.2f} MPix/s) over {len(ts)} rounds; F1 {m['f1']:.3f}, "
            f"matched IoU {m['iou']:.3f}, outline {m['outline_px']:.2f} px"
        )
    extra = np.median(times["one-shot reference"]) - np.median(times["automatic"])
    print(f"the reference adds {extra:.1f} s (median)")


if __name__ == "__main__":
    main()
