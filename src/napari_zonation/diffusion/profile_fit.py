"""One profile of :func:`fit_diffusion`: its points prepared, the model fitted (finite
differences or the erf quick look), the fit's checks, and the Monte Carlo timescales."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .._validation import ZonationInputError
from .conditions import Resolved
from .erf import _fit_erf, _initial_guess, _Profile, _window
from .fitting import FitResult, _levels_between, fit_model, guess_steps, model_curve, profile_ln_tau
from .laws import ConstantLaw
from .models import Domain, GivenInitialModel, Physics, PlateauModel, TwoStageModel
from .options import IMAGE_BLUR_SIGMA_PX, _Quantity, _quantity
from .uncertainty import SECONDS_PER_DAY, nominal_ln_d, timescale_samples


def _prepare(group: pd.DataFrame, has_sigma: bool) -> tuple[_Profile, bool]:
    """Finite points sorted by distance, and whether the table's order was monotonic."""
    d = pd.to_numeric(group["distance_um"], errors="coerce").to_numpy(dtype=float)
    y = pd.to_numeric(group["value"], errors="coerce").to_numpy(dtype=float)
    s = None
    if has_sigma:
        s = pd.to_numeric(group["sigma"], errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(d) & np.isfinite(y)
    d, y = d[ok], y[ok]
    diffs = np.diff(d)
    monotonic = bool(np.all(diffs > 0) or np.all(diffs < 0)) if d.size > 1 else True
    if s is not None:
        s = s[ok]
        good = np.isfinite(s) & (s > 0)
        if not good.any():
            s = None
        elif not good.all():
            s = np.where(good, s, np.median(s[good]))
    if s is not None and y.size and np.all(np.abs(y - np.round(y * 2) / 2) < 1e-9):
        # medians of integer grey levels are rounded: add the rounding's variance
        q = 1.0 if np.all(np.abs(y - np.round(y)) < 1e-9) else 0.5
        s = np.sqrt(s**2 + q * q / 12.0)
    order = np.argsort(d, kind="stable")
    return _Profile(d[order], y[order], None if s is None else s[order]), monotonic


def _spacing(d: np.ndarray) -> float:
    u = np.unique(d)
    return float(np.median(np.diff(u))) if u.size > 1 else 1.0


def _blur_sigma(group: pd.DataFrame, d: np.ndarray, opts) -> tuple[float, str]:
    if opts["blur_fwhm_um"] is not None:
        fwhm = float(opts["blur_fwhm_um"])
        return fwhm / 2.3548, f"blur FWHM {fwhm:g} um (given)"
    src = str(group["source"].iloc[0]) if "source" in group.columns and len(group) else "csv"
    if src in ("rim", "traverse", "shape"):
        sig = IMAGE_BLUR_SIGMA_PX * _spacing(d)
        return sig, (f"blur FWHM {sig * 2.3548:.2g} um (image: one-pixel probe and the pixel; "
                     "set blur_fwhm_um)")
    return 0.0, "no blur (measured points; set blur_fwhm_um to the beam or spot size)"


def _failed(row: dict, status: str, message: str) -> dict:
    row.update(fit_status=status, fit_error=message)
    return row


def _fit_one(group, has_sigma, key, opts, res: Resolved, rng, label):
    pr, monotonic = _prepare(group, has_sigma)
    row: dict = {"model": key, "n_points": int(pr.d.size)}
    if not monotonic:
        return _failed(row, "distances not monotonic",
                       "the points are not in distance order (the distance goes back and "
                       "forth or repeats): sort the profile, or check that one label does not "
                       "hold two traverses."), None
    if opts["window_um"] is not None:
        pr = _window(pr, opts["window_um"])
        row["n_points"] = int(pr.d.size)
    d, y = pr.d, pr.y
    q = _quantity(group, y, opts["quantity"])
    # the reference composition for D, and D's composition dependence
    n_params_est = {"erf": 4, "step": 4, "multi_step": 2 * (opts["n_steps"] or 2) + 2,
                    "two_stage": 7, "initial": 1}[key]
    row["n_params"] = n_params_est
    if d.size == 0:
        return _failed(row, "no data", "no point has both a finite distance_um and value."), None
    if d.size < max(int(opts["min_points"]), n_params_est + 1):
        need = max(int(opts["min_points"]), n_params_est + 1)
        return _failed(row, "too few points",
                       f"{d.size} finite point(s); the {key} model has {n_params_est} "
                       f"parameters and needs at least {need} points (option min_points)."), None
    if np.ptp(d) <= 0:
        return _failed(row, "no distance range", "all points share one distance_um."), None
    if np.ptp(y) == 0:
        return _failed(row, "no step", "the profile is flat."), None
    blur_sigma, blur_text = _blur_sigma(group, d, opts)
    row["blur_fwhm_um"] = blur_sigma * 2.3548
    first = _fit_erf(pr, {**opts, "min_points": min(int(opts["min_points"]), d.size)})
    if key == "erf":
        return _erf_row(row, first, pr, q, opts, res, rng, blur_text), None
    if (first.get("fit_status") == "no step" and "unzoned" in str(first.get("fit_error"))
            and opts["rim"] != "fixed"):
        # without a held rim the step must stand out of the noise as an erf does
        return _failed(row, "no step", first["fit_error"]), None
    return _fd_row(row, first, pr, q, opts, res, rng, blur_sigma, blur_text, key, label, group)


def _xfe_ref(res: Resolved, q: _Quantity, v_ref: float) -> float:
    if res.xfe is not None:
        return res.xfe
    if q.name in ("fo", "xfo"):
        return q.xfe(v_ref)
    return math.nan


def _needs_xfe(res: Resolved) -> bool:
    return (res.kind == "law" and res.law is not None and res.law.composition_slope() != 0
            and res.law.needs_temperature)


def _erf_row(row, first, pr, q, opts, res, rng, blur_text):
    row.update({k: v for k, v in first.items() if k != "_s_upper"})
    row["rim"] = "open"
    row["domain_start_um"] = float(pr.d.min()) if pr.d.size else math.nan
    row["diffusion_assumption"] = res.assumption + "; erf: one step in an infinite medium"
    if row.get("fit_status") not in ("ok", "unresolved"):
        return row
    row["step_positions_um"] = (row["step_position_um"],)
    row["plateau_levels"] = (row["outer_value"], row["inner_value"])
    v_ref = 0.5 * (row["outer_value"] + row["inner_value"])
    xfe_ref = _xfe_ref(res, q, v_ref)
    row["xfe"] = xfe_ref
    s = row["sqrt_dt_um"]
    s_err = row.get("sqrt_dt_err_um", math.nan)
    s_up = first.get("_s_upper")
    if s_up is not None:
        row["fit_status"] = "unresolved"
        _timescales(row, res, q, xfe_ref, math.nan, math.nan, opts, rng,
                    upper_ln_tau=2 * math.log(s_up) if np.isfinite(s_up) else math.nan)
        return row
    _timescales(row, res, q, xfe_ref, 2 * math.log(s), 2 * s_err / s, opts, rng)
    return row


def _fd_row(row, first, pr, q, opts, res, rng, blur_sigma, blur_text, key, label, group):
    d, y, sig = pr.d, pr.y, pr.w
    span = float(np.ptp(d))
    spacing = _spacing(d)
    windowed = opts["window_um"] is not None
    ra = opts["rim_at"]
    if windowed or ra == "first_point":
        start = float(d.min())
    elif ra == "zero":
        start = min(0.0, float(d.min()))
    else:
        start = float(ra)
        if start > d.min():
            return _failed(row, "bad conditions",
                           f"rim_at={start:g} um lies inside the profile (first point at "
                           f"{d.min():g} um); the rim must be at or before the first point."), None
    rim = "closed" if windowed else opts["rim"]
    domain = Domain(start=start, end=float(d.max()), rim=rim, core=opts["core"])
    ok_first = first.get("fit_status") in ("ok", "unresolved")
    a0, b0, p0 = _initial_guess(d, y)
    s0 = max(span / 15.0, 2.0 * spacing)
    if ok_first:
        a0, b0, p0 = first["outer_value"], first["inner_value"], first["step_position_um"]
        s0 = max(float(first["sqrt_dt_um"]), 0.5 * spacing)
    if rim == "open":
        domain.extension = max(span / 2.0, 10.0 * s0)
    # composition dependence and reference
    comp = (opts["composition_dependent"] and q.name in ("fo", "xfo") and res.kind == "law"
            and res.law is not None and res.law.composition_slope() != 0)
    if res.kind == "none" and opts["composition_dependent"] and q.name in ("fo", "xfo"):
        comp = False
    k_value = res.law.composition_slope() * q.dxfe_dv if comp else 0.0
    lo_v = float(np.min(y) - np.ptp(y))
    hi_v = float(np.max(y) + np.ptp(y))
    lt_lo, lt_hi = 2 * math.log(0.02 * spacing), 2 * math.log(3.0 * span)
    fixed_opts = dict(opts["fix"] or {})
    extra_two: list = []
    if key == "step" or key == "multi_step":
        k = 1 if key == "step" else int(opts["n_steps"] or _zoning_steps(opts["zoning"], label)
                                         or 2)
        mdl = PlateauModel(n_steps=k, name=key)
        if k == 1 and _zoning_steps(opts["zoning"], label) == 1:
            # one described step seeds the fit (the description's position and levels)
            pos, levels = _multi_guess(d, y, 1, opts["zoning"], label)
            pos = [float(np.clip(pos[0], start, d.max()))]
        elif k == 1:
            pos = [float(np.clip(p0, start, d.max()))]
            levels = [a0, b0]
        else:
            pos, levels = _multi_guess(d, y, k, opts["zoning"], label)
        theta0 = np.array(levels + pos + [2 * math.log(s0)])
        lower = np.array([lo_v] * (k + 1) + _pos_bounds(pos, start, d.max())[0] + [lt_lo])
        upper = np.array([hi_v] * (k + 1) + _pos_bounds(pos, start, d.max())[1] + [lt_hi])
        value_slots = list(range(k + 1))
        v_ref = 0.5 * (levels[0] + levels[-1])
    elif key == "two_stage":
        mdl = TwoStageModel()
        # a two-step plateau fit (one time) places the steps and levels
        q1, q2 = guess_steps(d, y, 2)
        lv = _levels_between(d, y, [q1, q2])
        lt0 = 2 * math.log(s0)
        try:
            pl = fit_model(PlateauModel(n_steps=2), np.array(lv + [q1, q2, lt0]),
                           np.array([lo_v] * 3 + _pos_bounds([q1, q2], start, d.max())[0]
                                    + [lt_lo]),
                           np.array([hi_v] * 3 + _pos_bounds([q1, q2], start, d.max())[1]
                                    + [lt_hi]),
                           d, y, sig, domain, Physics(k_value=k_value, v_ref=float(np.mean(lv)),
                                                      n_steps=int(opts["fd_steps"])),
                           blur_sigma, s0, value_slots=[0, 1, 2], extra_starts=0)
            lv = [float(v) for v in pl.theta[:3]]
            q1, q2 = sorted(float(v) for v in pl.theta[3:5])
            lt0 = float(pl.theta[5])
        except (RuntimeError, ValueError):
            pass
        theta0 = np.array([lv[2], lv[1], lv[0], q2, q1, lt0, lt0])
        extra_two = [np.array([lv[2], lv[1], lv[0], q2, q1, lt1, lt0])
                     for lt1 in (lt0 + 2.5, lt0 + 5.0, 2 * math.log(0.5 * span))]
        # a long relaxed gradient toward a core level beyond the measured points
        for frac in (0.25, 0.5):
            b1 = float(np.quantile(d, frac))
            extra_two.append(np.array([lv[2], float(np.median(y[d < b1])), lv[0], b1,
                                       min(q1, 0.5 * (start + b1)),
                                       2 * math.log(0.5 * span), lt0]))
        lower = np.array([lo_v, lo_v, lo_v, start, start, lt_lo, lt_lo])
        upper = np.array([hi_v, hi_v, hi_v, float(d.max()), float(d.max()), lt_hi, lt_hi])
        value_slots = [0, 1, 2]
        v_ref = 0.5 * (lv[0] + lv[2])
    else:  # initial
        ini_d, ini_v = _initial_profile(opts["initial"], label)
        if ini_d is None:
            return _failed(row, "bad conditions",
                           f"initial= holds no profile for label {label!r}."), None
        mdl = GivenInitialModel(ini_d, ini_v)
        s0 = max(spacing, 0.5)
        theta0 = np.array([2 * math.log(s0)])
        extra_two = [np.array([2 * math.log(s0 * f)]) for f in (0.3, 3.0, 10.0, 30.0)]
        lower, upper = np.array([lt_lo]), np.array([lt_hi])
        value_slots = []
        v_ref = 0.5 * (float(ini_v[0]) + float(ini_v[-1]))
    names = mdl.names()
    fixed = {}
    for nm, val in fixed_opts.items():
        alias = {"outer": "level_0", "rim_value": "level_0", "core_value": "core",
                 "inner": f"level_{getattr(mdl, 'n_steps', 1)}"}.get(nm, nm)
        if key == "two_stage":
            alias = {"level_0": "rim", "inner": "core"}.get(alias, alias)
        if alias not in names:
            raise ZonationInputError(f"fix={{{nm!r}: ...}}: the {key} model's parameters are "
                                     f"{names}.")
        fixed[names.index(alias)] = float(val)
        theta0[names.index(alias)] = float(val)
        for e in extra_two:
            e[names.index(alias)] = float(val)
    if key == "two_stage" and "core" in fixed_opts:
        v_ref = 0.5 * (theta0[0] + theta0[2])
    physics = Physics(k_value=k_value, v_ref=v_ref, n_steps=int(opts["fd_steps"]))
    used = mdl
    try:
        fit = fit_model(mdl, theta0, lower, upper, d, y, sig, domain, physics, blur_sigma,
                        s0, value_slots=value_slots, starts=extra_two, fixed=fixed)
    except (RuntimeError, ValueError, FloatingPointError) as exc:
        return _failed(row, "fit failed", f"the finite-difference fit failed: {exc}"), None
    theta = fit.theta
    ln_names = used.names()
    row.update(chi2_red=fit.chi2_red, n_params=len(fit.theta) - len(fixed))
    row["rim"] = rim
    row["domain_start_um"] = start
    xfe_ref = _xfe_ref(res, q, v_ref)
    row["xfe"] = xfe_ref
    if key in ("step", "multi_step"):
        k = mdl.n_steps
        levels = [float(v) for v in theta[: k + 1]]
        pos = [float(v) for v in theta[k + 1 : 2 * k + 1]]
        row.update(step_position_um=pos[0], outer_value=levels[0], inner_value=levels[-1],
                   step_height=levels[-1] - levels[0], step_positions_um=tuple(pos),
                   plateau_levels=tuple(levels))
    elif key == "two_stage":
        c0_, c1_, c2_, b1, b2 = (float(v) for v in theta[:5])
        row.update(step_position_um=b2, outer_value=c2_, inner_value=c0_,
                   step_height=c0_ - c2_, step_positions_um=(b2, b1),
                   plateau_levels=(c2_, c1_, c0_))
    assumption = res.assumption
    assumption += {"fixed": "; rim held at the rim plateau", "closed": "; rim closed (no flux)",
                   "open": "; no rim boundary (the rim plateau extends outward)"}[rim]
    assumption += f", window from {start:g} um" + (" (first point)" if ra == "first_point"
                                                   else "")
    assumption += "; core end " + ("closed" if opts["core"] == "closed" else "fixed")
    if comp:
        assumption += "; D at each node's composition"
    assumption += "; " + blur_text
    if fixed:
        assumption += "; fixed: " + ", ".join(f"{names[i]} = {v:g}" for i, v in fixed.items())
    row["diffusion_assumption"] = assumption
    curve = None
    if opts["return_curves"]:
        xs = np.linspace(domain.start, domain.end, 300)
        from .models import blurred_at

        cf = used.final(fit.theta, fit.grid, domain, physics)
        ci = used.initial(fit.theta, fit.grid, domain)
        curve = pd.DataFrame({"distance_um": xs,
                              "model": blurred_at(fit.grid.x, cf, xs, blur_sigma),
                              "initial": np.interp(xs, fit.grid.x, ci)})
    # checks on the fitted profile
    resid = y - model_curve(fit, domain, physics, d, blur_sigma)
    status = _fd_checks(fit, used, theta, d, y, resid, sig, rim, opts, key)
    if status is not None:
        return _failed(row, *status), curve
    lt_slots = [i for i, nm in enumerate(ln_names) if nm.startswith("ln_tau")]
    prof_kw = dict(value_slots=value_slots, lower=lower, upper=upper)

    def ln_tau_errors(slot):
        """(ln tau, 1-sigma below, 1-sigma above, bounded below, bounded above)."""
        lt_ = float(fit.theta[slot])
        e = fit.ln_tau_err(slot)
        near = np.any(np.abs(fit.theta - lower) < 1e-6 * (1 + np.abs(lower))) or np.any(
            np.abs(upper - fit.theta) < 1e-6 * (1 + np.abs(upper)))
        corr = 0.0
        if fit.cov is not None and np.isfinite(e) and e > 0:
            sd = np.sqrt(np.clip(np.diag(fit.cov), 1e-300, None))
            c = fit.cov[slot] / (sd * sd[slot])
            corr = float(np.max(np.abs(np.delete(c, slot)))) if c.size > 1 else 0.0
        forced = opts["profile_errors"]
        if forced is False or (forced is None and np.isfinite(e) and e < 0.15 and not near
                                and corr < 0.95):
            return lt_, e, e, True, True
        step = float(np.clip(e, 0.05, 0.5)) if np.isfinite(e) else 0.2
        lo_ = profile_ln_tau(fit, d, y, sig, domain, physics, blur_sigma, slot=slot,
                             direction=-1, first_step=step, **prof_kw)
        hi_ = profile_ln_tau(fit, d, y, sig, domain, physics, blur_sigma, slot=slot,
                             direction=1, first_step=step, **prof_kw)
        e_lo = lt_ - lo_ if np.isfinite(lo_) else math.nan
        e_hi = hi_ - lt_ if np.isfinite(hi_) else math.nan
        return lt_, e_lo, e_hi, np.isfinite(lo_), np.isfinite(hi_)

    lt, e_lo, e_hi, ok_lo, ok_hi = ln_tau_errors(lt_slots[-1])
    s = math.exp(0.5 * lt)
    row["sqrt_dt_um"] = s
    lt_err = 0.5 * (e_lo + e_hi) if ok_lo and ok_hi else math.nan
    row["sqrt_dt_err_um"] = 0.5 * s * lt_err if np.isfinite(lt_err) else math.nan
    small = s < 0.5 * max(0.5 * spacing, blur_sigma)
    unresolved = key != "initial" and (small or (not ok_lo and ok_hi))
    if not ok_hi or (np.isfinite(lt_err) and lt_err > float(opts["max_ln_tau_err"])
                     and not unresolved):
        factor = (f"a factor {math.exp(min(0.5 * lt_err, 700.0)):.2g} (1-sigma)"
                  if np.isfinite(lt_err) else "no upper bound")
        return _failed(row, "too noisy",
                       f"sqrt(Dt) = {s:.3g} um is known only to {factor}: the profile cannot "
                       "date this step; measure more or more precise points across it."), curve
    if unresolved:
        up = lt + e_hi if ok_hi else math.nan
        row["sqrt_dt_err_um"] = (math.exp(0.5 * up) - s) if np.isfinite(up) else math.nan
        row["fit_status"] = "unresolved"
        row["fit_error"] = (
            f"the step is sharper than the measurement resolves (point spacing {spacing:.3g} "
            f"um, blur FWHM {blur_sigma * 2.3548:.2g} um): sqrt_dt_um < "
            f"{math.exp(0.5 * up) if np.isfinite(up) else float('nan'):.3g} um (1-sigma), no "
            "timescale; measure at a finer spacing."
        )
        _timescales(row, res, q, xfe_ref, math.nan, math.nan, opts, rng, upper_ln_tau=up)
        return row, curve
    row["fit_status"] = "ok"
    row["fit_error"] = "" if fit.success else f"least squares: {fit.message}"
    if key == "two_stage":
        lt1, e1_lo, e1_hi, ok1_lo, ok1_hi = ln_tau_errors(lt_slots[0])
        s1 = math.exp(0.5 * lt1)
        row["stage1_sqrt_dt_um"] = s1
        # stage 1 unresolved: its relaxation is not seen in the profile (the likelihood of
        # ln tau1 has no lower bound, or sqrt(tau1) is below the resolution): an upper bound
        stage1_unresolved = ok1_hi and (not ok1_lo or s1 < 0.5 * max(0.5 * spacing,
                                                                      blur_sigma))
        row["stage1_status"] = "unresolved" if stage1_unresolved else "ok"
        if stage1_unresolved:
            up1 = lt1 + e1_hi
            stage1 = (up1, None)
            row["stage1_sqrt_dt_um"] = math.nan
            row["fit_error"] = (row["fit_error"] + " " if row["fit_error"] else "") + (
                "stage 1 is not resolved by the profile (its duration has no lower bound): "
                f"sqrt(D t1) < {math.exp(0.5 * up1):.3g} um (1-sigma), stage1_days_hi is an "
                "upper bound, no stage-1 timescale.")
        elif not ok1_hi:
            row["stage1_status"] = "too noisy"
            stage1 = None
        else:
            stage1 = (lt1, (e1_lo, e1_hi))
        t2 = res.temperature2_c
        _timescales(row, res, q, xfe_ref, lt, (e_lo, e_hi), opts, rng, temperature_c=t2,
                    temperature_c_err=res.temperature2_c_err if t2 is not None else None,
                    stage1=stage1)
    else:
        _timescales(row, res, q, xfe_ref, lt, (e_lo, e_hi), opts, rng)
    return row, curve


def _fd_checks(fit: FitResult, used, theta, d, y, resid, sig, rim, opts, key):
    """(status, message) when the fitted model cannot support a timescale, else None."""
    if key == "initial":
        return None
    if key == "two_stage":
        lv = np.asarray(theta[:3], dtype=float)
        pos = [float(theta[4]), float(theta[3])]
    else:
        k = used.n_steps
        lv = np.asarray(theta[: k + 1], dtype=float)
        pos = list(np.asarray(theta[k + 1 : 2 * k + 1], dtype=float))
    noise = float(np.median(sig)) if sig is not None else float(np.std(resid))
    if np.isfinite(fit.chi2_red):
        noise *= math.sqrt(max(fit.chi2_red, 1.0))
    height = float(np.max(lv) - np.min(lv))
    i_max, i_min = int(np.argmax(lv)), int(np.argmin(lv))
    if fit.cov is not None and key != "two_stage":
        # the error of the outer-inner difference from the fit itself
        var = fit.cov[i_max, i_max] + fit.cov[i_min, i_min] - 2 * fit.cov[i_max, i_min]
        h_err = math.sqrt(max(var, 0.0))
    else:
        h_err = 0.0
    n_out = int(np.sum(d < min(pos)))
    n_in = int(np.sum(d > max(pos)))
    floor = noise * math.sqrt(1.0 / max(n_out, 1) + 1.0 / max(n_in, 1))
    significance = float(opts["step_significance"])
    # how much the points either side of the fitted step differ, in the data themselves
    change = (abs(float(np.mean(y[d > max(pos)])) - float(np.mean(y[d < min(pos)])))
              if n_in and n_out else math.inf)
    if n_in < 2 and change >= significance * floor:
        return ("step at the core", f"the fitted step ({max(pos):.3g} um) has {n_in} point(s) "
                "on its core side: the core plateau is not measured; extend the profile past "
                "the step.")
    if n_in < 2:
        return ("no step", f"the points either side of the fitted step differ by {change:.2g}, "
                f"less than {significance:g} times their noise ({floor:.2g}); the profile "
                "looks unzoned.")
    if height < significance * h_err and change >= significance * floor:
        # the data either side of the step differ by many noise units, but the fit cannot
        # tell its height: a plateau the profile does not reach, not an unzoned profile
        core_side = fit.cov[len(lv) - 1, len(lv) - 1] >= fit.cov[0, 0]
        where, end = ("core", "toward the core") if core_side else ("rim", "toward the rim")
        return (f"step at the {where}", f"the points either side of the fitted step differ "
                f"by {change:.3g} ({change / max(floor, 1e-300):.0f} times their noise) but "
                f"the profile does not reach the {where} plateau: the step's height is "
                f"uncertain by {h_err:.2g}, so its width is not measured; extend the profile "
                f"{end}.")
    floor = max(floor, h_err)
    if height < significance * max(floor, 1e-300):
        return ("no step", f"the fitted step ({height:.3g}) is below "
                f"{opts['step_significance']:g} times its uncertainty ({floor:.2g}); the "
                "profile looks unzoned.")
    if rim != "fixed" and n_out < 2:
        return ("step at the rim", f"the fitted step ({min(pos):.3g} um) has {n_out} point(s) "
                "on its rim side and the rim is not held (rim='fixed' holds it at the rim "
                "plateau); measure nearer the rim.")
    return None


def _timescales(row, res: Resolved, q, xfe_ref, ln_tau, ln_tau_err, opts, rng, *,
                upper_ln_tau=math.nan, temperature_c=None, temperature_c_err=None,
                stage1=None):
    """Fill diffusivity, timescale and interval columns."""
    for c in ("diffusivity_um2_s", "timescale_days", "timescale_days_lo", "timescale_days_hi"):
        row.setdefault(c, math.nan)
    if res.kind != "law" or res.law is None:
        return
    if _needs_xfe(res) and not np.isfinite(xfe_ref):
        row["fit_error"] = (row.get("fit_error") or "") + (
            " No timescale: the olivine diffusivity needs the fayalite fraction; the values are "
            "not Fo, so pass xfe.")
        return
    xr = xfe_ref if np.isfinite(xfe_ref) else 0.1
    pt = opts["pt_path"]
    factors = opts["d_factors"]
    row["temperature_c"] = (temperature_c if temperature_c is not None
                            else res.spec.temperature_c)
    ln_d = nominal_ln_d(res.law, res.spec, xr, pt_path=pt, d_factors=factors,
                        temperature_c=temperature_c)
    d_um2 = math.exp(ln_d) * 1e12
    if isinstance(res.law, ConstantLaw) and factors is None:
        d_um2 = res.law.d_um2_s  # exactly the D given
    row["diffusivity_um2_s"] = d_um2
    n = int(opts["n_samples"])
    lo_p, hi_p = (float(v) for v in opts["interval"])
    from .uncertainty import antithetic_normals

    law_samples = res.law.from_z(antithetic_normals(rng, max(n, 1), res.law.n_z))
    if np.isfinite(ln_tau):
        row["timescale_days"] = math.exp(ln_tau) / d_um2 / SECONDS_PER_DAY
        if n > 0:
            ts = timescale_samples(ln_tau, ln_tau_err, res.law, res.spec, xr, n=n, rng=rng,
                                   d_factors=factors, pt_path=pt, temperature_c=temperature_c,
                                   temperature_c_err=temperature_c_err, law_samples=law_samples)
            row["timescale_days_lo"], row["timescale_days_hi"] = np.percentile(ts, [lo_p, hi_p])
            row["timescale_days"] = float(np.exp(np.median(np.log(ts))))
    elif np.isfinite(upper_ln_tau):
        # a bound only: no timescale; the upper end folds in D's own lower tail
        row["timescale_days_lo"] = 0.0
        if n > 0:
            ts = timescale_samples(upper_ln_tau, 0.0, res.law, res.spec, xr, n=n, rng=rng,
                                   d_factors=factors, pt_path=pt, law_samples=law_samples)
            row["timescale_days_hi"] = float(np.percentile(ts, hi_p))
        else:
            row["timescale_days_hi"] = math.exp(upper_ln_tau) / d_um2 / SECONDS_PER_DAY
    if stage1 is not None and stage1[1] is None:
        # stage 1 unresolved: an upper bound only (the bound's own D tail folded in)
        up1 = stage1[0]
        ln_d1 = nominal_ln_d(res.law, res.spec, xr, pt_path=pt, d_factors=factors)
        row["stage1_days"] = math.nan
        row["stage1_days_lo"] = 0.0
        row["stage1_days_hi"] = math.exp(up1 - ln_d1 - math.log(1e12)) / SECONDS_PER_DAY
        if n > 0:
            ts1 = timescale_samples(up1, 0.0, res.law, res.spec, xr, n=n, rng=rng,
                                    d_factors=factors, pt_path=pt, law_samples=law_samples)
            row["stage1_days_hi"] = float(np.percentile(ts1, hi_p))
    elif stage1 is not None:
        lt1, lt1_err = stage1
        ln_d1 = nominal_ln_d(res.law, res.spec, xr, pt_path=pt, d_factors=factors)
        row["stage1_days"] = math.exp(lt1 - ln_d1 - math.log(1e12)) / SECONDS_PER_DAY
        if n > 0:
            ts1 = timescale_samples(lt1, lt1_err, res.law, res.spec, xr, n=n, rng=rng,
                                    d_factors=factors, pt_path=pt, law_samples=law_samples)
            row["stage1_days_lo"], row["stage1_days_hi"] = np.percentile(ts1, [lo_p, hi_p])
            row["stage1_days"] = float(np.exp(np.median(np.log(ts1))))


def _pos_bounds(pos, start, end):
    lo, hi = [], []
    edges = [start] + list(pos) + [end]
    for i in range(1, len(edges) - 1):
        lo.append(0.5 * (edges[i - 1] + edges[i]) if i > 1 else start)
        hi.append(0.5 * (edges[i] + edges[i + 1]) if i < len(edges) - 2 else end)
    return lo, hi


def _zoning_row(zoning, label):
    if zoning is None or not isinstance(zoning, pd.DataFrame) or "label" not in zoning:
        return None
    sel = zoning[zoning["label"] == label]
    return None if sel.empty else sel.iloc[0]


def _zoning_steps(zoning, label) -> int | None:
    r = _zoning_row(zoning, label)
    if r is None:
        return None
    pos = r.get("step_positions_um")
    if isinstance(pos, (tuple, list, np.ndarray)) and len(pos) >= 1:
        return len(pos)
    return None


def _multi_guess(d, y, k, zoning, label):
    r = _zoning_row(zoning, label)
    pos = None
    if r is not None:
        p = r.get("step_positions_um")
        if isinstance(p, (tuple, list, np.ndarray)) and len(p) == k:
            pos = sorted(float(v) for v in p)
    if pos is None:
        pos = guess_steps(d, y, k)
    levels = None
    if r is not None:
        lv = r.get("plateau_levels")
        if isinstance(lv, (tuple, list, np.ndarray)) and len(lv) == k + 1:
            levels = [float(v) for v in lv]
    if levels is None:
        from .fitting import _levels_between

        levels = _levels_between(d, y, pos)
    return pos, levels


def _initial_profile(initial, label):
    if isinstance(initial, pd.DataFrame):
        sel = initial[initial["label"] == label] if "label" in initial else initial
        if sel.empty:
            return None, None
        sel = sel.sort_values("distance_um")
        return (sel["distance_um"].to_numpy(dtype=float), sel["value"].to_numpy(dtype=float))
    try:
        di, vi = initial
        di, vi = np.asarray(di, dtype=float), np.asarray(vi, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ZonationInputError(
            "initial= must be a DataFrame (label, distance_um, value) or a (distances, values) "
            "pair.") from exc
    order = np.argsort(di)
    return di[order], vi[order]
