"""Numeric zoning descriptors: profiles table -> one row per crystal.

Every profile is compared with explicit shape families (:mod:`napari_zonation.zoning_models`):
one level; levels joined by error-function steps (the outermost one possibly held at the rim,
a diffusion profile from a boundary in contact with the melt); straight or curved slopes with
or without rim and core plateaus; periodic bands between a rim level and a core level or the
deepest point, whose period may drift and whose shape need not be a sine wave. Each is fitted
by least squares and scored by the Bayesian information criterion, with the noise the data
say: the points' ``sigma`` when the table has one, else the scatter of each model's residuals
(the module notes of :mod:`~napari_zonation.zoning_models`). A slope and a periodic mantle must
add calibrated evidence over the steps (:data:`~napari_zonation.zoning_models.MARGINS`). The
best model that is what its name says (each plateau seen, bands of at least two periods, a
slope over at least ``min_gradient_fraction`` of the profile) names the ``zoning_type``:

==============  ===========================================================================
model           zoning_type
==============  ===========================================================================
one level       ``unzoned``
two levels      ``rim_brighter`` (rim value higher than the core's) or ``rim_darker``
3+ levels       ``multi_step``
slope           ``gradient``
bands           ``oscillatory``
(misfit)        ``complex``: the best model leaves structure well above the noise that is
                also a sizeable share of the profile's variance
==============  ===========================================================================

The type names the profile in its own quantity, whatever the mineral; ``interpretation``
(normal, reverse) follows the mineral and the quantity (:func:`napari_zonation.vocabulary.
interpret`). The quantity comes from the profiles table's ``quantity`` column (set by
:func:`~napari_zonation.io.read_profiles` from the column it read, by
:func:`~napari_zonation.profiles.apply_calibration`, or by the user), from the ``quantity``
option, or is BSE ``grey`` (image profiles).

Image shell profiles (points with ``n_pixels``, from :func:`~napari_zonation.profiles.
rim_profiles`) carry two more guards against what a segmentation's outline fakes: a
systematic error floor of ``systematic_fraction`` per-pixel sigmas added to every point's
``sigma`` (a few percent of foreign pixels move a shell median coherently over many shells),
and a smallest credible zoning span of ``min_contrast_sigmas`` per-pixel sigmas; their deepest
``min_core_fraction`` of the profile (few pixels, off-centre sections) cannot hold a step.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy import stats

from . import zoning_models as zm
from ._stats import noise_sigma_diff
from ._validation import ZonationInputError, check_profiles
from .vocabulary import ZONING_TYPES, interpret, parse_quantity

__all__ = ["describe_zoning", "ZONING_TYPES", "DESCRIPTOR_COLUMNS"]

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
# public API


def describe_zoning(
    prof: pd.DataFrame,
    backend: str = "offline",
    *,
    crystals: pd.DataFrame | None = None,
    phase: str | None = None,
    channel: str | None = None,
    reference: int | None = None,
    criteria=None,
    quantity: str | None = None,
    max_plateaus: int = 5,
    min_points: int = 5,
    min_plateau_points: int = 3,
    merge_sigmas: float = 1.0,
    min_gradient_fraction: float = 0.2,
    gradient_evidence: float = zm.MARGINS["ramp"],
    osc_evidence: float = zm.MARGINS["oscillatory"],
    shared_width: bool | str = False,
    complex_ratio: float = 1.6,
    complex_variance: float = 0.1,
    min_core_fraction: float = 0.15,
    systematic_fraction: float = 0.1,
    min_contrast_sigmas: float = 0.5,
    osc_threshold: float = 2.5,
    progress: Callable[[int, int], None] | None = None,
    model: str | None = None,
    image: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    reference_note: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout: float | None = None,
    max_timeout: float | None = None,
    max_retries: int | None = None,
    max_concurrency: int | None = None,
    cache_dir=None,
    send_images: bool | None = None,
    budget_usd: float | None = None,
    cancel: Callable[[], bool] | None = None,
    confirm: Callable[[dict], bool] | None = None,
) -> pd.DataFrame:
    """Describe the zoning of every profile: plateaus, steps, slopes, oscillations, type.

    Parameters
    ----------
    prof : pandas.DataFrame
        Long profiles table (``label``, ``distance_um``, ``value``; optional ``channel``,
        ``sigma``, ``quantity``, ``n_pixels``, ``source``). ``distance_um`` is 0 at the rim
        and grows toward the core; for drawn lines the start point is taken as the rim.
    backend : {"offline", "openai"}
        ``"offline"``: the numeric descriptors below. ``"openai"``: the numeric descriptors,
        then :func:`napari_zonation.llm.describe_llm` adds ``llm_`` columns; the LLM options
        (``model`` ... ``confirm`` below) are forwarded to it. Choosing it is the user's
        consent to send the profiles (and crops) to the API.
    crystals : pandas.DataFrame, optional
        Crystal table with a ``label`` column (and ``phase`` for the interpretation). It is
        merged on ``label``: every crystal of the table gets a row (``describe_status``
        ``"no_profile"`` when it has no profile) and its columns are kept, except those the
        descriptors recompute (``core_value``, ``zoning_type``, ...), which are replaced.
    phase : str, optional
        Mineral of every profile (``"olivine"``, ``"clinopyroxene"``, ``"orthopyroxene"``,
        ``"plagioclase"`` or an alias such as ``"ol"``, ``"cpx"``, ``"plag"``); overrides
        the ``phase`` column of ``crystals``.
    channel : str, optional
        When ``prof`` has a ``channel`` column, the channel to describe. By default the first
        channel in the table is described (a ``UserWarning`` says which when there are
        several).
    reference : int, optional
        Label of a one-shot reference crystal: adds ``reference_similarity`` (0 to 1,
        :func:`napari_zonation.similarity.reference_similarity`); with ``"openai"`` the LLM
        also judges each crystal against it (``llm_matches_reference``,
        ``llm_reference_score``).
    criteria : list of str or dict, optional
        Plain-text criteria: ``criterion_<slug>`` columns judged offline when written in the
        vocabulary of :mod:`napari_zonation.criteria` (others are marked as needing the LLM);
        with ``"openai"`` the LLM's verdicts come beside them (``llm_criterion_<slug>``).
    quantity : str, optional
        What ``value`` is: ``"grey"`` (BSE), ``"Fo"``, ``"XFo"``, ``"Mg#"``, ``"An"``,
        an element, or ``"composition"`` (the mineral's primitive indicator: Fo / Mg# /
        An). Default: the profiles' ``quantity`` column, else ``"grey"``. Only the
        ``interpretation`` depends on it; a name without a rule for the mineral leaves
        it empty and ``interpretation_note`` says why.
    max_plateaus : int, default 5
        Most levels tried in the step model.
    min_points : int, default 5
        Profiles with fewer valid points get ``describe_status="too_few_points"``.
    min_plateau_points : int, default 3
        Fewest points of a core level; rim and inner levels need one fewer.
    merge_sigmas : float, default 1.0
        Neighbouring levels closer than this many noise sigmas are one level.
    min_gradient_fraction : float, default 0.2
        Shortest slope, as a fraction of the profile length (a shorter one is a step).
    gradient_evidence, osc_evidence : float
        Evidence (``-2 ln L`` units beyond ``k ln n``) a slope / a periodic mantle must
        add over the other models (calibrated defaults:
        :data:`napari_zonation.zoning_models.MARGINS`).
    shared_width : bool or "auto", default False
        ``True``: one width for all the steps of a profile (one ``sqrt(D t)``);
        ``"auto"``: the criterion chooses.
    complex_ratio, complex_variance : float, default 1.6 and 0.1
        A best model whose residual RMS exceeds ``complex_ratio`` times the noise, and
        whose residual structure beyond the noise is more than ``complex_variance`` of
        the profile's variance, makes the profile ``complex``.
    min_core_fraction : float, default 0.15
        Image shell profiles: shortest core level beyond the last step or a slope's
        core end, as a fraction of the profile (their deepest shells are unreliable).
    systematic_fraction : float, default 0.1
        Image shell profiles: systematic error of a shell median, in per-pixel noise
        sigmas (from ``sigma`` and ``n_pixels``), added in quadrature to ``sigma``.
        0 turns it off.
    min_contrast_sigmas : float, default 0.5
        Image shell profiles: smallest zoning span (and step), in per-pixel noise
        sigmas; weaker zoning is within a shell median's systematic error and the profile
        is unzoned. 0 turns it off.
    osc_threshold : float, default 2.5
        Turns of the lightly smoothed residual count toward ``n_oscillations`` when they
        reverse by more than this many noise sigmas.

