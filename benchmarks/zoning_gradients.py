"""Gradient against wide step: the evidence each profile gives the ramp over the steps.

For the scenes of ``benchmarks/zoning.py`` (true labels by default, or the own segmentation)
and for 1D random profiles, every crystal whose true type is ``gradient`` or a one-step type
(``rim_brighter`` / ``rim_darker``, the wide erf steps a rounded slope is mistaken for): the
best eligible ramp's and the best eligible step model's scores (criterion plus family margin,
lower is better), their difference (``gap`` = step - ramp: > 0 types the profile a gradient)
and the type ``describe_zoning`` gives. Scenes are read as the benchmark reads them: each
crystal's profile in the geometry its image shows (``profiles_in_own_geometry``).

    python benchmarks/zoning_gradients.py --seeds 0 1 2 --cache /tmp/zcache
    python benchmarks/zoning_gradients.py --oned 100 --noise 0.08
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from zoning import TRAIN_FAMILIES, _scene  # noqa: E402

from napari_zonation import describe_zoning  # noqa: E402
from napari_zonation.descriptors import candidate_fits  # noqa: E402
from napari_zonation.metrics import match_instances  # noqa: E402
from napari_zonation.synthetic_profiles import make_random_profiles  # noqa: E402
from napari_zonation.zoning_models import MARGINS as MARGINS_FOR_GAPS  # noqa: E402

KEEP = ("gradient", "rim_brighter", "rim_darker", "multi_step")


def gaps(prof: pd.DataFrame, truth: pd.DataFrame, crystals=None) -> pd.DataFrame:
    """One row per profile of ``truth`` (``label``, ``zoning_type``, ``family``): the best
    ramp and step scores and the described type."""
    truth = truth[truth["zoning_type"].isin(KEEP)]
    prof = prof[prof["label"].isin(truth["label"])]
    if prof.empty:
        return pd.DataFrame()
    c = candidate_fits(prof)
    c = c[c["eligible"]].copy()
    nstep = pd.to_numeric(c["name"].str.replace("steps", ""), errors="coerce").fillna(1) - 1
    c["score"] = c["criterion"] + c["family"].map(MARGINS_FOR_GAPS).fillna(0.0)
    c.loc[c["family"] == "steps", "score"] += MARGINS_FOR_GAPS["step"] * nstep
    ramp = c[c["family"] == "ramp"].groupby("label")["score"].min()
    step = c[c["family"] == "steps"].groupby("label")["score"].min()
    desc = describe_zoning(prof, crystals=crystals).set_index("label")
    out = truth.set_index("label")[["zoning_type", "family"]].rename(
        columns={"zoning_type": "true_type"}
    )
    out["ramp"] = ramp.reindex(out.index)
    out["step"] = step.reindex(out.index)
    out["gap"] = out["step"] - out["ramp"]
    out["typed"] = desc["zoning_type"].reindex(out.index)
    return out.reset_index()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=None)
    ap.add_argument("--labels", choices=("truth", "own"), default="truth")
    ap.add_argument("--oned", type=int, nargs="*", default=None, help="1D seeds instead")
    ap.add_argument("--noise", type=float, nargs=2, default=(0.005, 0.05))
    ap.add_argument("--cache", default=None)
    ap.add_argument("--out", default=None, help="write the table (csv)")
    args = ap.parse_args()
    frames = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if args.oned:
            fams = ("gradient_hinge", "gradient_full", "step_erf", "step_rim_held")
            for seed in args.oned:
                prof, truth = make_random_profiles(
                    30, families=fams, seed=seed, noise=tuple(args.noise)
                )
                frames.append(gaps(prof, truth).assign(seed=seed))
        else:
            for seed in args.seeds or list(range(10)):
                sc = _scene(seed, TRAIN_FAMILIES, args.labels, args.cache)
                truth = sc["truth"]
                if args.labels == "own":
                    pairs = match_instances(sc["true_labels"], sc["labels"])["pairs"]
                    truth = truth[truth["label"].isin(list(pairs))].copy()
                    truth["label"] = truth["label"].map(pairs)
                frames.append(gaps(sc["described"], truth, sc["crystals"]).assign(seed=seed))
    tab = pd.concat(frames, ignore_index=True)
    pd.set_option("display.width", 200)
    tab["ok"] = tab["typed"] == tab["true_type"]
    print(tab.groupby("true_type")["ok"].agg(["mean", "size"]).round(3).to_string())
    print("gap (step score - ramp score) quantiles per true type:")
    q = tab.groupby("true_type")["gap"].quantile([0.05, 0.1, 0.25, 0.5]).unstack()
    print(q.round(1).to_string())
    bad = tab[~tab["ok"] & tab["true_type"].isin(("gradient", "rim_brighter", "rim_darker"))]
    print(bad.round(1).to_string(index=False))
    if args.out:
        tab.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
