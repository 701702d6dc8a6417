"""Shape models of one core-to-rim profile and the criterion that chooses among them.

A profile (distance from the rim ``d``, value ``v``, optional 1-sigma ``sigma``) is fitted by
four families of shapes, each by least squares:

``constant``
    one level (``k = 1``): unzoned.
``steps<K>``, ``K = 2 .. max_plateaus``
    ``K`` levels joined by error-function steps, ``value = a + (b - a) (1 + erf((d - p) / w))
    / 2`` per step (``w = 2 sqrt(D t)``, growth then diffusion), started from the optimal
    ``K``-segment piecewise-constant partition (segment neighbourhood, Auger & Lawrence 1989).
    The outermost step may instead be *held at the rim*: the value at a boundary ``p <= d0``
    stays at the rim level and the profile is ``a + (b - a) erf((d - p) / w)`` (diffusion from
    a rim in contact with the melt, as olivine chronometry models it); its rim level need not
    be reached by any point. ``k = 3K - 2``.
``ramp``
    a straight or curved slope ``a + (b - a) g((d - s) / (e - s))`` between depths ``s`` and
    ``e`` with ``g(t) = (1 - exp(-c t)) / (1 - exp(-c))`` (``c = 0``: straight), flat beyond
    them: with or without a rim plateau (``s > d0``), with or without a core plateau
    (``e < d1``), straight or curved; a straight slope's corners inside the profile may be
    rounded (the ramp convolved with a Gaussian of sigma ``rho (e - s)``, ``rho <= 0.25``:
    image blur and shell averaging round a slope's ends, and the middle stays straight, which
    an erf step, steepest at one point, is not); found by a grid search over ``s``, ``e`` and
    ``c`` or ``rho`` (linear least squares at each node), then refined. ``k = 2`` plus one for
    each plateau and one for the curvature or the rounding.
``oscillatory``
    a periodic mantle ``m + A sin(2 pi f d + phi)`` between depths ``s`` and ``e``, with or
    without a rim level before it (an oscillatory zone under a stepped rim) and a core level
    after it, found by a grid search over ``s``, ``e`` and the frequency (linear least squares
    at each node), then refined; the refined mantle may add a frequency drift with depth
    (band spacing that widens or narrows toward the core), a second harmonic (bands that are
    not sine waves) and a linear trend of its mean, each kept when the criterion pays for it.

The criterion is the Bayesian information criterion with the noise the data say:

- points with a ``sigma`` are judged against it: ``chi2 = sum(r^2 / sigma^2)`` and
  ``-2 ln L = chi2`` while ``chi2 <= n``, else ``n + n ln(chi2 / n)`` (the likelihood
  maximised over a common factor ``s >= 1`` on every sigma: the stated sigmas are a floor,
  scatter beyond them is allowed);
- points without one are judged against the noise of each model's residuals
  (``-2 ln L = n ln(RSS / n)``, Gaussian noise of unknown variance);

plus ``k ln n`` and a family margin (:data:`MARGINS`): the evidence a ramp or an oscillatory
mantle must add over the simpler families, calibrated on many random shapes (see
``benchmarks/zoning.py --calibrate``).
"""

from __future__ import annotations

import warnings

import numpy as np

from ._zoning_bands import (  # noqa: F401 - re-exported
    OSC_MIN_PERIOD_POINTS,
    OSC_MIN_PERIODS,
    OSC_MIN_PERIODS_TRUNCATED,
    _osc_ok,
    fit_oscillations,
    osc_summary,
)
from ._zoning_base import Fit, ProfileData, criterion
from ._zoning_ramps import check_ramp, fit_ramps, ramp_predict  # noqa: F401 - re-exported
from ._zoning_steps import (  # noqa: F401 - re-exported
    ASYM_MAX_RATIO,
    asym_steps_predict,
    check_steps,
    fit_steps,
    fit_steps_asym,
    segment_partitions,
    step_grid_start,
    steps_predict,
)

__all__ = ["ProfileData", "Fit", "MARGINS", "fit_all", "criterion"]

