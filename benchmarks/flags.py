"""QA flags of the crystal table: how many crystals each flag marks, and whether they have it.

For synthetic scenes (the generator's default and some of ``SCENE_KINDS``) the crystals of
``segment_crystals`` are matched to the true crystals (IoU >= 0.5) and each flag of
``crystal_table`` is compared with the generator's truth where it has one:

- ``touches_border``, ``touching``, ``cracked``: the truth's columns of the same name;
- ``faint_edge`` and ``rim_near_groundmass``: a rim at the glass grey (``rim_at_glass``) whose
  only cue is faint (``rim_cue`` set).

Per flag it prints the fraction of crystals flagged and, where there is a truth, the precision
(flagged crystals that have the problem) and recall. On the real plagioclase (Lubbers et al.
2022, MIT, 1.18 um/px; when the file is there) it prints each flag of its crystals.

    python benchmarks/flags.py              # development seeds 0-1
    python benchmarks/flags.py --held-out   # held-out seeds 1000-1001 (once, at the end)
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np
import pandas as pd

import napari_zonation as nz
from napari_zonation.metrics import match_instances
from napari_zonation.synthetic import SCENE_KINDS, make_thin_section

FLAGS = ("low_contrast", "cracked", "touching", "touches_border", "faint_edge",
         "rim_near_groundmass")
KINDS = ("default", "real", "glomerocrysts", "faint_rims", "epoxy")
#: the real plagioclase shipped with the package (with its licence)
REAL = pathlib.Path(nz.__file__).parent / "data" / "CGI_ns8_1-1.tif"


def truth_flags(truth: pd.DataFrame) -> pd.DataFrame:
    t = truth.set_index("label")
    faint = t["rim_at_glass"].astype(bool) & t["rim_cue"].fillna("").astype(str).ne("")
    return pd.DataFrame({
        "touches_border": t["touches_border"].astype(bool),
        "touching": t["touching"].astype(bool),
        "cracked": t["cracked"].astype(bool),
        "faint_edge": faint,
        "rim_near_groundmass": faint,
    })


def score_scene(kind: str, seed: int) -> pd.DataFrame:
    opts = {} if kind == "default" else SCENE_KINDS[kind]
    s = make_thin_section(seed=seed, **opts)
    px = s.pixel_size_um
    lab = nz.segment_crystals(s.image, px)
    table = nz.crystal_table(s.image, lab, px).set_index("label")
    pairs = match_instances(s.labels, lab)["pairs"]
    truth = truth_flags(s.truth)
    rows = []
    for flag in FLAGS:
        pred = table[flag].fillna(False).astype(bool) if flag in table else None
        if pred is None:
            continue
        row = {"kind": kind, "seed": seed, "flag": flag, "n": len(table),
               "flagged": int(pred.sum())}
        if flag in truth:
            tp = fp = fn = 0
            for t_lab, p_lab in pairs.items():
                has, said = bool(truth[flag].get(t_lab, False)), bool(pred.get(p_lab, False))
                tp += has and said
                fp += said and not has
                fn += has and not said
            row.update(tp=tp, fp=fp, fn=fn)
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--held-out", action="store_true")
    args = ap.parse_args()
    seeds = (1000, 1001) if args.held_out else (0, 1)
    res = pd.concat([score_scene(k, s) for k in KINDS for s in seeds], ignore_index=True)
    agg = res.groupby("flag").agg(n=("n", "sum"), flagged=("flagged", "sum"), tp=("tp", "sum"),
                                  fp=("fp", "sum"), fn=("fn", "sum"))
    agg["fraction_flagged"] = agg["flagged"] / agg["n"]
    agg["precision"] = agg["tp"] / (agg["tp"] + agg["fp"]).replace(0, np.nan)
    agg["recall"] = agg["tp"] / (agg["tp"] + agg["fn"]).replace(0, np.nan)
    pd.set_option("display.width", 200)
    print(f"synthetic scenes {KINDS}, seeds {seeds}: per flag over all crystals")
    print(agg.round(3).to_string())
    per_kind = res.pivot_table(index="kind", columns="flag", values="flagged", aggfunc="sum")
    n_kind = res.groupby("kind")["n"].sum() / res.groupby("kind")["flag"].nunique()
    print("\nfraction flagged per scene kind")
    print(per_kind.div(n_kind, axis=0).round(2).to_string())
    if REAL.exists():
        img = nz.read_sem_tiff(REAL)[0]
        lab = nz.segment_crystals(img, 1.18)
        table = nz.crystal_table(img, lab, 1.18)
        cols = ["label", "area_um2", *[f for f in FLAGS if f in table]]
        print("\nreal plagioclase (1.18 um/px)")
        print(table[cols].to_string(index=False))


if __name__ == "__main__":
    main()
