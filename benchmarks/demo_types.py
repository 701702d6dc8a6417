"""Zoning types on the demo scenes against their truth, crystal by crystal.

The scene ``napari-zonation demo`` makes (768 x 768 px, 20 crystals, ``--seed``), run through
``run_pipeline`` as the command does; every crystal found is matched to the true crystal
that covers most of it, and its type compared with the painted one. Prints the misreads and
the count typed right per seed.

    python benchmarks/demo_types.py               # seed 0, the demo's default
    python benchmarks/demo_types.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse

import numpy as np

from napari_zonation import run_pipeline
from napari_zonation.synthetic import make_thin_section


def demo_types(seed: int, size: int = 768, n_crystals: int = 20) -> tuple[int, int, list]:
    """(typed right, crystals found, misreads) on the demo scene of ``seed``."""
    s = make_thin_section((size, size), n_crystals=n_crystals, seed=seed)
    res = run_pipeline(s.image, s.pixel_size_um)
    truth = s.truth.set_index("label")["zoning_type"]
    right, wrong = 0, []
    for row in res.crystals.itertuples():
        hit = np.bincount(s.labels[res.labels == row.label]).argmax()
        want = truth.get(hit, "not a crystal")
        if want == row.zoning_type:
            right += 1
        else:
            wrong.append((row.label, hit, want, row.zoning_type, row.depth_geometry))
    return right, len(res.crystals), wrong


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = ap.parse_args()
    total = found = 0
    for seed in args.seeds:
        right, n, wrong = demo_types(seed)
        total, found = total + right, found + n
        print(f"seed {seed}: {right} of {n} crystals typed as painted")
        for label, hit, want, got, geometry in wrong:
            print(f"  crystal {label} (true {hit}): painted {want}, read {got} ({geometry})")
    if len(args.seeds) > 1:
        print(f"all: {total} of {found}")


if __name__ == "__main__":
    main()
