"""Offline one-shot reference similarity: do crystals of the reference's class rank first?

Every crystal is taken as the reference in turn (``describe_zoning(prof, reference=label)``,
column ``reference_similarity``); the other crystals are ranked by similarity, and the
average precision of those of the reference's true zoning class is computed. Printed: the
mean average precision (MAP) over references, per true class and overall, for

- ``ours``: ``reference_similarity`` (type, structure and shape; see ``similarity.py``),
- ``shape``: a plain recipe, each profile resampled on normalised depth 0..1 at 32 points
  and scaled to 0..1 by its own min and max, ranked by Euclidean distance,
- ``type``: the offline ``zoning_type`` alone (same type first, ties in random order).

Data sets (``--source``):

- ``profiles``: the project's 1D generator, ``make_profiles(n_per_type=10, phase="mixed")``,
- ``independent``: a generator written here, unlike the project's: logistic steps, EPMA-like
  point spacing of 0.5-3 um, 8-bit rounding, Poisson-like noise that grows with the value,
  oscillations of decaying triangle waves, gradients over 25-75 % of the profile,
- ``scenes``: segmented synthetic thin sections (``make_thin_section``, 22 crystals,
  ``segment_crystals`` + ``rim_profiles``), crystals matched to the truth at IoU >= 0.5.

Seeds: development seeds 0-2; ``--held-out`` runs seeds 100-102, kept out of development.
The issue's goal: MAP >= 0.9.

    python benchmarks/similarity.py                      # profiles + independent, dev seeds
    python benchmarks/similarity.py --source scenes --quick
    python benchmarks/similarity.py --held-out --source all
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from napari_zonation.descriptors import describe_zoning
from napari_zonation.similarity import reference_similarity
from napari_zonation.synthetic import make_profiles

CLASSES = ("unzoned", "rim_brighter", "rim_darker", "gradient", "oscillatory", "multi_step")
DEV_SEEDS = (0, 1, 2)
HELD_OUT_SEEDS = (100, 101, 102)


# --------------------------------------------------------------------------------------------
# data


def independent_profiles(n_per_class: int, noise: float, seed: int):
    """Profiles of the six classes from a generator unlike the project's (module notes)."""
    rng = np.random.default_rng(10_000 + seed)
    rows, truth = [], []
    label = 0
    for cls in CLASSES:
        for _ in range(n_per_class):
            label += 1
            length = rng.uniform(40, 200)
            d = np.cumsum(rng.uniform(0.5, 3.0, size=400))
            d = d[d <= length] - d[0]
            core = rng.uniform(60, 200)
            amp = rng.uniform(0.06, 0.2) * core * rng.choice([-1, 1])
            x = d / length  # 0 rim .. 1 core

            def logistic(pos, width, x=x):
                return 1.0 / (1.0 + np.exp(-(x - pos) / max(width, 1e-3)))

            if cls == "unzoned":
                v = np.full_like(d, core)
            elif cls in ("rim_brighter", "rim_darker"):
                a = abs(amp) * (1 if cls == "rim_brighter" else -1)
                v = core + a * (1 - logistic(rng.uniform(0.08, 0.35), rng.uniform(0.005, 0.03)))
            elif cls == "gradient":
                hinge = rng.uniform(0.25, 0.75)
                v = core + amp * np.clip(1 - x / hinge, 0, 1)
            elif cls == "oscillatory":
                period = rng.uniform(0.06, 0.12)
                mantle = rng.uniform(0.5, 0.8)
                tri = 2 * np.abs(2 * ((x / period) % 1) - 1) - 1
                v = core + abs(amp) * 0.6 * tri * np.exp(-x / mantle) * (x < mantle)
            else:  # multi_step: 3-4 plateaus
                k = int(rng.integers(3, 5))
                pos = np.sort(rng.uniform(0.1, 0.75, size=k - 1))
                while np.min(np.diff(np.r_[0, pos, 1])) < 0.08:
                    pos = np.sort(rng.uniform(0.1, 0.75, size=k - 1))
                lv = core + np.cumsum(rng.choice([-1, 1], size=k - 1) * rng.uniform(0.4, 1, k - 1))
                lv = (lv - core) * abs(amp) + core
                v = np.full_like(d, core)
                for p, level in zip(pos[::-1], lv[::-1], strict=True):
                    v = np.where(x < p, level, v)
                v = pd.Series(v).rolling(3, center=True, min_periods=1).mean().to_numpy()
            sigma = noise * 255 * np.sqrt(np.maximum(v, 1) / 128)
            v = np.round(v + rng.normal(0, 1, v.size) * sigma)
            rows.append(pd.DataFrame({"label": label, "distance_um": d, "value": v}))
            truth.append({"label": label, "zoning_type": cls})
    return pd.concat(rows, ignore_index=True), pd.DataFrame(truth)


