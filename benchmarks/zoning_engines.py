"""Score another version of the zoning description on the zoning benchmark's data.

``benchmarks/zoning.py --cache DIR`` keeps its datasets (1D profile sets, prepared scenes
with their profiles and truth). This script describes and clusters them with whatever
``napari_zonation`` is importable, with the same scoring (zoning_type accuracy per true
class, ARI of the clusters against the true type), and reads the real Kilauea traverses, so
that two versions are compared on identical profiles. It uses only ``describe_zoning``,
``cluster_crystals``, ``match_instances`` and ``read_profiles``, which every version has:

    git worktree add /tmp/old <commit>
    PYTHONPATH=/tmp/old/src python benchmarks/zoning_engines.py --cache DIR
    PYTHONPATH=src python benchmarks/zoning_engines.py --cache DIR
"""

from __future__ import annotations

import argparse
import pickle
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

import napari_zonation
from napari_zonation import read_profiles
from napari_zonation.cluster import cluster_crystals
from napari_zonation.descriptors import describe_zoning
from napari_zonation.metrics import match_instances

CLASSES = ("unzoned", "rim_brighter", "rim_darker", "gradient", "oscillatory", "multi_step")
KILAUEA = Path(__file__).parents[1] / "src" / "napari_zonation" / "data" / "olivine_kilauea"


def _report(name: str, rows: pd.DataFrame, aris: list[float]) -> None:
    acc = {
        c: (rows.loc[rows["true"] == c, "pred"] == c).mean()
        for c in CLASSES
        if (rows["true"] == c).any()
    }
    text = " ".join(f"{c} {a:.3f}" for c, a in acc.items())
    print(
        f"{name}: ARI mean {np.mean(aris):.3f}; type {np.mean(rows['true'] == rows['pred']):.3f} "
        f"(worst class {min(acc.values()):.3f}); {text}"
    )


def score_1d(paths) -> None:
    for group, files in paths.items():
        rows, aris = [], []
        for f in files:
            data = pickle.load(open(f, "rb"))
            prof, truth = data["prof"], data["truth"]
            prof = prof.drop(columns=[c for c in ("quantity",) if c in prof.columns])
            tab = cluster_crystals(describe_zoning(prof), profiles=prof)
            m = tab.merge(truth[["label", "zoning_type"]], on="label", suffixes=("", "_t"))
            aris.append(adjusted_rand_score(m["zoning_type_t"], m["cluster"]))
            rows.append(pd.DataFrame({"true": m["zoning_type_t"], "pred": m["zoning_type"]}))
        _report(f"1D {group} ({len(files)} sets)", pd.concat(rows), aris)


TIMES: list[float] = []  # seconds per described profile, per scene


def score_scenes(paths) -> None:
    for group, files in paths.items():
        rows, aris = [], []
        for f in files:
            sc = pickle.load(open(f, "rb"))
            t0 = time.perf_counter()
            tab = describe_zoning(sc["prof"], crystals=sc["crystals"])
            TIMES.append((time.perf_counter() - t0) / max(sc["prof"]["label"].nunique(), 1))
            tab = cluster_crystals(tab, profiles=sc["prof"])
            pairs = match_instances(sc["true_labels"], sc["labels"])["pairs"]
            m = {p: t for t, p in pairs.items()}
            truth = sc["truth"].set_index("label")
            tab = tab[tab["label"].isin(list(m)) & (tab["describe_status"] == "ok")]
            true = truth.loc[tab["label"].map(m), "zoning_type"].to_numpy()
            aris.append(adjusted_rand_score(true, tab["cluster"]))
            found = pd.DataFrame({"true": true, "pred": tab["zoning_type"].to_numpy()})
            lost = truth.drop(index=tab["label"].map(m))
            rows.append(
                pd.concat(
                    [found, pd.DataFrame({"true": lost["zoning_type"], "pred": "<not found>"})]
                )
            )
        _report(f"scenes {group} ({len(files)})", pd.concat(rows, ignore_index=True), aris)


def kilauea() -> None:
    meta = pd.read_csv(KILAUEA / "olivine_profiles_metadata.csv").set_index("profile")
    for sigma in (None, "auto"):
        prof = read_profiles(
            KILAUEA / "olivine_traverses.csv",
            distance="distance_um",
            value="fo",
            label="profile",
            sigma=sigma,
        )
        tab = describe_zoning(prof, phase="olivine").set_index("label")
        zoned = (tab["zoning_type"] != "unzoned").sum()
        expect = np.where(
            meta.loc[tab.index, "post_rim_xfo"] > meta.loc[tab.index, "post_core_xfo"],
            "reverse",
            "normal",
        )
        right = int((tab["interpretation"].to_numpy() == expect).sum())
        print(
            f"Kilauea sigma={sigma}: zoned {zoned}/6, direction right {right}/6: "
            + ", ".join(
                f"{k} {z}/{i}"
                for k, z, i in zip(
                    tab.index, tab["zoning_type"], tab["interpretation"], strict=True
                )
            )
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", required=True)
    args = ap.parse_args()
    print(f"napari_zonation from {Path(napari_zonation.__file__).parent}")
    cache = Path(args.cache)
    groups_1d: dict = {}
    for f in sorted(cache.glob("zprof1d_*.pkl")):
        groups_1d.setdefault(f.stem.split("_")[1], []).append(f)
    score_1d(groups_1d)
    groups: dict = {}
    for f in sorted(cache.glob("zscene_*.pkl")):
        parts = f.stem.split("_")
        groups.setdefault(f"{parts[1]} {parts[3]}", []).append(f)
    score_scenes(groups)
    if TIMES:
        print(f"describe_zoning: median {np.median(TIMES) * 1e3:.0f} ms per scene profile "
              f"({len(TIMES)} scenes)")
    kilauea()


if __name__ == "__main__":
    main()
