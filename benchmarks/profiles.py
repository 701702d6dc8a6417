"""Core-to-rim shell profiles: ``rim_profiles(method="shells")`` against a plain recipe.

Speed: an 8192 x 8192 labels scene with about 10,000 crystals, tiled from distinct small
synthetic thin sections (``make_thin_section``, 512 x 512, ~40 crystals of 40-90 um each), so
every crystal keeps its generator's true profile. In the same process it times

- ``rim_profiles(image, labels, 1.0, method="shells")`` (grain contacts excluded, the
  default) and the recipe doing the same: a loop over ``skimage.measure.regionprops`` with
  one ``scipy.ndimage.distance_transform_edt`` per crystal's bounding box, a second one for
  a crystal touching another (its distance to the background), and one ``np.median`` per
  shell;
- ``rim_profiles(..., contacts="rim", statistic="median")`` and the recipe without the
  second transform (both take shell medians: their values are compared shell by shell),
- ``rim_profiles`` of the same image as float32 (element maps often are; the recipe's
  time does not depend on the dtype): whole numbers (counts, an integer image stored as
  float) take the integer statistics, so it is timed again shifted by half a grey level
  (the float statistics),
- ``rim_profiles(..., statistic="median")``: the clipped median per shell instead of the
  default clipped mean,

in interleaved rounds, and prints wall times (medians of the rounds), their ratios and the
peak resident memory of each call (Linux ``VmHWM`` reset before the call). Each call in the
rounds starts on memory the previous, different call freed, which the kernel hands out again
page by page (system time, 0.6-1.1 s of a 2.5-3 s call on the 2-core test machine); our two
default calls are then timed again right after themselves, with their system time.

Accuracy (for the default clipped mean, with and without grain contacts, and for the clipped
median): on default-size synthetic thin sections (768 x 768, 20 crystals of 90-260 um) at
detector noise 1-5 % of full scale, with and without the generator's beam-current drift
(``drift=0.03`` and ``0``; same seed, so the same crystals and noise), per crystal:

- RMSE of the shell profile against the same shells of ``sample.clean`` (noise-free,
  drift-free, blurred), and the same RMSE after removing the crystal's mean offset (drift is
  smooth, nearly constant across one crystal);
- RMSE against ``sample.true_profile`` (noise-free, unblurred), evaluated at the generator's
  distance convention (its distances run to the centre of the first outside pixel: ours + 0.5
  pixel);
- for ``rim_brighter`` / ``rim_darker`` crystals, the step position against the true one, two
  ways: the first half-height crossing of the shell profile (mid-level of the true plateaus;
  on a wide, low step it moves with the noise of a single shell), and the position of a
  least-squares relaxed step (erf, the model of the generator and of diffusion chronometry)
  fitted to the profile with its sigmas, started from that crossing, with the fit's own
  standard error of the position (a low step on a noisy image cannot be placed to one pixel:
  the error is then compared with that standard error).

Medians over crystals (not cut by the image edge) are given relative to the noise level
(``noise_dn``). The issue's goals: 10,000 crystals on 8192^2 in under 10 s, >= 5 x the loop;
median RMSE below half the noise; step positions within one pixel.

    python benchmarks/profiles.py            # full (5-10 minutes on 2 cores, ~6 GB RAM)
    python benchmarks/profiles.py --quick    # 2048^2, fewer accuracy scenes (< 1 minute)
    python benchmarks/profiles.py --speed-only --repeat 3   # the 8192^2 timing only
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings

import numpy as np
import pandas as pd
from _memory import reset_peak_rss, rss_mb
from scipy import ndimage as ndi
from scipy.optimize import curve_fit
from scipy.special import erf
from skimage.measure import regionprops

from napari_zonation.profiles import rim_profiles
from napari_zonation.synthetic import make_thin_section

TILE = 512


# ------------------------------------------------------------------------------------------
# memory


def measure(fn, repeats: int):
    """Median wall time of ``repeats`` calls, the last result, and the peak RSS of a call."""
    times, out, peak = [], None, float("nan")
    for _ in range(repeats):
        out = None
        base = rss_mb()
        reset = reset_peak_rss()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        if reset:
            peak = max(np.nan_to_num(peak, nan=0.0), rss_mb("VmHWM") - base)
    return float(np.median(times)), times, out, peak


# ------------------------------------------------------------------------------------------
# the large scene


def tiled_scene(n_side: int, n_distinct: int = 8, seed: int = 0):
    """An (n_side * 512)^2 scene tiled from ``n_distinct`` small synthetic thin sections.

    Returns image (uint8), labels (int32, unique ids across tiles) and, per tile, the sample
    and its label offset (so every crystal's true profile is known).
    """
    tiles = [
        make_thin_section(
            (TILE, TILE),
            n_crystals=40,
            size_um=(40.0, 90.0),
            n_vesicles=2,
            noise=0.02,
            seed=seed + k,
        )
        for k in range(n_distinct)
    ]
    size = n_side * TILE
    image = np.empty((size, size), np.uint8)
    labels = np.empty((size, size), np.int32)
    placed, offset = [], 0
    for i in range(n_side):
        for j in range(n_side):
            s = tiles[(i * n_side + j + i) % n_distinct]
            sl = np.s_[i * TILE : (i + 1) * TILE, j * TILE : (j + 1) * TILE]
            image[sl] = s.image
            labels[sl] = np.where(s.labels > 0, s.labels + offset, 0)
            placed.append((s, offset))
            offset += int(s.labels.max())
    return image, labels, placed


# ------------------------------------------------------------------------------------------
# the plain recipe


def recipe(
    image,
    labels,
    pixel_size_um=1.0,
    shell_um=None,
    skip_rim_um=None,
    min_pixels=5,
    contacts="rim",
):
    """regionprops loop, one EDT per crystal's bounding box, one median per shell.

    ``contacts="exclude"``: for a crystal touching another, a second EDT of its box (distance
    to the background) leaves out its pixels nearer the other crystal than a free face, as
    ``rim_profiles(contacts="exclude")`` does.
    """
    px = pixel_size_um
    shell = px if shell_um is None else shell_um
    skip = px if skip_rim_um is None else skip_rim_um
    H, W = labels.shape
    rows = []
    for rp in regionprops(labels):
        r0, c0, r1, c1 = rp.bbox
        mask = rp.image
        own = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        keep_px = mask
        if contacts == "exclude":
            a0, b0 = max(r0 - 1, 0), max(c0 - 1, 0)
            win = labels[a0 : min(r1 + 1, H), b0 : min(c1 + 1, W)]
            if ((win != 0) & (win != rp.label)).any():
                free = ndi.distance_transform_edt(win != 0)
                free = free[r0 - a0 : r0 - a0 + mask.shape[0], c0 - b0 : c0 - b0 + mask.shape[1]]
                if (mask & (free <= own) & (own == 1)).any():  # it has a free face
                    keep_px = mask & (free <= own)
        d = (own - 0.5)[keep_px] * px
        v = image[r0:r1, c0:c1][keep_px].astype(float)
        keep = d >= skip
        d, v = d[keep], v[keep]
        b = np.floor((d - skip) / shell).astype(int)
        for k in np.unique(b):
            m = b == k
            n = int(m.sum())
            if n >= min_pixels:
                rows.append((rp.label, float(d[m].mean()), float(np.median(v[m])), n))
    return pd.DataFrame(rows, columns=["label", "distance_um", "value", "n_pixels"])


# ------------------------------------------------------------------------------------------
# accuracy


def _crossing(d, v, mid, rising):
    """First distance where the profile crosses ``mid`` (linear between shells)."""
    above = v > mid if rising else v < mid
    k = np.flatnonzero(~above[:-1] & above[1:])
    if k.size == 0:
        return np.nan
    k = k[0]
    return float(d[k] + (mid - v[k]) * (d[k + 1] - d[k]) / (v[k + 1] - v[k]))


def _erf_step(d, a, b, p, w):
    return a + (b - a) * 0.5 * (1.0 + erf((d - p) / w))


def _fit_step(d, v, sigma, start):
    """Position of a relaxed step by least squares (outer level a, inner b, position p,
    width w), started from the half-height crossing (or the profile's middle), and its
    standard error (from the covariance, the sigmas taken as absolute)."""
    p0 = start if np.isfinite(start) else float(np.median(d))
    n = max(2, len(v) // 5)
    guess = (float(np.median(v[:n])), float(np.median(v[-n:])), p0, 4.0)
    try:
        popt, pcov = curve_fit(
            _erf_step,
            d,
            v,
            p0=guess,
            sigma=np.maximum(sigma, 1e-6),
            bounds=([-np.inf, -np.inf, d.min(), 0.1], [np.inf, np.inf, d.max(), d.max()]),
            absolute_sigma=True,
            maxfev=5000,
        )
    except (RuntimeError, ValueError):
        return np.nan, np.nan
    return float(popt[2]), float(np.sqrt(pcov[2, 2]))


def accuracy(
    noise: float, drift: float, seed: int, contacts: str = "rim", statistic: str = "mean"
) -> pd.DataFrame:
    s = make_thin_section(noise=noise, drift=drift, seed=seed)
    px = s.pixel_size_um
    kw = dict(method="shells", contacts=contacts, statistic=statistic)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        prof = rim_profiles(s.image, s.labels, px, **kw)
        ref = rim_profiles(s.clean, s.labels, px, **kw)
    prof.attrs, ref.attrs = {}, {}
    key = ["label", "distance_um"]
    both = prof.merge(ref[key + ["value"]], on=key, suffixes=("", "_clean"))
    rows = []
    for row in s.truth.itertuples():
        p = both[both["label"] == row.label].sort_values("distance_um")
        if len(p) < 3:
            continue
        d = p["distance_um"].to_numpy()
        v = p["value"].to_numpy()
        err_clean = v - p["value_clean"].to_numpy()
        err_true = v - s.true_profile(row.label, d + 0.5 * px)
        out = {
            "noise": noise,
            "drift": drift,
            "seed": seed,
            "label": row.label,
            "zoning_type": row.zoning_type,
            "border": bool(row.touches_border),
            "touching": bool(row.touching),
            "noise_dn": s.noise_dn,
            "rmse_clean": float(np.sqrt(np.mean(err_clean**2))),
            "rmse_clean_offset": float(np.std(err_clean)),
            "rmse_true": float(np.sqrt(np.mean(err_true**2))),
            "mean_offset": float(np.mean(err_clean)),
            "contacts": contacts,
            "statistic": statistic,
            "step_err_px": np.nan,
            "step_clean_err_px": np.nan,
            "step_fit_err_px": np.nan,
            "step_fit_se_px": np.nan,
        }
        if row.zoning_type in ("rim_brighter", "rim_darker"):
            a, b = row.plateau_values  # rim, core (DN)
            p_true = row.step_positions_um[0]
            # the generator's distance runs to the next pixel centre: ours + 0.5 px
            found = _crossing(d + 0.5 * px, v, 0.5 * (a + b), rising=b > a)
            out["step_err_px"] = (found - p_true) / px
            # the same on the noise-free image: the geometry of the shells alone
            clean = _crossing(d + 0.5 * px, p["value_clean"].to_numpy(), 0.5 * (a + b), b > a)
            out["step_clean_err_px"] = (clean - p_true) / px
            sig = p["sigma"].to_numpy()
            fitted, fitted_se = _fit_step(d + 0.5 * px, v, sig, found)
            out["step_fit_err_px"] = (fitted - p_true) / px
            out["step_fit_se_px"] = fitted_se / px
        rows.append(out)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------


def main(quick: bool = False, repeats: int | None = None, speed_only: bool = False) -> None:
    n_side = 4 if quick else 16
    # as many rounds of the recipes as of ours (medians of equal samples on a shared machine)
    rounds = repeats or 3
    t0 = time.perf_counter()
    image, labels, placed = tiled_scene(n_side)
    n_crystals = int(np.count_nonzero(np.bincount(labels.ravel())[1:]))
    print(
        f"scene: {image.shape[0]} x {image.shape[1]} px, {n_crystals} crystals "
        f"({100 * np.mean(labels > 0):.0f} % of the area), built in "
        f"{time.perf_counter() - t0:.1f} s; process RSS {rss_mb():.0f} MB"
    )

    def ours(contacts, img=None, statistic="mean"):
        def run():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return rim_profiles(
                    image if img is None else img, labels, 1.0, method="shells",
                    contacts=contacts, statistic=statistic,
                )

        return run

    # interleaved rounds (the machine is shared: a load change hits every method alike)
    image_f32 = image.astype(np.float32)  # element maps often come as float32
    calls = {
        "rim_profiles(shells)": ours("exclude"),
        "recipe, contacts excluded too": lambda: recipe(image, labels, 1.0, contacts="exclude"),
        # like for like with the recipe's medians (compared shell by shell below)
        'rim_profiles(shells, contacts="rim", statistic="median")': ours("rim", statistic="median"),
        "recipe (regionprops + bbox EDT + per-shell median loop)": lambda: recipe(
            image, labels, 1.0
        ),
        "rim_profiles(shells) of the image as float32": ours("exclude", image_f32),
        "rim_profiles(shells) of the image as float32 + 0.5 (not whole numbers)": ours(
            "exclude", image_f32 + np.float32(0.5)
        ),
        'rim_profiles(shells, statistic="median")': ours("exclude", statistic="median"),
    }
    times = {k: [] for k in calls}
    sys_times = {k: [] for k in calls}
    peaks = dict.fromkeys(calls, 0.0)
    outs = {}
    for _round in range(rounds):
        for name, fn in calls.items():
            cpu0 = resource.getrusage(resource.RUSAGE_SELF).ru_stime
            t, _, outs[name], peak = measure(fn, 1)
            sys_times[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_stime - cpu0)
            times[name].append(t)
            peaks[name] = max(peaks[name], np.nan_to_num(peak))
    for name, ts in times.items():
        out = outs[name]
        print(
            f"{name}: {np.median(ts):.2f} s (median of {len(ts)}: "
            f"{', '.join(f'{t:.2f}' for t in ts)}), peak RSS +{peaks[name]:.0f} MB, "
            f"{out['label'].nunique()} crystals, {len(out)} shells"
        )
    names = list(calls)
    for ours_name, rec_name in (
        (names[0], names[1]), (names[2], names[3]), (names[0], names[3]), (names[0], names[6])
    ):
        t, t_rec = np.array(times[ours_name]), np.array(times[rec_name])
        paired = t_rec / t[: t_rec.size]
        print(
            f"speed ratio {rec_name} / {ours_name}: {np.median(t_rec) / np.median(t):.1f} x "
            f"(medians; per round {', '.join(f'{x:.1f}' for x in paired)})"
        )
    prof, ref = outs[names[2]], outs[names[3]]
    # the two agree where the crystal does not touch another (grain boundaries differ)
    prof.attrs = {}
    for t in (prof, ref):
        t["d_key"] = np.round(t["distance_um"], 6)
    m = prof.merge(ref, on=["label", "d_key"], suffixes=("", "_recipe"))
    same = np.isclose(m["value"], m["value_recipe"])
    print(
        f"shells matched by (label, distance): {len(m)} of {len(prof)}; equal medians: "
        f"{100 * same.mean():.1f} %"
    )
    # each of ours right after itself: the interleaved rounds above start every call with
    # memory the previous (other) call freed, which the kernel hands out again page by page
    # (system time); a call repeated on the same scene finds its memory ready
    for name in (names[0], names[2]):
        calls[name]()
        cpu0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        calls[name]()
        wall, cpu1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
        rec = names[1] if name == names[0] else names[3]
        print(
            f"{name}, repeated right after itself: {wall:.2f} s (system time "
            f"{cpu1.ru_stime - cpu0.ru_stime:.2f} s; in the rounds above "
            f"{np.median(sys_times[name]):.2f} s); {rec} / this: "
            f"{np.median(times[rec]) / wall:.1f} x"
        )
    image = image_f32 = labels = prof = ref = m = None  # free the large scene
    if speed_only:
        return

    noises = (0.01, 0.03) if quick else (0.01, 0.02, 0.03, 0.05)
    seeds = (0,) if quick else (0, 1, 2, 3)
    t0 = time.perf_counter()
    acc = pd.concat(
        [
            accuracy(nz, dr, sd, contacts, statistic)
            for contacts, statistic in (("rim", "mean"), ("exclude", "mean"), ("exclude", "median"))
            for nz in noises
            for dr in (0.0, 0.03)
            for sd in seeds
        ],
        ignore_index=True,
    )
    print(
        f"\naccuracy: {len(acc) // 3} crystal profiles on {len(noises) * 2 * len(seeds)} scenes of "
        f"768 x 768 ({time.perf_counter() - t0:.0f} s); crystals cut by the image edge excluded"
    )
    acc = acc[~acc["border"]]
    acc["r_clean"] = acc["rmse_clean"] / acc["noise_dn"]
    acc["r_clean_off"] = acc["rmse_clean_offset"] / acc["noise_dn"]
    acc["r_true"] = acc["rmse_true"] / acc["noise_dn"]
    acc["step_abs"] = acc["step_err_px"].abs()
    acc["step_fit_abs"] = acc["step_fit_err_px"].abs()

    def summary(g):
        clean = g["step_clean_err_px"].abs().dropna()
        steps = g["step_abs"].dropna()
        fits = g["step_fit_abs"].dropna()
        se = g.loc[fits.index, "step_fit_se_px"]
        return pd.Series(
            {
                "n": len(g),
                "rmse/noise vs clean": g["r_clean"].median(),
                "offset-removed": g["r_clean_off"].median(),
                "vs true_profile": g["r_true"].median(),
                "|mean offset| DN": g["mean_offset"].abs().median(),
                "n steps": len(steps),
                "noise-free: within 1 px": (clean <= 1.0).mean() if len(clean) else np.nan,
                "noise-free |err| max": clean.max() if len(clean) else np.nan,
                "step err px mean (bias)": g["step_err_px"].mean(),
                "step |err| px median": steps.median() if len(steps) else np.nan,
                "step |err| px max": steps.max() if len(steps) else np.nan,
                "within 1 px": (steps <= 1.0).mean() if len(steps) else np.nan,
                "erf fit |err| px max": fits.max() if len(fits) else np.nan,
                "fit within 1 px": (fits <= 1.0).mean() if len(fits) else np.nan,
                "fit within max(1 px, 2 se)": (fits <= np.maximum(1.0, 2.0 * se)).mean()
                if len(fits)
                else np.nan,
            }
        )

    pd.set_option("display.width", 160)
    pd.set_option("display.max_columns", 20)
    table = acc.groupby(["contacts", "statistic", "drift", "noise"]).apply(
        summary, include_groups=False
    )
    print("medians over crystals (RMSE relative to the noise level; step errors in pixels):")
    print(table.round(3).to_string())
    free = acc[~acc["touching"]]
    print("\ncrystals touching no other crystal only:")
    by = free.groupby(["contacts", "statistic", "drift"])
    print(by.apply(summary, include_groups=False).round(3).to_string())
    touching = acc[acc["touching"]]
    print("\ncrystals touching another crystal only:")
    print(
        touching.groupby(["contacts", "statistic", "noise"])
        .apply(summary, include_groups=False)
        .round(3)
        .to_string()
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2048^2 scene, fewer scenes")
    parser.add_argument("--repeat", type=int, default=None, help="timing repeats")
    parser.add_argument("--speed-only", action="store_true", help="skip the accuracy part")
    args = parser.parse_args()
    main(args.quick, args.repeat, args.speed_only)