def scene_profiles(seed: int, noise: float):
    from napari_zonation import crystal_table, make_thin_section, rim_profiles, segment_crystals
    from napari_zonation.metrics import match_instances

    s = make_thin_section((768, 768), n_crystals=22, noise=noise, seed=seed)
    labels = segment_crystals(s.image, 1.0)
    prof = rim_profiles(s.image, labels, 1.0)
    crystals = crystal_table(s.image, labels, 1.0)
    pairs = {p: t for t, p in match_instances(s.labels, labels)["pairs"].items()}
    truth = s.truth.set_index("label")
    keep = [p for p in pairs if p in set(prof["label"])]
    t = pd.DataFrame(
        {"label": keep, "zoning_type": [truth.loc[pairs[p], "zoning_type"] for p in keep]}
    )
    return prof[prof["label"].isin(keep)], t, crystals


# --------------------------------------------------------------------------------------------
# scoring


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """AP of ranking by descending score (ties broken at random by the caller's order)."""
    order = np.argsort(-scores, kind="stable")
    rel = relevant[order]
    if not rel.any():
        return np.nan
    hits = np.cumsum(rel)
    return float(np.mean(hits[rel] / (np.flatnonzero(rel) + 1)))


def shape_matrix(prof: pd.DataFrame, labels, points: int = 32) -> np.ndarray:
    out = []
    for lab in labels:
        g = prof[prof["label"] == lab].sort_values("distance_um")
        d, v = g["distance_um"].to_numpy(float), g["value"].to_numpy(float)
        x = (d - d.min()) / max(d.max() - d.min(), 1e-9)
        y = np.interp(np.linspace(0, 1, points), x, v)
        out.append((y - y.min()) / max(np.ptp(y), 1e-9))
    return np.array(out)


def score_set(prof, truth, crystals=None, rng=None) -> pd.DataFrame:
    """AP per reference for ours, the plain shape recipe and the type alone."""
    rng = rng or np.random.default_rng(0)
    table = describe_zoning(prof, crystals=crystals)
    table = table.merge(truth[["label", "zoning_type"]].rename(columns={"zoning_type": "true"}))
    table = table[table["describe_status"] == "ok"].reset_index(drop=True)
    shapes = shape_matrix(prof, table["label"])
    true = table["true"].to_numpy()
    rows = []
    for i, lab in enumerate(table["label"]):
        others = np.arange(len(table)) != i
        rel = true[others] == true[i]
        if not rel.any():
            continue
        perm = rng.permutation(others.sum())  # random tie order
        sim = reference_similarity(table, int(lab), prof).to_numpy()[others]
        dist = np.linalg.norm(shapes[others] - shapes[i], axis=1)
        same = (table["zoning_type"].to_numpy()[others] == table["zoning_type"].iloc[i]) * 1.0
        rows.append(
            {
                "true": true[i],
                "ours": average_precision(sim[perm], rel[perm]),
                "shape": average_precision(-dist[perm], rel[perm]),
                "type": average_precision(same[perm], rel[perm]),
            }
        )
    return pd.DataFrame(rows)


def report(name: str, res: pd.DataFrame) -> None:
    per = res.groupby("true")[["ours", "shape", "type"]].mean()
    print(f"\n{name}: {len(res)} references")
    print(per.round(3).to_string())
    m = res[["ours", "shape", "type"]].mean()
    print(f"MAP  ours {m['ours']:.3f}   shape recipe {m['shape']:.3f}   type alone {m['type']:.3f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--source", default="both", choices=["profiles", "independent", "scenes", "both", "all"]
    )
    ap.add_argument("--held-out", action="store_true", help="seeds 100-102 (run once, at the end)")
    ap.add_argument("--noise", type=float, nargs="+", default=[0.01, 0.02])
    ap.add_argument("--n-per-class", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="one seed, one noise level")
    args = ap.parse_args(argv)
    seeds = HELD_OUT_SEEDS if args.held_out else DEV_SEEDS
    noises = args.noise
    if args.quick:
        seeds, noises = seeds[:1], noises[:1]
    sources = {
        "both": ["profiles", "independent"],
        "all": ["profiles", "independent", "scenes"],
    }.get(args.source, [args.source])
    print(f"seeds {list(seeds)} ({'held out' if args.held_out else 'development'})")
    for src in sources:
        for noise in noises:
            t0 = time.perf_counter()
            parts = []
            for seed in seeds:
                crystals = None
                if src == "profiles":
                    prof, truth = make_profiles(
                        args.n_per_class, noise=noise, seed=seed, phase="mixed"
                    )
                elif src == "independent":
                    prof, truth = independent_profiles(args.n_per_class, noise, seed)
                else:
                    prof, truth, crystals = scene_profiles(seed, noise)
                parts.append(score_set(prof, truth, crystals, np.random.default_rng(seed)))
            res = pd.concat(parts, ignore_index=True)
            report(f"{src}, noise {noise} ({time.perf_counter() - t0:.0f} s)", res)


if __name__ == "__main__":
    main()
