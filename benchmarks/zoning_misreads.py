"""Which gradient and unzoned crystals the zoning benchmark's scenes misread on the project's
own segmentation, and whether the true outlines misread them too.

    python benchmarks/zoning_misreads.py [--seeds 0 1 ...] [--plot misreads.png]

For the development scenes of ``benchmarks/zoning.py --part scenes`` (seeds 0-9 by default),
every crystal whose true type is ``gradient`` or ``unzoned`` and whose own-segmentation
profile is typed otherwise: its type on the true outline's profile, the IoU of the two
outlines and the share of the true crystal grown over or lost, the family and geometry of its
zoning. ``--plot`` draws both profiles of each (true outline black, own red). The profiles
are those the benchmark describes: each crystal's in the geometry its image shows.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from zoning import TRAIN_FAMILIES, _scene  # noqa: E402

from napari_zonation import describe_zoning, match_instances  # noqa: E402


def misreads(seeds, cache=None) -> tuple[pd.DataFrame, list]:
    rows, curves = [], []
    for seed in seeds:
        own = _scene(seed, TRAIN_FAMILIES, "own", cache)
        true = _scene(seed, TRAIN_FAMILIES, "truth", cache)
        truth = own["truth"].set_index("label")
        d_own = describe_zoning(own["described"], crystals=own["crystals"]).set_index("label")
        d_true = describe_zoning(true["described"], crystals=true["crystals"]).set_index("label")
        for t, p in match_instances(own["true_labels"], own["labels"])["pairs"].items():
            kind = truth.loc[t, "zoning_type"]
            got = d_own.loc[p, "zoning_type"] if p in d_own.index else None
            if kind not in ("gradient", "unzoned") or got == kind:
                continue
            a, b = own["true_labels"] == t, own["labels"] == p
            rows.append({
                "seed": seed, "true_label": t, "own_label": p, "true_type": kind,
                "own_type": got, "type_on_true_outline": d_true.loc[t, "zoning_type"],
                "iou": (a & b).sum() / (a | b).sum(), "grown": (b & ~a).sum() / a.sum(),
                "lost": (a & ~b).sum() / a.sum(), "family": truth.loc[t, "family"],
                "geometry": truth.loc[t, "geometry"],
            })
            curves.append((seed, t, p, own["described"][own["described"]["label"] == p],
                           true["described"][true["described"]["label"] == t]))
    return pd.DataFrame(rows), curves


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=list(range(10)))
    ap.add_argument("--cache", default=None, help="folder keeping prepared scenes")
    ap.add_argument("--plot", type=Path, default=None)
    args = ap.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table, curves = misreads(args.seeds, args.cache)
    pd.set_option("display.width", 200)
    print(table.round(3).to_string(index=False))
    same = (table["own_type"] == table["type_on_true_outline"]).sum()
    print(f"{len(table)} misread; {same} read the same way on the true outline")
    if args.plot and curves:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n = len(curves)
        fig, axs = plt.subplots((n + 3) // 4, 4, figsize=(16, 3.2 * ((n + 3) // 4)),
                                squeeze=False)
        for ax, (seed, t, p, po, pt) in zip(axs.ravel(), curves, strict=False):
            ax.plot(pt["distance_um"], pt["value"], "k-", lw=1, label="true outline")
            ax.plot(po["distance_um"], po["value"], "r-", lw=1, label="own outline")
            ax.set_title(f"seed {seed}: true {t}, own {p}")
            ax.set_xlabel("distance from rim (µm)")
            ax.set_ylabel("grey")
        for ax in axs.ravel()[n:]:
            ax.set_visible(False)
        axs.ravel()[0].legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=70)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