progress : callable, optional
        ``progress(done, total)`` after each crystal is described (offline), or with
        ``"openai"`` as the LLM answers (forwarded to ``describe_llm``).
    model, image, labels, reference_note, base_url, api_key, timeout, max_timeout, \
max_retries, max_concurrency, cache_dir, send_images, budget_usd, cancel, confirm
        ``backend="openai"`` only: forwarded to :func:`napari_zonation.llm.describe_llm`
        (its defaults when None; see there).

    Returns
    -------
    pandas.DataFrame
        One row per label: ``label`` (``channel``), then :data:`DESCRIPTOR_COLUMNS`, then
        ``phase``. Values are in the profile's units; lengths in micrometres; slopes per
        micrometre toward the core (``d value / d distance``). Notable columns:

        - ``core_value``, ``rim_value``: the best model at the deepest point and at the rim
          (for a step held at the rim: the boundary's value); ``contrast = rim_value -
          core_value``; ``rel_contrast = contrast / |core_value|``.
        - ``noise_sigma``: robust 1-sigma noise of the residual from the best model
          (``1.4826 MAD(diff(r)) / sqrt(2)``), at least the median ``sigma`` of the points.
        - ``n_plateaus``: unzoned 1, one step 2, multi-step 3+; gradient and oscillatory 1;
          ``plateau_levels`` and ``plateau_extents_um`` rim first.
        - ``step_positions_um`` (from the rim; a step held at the rim is at its boundary),
          ``step_heights`` (rim side minus core side), ``step_widths_um`` (``w = 2 sqrt(D
          t)`` of each erf step).
        - ``max_slope_per_um``, ``mean_slope_per_um`` (least-squares slope of the data),
          ``gradient_slope_per_um`` (mean slope of a ``gradient``; else NaN),
          ``monotonicity`` (Spearman rho of value vs distance), ``core_start_um`` (depth
          where the core level begins).
        - ``n_oscillations``: alternating extremum pairs of the residual from the best
          non-oscillatory model; ``osc_period_um`` (mean over the mantle) and
          ``osc_amplitude`` (half peak-to-peak of the fundamental) of an ``oscillatory``
          profile.
        - ``best_model`` (``constant``, ``steps<K>``, ``gradient``, ``oscillatory``),
          ``model_detail`` (e.g. ``"step held at the rim"``, ``"curved slope to a core
          plateau"``) and ``misfit_ratio`` (residual RMS / noise, weighted by ``1 /
          sigma^2`` when the points have one).
        - ``zoning_type``: one of :data:`ZONING_TYPES`, in the measured quantity
          (``rim_brighter``: the rim's value is higher than the core's).
        - ``quantity``: what the values are (vocabulary name); ``interpretation``:
          ``normal``, ``reverse``, ``unzoned``, ``oscillatory``, ``unknown`` (mineral not
          known) or empty (no rule for the quantity in that mineral), with the reason in
          ``interpretation_note``.
        - ``describe_status``: ``ok``, ``too_few_points``, ``no_valid_points``,
          ``no_profile`` or ``error``; ``describe_error`` holds the reason, or for ``ok``
          rows a note on what was repaired (duplicated distances averaged, constant values).

    Raises
    ------
    ZonationInputError
        For a table that is not a profiles table, an unknown backend or channel, a bad option
        value, an LLM option with the offline backend, or a crystal table without ``label``.
    TypeError
        For a keyword the function does not have (a typo is named in the message).
    """
    if backend not in ("offline", "openai"):
        raise ZonationInputError(
            f"backend={backend!r} is unknown; use 'offline' (numeric descriptors) or 'openai' "
            "(numeric + LLM descriptors)."
        )
    given = locals()
    offline = {k: given[k] for k in _OFFLINE_OPTIONS}
    llm_options = {k: given[k] for k in _LLM_OPTIONS if given[k] is not None}
    if backend == "offline" and llm_options:
        raise ZonationInputError(
            f"option(s) {sorted(llm_options)} only apply to backend='openai' (the LLM); "
            "drop them or choose backend='openai'."
        )
    table = _describe_offline(
        prof,
        crystals=crystals,
        phase=phase,
        channel=channel,
        progress=progress if backend == "offline" else None,
        **offline,
    )
    table = _judge_offline(table, prof, reference, criteria, channel)
    if backend == "offline":
        return table
    try:
        from .llm import describe_llm
    except ImportError as exc:
        raise ImportError(
            "backend='openai' needs napari_zonation.llm.describe_llm, which could not be "
            f"imported ({exc}); use backend='offline' or update napari-zonation."
        ) from exc
    given = {"reference": reference, "criteria": criteria, "progress": progress}
    given = {k: v for k, v in given.items() if v is not None}
    return describe_llm(prof, table, **given, **llm_options)


#: the offline options of :func:`describe_zoning` and their defaults (read from its
#: signature: the defaults live there only)
_OFFLINE_OPTIONS: dict[str, object] = {
    name: par.default
    for name, par in inspect.signature(describe_zoning).parameters.items()
    if name
    in (
        "quantity",
        "max_plateaus",
        "min_points",
        "min_plateau_points",
        "merge_sigmas",
        "min_gradient_fraction",
        "gradient_evidence",
        "osc_evidence",
        "shared_width",
        "complex_ratio",
        "complex_variance",
        "min_core_fraction",
        "systematic_fraction",
        "min_contrast_sigmas",
        "osc_threshold",
    )
}
#: the options :func:`describe_zoning` forwards to the LLM backend
_LLM_OPTIONS: tuple[str, ...] = (
    "model",
    "image",
    "labels",
    "reference_note",
    "base_url",
    "api_key",
    "timeout",
    "max_timeout",
    "max_retries",
    "max_concurrency",
    "cache_dir",
    "send_images",
    "budget_usd",
    "cancel",
    "confirm",
)


def _judge_offline(table, prof, reference, criteria, channel) -> pd.DataFrame:
    """``reference_similarity`` and ``criterion_<slug>`` columns (offline, any backend)."""
    if reference is not None:
        from .similarity import reference_similarity

        table = table.assign(
            reference_similarity=reference_similarity(table, reference, prof, channel=channel)
        )
    if criteria:
        from .criteria import apply_criteria

        table = apply_criteria(table, criteria)
    return table


# --------------------------------------------------------------------------------------
# table level


def _check_options(opts: dict) -> None:
    q = opts["quantity"]
    if q is not None and not isinstance(q, str):
        raise ZonationInputError(
            f"quantity={q!r}; give the name of what the values are, e.g. 'grey', 'Fo', 'An', "
            "'Mg#' or 'composition'."
        )
    if not (opts["shared_width"] == "auto" or isinstance(opts["shared_width"], bool)):
        raise ZonationInputError(
            f"shared_width={opts['shared_width']!r}; use 'auto' (the criterion chooses one width "
            "per step or one per profile), True (one per profile) or False (one per step)."
        )
    if int(opts["max_plateaus"]) < 2:
        raise ZonationInputError("max_plateaus must be at least 2.")
    if int(opts["min_points"]) < 3:
        raise ZonationInputError("min_points must be at least 3.")


def _describe_offline(
    prof: pd.DataFrame,
    *,
    crystals: pd.DataFrame | None,
    phase: str | None,
    channel: str | None,
    progress: Callable[[int, int], None] | None = None,
    **opts,
) -> pd.DataFrame:
    opts = {**_OFFLINE_OPTIONS, **opts}
    _check_options(opts)
    check_profiles(prof)
    prof, chan = _select_channel(prof, channel)
    if crystals is not None:
        if not isinstance(crystals, pd.DataFrame) or "label" not in crystals.columns:
            raise ZonationInputError(
                "crystals must be a crystal table (DataFrame) with a 'label' column; "
                "see crystal_table."
            )

    rows = []
    rim_steps = {}  # label -> rim step over oscillatory bands (read for the interpretation)
    groups = prof.groupby("label", sort=True)
    total = int(groups.ngroups)
    for done, (lab, grp) in enumerate(groups, start=1):
        row = {"label": lab}
        if chan is not None:
            row["channel"] = chan
        row.update(_describe_group(grp, opts))
        row["quantity"] = _quantity_of(grp, opts["quantity"])
        if "_rim_step" in row:
            rim_steps[lab] = row.pop("_rim_step")
        rows.append(row)
        if progress is not None:
            progress(done, total)
    cols = ["label"] + (["channel"] if chan is not None else []) + list(DESCRIPTOR_COLUMNS)
    table = pd.DataFrame(rows, columns=cols)

    if crystals is not None:
        keep = [c for c in crystals.columns if c == "label" or c not in table.columns]
        cry = crystals[keep].drop_duplicates("label")
        table = cry.merge(table, on="label", how="outer", sort=True)
        missing = table["describe_status"].isna()
        table.loc[missing, "describe_status"] = "no_profile"
        table.loc[missing, "describe_error"] = "no profile points for this label"
        table.loc[missing, "zoning_type"] = None
    if phase is not None:
        table["phase"] = phase
    elif "phase" not in table.columns:
        table["phase"] = None
    readings = [
        _reading(z, c, p, q, rim_steps.get(lab)) if s == "ok" else (None, "")
        for lab, z, c, p, q, s in zip(
            table["label"],
            table["zoning_type"],
            table["contrast"],
            table["phase"],
            table["quantity"],
            table["describe_status"],
            strict=True,
        )
    ]
    table["interpretation"] = [r[0] for r in readings]
    table["interpretation_note"] = [r[1] for r in readings]
    int_cols = ["n_points", "n_nan_dropped", "n_plateaus", "n_steps", "n_oscillations"]
    for c in int_cols:
        table[c] = table[c].astype("Int64")
    return table.reset_index(drop=True)


def _reading(zoning_type, contrast, phase, quantity, rim_step) -> tuple[str | None, str]:
    """The vocabulary's interpretation; bands under a stepped rim are read by their rim
    step (a reverse rim on an oscillatory core is reverse zoning at the rim)."""
    if zoning_type == "oscillatory" and rim_step is not None and rim_step != 0:
        step_type = "rim_brighter" if rim_step > 0 else "rim_darker"
        reading, note = interpret(step_type, rim_step, phase, quantity)
        if reading in ("normal", "reverse"):
            return reading, f"the rim step over oscillatory bands is {reading}"
        return reading, note
    return interpret(zoning_type, contrast, phase, quantity)


def _quantity_of(grp: pd.DataFrame, given: str | None) -> str:
    """The quantity of one profile: the option, else its ``quantity`` column, else grey."""
    if given is not None:
        return parse_quantity(given).name
    if "quantity" in grp.columns:
        names = grp["quantity"].dropna().astype(str)
        if len(names):
            return parse_quantity(names.mode().iloc[0]).name
    return "grey"


def _select_channel(prof: pd.DataFrame, channel: str | None) -> tuple[pd.DataFrame, object]:
    from .channels import select_channel  # one rule for every stage (the LLM's too)

    return select_channel(prof, channel)



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


def candidate_fits(prof: pd.DataFrame, **options) -> pd.DataFrame:
    """Every model fitted to every profile, with its criterion and eligibility.

    For the calibration of the family margins (``benchmarks/zoning.py --calibrate``): one row
    per label and model with ``label``, ``family``, ``name``, ``k``, ``criterion`` (without
    margin), ``eligible``, ``why`` and the ``zoning_type`` the model would give.
    """
    opts = {**_OFFLINE_OPTIONS, **options}
    _check_options(opts)
    check_profiles(prof)
    prof, _ = _select_channel(prof, None)
    rows = []
    for lab, grp in prof.groupby("label", sort=True):
        sink: list = []
        _describe_group(grp, {**opts, "_sink": sink})
        for fits in sink:
            for f in fits:
                if f.family == "steps":
                    lv = f.info["levels"]
                    zt = "rim_brighter" if lv[0] > lv[-1] else "rim_darker"
                    zt = "multi_step" if len(lv) > 2 else zt
                else:
                    zt = {"constant": "unzoned", "ramp": "gradient"}.get(f.family, f.family)
                rows.append(
                    {
                        "label": lab,
                        "family": f.family,
                        "name": f.name,
                        "k": f.k,
                        "criterion": f.criterion,
                        "eligible": f.eligible,
                        "why": f.why,
                        "zoning_type": zt,
                    }
                )
    return pd.DataFrame(rows)


def best_fit(profile: pd.DataFrame, **options) -> zm.Fit | None:
    """The model :func:`describe_zoning` chose for one profile (for plots: its ``predict``
    draws it); None when the profile could not be described."""
    opts = {**_OFFLINE_OPTIONS, **options}
    _check_options(opts)
    sink: list = []
    _describe_group(profile, {**opts, "_sink": sink})
    if not sink:
        return None
    return min((f for f in sink[0] if f.eligible), key=lambda f: f.score)


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
    """Per-pixel 1-sigma noise behind shell medians: ``sigma sqrt(n) / 1.2533`` (median over
    the points with ``n_pixels > 1``); 0 for points that are not aggregates."""
    if npx is None:
        return 0.0
    good = np.isfinite(s) & (s > 0) & np.isfinite(npx) & (npx > 1)
    if not good.any():
        return 0.0
    return float(np.median(s[good] * np.sqrt(npx[good])) / np.sqrt(np.pi / 2))


def _rounding_floor(v: np.ndarray) -> float:
    """Rounding error of values stored on a 0.5 or 1 grid (shell medians of 8-bit images,
    whose first differences are mostly 0), else 0."""
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
    return data, {"sigma_floor": sigma_floor}


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
