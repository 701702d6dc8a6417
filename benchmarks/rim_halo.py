"""Rim profiles and edge halos: does the first point of every profile read the crystal's rim?

BSE images carry a bright halo one to three pixels wide at a polished grain's edge; a profile
that starts on it shows a false "reverse rim". ``rim_profiles`` and ``line_profiles`` drop
such an outer band (``halo_um``, ``halo_contrast``) and say how much they left out
(``rim_skipped_um``). This script prints, in one run:

- synthetic scenes with the generator's edge halos (``edge_halo=0.35``) and the same scenes
  without them, at 0.5, 1 and 2 um/px and 1 and 3 % noise, on the true labels and on
  ``segment_crystals``' labels: the median and 90th percentile of |first point - true grey
  there| over crystals clear of the frame and of other crystals, with the check and without
  it (``halo_um=0``), and the share of profiles that dropped more than the rim pixel;
- scenes whose crystals carry a real rim zone one to two pixels wide (``thin_rims=1``),
  with and without halos: the share of those profiles that dropped more than the rim pixel
  (without halos it must be 0: a real zone is not a halo);
- the real plagioclase (Lubbers et al. 2022, MIT): the first points of the shell profiles of
  its crystals (on ``segment_crystals``' labels and on the author's mask) and of a line drawn
  from its edge along the LA-ICP-MS traverse, with and without the check, and the measured
  rim band's An against the line's first point calibrated to An on the traverse;
- the cost of the check: ``rim_profiles`` with it and without it (``halo_um=0``) on the
  tiled scene of ``benchmarks/profiles.py``, interleaved rounds, medians and the median of
  the per-round ratios.

    python benchmarks/rim_halo.py            # 2 seeds per class, 2048^2 timing
    python benchmarks/rim_halo.py --quick    # 1 seed, 1 um/px only, 2048^2 timing
    python benchmarks/rim_halo.py --side 16  # timing on the 8192^2 scene (slow to build)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from profiles import tiled_scene
from scipy import ndimage as ndi

import napari_zonation as nz
from napari_zonation._napari_io import DATA_DIR, PLAGIOCLASE_PIXEL_SIZE_UM, PLAGIOCLASE_TIFF
from napari_zonation.metrics import match_instances
from napari_zonation.profiles import calibrate


def first_point_errors(sample, labels, px, **options) -> tuple[np.ndarray, np.ndarray]:
    """|first point - true grey at its distance| and ``rim_skipped_um`` per clear crystal."""
    if labels is None:
        labels = nz.segment_crystals(sample.image, px)
        to_true = {p: t for t, p in match_instances(sample.labels, labels)["pairs"].items()}
    else:
        to_true = {int(i): int(i) for i in sample.truth["label"]}
    prof = nz.rim_profiles(sample.image, labels, px, **options)
    truth = sample.truth.set_index("label")
    err, skipped = [], []
    for lab, g in prof.groupby("label"):
        t = to_true.get(int(lab))
        if t is None or truth.loc[t, "touching"] or truth.loc[t, "touches_border"]:
            continue
        first = g.iloc[0]
        err.append(abs(first.value - sample.true_profile(t, [first.distance_um])[0]))
        skipped.append(first.rim_skipped_um)
    return np.array(err), np.array(skipped)


def synthetic(seeds, pixel_sizes, noises) -> pd.DataFrame:
    rows = []
    for px in pixel_sizes:
        n = int(20 * px**2) + 3
        for noise in noises:
            for scene, opts in (("halo", {"edge_halo": 0.35}), ("plain", {}),
                                ("thin rims", {"thin_rims": 1.0}),
                                ("thin rims + halo", {"thin_rims": 1.0, "edge_halo": 0.35})):
                acc = {}
                for seed in seeds:
                    s = nz.make_thin_section((768, 768), n_crystals=n, pixel_size_um=px,
                                             noise=noise, seed=seed, **opts)
                    for which in ("true", "segmented"):
                        labels = s.labels if which == "true" else None
                        for check, kw in (("checked", {}), ("unchecked", {"halo_um": 0})):
                            e, sk = first_point_errors(s, labels, px, **kw)
                            a = acc.setdefault((which, check), [[], []])
                            a[0].append(e)
                            a[1].append(sk)
                for (which, check), (e, sk) in acc.items():
                    e, sk = np.concatenate(e), np.concatenate(sk)
                    rows.append({
                        "scene": scene, "px_um": px, "noise": noise, "labels": which,
                        "profile": check, "n": e.size,
                        "median_err_dn": np.median(e) if e.size else np.nan,
                        "p90_err_dn": np.percentile(e, 90) if e.size else np.nan,
                        "share_skipped_more": float(np.mean(sk > px * 1.001)) if sk.size
                        else np.nan,
                    })
                print(f"  {scene}, {px} um/px, noise {noise}: done", flush=True)
    return pd.DataFrame(rows)


def real_plagioclase() -> None:
    img = nz.read_sem_tiff(PLAGIOCLASE_TIFF)[0]
    px = PLAGIOCLASE_PIXEL_SIZE_UM
    author = ndi.binary_fill_holes(img > 1)
    parts, _ = ndi.label(author)
    area = np.bincount(parts.ravel())
    area[0] = 0
    big = np.where(parts == np.argmax(area), 1, 0)
    for name, lab in (("author's mask", big), ("segment_crystals", nz.segment_crystals(img, px))):
        main = int(np.bincount(lab.ravel())[1:].argmax() + 1)
        for check, kw in (("checked", {}), ("unchecked", {"halo_um": 0})):
            prof = nz.rim_profiles(img, lab, px, **kw)
            g = prof[prof["label"] == main]
            at = g.distance_um.head(4).round(2).tolist()
            print(f"real plagioclase, shells on {name}, {check}: first points "
                  f"{g.value.head(4).round(1).tolist()} at {at} um; "
                  f"rim_skipped_um {g.rim_skipped_um.iloc[0]:.2f}")
    an = nz.read_profiles(DATA_DIR / "plag_diffusion_test_data.xlsx", distance=None,
                          spacing_um=5.0, value="An", label="grain")
    along = nz.line_profiles(img, [np.array([[1110.0, 450.0], [1390.0, 450.0]])], px,
                             width_um=10.0)
    cal = calibrate(np.interp(an["distance_um"], along["distance_um"], along["value"]),
                    an["value"], "An")
    sigma = float(np.sqrt(np.mean(cal.residuals**2)))
    rim_an = float(an["value"].to_numpy()[-6:].mean())
    edge = int(np.flatnonzero(img[:, 450] > 1).max())
    for check, kw in (("checked", {}), ("unchecked", {"halo_um": 0})):
        p = nz.line_profiles(img, [np.array([[edge, 450.0], [1110.0, 450.0]])], px,
                             width_um=10.0, **kw)
        first = p.iloc[0]
        print(f"real plagioclase, line from the edge (row {edge}) along the traverse, {check}: "
              f"first point {first.value:.1f} grey at {first.distance_um:.1f} um = An "
              f"{cal(first.value):.1f}; measured rim band An {rim_an:.1f} +- {sigma:.1f} "
              f"(calibration RMS); off by {abs(cal(first.value) - rim_an) / sigma:.1f} sigma")


def timing(side: int, rounds: int) -> None:
    image, labels = tiled_scene(side)[:2]
    t = {"checked": [], "unchecked": []}
    for _ in range(rounds):
        for name, kw in (("checked", {}), ("unchecked", {"halo_um": 0})):
            t0 = time.perf_counter()
            nz.rim_profiles(image, labels, 1.0, **kw)
            t[name].append(time.perf_counter() - t0)
    ratio = np.array(t["checked"]) / np.array(t["unchecked"])
    print(f"rim_profiles on {image.shape[0]} x {image.shape[1]} ({int(labels.max())} crystals), "
          f"{rounds} interleaved rounds: with the check {np.median(t['checked']):.2f} s, "
          f"without {np.median(t['unchecked']):.2f} s; per-round ratio median "
          f"{np.median(ratio):.3f} (min {ratio.min():.3f}, max {ratio.max():.3f})")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 um/px only")
    parser.add_argument("--side", type=int, default=4, help="timing scene: side x 512 px")
    parser.add_argument("--rounds", type=int, default=7, help="timing rounds")
    args = parser.parse_args(argv)
    seeds = (0,) if args.quick else (0, 1)
    pixel_sizes = (1.0,) if args.quick else (0.5, 1.0, 2.0)
    noises = (0.01,) if args.quick else (0.01, 0.03)
    df = synthetic(seeds, pixel_sizes, noises)
    pd.set_option("display.width", 200)
    print(df.round(2).to_string(index=False))
    real_plagioclase()
    timing(args.side, args.rounds)


if __name__ == "__main__":
    main()
