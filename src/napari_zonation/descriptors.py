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
``sigma`` (a few percent of foreign pixels move a shell's value coherently over many shells),
and a smallest credible zoning span of ``min_contrast_sigmas`` per-pixel sigmas; their deepest
``min_core_fraction`` of the profile (few pixels, off-centre sections) cannot hold a step.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np
import pandas as pd

from . import zoning_models as zm
from ._profile_description import DESCRIPTOR_COLUMNS, _describe_group
from ._validation import ZonationInputError, check_profiles
from .vocabulary import ZONING_TYPES, interpret, parse_quantity

__all__ = ["describe_zoning", "ZONING_TYPES", "DESCRIPTOR_COLUMNS"]


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
        Image shell profiles: systematic error of a shell's value, in per-pixel noise
        sigmas (from ``sigma`` and ``n_pixels``), added in quadrature to ``sigma``.
        0 turns it off.
    min_contrast_sigmas : float, default 0.5
        Image shell profiles: smallest zoning span (and step), in per-pixel noise
        sigmas; weaker zoning is within a shell value's systematic error and the profile
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
        - ``depth_geometry``, ``geometry_note``: only for profiles from
          :func:`~napari_zonation.profiles.profiles_in_own_geometry`: the depth each
          crystal's profile was read in (``distance`` from the rim, or ``scaled``: the
          relative radius of its outline scaled about the centroid), and why a crystal was
          not tested.

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
    if "depth_geometry" in prof.columns:  # profiles_in_own_geometry: which depth was read
        first = prof.groupby("label", sort=True)[["depth_geometry", "geometry_note"]].first()
        table = table.join(first, on="label")

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
