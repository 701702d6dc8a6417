"""Zoning benchmark: descriptors and clustering on segmented synthetic thin sections.

For each synthetic scene (``make_thin_section``, seeds x noise) the project's own chain runs
as a user would: ``segment_crystals`` + ``crystal_table``, ``rim_profiles``,
``describe_zoning(crystals=...)`` and ``cluster_crystals`` with automatic k (on the
descriptors and the profiles, as ``run_pipeline`` does). Predicted crystals are matched
one-to-one to true ones at IoU >= 0.5; unmatched true crystals are reported and count as
wrong in the accuracies (never as right). Printed per scene and overall:

- ``ARI``: adjusted Rand index between the clusters and the true ``zoning_type`` (matched
  crystals only; ARI cannot score a crystal that was not found),
- ``plateaus``: ``n_plateaus`` equal to the truth (over all true crystals),
- ``rim sign``: sign of ``rim_value - core_value`` right, among true ``rim_brighter`` /
  ``rim_darker`` crystals,
- ``type``: ``zoning_type`` equal to the truth (over all true crystals),

and the same ARI for a plain recipe: each profile resampled on normalised depth 0..1 at 32
points, standardised, then k-means with the TRUE number of classes; and for the same recipe
with each profile first scaled to 0..1 (its own min-max: clusters by shape, not by phase
brightness, the stronger baseline). The issue's goals:
ARI >= 0.85 with automatic k, plateau count >= 0.9, rim sign >= 0.97.

``--truth-labels`` profiles the generator's true labels instead of the segmentation (every
crystal is then matched): the gap between the two runs is what the segmentation costs, the
rest is the descriptors' and the clustering's. ``--verbose`` lists each scene's wrong types.
``--cache DIR`` keeps each prepared scene (labels, crystal table, profiles) in a pickle named
by size, crystals, noise, seed, labels and ``clip_sigmas``, so that runs that change only
the description or the clustering skip the segmentation; delete the folder when
``segment.py``, ``profiles.py`` or ``synthetic.py`` change.

    python benchmarks/zoning.py            # 6 scenes of 768 x 768, 22 crystals, noise 0.02
    python benchmarks/zoning.py --quick    # the first 2 scenes (< 1 minute)
    python benchmarks/zoning.py --truth-labels --verbose   # true labels: no segmentation error
    python benchmarks/zoning.py --profiles-1d --noise 0.01   # 1D make_profiles, 3 seeds
    python benchmarks/zoning.py --cache /tmp/zcache   # keep segmented scenes between runs
    python benchmarks/zoning.py --clip-sigmas 0 --systematic-fraction 0   # plain shell
        # medians, no systematic floor: the chain before both fixes
    python benchmarks/zoning.py --min-contrast-sigmas 0   # zoning of any span (before the
        # smallest-credible-contrast criterion)
    python benchmarks/zoning.py --shared-width auto   # one step width per crystal when the
        # BIC prefers it (not the default: see descriptors.py)
    python benchmarks/zoning.py --min-separation 0   # automatic k may split a zoning type
        # (before clusters of one type closer than the category weight were merged)
"""

from __future__ import annotations

import argparse
import pickle
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from napari_zonation import make_thin_section
from napari_zonation.cluster import cluster_crystals
from napari_zonation.descriptors import describe_zoning
from napari_zonation.metrics import match_instances
from napari_zonation.profiles import rim_profiles
from napari_zonation.segment import crystal_table, segment_crystals
from napari_zonation.synthetic import make_profiles


def plain_recipe(
    prof: pd.DataFrame, labels: np.ndarray, k: int, points: int = 32, minmax: bool = False
) -> np.ndarray:
    """Profiles on normalised depth 0..1 (``points`` samples), standardised, k-means(k);
    with ``minmax`` each profile is first scaled to 0..1."""
    rows = []
    groups = dict(tuple(prof.groupby("label")))
    grid = np.linspace(0.0, 1.0, points)
    for lab in labels:
        g = groups[lab].sort_values("distance_um")
        d = g["distance_um"].to_numpy(float)
        v = g["value"].to_numpy(float)
        t = (d - d.min()) / max(np.ptp(d), 1e-12)
        r = np.interp(grid, t, v)
        if minmax:
            r = (r - r.min()) / max(np.ptp(r), 1e-12)
        rows.append(r)
    x = np.asarray(rows)
    sd = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    k = max(1, min(k, len(x)))
    return KMeans(k, n_init=10, random_state=0).fit_predict(x)


