"""The options of :func:`fit_diffusion`: their defaults, the names of the models, the output
columns, and the checks that refuse a bad option before anything is fitted."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._validation import ZonationInputError
from .conditions import CONDITION_KEYS, conditions_rows, resolve

OUTPUT_COLUMNS = (
    "label",
    "model",
    "fit_status",
    "fit_error",
    "sqrt_dt_um",
    "sqrt_dt_err_um",
    "timescale_days",
    "timescale_days_lo",
    "timescale_days_hi",
    "chi2_red",
    "n_points",
    "n_params",
    "step_position_um",
    "step_height",
    "outer_value",
    "inner_value",
    "step_positions_um",
    "plateau_levels",
    "stage1_days",
    "stage1_days_lo",
    "stage1_days_hi",
    "stage1_sqrt_dt_um",
    "stage1_status",
    "diffusivity_um2_s",
    "xfe",
    "temperature_c",
    "blur_fwhm_um",
    "rim",
    "domain_start_um",
    "diffusion_assumption",
)
_TEXT_COLUMNS = ("fit_status", "fit_error", "stage1_status", "model", "rim",
                 "diffusion_assumption")
_TUPLE_COLUMNS = ("step_positions_um", "plateau_levels")

MODELS = {
    "erf": "erf",
    "step": "step",
    "fd": "step",
    "one_step": "step",
    "1-step": "step",
    "1_step": "step",
    "multi_step": "multi_step",
    "multi-step": "multi_step",
    "multistep": "multi_step",
    "two_stage": "two_stage",
    "two-stage": "two_stage",
    "2-step": "two_stage",
    "2_step": "two_stage",
    "two_step": "two_stage",
    "initial": "initial",
    "profile": "initial",
}

_DEFAULT_OPTIONS = {
    "min_points": 6,
    "window_um": None,
    "step_significance": 4.0,
    "rim": "fixed",
    "rim_at": "first_point",
    "core": "closed",
    "composition_dependent": True,
    "blur_fwhm_um": None,
    "n_steps": None,
    "zoning": None,
    "initial": None,
    "fix": None,
    "d_factors": None,
    "pt_path": None,
    "n_samples": 2000,
    "interval": (5.0, 95.0),
    "seed": 0,
    "fd_steps": 60,
    "fd_nodes": None,
    "quantity": None,
    "max_ln_tau_err": 1.0,
    "return_curves": False,
    "conditions": None,
    "profile_errors": None,
}

#: Gaussian 1-sigma of the default blur of image profiles, in point spacings: a probe of one
#: pixel FWHM (sigma 1/2.355) convolved with the pixel's own width (sigma 1/sqrt(12))
IMAGE_BLUR_SIGMA_PX = math.sqrt((1 / 2.3548) ** 2 + 1 / 12)


@dataclass
class _Quantity:
    name: str  # "fo", "xfo" or "other"
    dxfe_dv: float = 0.0

    def xfe(self, v: float) -> float:
        if self.name == "fo":
            return 1.0 - v / 100.0
        if self.name == "xfo":
            return 1.0 - v
        return math.nan


def _quantity(group: pd.DataFrame, values: np.ndarray, option) -> _Quantity:
    name = option
    if name is None and "quantity" in group.columns:
        q = group["quantity"].dropna()
        name = str(q.iloc[0]) if len(q) else None
    if name is not None:
        key = str(name).strip().lower().replace(" ", "").replace("%", "")
        if key in ("fo", "fomol", "fo_mol", "forsterite", "fo(mol)"):
            return _Quantity("fo", -0.01)
        if key in ("xfo", "x_fo", "xforsterite"):
            return _Quantity("xfo", -1.0)
        if option is not None:
            return _Quantity("other")
    v = values[np.isfinite(values)]
    if v.size:
        lo, hi = np.percentile(v, [1, 99])
        if lo >= 49.0 and hi <= 101.0:
            return _Quantity("fo", -0.01)
    return _Quantity("other")


# --------------------------------------------------------------------------------------------
def check_diffusion_options(**kwargs) -> None:
    """Check :func:`fit_diffusion`'s keyword arguments without fitting anything.

    Raises the :class:`ZonationInputError` that :func:`fit_diffusion` would raise for the same
    conditions and options (missing or contradictory conditions, temperatures outside
    600-1600 C, unknown options or models), so that a long run can refuse them before its
    first stage. Checks that need the profiles (e.g. olivine values that are not Fo without
    ``xfe``) are left to the fit.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _checked(**kwargs)


