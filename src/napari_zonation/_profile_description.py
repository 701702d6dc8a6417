"""The description of one zoning profile: its points cleaned (duplicated distances, NaN,
shell sigmas), every shape model fitted and scored, the best one read into the descriptor
columns of :func:`napari_zonation.descriptors.describe_zoning`."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy import stats

from . import zoning_models as zm
from ._stats import noise_sigma_diff

__all__ = ["DESCRIPTOR_COLUMNS"]

#: descriptor columns, in output order (after ``label`` and, when present, ``channel``)
DESCRIPTOR_COLUMNS: tuple[str, ...] = (
    "n_points",
    "n_nan_dropped",
    "length_um",
    "core_value",
    "rim_value",
    "contrast",
    "rel_contrast",
    "noise_sigma",
    "n_plateaus",
    "plateau_levels",
    "plateau_extents_um",
    "n_steps",
    "step_positions_um",
    "step_heights",
    "step_widths_um",
    "max_slope_per_um",
    "mean_slope_per_um",
    "gradient_slope_per_um",
    "monotonicity",
    "n_oscillations",
    "osc_period_um",
    "osc_amplitude",
    "core_start_um",
    "best_model",
    "model_detail",
    "misfit_ratio",
    "zoning_type",
    "quantity",
    "interpretation",
    "interpretation_note",
    "describe_status",
    "describe_error",
)


# --------------------------------------------------------------------------------------
# one profile


def _empty_descriptors(n_points: int, n_nan: int, status: str, error: str) -> dict:
    out = dict.fromkeys(DESCRIPTOR_COLUMNS, np.nan)
    out.update(
        n_points=n_points,
        n_nan_dropped=n_nan,
        plateau_levels=(),
        plateau_extents_um=(),
        step_positions_um=(),
        step_heights=(),
        step_widths_um=(),
        best_model=None,
        model_detail=None,
        zoning_type=None,
        interpretation=None,
        interpretation_note="",
        describe_status=status,
        describe_error=error,
    )
    return out


def _column(grp: pd.DataFrame, name: str) -> np.ndarray | None:
    if name not in grp.columns:
        return None
    return pd.to_numeric(grp[name], errors="coerce").to_numpy(dtype=float)


def _describe_group(grp: pd.DataFrame, opts: dict) -> dict:
    d = _column(grp, "distance_um")
    v = _column(grp, "value")
    s = _column(grp, "sigma")
    s = np.full(d.shape, np.nan) if s is None else s
    npx = _column(grp, "n_pixels")
    ok = np.isfinite(d) & np.isfinite(v)
    n_nan = int((~ok).sum())
    if not ok.any():
        return _empty_descriptors(
            0, n_nan, "no_valid_points", f"all {n_nan} points have a NaN distance or value"
        )
    d, v, s = d[ok], v[ok], s[ok]
    npx = npx[ok] if npx is not None else None
    notes = []
    d, v, s, npx, n_dup = _merge_duplicates(d, v, s, npx)
    if n_dup:
        notes.append(f"{n_dup} duplicated distance(s) averaged")
    n = d.size
    if n < int(opts["min_points"]):
        return _empty_descriptors(
            n,
            n_nan,
            "too_few_points",
            f"{n} valid points (< min_points={opts['min_points']}); measure a longer profile.",
        )
    try:
        if np.ptp(v) == 0 or np.ptp(d) == 0:
            notes.append("constant values" if np.ptp(v) == 0 else "all points at one distance")
            out = _constant_row(d, v, n)
        else:
            data, extras = _profile_data(d, v, s, npx, opts)
            out = _describe_arrays(data, opts, extras)
    except Exception as exc:  # one crystal's failure must not stop the others
        return _empty_descriptors(n, n_nan, "error", f"{type(exc).__name__}: {exc}")
    out["n_nan_dropped"] = n_nan
    out["describe_error"] = "; ".join(notes)
    return out


def _merge_duplicates(d, v, s, npx):
    """Sort by distance and average points at the same distance (weighted by 1/sigma^2)."""
    order = np.argsort(d, kind="stable")
    d, v, s = d[order], v[order], s[order]
    npx = npx[order] if npx is not None else None
    uniq, inv, counts = np.unique(d, return_inverse=True, return_counts=True)
    if uniq.size == d.size:
        return d, v, s, npx, 0
    good = np.isfinite(s) & (s > 0)
    wt = np.where(good, 1.0 / np.where(good, s, 1.0) ** 2, 1.0)
    sw = np.bincount(inv, weights=wt)
    v2 = np.bincount(inv, weights=wt * v) / sw
    s2 = np.full(uniq.size, np.nan)
    if good.any():
        ng = np.bincount(inv, weights=good.astype(float))
        sg = np.bincount(inv, weights=np.where(good, wt, 0.0))
        s2 = np.where(ng == counts, 1.0 / np.sqrt(np.maximum(sg, 1e-300)), np.nan)
    npx2 = np.bincount(inv, weights=npx) if npx is not None else None
    return uniq, v2, s2, npx2, int(d.size - uniq.size)


def _constant_row(d, v, n) -> dict:
    level = float(np.mean(v))
    d0, d1 = float(d[0]), float(d[-1])
    out = dict.fromkeys(DESCRIPTOR_COLUMNS, np.nan)
    out.update(
        n_points=n,
        length_um=d1 - d0,
        core_value=level,
        rim_value=level,
        contrast=0.0,
        rel_contrast=0.0 if level != 0 else np.nan,
        noise_sigma=0.0,
        n_plateaus=1,
        plateau_levels=(level,),
        plateau_extents_um=(d1 - d0,),
        n_steps=0,
        step_positions_um=(),
        step_heights=(),
        step_widths_um=(),
        max_slope_per_um=0.0,
        mean_slope_per_um=0.0,
        monotonicity=0.0,
        n_oscillations=0,
        osc_amplitude=0.0,
        core_start_um=d0,
        best_model="constant",
        model_detail="one level",
        misfit_ratio=1.0,
        zoning_type="unzoned",
        describe_status="ok",
    )
    return out


def _pixel_sigma(s: np.ndarray, npx: np.ndarray | None) -> float:
    """Per-pixel 1-sigma noise behind points that are means of ``n_pixels`` pixels (the
    clipped shell means of :func:`~napari_zonation.rim_profiles`, the band means of drawn
    lines and traverses): ``sigma sqrt(n)``, the median over the points with
    ``n_pixels > 1``; 0 for points that are not aggregates. Shell medians
    (``statistic="median"``) carry a sigma ``sqrt(pi / 2)`` larger: the noise read from them
    is that much larger, which only makes the guards below stricter."""
    if npx is None:
        return 0.0
    good = np.isfinite(s) & (s > 0) & np.isfinite(npx) & (npx > 1)
    if not good.any():
        return 0.0
    return float(np.median(s[good] * np.sqrt(npx[good])))


def _rounding_floor(v: np.ndarray) -> float:
    """Rounding error of values stored on a 0.5 or 1 grid (shell medians of 8-bit images,
    whose first differences are mostly 0; whole-number values), else 0."""
    for q in (1.0, 0.5):
        if v.size and np.ptp(v) > q and np.allclose(v / q, np.round(v / q), atol=1e-9, rtol=0):
            return q / np.sqrt(12.0)
    return 0.0


def _profile_data(d, v, s, npx, opts) -> tuple[zm.ProfileData, dict]:
    """Weights, noise and the shell-profile guards of one profile."""
    pixel_sigma = _pixel_sigma(s, npx)
    shell = pixel_sigma > 0
    sys_sigma = float(opts["systematic_fraction"]) * pixel_sigma
    floor = _rounding_floor(v)
    good = np.isfinite(s) & (s > 0)
    known = bool(good.mean() >= 0.5)
    if known:
        sig = np.where(good, s, np.median(s[good]))
        sig = np.sqrt(sig**2 + sys_sigma**2)
        sig = np.maximum(sig, max(floor, 1e-12 * float(np.ptp(v))))
        w = 1.0 / sig**2
        sigma_floor = float(np.median(sig))
    else:
        w = np.ones(d.size)
        sigma_floor = floor
    length = float(d[-1] - d[0])
    data = zm.ProfileData(
        d=d,
        v=v,
        w=w,
        known_sigma=known,
        min_core_um=float(opts["min_core_fraction"]) * length if shell else 0.0,
        min_range=float(opts["min_contrast_sigmas"]) * pixel_sigma,
        min_gradient_fraction=float(opts["min_gradient_fraction"]),
        variance_floor=(floor**2 if not known else 0.0) + (1e-6 * float(np.ptp(v))) ** 2,
    )
    return data, {"sigma_floor": sigma_floor, "pixel_sigma": pixel_sigma}


#: a rim level that only the outermost shell of an image profile shows, departing from the
#: next level by less than this many per-pixel noise sigmas, is not a rim: an outline that
#: reaches a pixel or two into the groundmass (or leaves a thin halo out) moves that one
#: shell's clipped mean by a fraction of the pixel noise
OUTER_SHELL_PIXEL_SIGMAS = 2.0


def _outer_shell_rim(fit: zm.Fit, d: np.ndarray, v: np.ndarray, pixel_sigma: float) -> bool:
    """Is ``fit``'s outermost step carried by the first point alone (an image shell profile:
    ``pixel_sigma > 0``), that point departing from the next level by less than
    :data:`OUTER_SHELL_PIXEL_SIGMAS` per-pixel sigmas? The step's rim side is seen where the
    model departs from the next level by at least half its departure at the first point."""
    if pixel_sigma <= 0 or d.size < 3:
        return False
    lv = np.asarray(fit.info["levels"], dtype=float)
    pos = np.asarray(fit.info["positions"], dtype=float)
    inner = d < pos[1] if pos.size > 1 else np.ones(d.size, bool)
    dev = np.abs(fit.predict(d) - lv[1])
    if dev[0] <= 0:
        return False
    seen = int(np.sum(inner & (dev >= 0.5 * dev[0])))
    return seen < 2 and abs(float(v[0]) - lv[1]) < OUTER_SHELL_PIXEL_SIGMAS * pixel_sigma


def _describe_arrays(data: zm.ProfileData, opts: dict, extras: dict) -> dict:
    d, v = data.d, data.v
    margins = {
        "ramp": float(opts["gradient_evidence"]),
        "oscillatory": float(opts["osc_evidence"]),
        **opts.get("_margins", {}),
    }
    fits = zm.fit_all(data, int(opts["max_plateaus"]), margins, opts["shared_width"])
    floor = float(extras["sigma_floor"])
    # every level stands out from its neighbours by merge_sigmas noise sigmas
    core_pts = int(opts["min_plateau_points"])
    for f in fits:
        if f.family == "steps" and f.eligible:
            sig = max(noise_sigma_diff(v - f.predict(d)), floor)
            if np.min(np.abs(np.diff(f.info["levels"]))) < float(opts["merge_sigmas"]) * sig:
                f.eligible, f.why = False, "two levels closer than merge_sigmas noise sigmas"
            elif int(np.sum(d > f.info["positions"][-1])) < core_pts:
                f.eligible, f.why = False, "a core level of fewer than min_plateau_points"
            elif _outer_shell_rim(f, d, v, float(extras.get("pixel_sigma", 0.0))):
                f.eligible, f.why = False, "a rim level seen on the outermost shell only"
    if "_sink" in opts:  # calibration (benchmarks/zoning.py --calibrate): every candidate
        opts["_sink"].append(fits)
    best = min((f for f in fits if f.eligible), key=lambda f: f.score)
    resid = v - best.predict(d)
    noise = max(noise_sigma_diff(resid), floor)
    # the misfit is judged where the profile is reliable: not in the deepest shells of an
    # image profile (few pixels, off-centre sections, a neighbour's distorted distances)
    keep = d <= data.d1 - data.min_core_um if data.min_core_um > 0 else np.ones(d.size, bool)
    w = data.w[keep] / data.w[keep].mean()
    rms = float(np.sqrt(np.mean(w * resid[keep] ** 2)))
    scale = float(np.ptp(v))
    misfit = rms / noise if noise > 0 else (1.0 if rms <= 1e-9 * scale else np.inf)
    vk = v[keep]
    var_v = float(np.mean(w * (vk - np.average(vk, weights=w)) ** 2))
    unexplained = max(rms**2 - noise**2, 0.0) / var_v if var_v > 0 else 0.0
    non_osc = min(
        (f for f in fits if f.family != "oscillatory" and f.eligible), key=lambda f: f.score
    )
    n_osc = _count_oscillations(v - non_osc.predict(d), noise, float(opts["osc_threshold"]))
    out = _assemble(data, best, noise=noise, n_osc=n_osc, misfit=misfit)
    complex_ = np.isfinite(misfit) and misfit > float(opts["complex_ratio"])
    complex_ = complex_ and unexplained > float(opts["complex_variance"])
    if (complex_ and best.family != "constant") or not np.isfinite(misfit):
        out["zoning_type"] = "complex"
    return out


def _assemble(data: zm.ProfileData, fit: zm.Fit, *, noise, n_osc, misfit) -> dict:
    d, v = data.d, data.v
    d0, d1 = data.d0, data.d1
    pred = fit.predict
    rim = float(pred(np.array([d0]))[0])
    core = float(pred(np.array([d1]))[0])
    fine = np.linspace(d0, d1, max(4 * d.size, 16))
    grad = np.gradient(pred(fine), fine)
    slope = float(np.polyfit(d, v, 1)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = float(stats.spearmanr(d, v).statistic)
    out = dict.fromkeys(DESCRIPTOR_COLUMNS, np.nan)
    out.update(
        n_points=d.size,
        length_um=d1 - d0,
        core_value=core,
        rim_value=rim,
        contrast=rim - core,
        rel_contrast=(rim - core) / abs(core) if core != 0 else np.nan,
        noise_sigma=noise,
        max_slope_per_um=float(np.max(np.abs(grad))),
        mean_slope_per_um=slope,
        monotonicity=rho if np.isfinite(rho) else 0.0,
        n_oscillations=int(n_osc),
        osc_amplitude=0.0,
        best_model=fit.name,
        misfit_ratio=float(misfit),
        n_steps=0,
        step_positions_um=(),
        step_heights=(),
        step_widths_um=(),
        describe_status="ok",
        describe_error="",
    )
    fam = fit.family
    if fam == "constant":
        out.update(
            n_plateaus=1,
            plateau_levels=(core,),
            plateau_extents_um=(d1 - d0,),
            core_start_um=d0,
            zoning_type="unzoned",
            max_slope_per_um=0.0,
            model_detail="one level",
        )
    elif fam == "ramp":
        q = fit.info
        s, e = q["start"], q["end"]
        has_core = e < d1 - 1e-9
        out.update(
            n_plateaus=1,
            plateau_levels=(float(q["core"]),),
            plateau_extents_um=(max(d1 - e, 0.0),),
            core_start_um=float(e) if has_core else d1,
            gradient_slope_per_um=float((q["core"] - q["rim"]) / max(e - s, 1e-12)),
            zoning_type="gradient",
            model_detail=(
                ("curved" if q["curved"] else "straight")
                + " slope"
                + (" under a rim plateau" if s > d0 + 1e-9 else "")
                + (" to a core plateau" if has_core else " to the deepest point")
            ),
        )
    elif fam == "oscillatory":
        o = zm.osc_summary(fit, data)
        q = fit.info
        has_core = "e" in q and q["e"] < d1
        detail = "bands"
        if "s" in q:
            detail += " under a rim level"
        detail += " to a core level" if has_core else " to the deepest point"
        if "chirp" in q:
            detail += ", period drifting"
        if "A2" in q:
            detail += ", not sinusoidal"
        if "trend" in q:
            detail += ", on a trend"
        out.update(
            n_plateaus=1,
            plateau_levels=(core,),
            plateau_extents_um=(max(d1 - o["end"], 0.0),),
            core_start_um=o["end"] if has_core else d1,
            osc_period_um=o["period"],
            osc_amplitude=o["amplitude"],
            zoning_type="oscillatory",
            model_detail=detail,
        )
        if "s" in q:
            # bands under a stepped rim: the rim level is a plateau and its step is reported
            # (rim side minus the bands' mean), which the interpretation reads
            height = float(q["rim"] - q["m"])
            out.update(
                n_plateaus=2,
                plateau_levels=(float(q["rim"]), core),
                plateau_extents_um=(o["start"] - d0, max(d1 - o["end"], 0.0)),
                n_steps=1,
                step_positions_um=(o["start"],),
                step_heights=(height,),
                step_widths_um=(data.spacing,),
                _rim_step=height,
            )
    else:  # steps
        q = fit.info
        lv, pos, widths = np.array(q["levels"], dtype=float), q["positions"], q["widths"]
        if q["held"]:
            # a step held at the rim: its rim level is the boundary's, reached at the rim
            lv[0] = rim
            pos = np.concatenate([[d0], pos[1:]])
        bounds = np.concatenate([[d0], np.clip(pos, d0, d1), [d1]])
        k = len(lv)
        out.update(
            n_plateaus=k,
            plateau_levels=tuple(float(x) for x in lv),
            plateau_extents_um=tuple(float(x) for x in np.diff(bounds)),
            n_steps=len(pos),
            step_positions_um=tuple(float(x) for x in pos),
            step_heights=tuple(float(x) for x in -np.diff(lv)),
            step_widths_um=tuple(float(x) for x in widths),
            core_start_um=float(bounds[-2]),
            zoning_type=(
                ("rim_brighter" if lv[0] > lv[-1] else "rim_darker") if k == 2 else "multi_step"
            ),
            model_detail=f"{k} levels" + (", the outer step held at the rim" if q["held"] else ""),
        )
    return out


# --------------------------------------------------------------------------------------
# oscillation count


def _count_oscillations(r: np.ndarray, noise: float, k: float) -> int:
    """Alternating extremum pairs of a lightly smoothed residual above ``k`` noise sigmas."""
    if noise <= 0 or r.size < 5:
        return 0
    sm = ndi.gaussian_filter1d(r, 1.0, mode="nearest")
    # the smoothing (one point) keeps 0.53 of the white noise's sigma; the hysteresis is
    # k sigmas of the raw noise, i.e. about 4.7 k sigmas of the smoothed noise
    thr = k * noise
    return (_zigzag_turns(sm, thr) + 1) // 2


def _zigzag_turns(x: np.ndarray, thr: float) -> int:
    """Turning points of ``x`` that reverse by more than ``thr`` (hysteresis)."""
    turns, direction = 0, 0
    hi = lo = ext = float(x[0])
    for val in x[1:]:
        if direction == 0:
            hi, lo = max(hi, val), min(lo, val)
            if val - lo > thr:
                direction, ext = 1, val
            elif hi - val > thr:
                direction, ext = -1, val
        elif direction == 1:
            if val > ext:
                ext = val
            elif ext - val > thr:
                direction, ext, turns = -1, val, turns + 1
        else:
            if val < ext:
                ext = val
            elif val - ext > thr:
                direction, ext, turns = 1, val, turns + 1
    return turns