def prepare_scene(
    shape, n_crystals, noise, seed, px=1.0, prof_opts=None, truth_labels=False
) -> dict:
    """Make one scene, segment it (or take its true labels) and measure the profiles."""
    t0 = time.perf_counter()
    s = make_thin_section(shape, n_crystals=n_crystals, noise=noise, seed=seed, pixel_size_um=px)
    labels = s.labels.astype(np.int32) if truth_labels else segment_crystals(s.image, px)
    crystals = crystal_table(s.image, labels, px)
    prof = rim_profiles(s.image, labels, px, **(prof_opts or {}))
    return {
        "seed": seed,
        "truth": s.truth,
        "true_labels": s.labels,
        "labels": labels,
        "crystals": crystals,
        "prof": prof,
        "seconds": time.perf_counter() - t0,
    }


def score_scene(scene: dict, desc_opts=None, cluster_opts=None) -> dict:
    """Describe and cluster one prepared scene; score against the generator's truth."""
    t0 = time.perf_counter()
    seed, prof, labels = scene["seed"], scene["prof"], scene["labels"]
    truth = scene["truth"].set_index("label")
    table = describe_zoning(prof, crystals=scene["crystals"], **(desc_opts or {}))
    table = cluster_crystals(table, profiles=prof, **(cluster_opts or {}))
    # {predicted label: true label}, one-to-one at IoU >= 0.5
    m = {p: t for t, p in match_instances(scene["true_labels"], labels)["pairs"].items()}
    table = table[table["label"].isin(list(m))].copy()
    table["true_label"] = table["label"].map(m)
    table["true_type"] = truth.loc[table["true_label"], "zoning_type"].to_numpy()
    table["true_plateaus"] = truth.loc[table["true_label"], "n_plateaus"].to_numpy()
    n_true = len(truth)
    ok = table["describe_status"] == "ok"
    scored = table[ok]
    ari = adjusted_rand_score(scored["true_type"], scored["cluster"]) if len(scored) else np.nan
    type_ari = (
        adjusted_rand_score(scored["true_type"], scored["zoning_type"].fillna("<none>"))
        if len(scored)
        else np.nan
    )
    plain = plain_mm = np.nan
    if len(scored):
        k = scored["true_type"].nunique()
        pl = plain_recipe(prof, scored["label"].to_numpy(), k)
        plain = adjusted_rand_score(scored["true_type"], pl)
        pl = plain_recipe(prof, scored["label"].to_numpy(), k, minmax=True)
        plain_mm = adjusted_rand_score(scored["true_type"], pl)
    plate = int((scored["n_plateaus"].astype(float) == scored["true_plateaus"]).sum())
    typ = int((scored["zoning_type"] == scored["true_type"]).sum())
    step_truth = truth[truth["zoning_type"].isin(["rim_brighter", "rim_darker"])]
    two = scored[scored["true_type"].isin(["rim_brighter", "rim_darker"])]
    sign_ok = int(
        (
            np.sign(two["rim_value"] - two["core_value"])
            == np.where(two["true_type"] == "rim_brighter", 1, -1)
        ).sum()
    )
    wrong = scored[scored["zoning_type"] != scored["true_type"]]
    return {
        "seed": seed,
        "n_true": n_true,
        "n_matched": len(table),
        "n_unmatched": n_true - len(table),
        "n_failed": int((~ok).sum()),
        "ari": ari,
        "type_ari": type_ari,
        "plain_ari": plain,
        "plain_minmax_ari": plain_mm,
        "plateaus": (plate, n_true),
        "rim_sign": (sign_ok, len(step_truth)),
        "type": (typ, n_true),
        "confusions": list(zip(wrong["true_type"], wrong["zoning_type"], strict=True)),
        "n_clusters": int(scored["cluster"].max() + 1) if len(scored) else 0,
        "seconds": scene["seconds"] + time.perf_counter() - t0,
        "rows": scored,
    }


def run_scene(
    shape, n_crystals, noise, seed, px=1.0, prof_opts=None, desc_opts=None, truth_labels=False
) -> dict:
    """Run the chain on one scene; return per-crystal results and scores."""
    scene = prepare_scene(shape, n_crystals, noise, seed, px, prof_opts, truth_labels)
    return score_scene(scene, desc_opts)