#: extra evidence (in -2 ln L units, beyond k ln n) a family needs to win: a step model
#: over one level (the search over step positions finds some fit in noise), each further
#: step, a slope and a periodic mantle (growth makes plateaus joined by steps: a continuous
#: slope and bands are the claims that need support). Calibrated by
#: ``benchmarks/zoning.py --part calibrate`` on 1120 profiles: 900 random profiles of the
#: training families at 0.5-20 % noise (seeds 110-112) and the 220 shell profiles of 10
#: repainted thin sections on their true labels (seeds 200-209); of the grid points whose
#: worst class accuracy is within 0.01 of the best (0.919), the one with the highest mean
#: accuracy (worst 0.914, mean 0.960), then the smallest margins.
MARGINS: dict[str, float] = {
    "constant": 0.0,
    "steps": 6.0,
    "step": 2.0,
    "ramp": 12.0,
    "oscillatory": 20.0,
}


def family_margin(fit: Fit, margins: dict) -> float:
    """The evidence a model must add beyond ``k ln n``: its family's margin, and for steps
    ``margins["step"]`` per step."""
    m = float(margins.get(fit.family, 0.0))
    if fit.family == "steps":
        m += float(margins.get("step", 0.0)) * (len(fit.info["levels"]) - 1)
    return m


# ----------------------------------------------------------------------------- constant


def fit_constant(p: ProfileData) -> Fit:
    m = float(np.average(p.v, weights=p.w))
    rss = float(np.sum(p.w * (p.v - m) ** 2))
    return Fit("constant", "constant", 1, rss, lambda x, m=m: np.full(np.shape(x), m), {"level": m})


# ----------------------------------------------------------------------------- all models


def fit_all(
    p: ProfileData,
    max_plateaus: int = 5,
    margins: dict | None = None,
    shared_width: bool | str = False,
) -> list[Fit]:
    """Fit every family, check each model is what its name says, score them (module notes).

    Returns every fit with ``eligible``, ``why`` (the reason it is not eligible) and
    ``score`` (criterion plus the family's margin; lower is better).
    """
    margins = {**MARGINS, **(margins or {})}
    fits = [fit_constant(p)]
    kmax = int(min(max_plateaus, p.n // 3))
    if kmax >= 2:
        parts = segment_partitions(p.v, kmax, 2, p.w)
        variants = (False, True) if shared_width == "auto" else (bool(shared_width),)
        for k in range(2, kmax + 1):
            for held in (False, True) if k < 5 else (False,):
                for shared in variants if k > 2 else (False,):
                    tries = []
                    # one step: started from the best node of a position x width grid
                    start = step_grid_start(p, held) if k == 2 else None
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        fit = fit_steps(p, parts[k - 1], held, shared, start=start)
                    if fit is not None:
                        tries.append(fit)
                    if not tries:
                        continue
                    fit = min(tries, key=lambda f: f.rss)
                    if k > 2 and not check_steps(fit, p)[0]:
                        # two steps merged into a bump: refit with the widths held apart
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore", RuntimeWarning)
                            alt = fit_steps(p, parts[k - 1], held, shared, tight=True)
                        if alt is not None and check_steps(alt, p)[0]:
                            fit = alt
                    fits.append(fit)
                    if k <= 3 and not held and not shared:
                        # the same steps with a width on each side (composition-dependent D)
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore", RuntimeWarning)
                            asym = fit_steps_asym(p, fit)
                        if asym is not None:
                            fits.append(asym)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fits.extend(fit_ramps(p))
        fits.extend(fit_oscillations(p))
    for fit in fits:
        if fit.family == "steps":
            fit.eligible, fit.why = check_steps(fit, p)
        elif fit.family == "ramp":
            fit.eligible, fit.why = check_ramp(fit, p)
        elif fit.family == "oscillatory":
            fit.eligible, fit.why = _osc_ok(fit, p)
        if not np.isfinite(fit.rss):
            fit.eligible, fit.why = False, "the fit did not converge"
        fit.criterion = criterion(fit.rss, p.n, fit.k, p.known_sigma, p.variance_floor)
        fit.score = fit.criterion + family_margin(fit, margins)
    return fits
