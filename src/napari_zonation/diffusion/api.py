"""``fit_diffusion``: profiles -> diffusion models fitted by chi-square -> timescales with
Monte Carlo intervals, one row per profile (and channel).

The options and their checks live in :mod:`.options`, the fit of one profile in
:mod:`.profile_fit`; the public names of both are importable from here as well.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .._validation import ZonationInputError, check_profiles
from .conditions import conditions_rows, resolve
from .options import (
    _TEXT_COLUMNS,
    _TUPLE_COLUMNS,
    IMAGE_BLUR_SIGMA_PX,
    MODELS,
    OUTPUT_COLUMNS,
    _checked,
    _quantity,
    check_diffusion_options,
)
from .profile_fit import _fit_one

__all__ = ["IMAGE_BLUR_SIGMA_PX", "MODELS", "OUTPUT_COLUMNS", "check_diffusion_options",
           "fit_diffusion"]


def fit_diffusion(
    prof: pd.DataFrame,
    *,
    mineral: str | None = None,
    temperature_c: float | None = None,
    pressure_mpa: float | None = None,
    delta_qfm: float | None = None,
    log_fo2_pa: float | None = None,
    angles_deg: Sequence[float] | None = None,
    xfe: float | None = None,
    diffusivity_um2_s: float | None = None,
    temperature_c_err: float | None = None,
    model: str = "step",
    d_law: str | None = None,
    **options,
):
    """Fit diffusion models to profiles and turn them into timescales with intervals.

    Every profile (``label``, and ``channel`` when there are several) is fitted by chi-square
    (weighted by its ``sigma`` column when present) with a 1D finite-difference model of
    diffusion from an initial condition, D evaluated at each node's own composition for olivine
    Fo profiles, the model blurred by the measurement's resolution. The reduced time
    ``tau = D_ref t`` (``sqrt_dt_um = sqrt(tau)``, D_ref at the profile's mean composition)
    becomes a timescale ``t = tau / D`` with D from a diffusivity law at the given conditions,
    and a Monte Carlo over the fit, the conditions and the law gives the interval.

    Models (``model``):

    - ``"step"`` (default): one step between a rim plateau and a core plateau (published
      olivine chronometry's one-step model).
    - ``"multi_step"``: ``n_steps`` steps with intermediate plateaus, one time (seeded from
      ``zoning=describe_zoning(...)`` plateaus when given).
    - ``"two_stage"``: a core/intermediate step relaxes for t1 at ``temperature_c`` with the
      crystal's margin of that time held at the intermediate level; a new rim then grows and
      both relax for t2 at ``temperature2_c`` (the rim end held at the new rim). The row's
      ``timescale_days`` is t2 (since the rim grew) and ``stage1_days`` is t1.
    - ``"initial"``: the profile given as ``initial=`` relaxed for t.
    - ``"erf"``: the analytical quick look, one relaxed step in an infinite medium.

    Boundaries: the window runs from the first analysed point (``rim_at="first_point"``, the
    set-up of published inversions; or ``"zero"``, or a distance) to the last point. ``rim``:
    ``"fixed"`` (held at the rim plateau: a melt in contact), ``"closed"`` (no flux) or ``"open"``
    (no boundary: the erf assumption); ``core``: ``"closed"`` (no flux) or ``"fixed"``.
    Distances are never re-zeroed.

    Diffusivity: ``diffusivity_um2_s`` (a plain D along the traverse, any mineral), or
    ``mineral="olivine"`` with ``d_law`` ``"dc07"`` (Dohmen & Chakraborty 2007; default) or
    ``"dfens"`` (Mutch et al. 2021), at ``temperature_c``, ``pressure_mpa`` and the oxygen
    fugacity (``delta_qfm`` or ``log_fo2_pa``), along the traverse from ``angles_deg`` (or
    ``euler_deg`` with ``azimuth_deg``; without angles D along [001], timescales then minima),
    or ``d_law="arrhenius"`` with ``d0_m2_s``, ``ea_kj_mol`` (``va_cm3_mol``). Conditions may
    differ per profile: ``conditions=`` a DataFrame with ``label`` and columns named like the
    keywords (empty cells take the keywords' values); a row's bad conditions give that profile
    ``fit_status="bad conditions"`` and the others are fitted.

    Uncertainty: ``<condition>_err`` (1-sigma: ``temperature_c_err``, ``temperature2_c_err``,
    ``pressure_mpa_err``, ``delta_qfm_err``, ``log_fo2_pa_err``, ``diffusivity_um2_s_err``),
    the law's own uncertainty (the DFENS coefficient covariance, the D&C Ea 201 +/- 20 kJ/mol;
    ``ea_kj_mol_err``, ``law_uncertainty=False`` to fix the law), ``d_factors`` (a distribution
    of D scale factors) or ``pt_path`` (a DataFrame of ``temperature_c``, optional
    ``pressure_mpa`` and ``duration`` weights: D is the duration-weighted mean along it).
    ``timescale_days`` is the best fit at the nominal conditions; ``timescale_days_lo`` /
    ``_hi`` are the ``interval`` percentiles (5, 95) of ``n_samples`` Monte Carlo samples.

    Parameters
    ----------
    prof : pandas.DataFrame
        Long profiles table: ``label``, ``distance_um``, ``value``; optional ``sigma``,
        ``channel``, ``source``, ``quantity`` (``Fo``, ``XFo``: the composition D depends on).
    mineral, temperature_c, pressure_mpa, delta_qfm, log_fo2_pa, angles_deg, xfe, \
diffusivity_um2_s, temperature_c_err, d_law
        The conditions above. ``xfe`` (fayalite fraction) sets D's composition when the values
        are not Fo (grey levels); Fo (mol %) or XFo values give it per node.
    model : str
        ``"step"``, ``"multi_step"``, ``"two_stage"``, ``"initial"`` or ``"erf"``.
    **options
        ``rim`` ("fixed"), ``rim_at`` ("first_point"), ``core`` ("closed"),
        ``blur_fwhm_um`` (the measurement's resolution, FWHM in um; default: image profiles
        (``source`` rim/traverse/shape) a one-pixel probe plus the pixel, about 1.2 point
        spacings; measured traverses (csv) 0: give the beam or spot size), ``n_steps``,
        ``zoning``, ``initial``, ``fix`` (``{parameter: value}`` held fixed, e.g.
        ``{"core": 89.5}`` for a two-stage model), ``conditions``, ``d_factors``, ``pt_path``,
        ``n_samples`` (2000), ``interval`` ((5, 95)), ``seed`` (0), ``min_points`` (6),
        ``step_significance`` (4: a step smaller than this many standard errors is no step),
        ``max_ln_tau_err`` (1.0: a 1-sigma error of ln(Dt) above it, t uncertain by more than a
        factor e, is "too noisy"),
        ``window_um`` (fit only within this distance of the largest jump, both ends closed),
        ``composition_dependent`` (True), ``quantity`` ("Fo", "XFo" or "other"),
        ``fd_steps`` (60 time steps), ``return_curves`` (False), ``profile_errors`` (None:
        the profile likelihood when the Jacobian error is large or ill-conditioned; True or
        False to force it), ``fd_nodes`` (accepted and ignored: the grid is refined
        around the steps automatically).

    Returns
    -------
    pandas.DataFrame or (pandas.DataFrame, pandas.DataFrame)
        One row per profile: ``label`` (``channel``), ``model``, ``fit_status`` (``"ok"`` or the
        reason no number is given: ``"no data"``, ``"too few points"``, ``"no distance
        range"``, ``"distances not monotonic"``, ``"no step"``, ``"step at the core"``,
        ``"step at the rim"``, ``"too noisy"``, ``"unresolved"`` (a step sharper than the
        point spacing or the blur: ``timescale_days_hi`` and ``sqrt_dt_um +
        sqrt_dt_err_um`` are then 1-sigma upper bounds, no timescale), ``"bad conditions"``,
        ``"fit failed"``), ``fit_error`` (the reason in words), ``sqrt_dt_um``,
        ``sqrt_dt_err_um``, ``timescale_days``, ``timescale_days_lo``, ``timescale_days_hi``,
        ``chi2_red`` (NaN without sigma), ``n_points``, ``n_params``, ``step_position_um``,
        ``step_height`` (core side - rim side), ``outer_value``, ``inner_value``,
        ``step_positions_um`` and ``plateau_levels`` (tuples, rim first), ``stage1_days`` (+
        ``_lo``/``_hi``), ``stage1_sqrt_dt_um`` and ``stage1_status`` (two-stage; ``"unresolved"``
        when the profile bounds t1 only from above: ``stage1_days`` is then empty and
        ``stage1_days_hi`` the bound), ``diffusivity_um2_s`` (D at
        the reference composition along the traverse), ``xfe`` (the reference XFe),
        ``temperature_c``, ``blur_fwhm_um``, ``rim``, ``domain_start_um``,
        ``diffusion_assumption`` (the law, conditions, orientation and boundaries in words).
        With ``return_curves=True`` also a long table ``label, distance_um, model, initial``
        of the fitted curves.

    Raises
    ------
    ZonationInputError
        Missing or contradictory conditions (e.g. olivine without temperature or fO2),
        temperatures outside 600-1600 C (kelvin?), D <= 0, non-Fo values without ``xfe`` for
        a composition-dependent law, unknown options or models, a table without the profile
        columns.

    Examples
    --------
    The rim profile of a synthetic crystal whose step relaxed by a known ``sqrt(D t)``:

    >>> from napari_zonation import fit_diffusion, make_thin_section, rim_profiles
    >>> s = make_thin_section((160, 160), n_crystals=1, zoning_types=("rim_darker",),
    ...                       size_um=(60.0, 90.0), crack_fraction=0.0, seed=1)
    >>> prof = rim_profiles(s.image, s.labels, pixel_size_um=s.pixel_size_um)
    >>> fit = fit_diffusion(prof, diffusivity_um2_s=1e-6, n_samples=100)
    >>> fit.loc[0, "fit_status"]
    'ok'
    >>> truth = s.truth.loc[0, "sqrt_dt_um"]
    >>> bool(abs(fit.loc[0, "sqrt_dt_um"] - truth) < 2 * fit.loc[0, "sqrt_dt_err_um"])
    True
    >>> bool(fit.loc[0, "timescale_days_lo"] < fit.loc[0, "timescale_days"]
    ...      < fit.loc[0, "timescale_days_hi"])
    True
    """
    prof = check_profiles(prof)
    opts, cond, key = _checked(
        mineral=mineral, temperature_c=temperature_c, pressure_mpa=pressure_mpa,
        delta_qfm=delta_qfm, log_fo2_pa=log_fo2_pa, angles_deg=angles_deg, xfe=xfe,
        diffusivity_um2_s=diffusivity_um2_s, temperature_c_err=temperature_c_err,
        model=model, d_law=d_law, **options,
    )
    per_label = conditions_rows(opts["conditions"])
    base = resolve(cond) if not per_label else None
    values = pd.to_numeric(prof["value"], errors="coerce").to_numpy(dtype=float)
    has_sigma = "sigma" in prof.columns
    keys = ["label"]
    if "channel" in prof.columns and prof["channel"].nunique(dropna=False) > 1:
        keys.append("channel")
    if base is not None and base.kind == "law" and base.composition_dependent and \
            base.xfe is None:
        q = _quantity(prof, values, opts["quantity"])
        if q.name == "other" and not isinstance(base.law, type(None)) and \
                base.law.composition_slope() != 0 and base.law.needs_temperature:
            raise ZonationInputError(
                "the olivine diffusivity needs the fayalite fraction: the profile values are "
                "not Fo in mol % (50-100; grey levels?) or XFo, so pass xfe (e.g. xfe=0.15 for "
                "Fo85), or calibrate the profiles to Fo first."
            )
    rows, curves = [], []
    for kval, group in prof.groupby(keys, sort=True, dropna=False):
        kval = kval if isinstance(kval, tuple) else (kval,)
        row = dict(zip(keys, kval, strict=True))
        label = kval[0]
        res = base
        if base is None:
            merged = {**{k: v for k, v in cond.items() if v is not None},
                      **per_label.get(label, {})}
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = resolve(merged, warn=False)
            except ZonationInputError as exc:
                row.update(n_points=len(group), fit_status="bad conditions", fit_error=str(exc),
                           model=key)
                rows.append(row)
                continue
        rng = _profile_rng(opts["seed"], kval)  # the same draws whatever else is fitted
        one, curve = _fit_one(group, has_sigma, key, opts, res, rng, label)
        row.update(one)
        rows.append(row)
        if curve is not None:
            for k_, v_ in zip(keys, kval, strict=True):
                curve.insert(0, k_, v_) if k_ not in curve else None
            curves.append(curve)
    table = pd.DataFrame(rows)
    for col in OUTPUT_COLUMNS:
        if col not in table.columns:
            table[col] = "" if col in _TEXT_COLUMNS else (None if col in _TUPLE_COLUMNS
                                                          else math.nan)
    for col in _TEXT_COLUMNS:
        table[col] = table[col].fillna("").astype(str)
    table["n_points"] = table["n_points"].fillna(0).astype(int)
    table["n_params"] = table["n_params"].fillna(0).astype(int)
    cols = keys + [c for c in OUTPUT_COLUMNS if c not in keys]
    table = table[cols].reset_index(drop=True)
    if opts["return_curves"]:
        curve_table = (pd.concat(curves, ignore_index=True) if curves else
                       pd.DataFrame(columns=keys + ["distance_um", "model", "initial"]))
        return table, curve_table
    return table


def _profile_rng(seed, key: tuple) -> np.random.Generator:
    """The Monte Carlo random stream of one profile: from the seed and the profile's key
    (label, channel), so that a profile's interval does not depend on which other profiles
    are fitted in the same call (a batch of a mosaic, a selection in the widget)."""
    parts = [int(seed)]
    for k in key:
        if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            parts.append(int(k) & 0xFFFFFFFF)
        else:
            parts.append(zlib.crc32(str(k).encode()))
    return np.random.default_rng(parts)