def run_profiles_1d(
    noise: float, seeds, n_per_type: int = 20, desc_opts=None, cluster_opts=None
) -> None:
    """The descriptors and clustering on 1D ``make_profiles`` (no image, no segmentation)."""
    print(
        f"1D make_profiles: {n_per_type} per type x 6 types, phase mixed, noise {noise}, "
        f"seeds {list(seeds)}"
    )
    print(f"{'seed':>4} {'n':>4} {'k':>2} {'ARI':>6} {'typeARI':>7} {'type':>7} {'plateaus':>8}")
    rows, aris = [], []
    for seed in seeds:
        prof, truth = make_profiles(n_per_type, noise=noise, seed=seed, phase="mixed")
        tab = describe_zoning(prof, crystals=truth[["label", "phase"]], **(desc_opts or {}))
        tab = cluster_crystals(tab, profiles=prof, **(cluster_opts or {}))
        m = tab.merge(truth.drop(columns="phase"), on="label", suffixes=("", "_true"))
        ari = adjusted_rand_score(m["zoning_type_true"], m["cluster"])
        aris.append(ari)
        print(
            f"{seed:>4} {len(m):>4} {m['cluster'].max() + 1:>2} {ari:6.3f} "
            f"{adjusted_rand_score(m['zoning_type_true'], m['zoning_type'].fillna('-')):7.3f} "
            f"{(m['zoning_type'] == m['zoning_type_true']).mean():7.3f} "
            f"{(m['n_plateaus'].astype(float) == m['n_plateaus_true']).mean():8.3f}"
        )
        rows.append(m)
    m = pd.concat(rows)
    print(
        f"overall: ARI (auto k) mean {np.mean(aris):.3f}, zoning_type "
        f"{(m['zoning_type'] == m['zoning_type_true']).mean():.3f}, n_plateaus "
        f"{(m['n_plateaus'].astype(float) == m['n_plateaus_true']).mean():.3f}"
    )
    conf = pd.crosstab(m["zoning_type_true"], m["zoning_type"].fillna("<none>"))
    print("\n".join("    " + line for line in conf.to_string().splitlines()))


