"""Numeric zoning descriptors: profiles table -> one row per crystal.

Each core-to-rim profile is compared with four physical models of zoning, each fitted by
least squares to the whole profile and scored by the Bayesian information criterion
``BIC = n ln(RSS / n) + k ln n`` (Gaussian noise of unknown variance: no threshold depends on
the image's brightness, bit depth or units):

``constant``
    one plateau (``k = 1``).
``steps<K>``, ``K = 2 .. max_plateaus``
    ``K`` plateaus joined by error-function steps, the shape growth then diffusion gives
    (``value = a + (b - a) (1 + erf((d - p) / w)) / 2`` per step, ``w = 2 sqrt(D t)``;
    ``k = 3K - 2``). The starting step positions are those of the optimal ``K``-segment
    piecewise-constant partition (segment-neighbourhood dynamic programming, Auger &
    Lawrence 1989), so a diffused step is fitted as one wide step, not a staircase. A fit
    whose plateau levels leave the data's range (two
    near-coincident steps of huge opposite heights drawing a bump between alternating
    plateaus) is refitted with every level bounded by the range of the data.
``gradient``
    a core plateau, then a straight slope to the rim (a hinge, ``k = 3``), by exhaustive
    search over the hinge position.
``oscillatory``
    a sinusoidal mantle from the rim, by a grid search over mantle depth and frequency
    (linear least squares at each node), then refined; either the mantle ends at a core
    plateau after at least two periods (``k = 6``; fewer alternations ending at a core are
    a multi-step profile), or it reaches the deepest point after at least 1.5 periods
    (``k = 5``: a short lath, whose oscillatory bands reach the core of the section).
    Over at least three periods the frequency may also drift linearly with depth (one more
    parameter, kept when the BIC pays for it): band spacing that widens or narrows toward
    the core left such mantles ``complex``.

A model can only win when it is what its name says:

- every plateau of a step model spans at least ``min_plateau_points`` points, and differs
  from its neighbours by at least ``merge_sigmas`` noise sigmas (else they are one plateau)
  and, in image shell profiles, by the smallest credible zoning span below (each step, not
  only the whole zoning, must exceed what the shells' systematic errors can fake);
  a step's outer plateau is reached before the rim (``p - rim >= 1.5 w``, the erf is 98 %
  complete), else the "step" is a slope to the rim;
- a gradient is long (its slope covers at least ``min_gradient_fraction`` of the profile; a
  shorter ramp at the rim is a diffused step) and must beat the best step model by
  ``gradient_evidence`` (positive evidence on the Kass & Raftery 1995 scale: growth makes
  plateaus joined by steps, a continuous slope is the claim that needs support);
- an oscillatory mantle must beat every other model by ``osc_evidence`` (strong evidence:
  the search over the period finds some fit in pure noise).

- zoning is larger than what the shells' systematic errors can fake: for image shell
  profiles (points with ``n_pixels``) the fitted model spans at least
  ``min_contrast_sigmas`` (0.5) *per-pixel* noise sigmas. A fraction ``f`` of foreign or
  misplaced pixels in a shell (15-50 % in the first shells of a segmented crystal, a
  neighbour's pixels in a merged label, distances distorted at a contact or the image edge)
  moves a clipped median by about ``1.25 f`` pixel sigmas, coherently over many shells, so
  that averaging many shells does not remove it; medians of 8-bit pixels also move in whole
  DN. Below that span a model is not eligible and the profile is unzoned.
- the core is a plateau: the last step (or a gradient's hinge) leaves at least
  ``min_core_fraction`` of the profile to the core, so that the core tail of an image
  profile (deep shells of few pixels, off-centre sections, distances distorted by a
  neighbour or the image edge) is not read as a zone.

The lowest BIC among the eligible models gives ``zoning_type``; a winner that leaves
structured residuals (residual RMS above ``complex_ratio`` times the point-to-point noise) that
are also a sizeable share of the profile's variance (more than ``complex_variance``: the model
explains less than 90 % of it) is reported as ``complex``.

Profiles measured on images carry a ``sigma`` per point (the standard error of a shell
median): all fits are then weighted least squares with weights ``1 / sigma^2`` (normalised to
a mean of 1, so the BIC keeps its form), which keeps the noisy deepest shells, and shells
crossed by a crack or an inclusion, from adding steps. The noise is never taken below the
median ``sigma``, nor below the rounding error of values stored on a 0.5 or 1 grid (shell
medians of an 8-bit image, whose first differences are mostly 0).

Measured on ``make_profiles(n_per_type=20, phase="mixed")``, 3 seeds (360 profiles per
noise level): ``zoning_type`` right for ~94 % at noise 0.01 of full scale and ~82 % at 0.02
(``benchmarks/zoning.py --profiles-1d``); most errors are steps <-> gradient at low
contrast-to-noise. On segmented synthetic thin sections (``benchmarks/zoning.py``: 6 scenes
of 768 x 768 um, 22 crystals, noise 0.02, through ``segment_crystals`` and ``rim_profiles``)
it is right for 91 % of the crystals (``n_plateaus`` 88 %, rim sign 98 %); on the same
scenes profiled on the generator's true labels (``--truth-labels``) for 95.5 % (``n_plateaus``
91 %). Unzoned crystals used to get steps or slopes of 1-2 DN near the rim: the
segmentation's labels reach over the groundmass in bumps (15-50 % foreign pixels in the first
shell, up to 10-20 % at 6 um for some crystals), which moves a plain shell median by about
1.25 f pixel sigmas. ``rim_profiles`` now clips such pixels (``clip_sigmas``), and points that
are medians of many pixels carry a systematic error floor here (``systematic_fraction``, 0.1
pixel sigma, added in quadrature to ``sigma`` and to the BIC's variance): unzoned 26 of 27
right (17 before). Short plagioclase laths whose oscillatory bands reach the core were
``complex`` or steps before the truncated oscillatory mantle (type 88.6 % -> 90.9 % on the
segmented scenes, 92.4 % -> 95.5 % on true labels). The remaining errors are mostly in the
profiles, not the models: crystals cut by the image edge or touching a neighbour, whose
deepest shells mix zones (a "core tail" that returns toward the rim value), multi-step
profiles whose 3rd-4th plateaus are a few um wide and 3-8 DN high (read as one fewer
plateau), and wide diffused steps near the rim read as gradients.

Drifting period (segmented scenes, noise 0.01 and 0.02): oscillatory crystals of 3-5
periods whose measured band spacing drifts with depth (the shells' distances of a segmented
outline) were fitted by a constant period to 1.6-3 times the noise and called ``complex``;
with the drift, seeds 21-26 went from ARI 0.868 to 0.884 (noise 0.01) and 0.907 to 0.924
(0.02), the other scene sets and 1D ``make_profiles`` unchanged. Over two periods the drift
let a 4-plateau alternating multi-step (1D) fit as an oscillation, hence three.

``min_contrast_sigmas`` (segmented scenes, ``benchmarks/zoning.py``, cached segmentations):
unzoned crystals whose own-segmentation profiles carried 0.6-1.7 DN of coherent drift
(0.15-0.5 pixel sigmas; merged or touching labels, edge-cut crystals, whole-DN medians) had
been typed gradient, rim_darker, rim_brighter or multi_step. With the criterion, zoning_type
on own segmentation rises from 90.9 to 91.7 % (noise 0.02, seeds 0-5), 90.9 to 91.7 %
(seeds 11-16), 90.2 to 91.7 % (noise 0.01) and 85.6 to 87.1 % (noise 0.03); the results on
true labels and on 1D ``make_profiles`` are unchanged.

Step fits (zoning scenes, noise 0.02, cached segmentations, seeds 0-5 / 11-16): two
alternating four-plateau crystals were fitted as a bump of two near-coincident steps of
+-100 DN (a plateau no point reaches, ineligible, so three plateaus won); levels are now
bounded by the data's range when the unbounded fit leaves it. Own-segmentation profiles
had extra plateaus from steps smaller than what shell systematics can fake (0.5 pixel
sigmas, about 2.6 DN at noise 0.02: a 1.5 DN shift deep in a crystal touching a neighbour
and the image edge); every step must now exceed it. Together, ARI of zoning_type
0.813 -> 0.849 and 0.911 -> 0.930, n_plateaus 118 -> 119 and 117 -> 121 of 132 (own
segmentation); on true labels ARI unchanged (0.928, 0.972), n_plateaus 123 -> 124 and
128 -> 129; no figure fell at noise 0.01 or 0.03 either, and 1D ``make_profiles`` are
unchanged at noise 0.01. Tried and not kept: one width per crystal chosen by the BIC
(``shared_width="auto"``: n_plateaus on true labels 123 -> 127, but ARI on own segmentation
0.911 -> 0.860, because a shared width makes an extra plateau two parameters cheaper); a
second, wide start of every step fit (no gain on the scenes; on 1D profiles a wide erf then
out-fits the ramp of some gradients).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy import optimize, stats
from scipy.special import erf

from ._validation import ZonationInputError, check_profiles

__all__ = ["describe_zoning", "ZONING_TYPES", "DESCRIPTOR_COLUMNS"]

ZONING_TYPES: tuple[str, ...] = (
    "unzoned",
    "rim_brighter",
    "rim_darker",
    "gradient",
    "oscillatory",
    "multi_step",
    "complex",
)

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
    "misfit_ratio",
    "zoning_type",
    "interpretation",
    "describe_status",
    "describe_error",
)

# Minerals whose BSE brightness follows Fe (Fe-Mg solid solutions) and plagioclase (Ca-Na).
_FEMG = {"olivine", "clinopyroxene", "orthopyroxene"}
_PHASE_ALIASES = {
    "ol": "olivine",
    "olv": "olivine",
    "olivine": "olivine",
    "cpx": "clinopyroxene",
    "clinopyroxene": "clinopyroxene",
    "augite": "clinopyroxene",
    "diopside": "clinopyroxene",
    "opx": "orthopyroxene",
    "orthopyroxene": "orthopyroxene",
    "enstatite": "orthopyroxene",
    "pl": "plagioclase",
    "plg": "plagioclase",
    "plag": "plagioclase",
    "plagioclase": "plagioclase",
}

#: a step's outer plateau must be reached before the rim: p - rim >= this many widths w
_RIM_PLATEAU_WIDTHS = 1.5
#: fewest periods of an oscillatory mantle that ends at a core plateau (fewer alternations
#: are a multi-step profile), and of one that reaches the deepest point (cut by the section)
_OSC_MIN_PERIODS = 2.0
_OSC_MIN_PERIODS_TRUNCATED = 1.5
#: fewest periods of a mantle whose frequency may drift with depth (a drift is measured from
#: period-to-period differences: at least two of them)
_OSC_MIN_PERIODS_CHIRP = 3.0

_OFFLINE_OPTIONS = {
    "quantity": "grey",
    "max_plateaus": 5,
    "min_points": 5,
    "complex_ratio": 1.6,
    "complex_variance": 0.1,
    "osc_threshold": 2.5,
    "osc_evidence": 6.0,
    "min_gradient_fraction": 0.2,
    "min_plateau_points": 3,
    "merge_sigmas": 1.0,
    "shared_width": False,
    "gradient_evidence": 2.0,
    "min_core_fraction": 0.15,
    "systematic_fraction": 0.1,
    "min_contrast_sigmas": 0.5,
}


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
    **options,
) -> pd.DataFrame:
    """Describe the zoning of every profile: plateaus, steps, slopes, oscillations, type.

    Parameters
    ----------
    prof : pandas.DataFrame
        Long profiles table (``label``, ``distance_um``, ``value``; optional ``channel``,
        ``sigma``, ``source``). ``distance_um`` is 0 at the rim and grows toward the core; for
        drawn lines the start point is taken as the rim. Rows with a NaN distance or value
        are dropped and counted (``n_nan_dropped``).
    backend : {"offline", "openai"}
        ``"offline"``: the numeric descriptors below. ``"openai"``: the numeric descriptors,
        then :func:`napari_zonation.llm.describe_llm` adds ``llm_`` columns; the remaining
        ``options`` (``model``, ``image``, ``labels``, ...) are forwarded to it. Choosing it
        is the user's consent to send the profiles (and crops) to the API.
    crystals : pandas.DataFrame, optional
        Crystal table with a ``label`` column (and ``phase`` for the interpretation). It is
        merged on ``label``: every crystal of the table gets a row (``describe_status``
        ``"no_profile"`` when it has no profile) and its columns are kept, except those the
        descriptors recompute (``core_value``, ``zoning_type``, ...), which are replaced.
    phase : str, optional
        Mineral of every profile (``"olivine"``, ``"clinopyroxene"``, ``"orthopyroxene"``,
        ``"plagioclase"`` or a short alias such as ``"ol"``, ``"cpx"``, ``"plag"``);
        overrides the ``phase`` column of ``crystals``.
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
    **options
        Offline options:

        ``quantity`` : {"grey", "composition"}, default ``"grey"``
            What ``value`` is. ``zoning_type`` always names the profile in the measured
            quantity (``rim_brighter`` = rim value above the core's; DESIGN.md), whatever
            the mineral; only ``interpretation`` depends on it. In grey (BSE), a brighter
            olivine / pyroxene rim (Fe-richer) is normal zoning and a brighter plagioclase
            rim (An-richer) reverse zoning. In composition (Fo, Mg#, An) a rim *lower* than
            the core is normal zoning for all three minerals.
        ``max_plateaus`` : int, default 5
            Most plateaus tried in the step model.
        ``min_points`` : int, default 5
            Profiles with fewer valid points get ``describe_status="too_few_points"``.
        ``min_plateau_points`` : int, default 3
            Shortest plateau, in points.
        ``merge_sigmas`` : float, default 1.0
            Neighbouring plateaus closer than this many noise sigmas are one plateau.
        ``min_gradient_fraction`` : float, default 0.2
            Shortest gradient, as a fraction of the profile length.
        ``min_core_fraction`` : float, default 0.15
            Shortest core plateau (beyond the last step or the gradient's hinge), as a
            fraction of the profile length: structure in the
            deepest few micrometres (the core tail: few pixels, off-centre sections,
            distances distorted by a neighbour or the image edge) is not a zone.
        ``gradient_evidence``, ``osc_evidence`` : float, default 2.0 and 6.0
            BIC margins a gradient / an oscillatory mantle must win by (module notes).
        ``shared_width`` : bool or "auto", default False
            ``True``: fit one width for all the steps of a profile (one ``sqrt(D t)`` per
            crystal). ``"auto"``: fit both and let the BIC choose per profile (it reads more
            4-plateau staircases right on true labels, but a shared width makes an extra
            plateau cheaper, and it lost accuracy on segmented scenes and 1D profiles; see
            the module notes).
        ``complex_ratio``, ``complex_variance`` : float, default 1.6 and 0.1
            A best model whose residual RMS exceeds ``complex_ratio`` times the
            point-to-point noise leaves significant structure unexplained; when that
            structure (the residual variance beyond the noise's) is also more than
            ``complex_variance`` of the profile's variance (the model explains less than
            90 % of it), the profile is ``complex``. The second test keeps a profile whose
            model describes it well but not to the noise level (the shells of a touching
            or cracked crystal, an oscillation of slightly varying period) typed by it.
        ``systematic_fraction`` : float, default 0.1
            Systematic error of points that are medians of ``n_pixels`` pixels (image shell
            profiles), as a fraction of the per-pixel noise (recovered from ``sigma`` and
            ``n_pixels``). It is added in quadrature to every point's ``sigma`` and to the
            variance in the BIC, so that shifts of a shell median that many pixels make
            significant but that stay within what a few percent of foreign pixels, a seam or
            beam drift cause are not read as steps. Profiles without ``n_pixels`` (measured
            traverses, CSV imports) are unaffected. 0 turns it off.
        ``min_contrast_sigmas`` : float, default 0.5
            Smallest span (highest minus lowest value) of a zoned model, in per-pixel noise
            sigmas (recovered from ``sigma`` and ``n_pixels``, as for
            ``systematic_fraction``): weaker "zoning" is within what a shell median's
            systematic errors make (module notes) and the profile is unzoned. Profiles
            without ``n_pixels`` are unaffected. 0 turns it off.
        ``osc_threshold`` : float, default 2.5
            Turns of the lightly smoothed residual count toward ``n_oscillations`` when they
            reverse by more than this many noise sigmas.

    Returns
    -------
    pandas.DataFrame
        One row per label: ``label`` (``channel``), then :data:`DESCRIPTOR_COLUMNS`, then
        ``phase``. Values are in the profile's units; lengths in micrometres; slopes per
        micrometre toward the core (``d value / d distance``). Notable columns:

        - ``core_value``, ``rim_value``: the best model at the deepest point and at the rim;
          ``contrast = rim_value - core_value``; ``rel_contrast = contrast / |core_value|``.
        - ``noise_sigma``: robust 1-sigma noise, ``1.4826 MAD(diff(r)) / sqrt(2)`` of the first
          differences of the residual ``r`` from the best model (plain first differences of
          the data would count steep zoning as noise), at least the median ``sigma`` of the
          points and their rounding error (module notes).
        - ``n_plateaus``: unzoned 1, one step 2, multi-step 3+; gradient and oscillatory 1
          (their core plateau); ``plateau_levels`` and ``plateau_extents_um`` rim first.
        - ``step_positions_um`` (from the rim), ``step_heights`` (rim side minus core side,
          so they add up to the contrast), ``step_widths_um`` (``w = 2 sqrt(D t)`` of each
          erf step; ``sqrt(D t) = w / 2``).
        - ``max_slope_per_um`` (steepest absolute slope of the best model),
          ``mean_slope_per_um`` (least-squares slope of the data), ``gradient_slope_per_um``
          (the ramp of a ``gradient``; else NaN), ``monotonicity`` (Spearman rho of value vs
          distance), ``core_start_um`` (depth where the core plateau begins).
        - ``n_oscillations``: alternating extremum pairs (turns / 2, rounded up) of the
          residual from the best non-oscillatory model, smoothed by a one-point Gaussian,
          that reverse by more than ``osc_threshold`` noise sigmas;
          ``osc_period_um`` and ``osc_amplitude`` (half peak-to-peak) of the fitted mantle for
          ``oscillatory`` profiles (NaN and 0 otherwise).
        - ``best_model`` (``constant``, ``steps<K>``, ``gradient``, ``oscillatory``) and
          ``misfit_ratio`` (residual RMS / noise_sigma; the RMS is weighted by
          ``1 / sigma^2`` when the points carry a ``sigma``).
        - ``zoning_type``: ``unzoned``, ``rim_brighter``, ``rim_darker``, ``gradient``,
          ``oscillatory``, ``multi_step``, ``complex``. ``rim_brighter`` / ``rim_darker``
          name the BSE brightness of the rim: in grey, a higher value at the rim; in
          composition, a higher value for plagioclase (An) but a *lower* value for olivine
          and pyroxenes (Fo, Mg# fall as Fe rises), so that a crystal gets the same type
          from its BSE image and from its analyses. With no known mineral, composition
          profiles are named by value (higher at the rim = ``rim_brighter``).
        - ``interpretation``: ``normal``, ``reverse``, ``unzoned``, ``oscillatory``, or
          ``unknown`` when the mineral is not known.
        - ``describe_status``: ``ok``, ``too_few_points``, ``no_profile`` or ``error``;
          ``describe_error`` holds the message.

    Raises
    ------
    ZonationInputError
        For a table that is not a profiles table, an unknown backend, channel, quantity or
        option, or a crystal table without ``label``.
    """
    if backend not in ("offline", "openai"):
        raise ZonationInputError(
            f"backend={backend!r} is unknown; use 'offline' (numeric descriptors) or 'openai' "
            "(numeric + LLM descriptors)."
        )
    offline = {k: options.pop(k) for k in list(options) if k in _OFFLINE_OPTIONS}
    if backend == "offline" and options:
        raise ZonationInputError(
            f"unknown option(s) {sorted(options)} for describe_zoning(backend='offline'); "
            f"known options: {sorted(_OFFLINE_OPTIONS)}."
        )
    table = _describe_offline(prof, crystals=crystals, phase=phase, channel=channel, **offline)
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
    given = {"reference": reference, "criteria": criteria}
    return describe_llm(prof, table, **{k: v for k, v in given.items() if v is not None}, **options)


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


def _describe_offline(
    prof: pd.DataFrame,
    *,
    crystals: pd.DataFrame | None,
    phase: str | None,
    channel: str | None,
    **opts,
) -> pd.DataFrame:
    opts = {**_OFFLINE_OPTIONS, **opts}
    if opts["quantity"] not in ("grey", "composition"):
        raise ZonationInputError(
            f"quantity={opts['quantity']!r}; use 'grey' (BSE grey levels) or 'composition' "
            "(Fo, Mg#, An)."
        )
    if not (opts["shared_width"] == "auto" or isinstance(opts["shared_width"], bool)):
        raise ZonationInputError(
            f"shared_width={opts['shared_width']!r}; use 'auto' (the BIC chooses one width "
            "per step or one per crystal), True (one per crystal) or False (one per step)."
        )
    if int(opts["max_plateaus"]) < 2:
        raise ZonationInputError("max_plateaus must be at least 2.")
    check_profiles(prof)
    prof, chan = _select_channel(prof, channel)
    if crystals is not None:
        if not isinstance(crystals, pd.DataFrame) or "label" not in crystals.columns:
            raise ZonationInputError(
                "crystals must be a crystal table (DataFrame) with a 'label' column; "
                "see crystal_table."
            )

    rows = []
    for lab, grp in prof.groupby("label", sort=True):
        row = {"label": lab}
        if chan is not None:
            row["channel"] = chan
        row.update(_describe_group(grp, opts))
        rows.append(row)
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
    table["interpretation"] = [
        _interpret(z, c, p, opts["quantity"]) if s == "ok" else None
        for z, c, p, s in zip(
            table["zoning_type"],
            table["contrast"],
            table["phase"],
            table["describe_status"],
            strict=True,
        )
    ]
    int_cols = ["n_points", "n_nan_dropped", "n_plateaus", "n_steps", "n_oscillations"]
    for c in int_cols:
        table[c] = table[c].astype("Int64")
    return table.reset_index(drop=True)


def _select_channel(prof: pd.DataFrame, channel: str | None) -> tuple[pd.DataFrame, object]:
    from .channels import select_channel  # one rule for every stage (the LLM's too)

    return select_channel(prof, channel)



def _normalise_phase(phase) -> str | None:
    if phase is None or (isinstance(phase, float) and np.isnan(phase)):
        return None
    return _PHASE_ALIASES.get(str(phase).strip().lower())


def _interpret(zoning_type, contrast, phase, quantity: str) -> str | None:
    """Petrological reading of a zoning type for a mineral (DESIGN.md)."""
    if zoning_type is None or (isinstance(zoning_type, float) and np.isnan(zoning_type)):
        return None
    if zoning_type == "unzoned":
        return "unzoned"
    if zoning_type == "oscillatory":
        return "oscillatory"
    mineral = _normalise_phase(phase)
    if mineral is None:
        return "unknown"
    if not np.isfinite(contrast) or contrast == 0:
        return "unzoned"
    higher_rim = contrast > 0
    if quantity == "composition":
        # Fo, Mg# and An all fall toward the rim in normal zoning
        return "reverse" if higher_rim else "normal"
    if mineral in _FEMG:  # brighter = Fe-richer
        return "normal" if higher_rim else "reverse"
    return "reverse" if higher_rim else "normal"  # plagioclase: brighter = An-richer


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
        zoning_type=None,
        interpretation=None,
        describe_status=status,
        describe_error=error,
    )
    return out


def _describe_group(grp: pd.DataFrame, opts: dict) -> dict:
    d = pd.to_numeric(grp["distance_um"], errors="coerce").to_numpy(dtype=float)
    v = pd.to_numeric(grp["value"], errors="coerce").to_numpy(dtype=float)
    if "sigma" in grp.columns:
        s = pd.to_numeric(grp["sigma"], errors="coerce").to_numpy(dtype=float)
    else:
        s = np.full(d.shape, np.nan)
    ok = np.isfinite(d) & np.isfinite(v)
    n_nan = int((~ok).sum())
    d, v, s = d[ok], v[ok], s[ok]
    order = np.argsort(d, kind="stable")
    d, v, s = d[order], v[order], s[order]
    n = d.size
    if n < int(opts["min_points"]):
        return _empty_descriptors(
            n,
            n_nan,
            "too_few_points",
            f"{n} valid points (< min_points={opts['min_points']}); measure a longer profile.",
        )
    npx = None
    if "n_pixels" in grp.columns:
        npx = pd.to_numeric(grp["n_pixels"], errors="coerce").to_numpy(dtype=float)[ok][order]
    try:
        pixel_sigma = _pixel_sigma(s, npx)
        sys_sigma = float(opts["systematic_fraction"]) * pixel_sigma
        s = np.sqrt(s**2 + sys_sigma**2)
        floor = _noise_floor(v, s)
        opts = {
            **opts,
            "_noise_floor": floor,
            "_weights": _weights(s, floor),
            "_systematic": sys_sigma,
            "_min_range": float(opts["min_contrast_sigmas"]) * pixel_sigma,
        }
        out = _describe_arrays(d, v, opts)
    except Exception as exc:  # one crystal's failure must not stop the others
        return _empty_descriptors(n, n_nan, "error", f"{type(exc).__name__}: {exc}")
    out["n_nan_dropped"] = n_nan
    return out


def _robust_sigma_diff(r: np.ndarray) -> float:
    """1-sigma of white noise from the MAD of first differences."""
    if r.size < 3:
        return 0.0
    dr = np.diff(r)
    return float(1.4826 * np.median(np.abs(dr - np.median(dr))) / np.sqrt(2.0))


def _pixel_sigma(s: np.ndarray, npx: np.ndarray | None) -> float:
    """Per-pixel 1-sigma noise behind aggregated points (shell medians), in value units.

    A point that is the median of ``n`` pixels has a statistical ``sigma`` of about
    ``1.25 sigma_px / sqrt(n)``, which shrinks with ``n``; its systematic error does not: a
    fraction ``f`` of foreign pixels in the shell (groundmass or microlites left at the
    outline by a segmentation, a seam, a crack) moves it by about ``1.25 f sigma_px``, and
    beam-current drift moves it too. Returns ``sigma_px = sigma sqrt(n) / 1.2533`` (median
    over the points with ``n_pixels > 1``); 0 for points that are not aggregates (no
    ``n_pixels`` column, or one pixel each). The systematic floor (``systematic_fraction``)
    and the smallest credible zoning contrast (``min_contrast_sigmas``) are multiples of it.
    """
    if npx is None:
        return 0.0
    good = np.isfinite(s) & (s > 0) & np.isfinite(npx) & (npx > 1)
    if not good.any():
        return 0.0
    return float(np.median(s[good] * np.sqrt(npx[good])) / np.sqrt(np.pi / 2))


def _noise_floor(v: np.ndarray, s: np.ndarray) -> float:
    """Least credible 1-sigma noise of a profile's points.

    The median of the points' own ``sigma`` (the standard error of a shell median, or the
    analytical uncertainty), and at least the rounding error of values stored on a grid of
    0.5 or 1 (shell medians of an 8-bit image): there the first differences are mostly 0
    and their MAD would call the profile noise-free, so that every wiggle becomes a step.
    """
    floor = 0.0
    good = s[np.isfinite(s) & (s > 0)]
    if good.size:
        floor = float(np.median(good))
    for q in (0.5, 1.0)[::-1]:
        if v.size and np.ptp(v) > q and np.allclose(v / q, np.round(v / q), atol=1e-9, rtol=0):
            floor = max(floor, q / np.sqrt(12.0))
            break
    return floor


def _weights(s: np.ndarray, floor: float) -> np.ndarray | None:
    """Least-squares weights ``1 / sigma^2`` of the points, normalised to a mean of 1.

    Shells near a crystal's core hold few pixels (and a crack or inclusion moves their median
    more): their larger ``sigma`` keeps a short, noisy core tail from being fitted as extra
    steps. Sigmas below the noise floor are raised to it, so that no point dominates. ``None``
    (equal weights) when the points carry no usable sigma.
    """
    if s.size == 0 or not np.any(np.isfinite(s) & (s > 0)) or floor <= 0:
        return None
    sig = np.where(np.isfinite(s) & (s > 0), s, np.nan)
    sig = np.where(np.isfinite(sig), sig, np.nanmedian(sig))
    w = 1.0 / np.maximum(sig, floor) ** 2
    return w / w.mean()


def _bic(rss: float, n: int, k: int, floor: float, systematic: float = 0.0) -> float:
    # the variance is the residual's plus the systematic error's: structure below the
    # systematic level buys little likelihood, so it does not pay for extra parameters
    return n * np.log(max(rss / n, floor) + systematic**2) + k * np.log(n)


def _describe_arrays(d: np.ndarray, v: np.ndarray, opts: dict) -> dict:
    n = d.size
    d0, d1 = float(d[0]), float(d[-1])
    length = d1 - d0
    spacing = float(np.median(np.diff(d))) if n > 1 else 1.0
    spacing = spacing if spacing > 0 else max(length / max(n - 1, 1), 1e-9)
    scale = float(np.ptp(v))
    base = dict(n_points=n, length_um=length, describe_status="ok", describe_error="")

    slope = float(np.polyfit(d, v, 1)[0]) if length > 0 else 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = float(stats.spearmanr(d, v).statistic) if scale > 0 and length > 0 else 0.0
    rho = 0.0 if not np.isfinite(rho) else rho

    if scale == 0 or length == 0:
        level = float(np.mean(v))
        return _assemble(
            base,
            d,
            v,
            model=_constant_model(v),
            noise=0.0,
            mean_slope=0.0,
            rho=0.0,
            n_osc=0,
            opts=opts,
            misfit=1.0,
            level_override=level,
        )

    candidates = _fit_candidates(d, v, spacing, opts)
    best = min((c for c in candidates if c["eligible"]), key=lambda c: c["bic"])

    resid = v - best["predict"](d)
    noise = max(_robust_sigma_diff(resid), float(opts.get("_noise_floor", 0.0)))
    # weighted RMS (weights of mean 1): a noisy core tail with a large sigma counts less
    w = opts.get("_weights")
    w = np.ones(n) if w is None or np.size(w) != n else np.asarray(w, dtype=float)
    rms = float(np.sqrt(np.mean(w * resid**2)))
    misfit = rms / noise if noise > 0 else (1.0 if rms <= 1e-9 * scale else np.inf)
    # share of the profile's variance that the model leaves unexplained beyond the noise
    var_v = float(np.mean(w * (v - np.average(v, weights=w)) ** 2))
    unexplained = max(rms**2 - noise**2, 0.0) / var_v if var_v > 0 else 0.0

    # oscillations: alternating extrema of the residual from the best non-oscillatory model
    non_osc = min(
        (c for c in candidates if c["name"] != "oscillatory" and c["eligible"]),
        key=lambda c: c["bic"],
    )
    n_osc = _count_oscillations(v - non_osc["predict"](d), noise, opts["osc_threshold"])
    return _assemble(
        base,
        d,
        v,
        model=best,
        noise=noise,
        mean_slope=slope,
        rho=rho,
        n_osc=n_osc,
        opts=opts,
        misfit=misfit,
        unexplained=unexplained,
    )


def _fit_candidates(d: np.ndarray, v: np.ndarray, spacing: float, opts: dict) -> list[dict]:
    """Fit every model to one profile and score it by BIC."""
    n = d.size
    floor = (1e-6 * float(np.ptp(v))) ** 2
    w = opts.get("_weights")
    w = np.ones(n) if w is None or np.size(w) != n else np.asarray(w, dtype=float)
    candidates = [_constant_model(v, w)]
    kmax = int(min(opts["max_plateaus"], n // 3))
    partitions = _segment_neighbourhood(v, kmax, 2, w) if kmax >= 2 else []
    shared = opts["shared_width"]
    variants = (False, True) if shared == "auto" else (bool(shared),)
    for k in range(2, kmax + 1):
        for one_width in variants if k > 2 else (False,):
            fit = _fit_steps(d, v, partitions[k - 1], spacing, one_width, w)
            if fit is not None:
                candidates.append(fit)
    for fit in (_fit_hinge(d, v, w), _fit_oscillatory(d, v, spacing, w)):
        if fit is not None:
            candidates.append(fit)
    length = float(d[-1] - d[0])
    min_core = float(opts["min_core_fraction"]) * length
    min_range = float(opts.get("_min_range", 0.0))
    fine = np.linspace(d[0], d[-1], max(4 * n, 16))
    for c in candidates:
        c["bic"] = _bic(c["rss"], n, c["k"], floor, float(opts.get("_systematic", 0.0)))
        # zoning must be larger than what the shells' systematic errors can fake
        c["small"] = c["name"] != "constant" and float(np.ptp(c["predict"](fine))) < min_range
        # a gradient is a *long* slope; a short ramp at the rim is a diffused step
        c["eligible"] = c["name"] != "gradient" or (
            c["hinge"] - d[0] >= float(opts["min_gradient_fraction"]) * length
        )
        # the core is a plateau: zoning that reaches into the last few micrometres of the
        # profile is the core tail (few pixels, off-centre cuts, a neighbour's distorted
        # distances), not a zone
        if c["name"] == "gradient" and d[-1] - c["hinge"] < min_core:
            c["eligible"] = False
        if "steps" in c:
            # every plateau spans a few points and stands out from its neighbours by a few
            # noise sigmas (else the two are one plateau)
            cuts = np.searchsorted(d, c["steps"][0])
            points = np.diff(np.concatenate([[0], cuts, [d.size]]))
            sig = max(_robust_sigma_diff(v - c["predict"](d)), float(opts.get("_noise_floor", 0.0)))
            # in image shell profiles every step is also larger than what the shells'
            # systematic errors can fake (the smallest credible zoning span, below)
            least = max(float(opts["merge_sigmas"]) * sig, min_range)
            c["eligible"] = bool(
                np.all(points >= int(opts["min_plateau_points"]))
                and np.all(np.abs(c["steps"][1]) >= least)
                and d[-1] - float(np.max(c["steps"][0])) >= min_core
            )
        if c["small"]:
            c["eligible"] = False
    # growth makes plateaus joined by steps: a slope must beat the steps by positive
    # evidence (Delta BIC >= gradient_evidence; Kass & Raftery 1995) to be called a gradient
    steps = [c for c in candidates if "steps" in c and c["eligible"]]
    grad = [c for c in candidates if c["name"] == "gradient"]
    if steps and grad:
        best_step = min(c["bic"] for c in steps)
        grad[0]["bic_margin"] = best_step - grad[0]["bic"]
        if best_step - grad[0]["bic"] < float(opts["gradient_evidence"]):
            grad[0]["eligible"] = False
    # the search over the period finds some fit in pure noise: an oscillatory mantle must
    # beat every other eligible model by strong evidence (Delta BIC >= osc_evidence)
    osc = [c for c in candidates if c["name"] == "oscillatory"]
    others = [c["bic"] for c in candidates if c["name"] != "oscillatory" and c["eligible"]]
    if osc and others and min(others) - osc[0]["bic"] < float(opts["osc_evidence"]):
        osc[0]["eligible"] = False
    return candidates


def _assemble(
    base: dict,
    d: np.ndarray,
    v: np.ndarray,
    *,
    model: dict,
    noise: float,
    mean_slope: float,
    rho: float,
    n_osc: int,
    opts: dict,
    misfit: float,
    level_override: float | None = None,
    unexplained: float = 0.0,
) -> dict:
    d0, d1 = float(d[0]), float(d[-1])
    pred = model["predict"]
    rim = float(pred(np.array([d0]))[0]) if level_override is None else level_override
    core = float(pred(np.array([d1]))[0]) if level_override is None else level_override
    fine = np.linspace(d0, d1, max(4 * d.size, 16))
    grad = np.gradient(pred(fine), fine) if d1 > d0 else np.zeros(1)
    out = dict(base)
    out.update(
        core_value=core,
        rim_value=rim,
        contrast=rim - core,
        rel_contrast=(rim - core) / abs(core) if core != 0 else np.nan,
        noise_sigma=noise,
        max_slope_per_um=float(np.max(np.abs(grad))),
        mean_slope_per_um=mean_slope,
        gradient_slope_per_um=np.nan,
        monotonicity=rho,
        n_oscillations=int(n_osc),
        osc_period_um=np.nan,
        osc_amplitude=0.0,
        best_model=model["name"],
        misfit_ratio=float(misfit),
        n_steps=0,
        step_positions_um=(),
        step_heights=(),
        step_widths_um=(),
    )
    name = model["name"]
    if name == "constant":
        level = core
        out.update(
            n_plateaus=1,
            plateau_levels=(level,),
            plateau_extents_um=(d1 - d0,),
            core_start_um=d0,
            zoning_type="unzoned",
            max_slope_per_um=0.0,
        )
    elif name == "gradient":
        h = model["hinge"]
        out.update(
            n_plateaus=1,
            plateau_levels=(float(model["core"]),),
            plateau_extents_um=(d1 - h,),
            core_start_um=h,
            gradient_slope_per_um=float(model["slope"]),
            zoning_type="gradient",
        )
    elif name == "oscillatory":
        h = model["hinge"]
        out.update(
            n_plateaus=1,
            plateau_levels=(float(model["core"]),),
            plateau_extents_um=(d1 - h,),
            core_start_um=h,
            osc_period_um=float(model["period"]),
            osc_amplitude=float(model["amplitude"]),
            zoning_type="oscillatory",
        )
    else:  # steps
        pos, heights, widths, levels = model["steps"]
        bounds = np.concatenate([[d0], np.clip(pos, d0, d1), [d1]])
        n_plat = len(levels)
        out.update(
            n_plateaus=n_plat,
            plateau_levels=tuple(float(x) for x in levels),
            plateau_extents_um=tuple(float(x) for x in np.diff(bounds)),
            n_steps=len(pos),
            step_positions_um=tuple(float(x) for x in pos),
            step_heights=tuple(float(x) for x in heights),
            step_widths_um=tuple(float(x) for x in widths),
            core_start_um=float(bounds[-2]),
            zoning_type=(
                ("rim_brighter" if levels[0] > levels[-1] else "rim_darker")
                if n_plat == 2
                else "multi_step"
            ),
        )
    if (
        np.isfinite(misfit)
        and misfit > float(opts["complex_ratio"])
        and unexplained > float(opts["complex_variance"])
        and name != "constant"
    ):
        out["zoning_type"] = "complex"
    elif not np.isfinite(misfit):
        out["zoning_type"] = "complex"
    return out


# --------------------------------------------------------------------------------------
# models


def _constant_model(v: np.ndarray, w: np.ndarray | None = None) -> dict:
    w = np.ones(v.size) if w is None else w
    m = float(np.average(v, weights=w))
    return {
        "name": "constant",
        "k": 1,
        "rss": float(np.sum(w * (v - m) ** 2)),
        "predict": lambda x, m=m: np.full(np.shape(x), m, dtype=float),
    }


def _segment_neighbourhood(
    y: np.ndarray, kmax: int, min_size: int, w: np.ndarray | None = None
) -> list[np.ndarray]:
    """Optimal piecewise-constant partitions with 1..kmax segments (weighted least squares).

    Returns, for each K, the indices where segments 2..K start.
    """
    n = y.size
    w = np.ones(n) if w is None else w
    s0 = np.concatenate([[0.0], np.cumsum(w)])
    s1 = np.concatenate([[0.0], np.cumsum(w * y)])
    s2 = np.concatenate([[0.0], np.cumsum(w * y * y)])
    s = np.arange(n + 1)[:, None]
    t = np.arange(n + 1)[None, :]
    length = (t - s).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = (s2[t] - s2[s]) - (s1[t] - s1[s]) ** 2 / (s0[t] - s0[s])
    cost[length < min_size] = np.inf
    c = cost[0].copy()
    backs = []
    out = [np.array([], dtype=int)]
    for _ in range(2, kmax + 1):
        tot = c[:, None] + cost
        arg = np.argmin(tot, axis=0)
        c = tot[arg, np.arange(n + 1)]
        backs.append(arg)
        cuts, tt = [], n
        for b in reversed(backs):
            tt = int(b[tt])
            cuts.append(tt)
        out.append(np.array(sorted(cuts), dtype=int))
    return out


def _erf_steps(d, level0, deltas, pos, widths):
    out = np.full(np.shape(d), level0, dtype=float)
    for dl, p, w in zip(deltas, pos, widths, strict=True):
        out = out + dl * 0.5 * (1.0 + erf((d - p) / w))
    return out


def _fit_steps(
    d: np.ndarray,
    v: np.ndarray,
    cuts: np.ndarray,
    spacing: float,
    shared_width: bool = False,
    w: np.ndarray | None = None,
) -> dict | None:
    """Fit plateaus joined by erf steps, starting from a piecewise-constant partition.

    ``cuts`` are the indices where the 2nd, 3rd, ... segment starts. With ``shared_width``
    every step has the same width (one ``sqrt(D t)`` for the crystal).

    The parameters are the plateau levels, the step positions and the widths. The fit runs
    unbounded (Levenberg-Marquardt) first; when it ends with a plateau level outside the
    range of the data (two near-coincident steps of huge opposite heights that draw a bump,
    a plateau that no point reaches), it is refitted with every level bounded by the data's
    range (trust-region reflective), so that a staircase is fitted as a staircase.
    """
    k = len(cuts) + 1
    if k < 2:
        return None
    sw = np.ones(v.size) if w is None else np.sqrt(w)
    seg = np.split(v, cuts)
    wseg = np.split(sw**2, cuts)
    means = np.array([np.average(s, weights=ws) for s, ws in zip(seg, wseg, strict=True)])
    p0 = 0.5 * (d[cuts - 1] + d[cuts])
    m = k - 1
    nw = 1 if shared_width else m
    d0 = float(d[0])
    # A step is flanked by plateaus: its outer plateau is reached before the rim,
    # p - d0 >= c w (the erf is 98 % complete at the rim for c = 1.5). Without this a wide
    # "step" centred near the rim is a slope to the rim in disguise. Parameters: levels,
    # q = log(p - d0 - c w), u = log(w), so that Levenberg-Marquardt runs unbounded.
    c = _RIM_PLATEAU_WIDTHS
    w0 = 2.0 * spacing
    q0 = np.log(np.maximum(p0 - d0 - c * w0, 0.5 * spacing))
    x0 = np.concatenate([means, q0, np.full(nw, np.log(w0))])

    def unpack(x):
        w = np.broadcast_to(np.exp(np.clip(x[k + m :], -30.0, 30.0)), (m,))
        return x[:k], d0 + c * w + np.exp(np.clip(x[k : k + m], -30, 30)), w

    def resid(x):
        lv, p, w = unpack(x)
        return sw * (_erf_steps(d, lv[0], np.diff(lv), p, w) - v)

    def jac(x):
        lv, p, w = unpack(x)
        dl = np.diff(lv)
        jm = np.empty((d.size, k + m + nw))
        z = (d[:, None] - p[None, :]) / w[None, :]
        phi = np.exp(-(z**2)) / np.sqrt(np.pi)
        h = np.hstack([np.ones((d.size, 1)), 0.5 * (1.0 + erf(z)), np.zeros((d.size, 1))])
        jm[:, :k] = h[:, :-1] - h[:, 1:]
        d_p = -dl[None, :] * phi / w[None, :]
        jm[:, k : k + m] = d_p * (p - d0 - c * w)[None, :]
        d_u = (-dl[None, :] * phi * z / w[None, :] + c * d_p) * w[None, :]
        jm[:, k + m :] = d_u.sum(axis=1, keepdims=True) if shared_width else d_u
        return jm * sw[:, None]

    def solution(x):
        lv, p, w = unpack(x)
        order = np.argsort(p)
        dl = np.diff(lv)[order]
        return lv[0], dl, p[order], np.array(w[order])

    res = optimize.least_squares(resid, x0, jac=jac, method="lm", xtol=1e-6, ftol=1e-6)
    a, dl, p, w = solution(res.x)
    lo, hi = float(np.min(v)), float(np.max(v))
    levels = a + np.concatenate([[0.0], np.cumsum(dl)])
    if np.any(levels < lo) or np.any(levels > hi):
        inf = np.full(m + nw, np.inf)
        bounds = (np.concatenate([np.full(k, lo), -inf]), np.concatenate([np.full(k, hi), inf]))
        xb = np.concatenate([np.clip(means, lo, hi), x0[k:]])
        # levels (value units) and log positions / widths differ in scale: x_scale="jac"
        # (about 30 evaluations per refit on noise profiles, instead of 250 and often the
        # default cap); the cap only bounds the cost of a fit that does not settle
        rb = optimize.least_squares(
            resid,
            xb,
            jac=jac,
            bounds=bounds,
            method="trf",
            xtol=1e-6,
            ftol=1e-6,
            x_scale="jac",
            max_nfev=200,
        )
        if np.all(np.isfinite(rb.fun)):
            res = rb
            a, dl, p, w = solution(res.x)
    levels = a + np.concatenate([[0.0], np.cumsum(dl)])
    rss = float(np.sum(res.fun**2))

    def predict(x, a=a, dl=dl, p=p, w=w):
        return _erf_steps(np.asarray(x, dtype=float), a, dl, p, w)

    return {
        "name": f"steps{k}",
        "k": 2 * k - 1 + nw,
        "rss": rss,
        "predict": predict,
        "steps": (p, -dl, w, levels),
    }


def _fit_hinge(d: np.ndarray, v: np.ndarray, w: np.ndarray | None = None) -> dict | None:
    """Core plateau beyond ``h``, a straight line from the rim to ``h`` (exhaustive in h)."""
    n = d.size
    if n < 4:
        return None
    hs = d[2:]  # at least three points on the ramp
    w = np.ones(n) if w is None else w
    x = np.minimum(d[None, :] - hs[:, None], 0.0)  # (H, n)
    sw = float(w.sum())
    sx, sxx = (w * x).sum(1), (w * x * x).sum(1)
    sy, sxy = float((w * v).sum()), (w * x * v[None, :]).sum(1)
    det = sw * sxx - sx**2
    ok = det > 1e-12 * max(float(np.max(det)), 1e-300)
    if not np.any(ok):
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (sw * sxy - sx * sy) / det
        core = (sy - slope * sx) / sw
    rss = np.sum(w * (v[None, :] - core[:, None] - slope[:, None] * x) ** 2, axis=1)
    rss[~ok] = np.inf
    i = int(np.argmin(rss))
    h, c, s = float(hs[i]), float(core[i]), float(slope[i])
    return {
        "name": "gradient",
        "k": 3,
        "rss": float(rss[i]),
        "predict": lambda q, h=h, c=c, s=s: c + s * np.minimum(np.asarray(q, float) - h, 0.0),
        "hinge": h,
        "core": c,
        "slope": s,
    }


def _fit_oscillatory(
    d: np.ndarray, v: np.ndarray, spacing: float, w: np.ndarray | None = None
) -> dict | None:
    """Sinusoidal mantle ``m + A sin(2 pi d / P + phi)`` from the rim to a core plateau or
    to the deepest point.

    Two variants are fitted and the one with the lower BIC is kept: a mantle of
    at least :data:`_OSC_MIN_PERIODS` periods ending at a core plateau (``k = 6``), and a
    mantle that reaches the deepest point (``k = 5``: short laths, whose oscillatory bands
    reach the core). A grid search over mantle depth and frequency (linear least squares at
    each node) gives the start of a Levenberg-Marquardt refinement.
    Each refined mantle of at least :data:`_OSC_MIN_PERIODS_CHIRP` periods is refitted with
    a frequency that changes linearly with depth (``k + 1``; ``period`` is then the mean
    period over the mantle), and the variant with the lowest BIC is kept.
    """
    d0, d1 = float(d[0]), float(d[-1])
    length = d1 - d0
    p_min = 3.0 * spacing
    n = d.size
    if length < _OSC_MIN_PERIODS_TRUNCATED * p_min or n < 8:
        return None
    sw = np.ones(n) if w is None else np.sqrt(w)
    vw = v * sw
    # frequencies at a quarter of the Rayleigh resolution
    f = np.arange(_OSC_MIN_PERIODS_TRUNCATED / length, 1.0 / p_min, 0.25 / length)
    if f.size == 0:
        return None
    # mantle depths on a coarse grid (the core plateau keeps at least three points), and
    # "no core": the mantle reaches the deepest point
    hs = np.unique(np.quantile(d[:-2], np.linspace(0.3, 1.0, 12)))
    hs = np.concatenate([hs, [d1 + spacing]])
    hh, ff = np.meshgrid(hs, f, indexing="ij")
    hh, ff = hh.ravel(), ff.ravel()
    keep = (np.minimum(hh, d1) - d0) * ff >= np.where(
        hh > d1, _OSC_MIN_PERIODS_TRUNCATED, _OSC_MIN_PERIODS
    )
    hh, ff = hh[keep], ff[keep]
    if hh.size == 0:
        return None
    mantle = (d[None, :] < hh[:, None]).astype(float)
    ang = 2 * np.pi * ff[:, None] * d[None, :]
    x = np.stack([1.0 - mantle, mantle, mantle * np.sin(ang), mantle * np.cos(ang)], axis=-1)
    x = x * sw[None, :, None]
    xt = np.swapaxes(x, 1, 2)
    xtx = xt @ x
    xty = xt @ vw
    ridge = 1e-9 * np.trace(xtx, axis1=1, axis2=2)[:, None, None] * np.eye(4)
    beta = np.linalg.solve(xtx + ridge, xty[..., None])[..., 0]
    rss = float(vw @ vw) - 2 * np.einsum("gi,gi->g", beta, xty)
    rss += np.einsum("gi,gij,gj->g", beta, xtx, beta)
    full = hh > d1

    def model(x, q):
        c, m, a, b, h, fr = x
        ang = 2 * np.pi * fr * q
        # a smooth switch (one point wide) keeps the fit differentiable in h
        s = 0.5 * (1.0 - erf((q - h) / spacing))
        return c + s * (m - c + a * np.sin(ang) + b * np.cos(ang))

    def whole(x, q):
        m, a, b, fr = x
        ang = 2 * np.pi * fr * q
        return m + a * np.sin(ang) + b * np.cos(ang)

    def chirped(x, q, variant):
        # x = core, mantle mean, A sin, A cos, mantle depth, frequency at d = 0, chirp
        c, m, a, b, h, fr, ch = x
        ang = 2 * np.pi * (fr * q + ch * q * q)
        wave = m + a * np.sin(ang) + b * np.cos(ang)
        if variant:
            return wave
        s = 0.5 * (1.0 - erf((q - h) / spacing))
        return c + s * (wave - c)

    def valid(x, variant):
        # at least the fewest periods over the mantle, local frequency within the bounds
        c, m, a, b, h, fr, ch = x
        end = d1 if variant else h
        periods = fr * (end - d0) + ch * (end**2 - d0**2)
        f_ends = fr + 2 * ch * np.array([d0, end])
        need = _OSC_MIN_PERIODS_CHIRP
        return bool(
            np.all(np.isfinite(x))
            and periods >= need - 1e-9
            and np.all(f_ends > 0)
            and np.all(f_ends * p_min <= 1.0 + 1e-9)
            and (variant or int(np.sum(d > h)) >= 3)
        )

    fits = []
    for variant in (False, True):
        sel = np.flatnonzero(full == variant)
        if sel.size == 0:
            continue
        i = int(sel[np.argmin(rss[sel])])
        if variant:
            # the frequency is bounded (at least the fewest periods over the profile, at
            # most one per three points): a mantle at the bound is still a valid fit
            lo, hi = _OSC_MIN_PERIODS_TRUNCATED / length, 1.0 / p_min
            x0 = np.array([beta[i, 1], beta[i, 2], beta[i, 3], np.clip(ff[i], lo, hi)])
            res = optimize.least_squares(
                lambda x: sw * (whole(x, d) - v),
                x0,
                bounds=([-np.inf] * 3 + [lo], [np.inf] * 3 + [hi]),
                method="trf",
                xtol=1e-6,
                ftol=1e-6,
            )
            m_, a_, b_, fr = res.x
            xs = np.array([m_, m_, a_, b_, d1 + spacing, fr, 0.0])
            ok = bool(np.all(np.isfinite(xs)))
            k = 5  # m, A, phi, P, and the mantle's depth (chosen: the deepest point)
        else:
            x0 = np.array([beta[i, 0], beta[i, 1], beta[i, 2], beta[i, 3], hh[i], ff[i]])
            res = optimize.least_squares(
                lambda x: sw * (model(x, d) - v), x0, method="lm", xtol=1e-6, ftol=1e-6
            )
            xs = np.concatenate([res.x, [0.0]])
            ok = (
                np.all(np.isfinite(xs))
                and (xs[4] - d0) * xs[5] >= _OSC_MIN_PERIODS
                and int(np.sum(d > xs[4])) >= 3
            )
            k = 6
        if not (ok and xs[5] * p_min <= 1.0 + 1e-9):
            continue
        r = float(np.sum(res.fun**2))
        fits.append((n * np.log(max(r, 1e-300) / n) + k * np.log(n), k, r, xs, variant))
        # a mantle whose band spacing drifts with depth: the frequency changes linearly
        # (one more parameter; kept when the BIC pays for it)
        free = np.array([not variant] + [True] * 3 + [not variant] + [True, True])

        def chirp_resid(y, xs=xs, free=free, variant=variant):
            x = xs.copy()
            x[free] = y
            return sw * (chirped(x, d, variant) - v)

        rc = optimize.least_squares(chirp_resid, xs[free], method="lm", xtol=1e-6, ftol=1e-6)
        xc = xs.copy()
        xc[free] = rc.x
        if variant:
            xc[0] = xc[1]
        if valid(xc, variant):
            r = float(np.sum(rc.fun**2))
            fits.append(
                (n * np.log(max(r, 1e-300) / n) + (k + 1) * np.log(n), k + 1, r, xc, variant)
            )
    if not fits:
        return None
    _, k, r, xs, variant = min(fits, key=lambda t: t[0])
    c, m, a, b, h, fr, ch = xs
    h_end = d1 if variant else h
    # the reported period is the mean one over the mantle
    f_mean = fr + ch * (d0 + min(h_end, d1))
    return {
        "name": "oscillatory",
        "k": k,
        "rss": r,
        "predict": lambda q, xs=xs, variant=variant: chirped(xs, np.asarray(q, float), variant),
        "hinge": float(min(h, d1)),
        "core": float(c),
        "period": float(1.0 / f_mean),
        "amplitude": float(np.hypot(a, b)),
    }


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
