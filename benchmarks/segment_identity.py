"""Label identity check: are ``segment_crystals``' labels unchanged by a code change?

Saves (``--save DIR``) or compares with a saved run (``--compare DIR``) the labels of:

- the 54 scenes of ``benchmarks/segmentation.py``'s full grid (seeds 0-2 x noise 1/3/5 % x
  8/16 bits x 0.5/1/2 um pixels, 768 x 768), with the default options;
- the real plagioclase image shipped in ``napari_zonation/data`` (1.18 um/px);
- a 1536 x 1536 scene segmented in 512-pixel tiles (9 tiles), and the same scene whole;
- with ``--threads`` (default 1 and 2) each of the above at each thread count.

A code change that claims to leave the segmentation as it was (a restructuring, a speed-up)
must print ``all equal``. Run the saving step with the old code on ``PYTHONPATH``::

    PYTHONPATH=/path/to/old/src python benchmarks/segment_identity.py --save /tmp/labels-old
    python benchmarks/segment_identity.py --compare /tmp/labels-old
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import tifffile

import napari_zonation
from napari_zonation import make_thin_section, segment_crystals


def scenes(quick: bool = False):
    """``(name, image, pixel_size_um, kwargs)`` of every input checked."""
    grid = [
        (seed, noise, bits, px)
        for seed in (0, 1, 2)
        for noise in (0.01, 0.03, 0.05)
        for bits in (8, 16)
        for px in (0.5, 1.0, 2.0)
    ]
    if quick:
        grid = grid[::6]
    size = 768
    for seed, noise, bits, px in grid:
        n = int(20 * (size * px / 768) ** 2) + 3
        s = make_thin_section(
            (size, size), n_crystals=n, pixel_size_um=px, noise=noise, bit_depth=bits, seed=seed
        )
        yield f"scene_s{seed}_n{noise}_b{bits}_px{px}", s.image, px, {}
    real = os.path.join(os.path.dirname(napari_zonation.__file__), "data", "CGI_ns8_1-1.tif")
    yield "real_plagioclase", tifffile.imread(real), 1.18, {}
    big = make_thin_section((1536, 1536), n_crystals=90, pixel_size_um=1.0, noise=0.02, seed=3)
    yield "tiled_1536_t512", big.image, 1.0, {"tile_size": 512}
    yield "whole_1536", big.image, 1.0, {}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--save", metavar="DIR", help="save the labels here")
    group.add_argument("--compare", metavar="DIR", help="compare with the labels saved here")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--quick", action="store_true", help="every sixth grid scene only")
    args = parser.parse_args(argv)
    folder = args.save or args.compare
    os.makedirs(folder, exist_ok=True)
    n_diff = n_all = 0
    for name, image, px, kwargs in scenes(args.quick):
        for threads in args.threads:
            t0 = time.perf_counter()
            lab = segment_crystals(image, px, threads=threads, **kwargs)
            dt = time.perf_counter() - t0
            path = os.path.join(folder, f"{name}_t{threads}.npy")
            if args.save:
                np.save(path, lab)
                print(f"{name} threads={threads}: {int(lab.max())} crystals ({dt:.2f} s)")
                continue
            old = np.load(path)
            same = old.shape == lab.shape and np.array_equal(old, lab)
            n_all += 1
            n_diff += not same
            differ = "" if same else f", {int(np.count_nonzero(old != lab))} pixels differ"
            print(
                f"{name} threads={threads}: {'equal' if same else 'DIFFERENT'} "
                f"({int(lab.max())} crystals, {dt:.2f} s{differ})",
                flush=True,
            )
    if args.compare:
        print("all equal" if n_diff == 0 else f"{n_diff} of {n_all} label images differ")
    return int(n_diff > 0)


if __name__ == "__main__":
    raise SystemExit(main())