def _checked(model: str = "step", **kwargs) -> tuple[dict, dict, str]:
    cond = {k: kwargs.pop(k, None) for k in CONDITION_KEYS}
    unknown = sorted(set(kwargs) - set(_DEFAULT_OPTIONS))
    if unknown:
        raise ZonationInputError(
            f"unknown option(s) {unknown} for fit_diffusion; accepted: "
            f"{', '.join(sorted(set(_DEFAULT_OPTIONS) | set(CONDITION_KEYS)))}."
        )
    opts = {**_DEFAULT_OPTIONS, **kwargs}
    key = MODELS.get(str(model).strip().lower())
    if key is None:
        raise ZonationInputError(
            f"model={model!r} is not known; use 'step' (finite differences, one step), "
            "'multi_step', 'two_stage', 'initial' (your initial profile) or 'erf' (the "
            "analytical quick look)."
        )
    if opts["rim"] not in ("fixed", "closed", "open"):
        raise ZonationInputError(
            f"rim={opts['rim']!r}: use 'fixed' (held at the rim plateau: melt contact), "
            "'closed' (no flux) or 'open' (no boundary, the erf assumption)."
        )
    if opts["core"] not in ("closed", "fixed"):
        raise ZonationInputError(f"core={opts['core']!r}: use 'closed' (no flux) or 'fixed'.")
    ra = opts["rim_at"]
    if not (ra in ("first_point", "zero") or isinstance(ra, (int, float))):
        raise ZonationInputError(
            f"rim_at={ra!r}: use 'first_point' (the window starts at the first analysed point), "
            "'zero' (at distance 0) or a distance in um."
        )
    if int(opts["min_points"]) < 5:
        raise ZonationInputError("min_points must be at least 5 (a step has 4 parameters).")
    lo_hi = opts["interval"]
    try:
        lo_p, hi_p = (float(v) for v in lo_hi)
    except (TypeError, ValueError) as exc:
        raise ZonationInputError(f"interval={lo_hi!r}: give two percentiles, e.g. (5, 95).") \
            from exc
    if not 0 <= lo_p < hi_p <= 100:
        raise ZonationInputError(f"interval={lo_hi!r}: percentiles 0 <= lo < hi <= 100.")
    if opts["blur_fwhm_um"] is not None:
        b = float(opts["blur_fwhm_um"])
        if not (math.isfinite(b) and b >= 0):
            raise ZonationInputError(f"blur_fwhm_um={b!r} must be >= 0 (um).")
    if opts["d_factors"] is not None:
        f = np.asarray(opts["d_factors"], dtype=float).ravel()
        if f.size == 0 or not np.all(np.isfinite(f)) or np.any(f <= 0):
            raise ZonationInputError("d_factors must be positive finite scale factors of D.")
    pt = opts["pt_path"]
    if pt is not None:
        if not isinstance(pt, pd.DataFrame) or "temperature_c" not in pt.columns or len(pt) == 0:
            raise ZonationInputError(
                "pt_path must be a DataFrame with a temperature_c column (and optionally "
                "pressure_mpa and duration, the relative time spent at each row)."
            )
    if key == "initial" and opts["initial"] is None:
        raise ZonationInputError(
            "model='initial' needs initial=: a DataFrame (label, distance_um, value) or a "
            "(distances, values) pair giving the profile before diffusion."
        )
    if opts["conditions"] is None:
        resolve(cond)  # raises on bad keyword conditions
    else:
        conditions_rows(opts["conditions"])
    return opts, cond, key