def _prepared(args, shape, n_cry, seed, prof_opts) -> dict:
    """prepare_scene, through the ``--cache`` folder when one is given."""
    path = None
    if args.cache:
        tag = "truth" if args.truth_labels else "seg"
        clip = "lib" if args.clip_sigmas is None else f"{args.clip_sigmas:g}"
        name = f"scene_{shape[0]}x{shape[1]}_{n_cry}_{args.noise:g}_{seed}_{tag}_clip{clip}.pkl"
        path = Path(args.cache) / name
        if path.exists():
            with open(path, "rb") as fh:
                return pickle.load(fh)
    scene = prepare_scene(
        shape, n_cry, args.noise, seed, prof_opts=prof_opts, truth_labels=args.truth_labels
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            pickle.dump(scene, fh)
    return scene


def _frac(pair) -> str:
    a, b = pair
    return f"{a / b:5.3f} ({a}/{b})" if b else "  n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the first 2 scenes (< 1 minute)")
    ap.add_argument("--noise", type=float, default=0.02, help="detector noise, full scale")
    ap.add_argument("--seeds", type=int, nargs="*", default=None)
    ap.add_argument("--verbose", action="store_true", help="print the confusions")
    ap.add_argument(
        "--clip-sigmas",
        type=float,
        default=None,
        help="rim_profiles(clip_sigmas=...); 0 = plain shell medians (default: the library's)",
    )
    ap.add_argument(
        "--systematic-fraction",
        type=float,
        default=None,
        help="describe_zoning(systematic_fraction=...); 0 = off (default: the library's)",
    )
    ap.add_argument(
        "--min-contrast-sigmas",
        type=float,
        default=None,
        help="describe_zoning(min_contrast_sigmas=...); 0 = off (default: the library's)",
    )
    ap.add_argument(
        "--shared-width",
        choices=("false", "true", "auto"),
        default=None,
        help="describe_zoning(shared_width=...): one step width per step (false), per "
        "crystal (true), or chosen by the BIC (auto) (default: the library's)",
    )
    ap.add_argument(
        "--min-separation",
        type=float,
        default=None,
        help="cluster_crystals(min_separation=...); 0 = clusters of one zoning type are not "
        "merged (default: the library's)",
    )
    ap.add_argument(
        "--truth-labels",
        action="store_true",
        help="profile the generator's TRUE labels instead of the segmentation (separates "
        "the descriptor / clustering errors from the segmentation's)",
    )
    ap.add_argument(
        "--cache",
        default=None,
        help="folder where prepared scenes (labels + profiles) are kept and reused",
    )
    ap.add_argument(
        "--profiles-1d",
        action="store_true",
        help="score 1D make_profiles (20 per type, phase mixed) instead of thin sections "
        "(default seeds 0 1 2)",
    )
    args = ap.parse_args()
    desc_opts = {
        k: v
        for k, v in (
            ("systematic_fraction", args.systematic_fraction),
            ("min_contrast_sigmas", args.min_contrast_sigmas),
        )
        if v is not None
    }
    if args.shared_width is not None:
        desc_opts["shared_width"] = {"false": False, "true": True}.get(
            args.shared_width, args.shared_width
        )
    cluster_opts = {}
    if args.min_separation is not None:
        cluster_opts["min_separation"] = args.min_separation
    if args.profiles_1d:
        run_profiles_1d(
            args.noise, args.seeds or [0, 1, 2], desc_opts=desc_opts, cluster_opts=cluster_opts
        )
        return
    shape, n_cry = (768, 768), 22
    seeds = args.seeds or ([0, 1] if args.quick else [0, 1, 2, 3, 4, 5])
    src = "TRUE labels" if args.truth_labels else "own segmentation"
    print(
        f"scenes {shape[0]}x{shape[1]}, {n_cry} crystals, noise {args.noise}, seeds {seeds}, {src}"
    )
    head = (
        f"{'seed':>4} {'true':>4} {'match':>5} {'unmat':>5} {'fail':>4} {'k':>2} "
        f"{'ARI':>6} {'plainARI':>8}  {'plateaus':>15} {'rim sign':>15} {'type':>15} {'s':>5}"
    )
    print(head)
    results = []
    for seed in seeds:
        prof_opts = {} if args.clip_sigmas is None else {"clip_sigmas": args.clip_sigmas}
        scene = _prepared(args, shape, n_cry, seed, prof_opts)
        r = score_scene(scene, desc_opts, cluster_opts)
        results.append(r)
        print(
            f"{r['seed']:>4} {r['n_true']:>4} {r['n_matched']:>5} {r['n_unmatched']:>5} "
            f"{r['n_failed']:>4} {r['n_clusters']:>2} {r['ari']:6.3f} {r['plain_ari']:8.3f}  "
            f"{_frac(r['plateaus']):>15} {_frac(r['rim_sign']):>15} {_frac(r['type']):>15} "
            f"{r['seconds']:5.1f}"
        )
        if args.verbose and r["confusions"]:
            print("      true -> predicted:", r["confusions"])

    def tot(key):
        return (sum(r[key][0] for r in results), sum(r[key][1] for r in results))

    print("overall")
    print(
        f"  matched crystals  {sum(r['n_matched'] for r in results)} of "
        f"{sum(r['n_true'] for r in results)} (unmatched "
        f"{sum(r['n_unmatched'] for r in results)}, describe failures "
        f"{sum(r['n_failed'] for r in results)})"
    )
    print(f"  ARI (auto k)      mean over scenes {np.nanmean([r['ari'] for r in results]):.3f}")
    rows = pd.concat([r["rows"].assign(scene=r["seed"]) for r in results])
    print(
        f"  ARI of zoning_type itself, mean over scenes "
        f"{np.nanmean([r['type_ari'] for r in results]):.3f} (what clusters inherit)"
    )
    print(
        f"  plain recipe ARI  mean over scenes "
        f"{np.nanmean([r['plain_ari'] for r in results]):.3f} (k-means, true k); with "
        f"each profile scaled to 0..1 {np.nanmean([r['plain_minmax_ari'] for r in results]):.3f}"
    )
    print(f"  plateau count     {_frac(tot('plateaus'))}   goal >= 0.9")
    print(f"  rim sign          {_frac(tot('rim_sign'))}   goal >= 0.97")
    print(f"  zoning_type       {_frac(tot('type'))}")
    conf = pd.crosstab(rows["true_type"], rows["zoning_type"].fillna("<none>"))
    print("  confusion (rows: truth, columns: predicted)")
    print("\n".join("    " + line for line in conf.to_string().splitlines()))


if __name__ == "__main__":
    main()
