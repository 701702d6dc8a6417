"""The data and the criterion every zoning shape model shares: a profile ready for fitting
(:class:`ProfileData`), one fitted model (:class:`Fit`), the Bayesian information criterion with
the noise the data say (:func:`criterion`) and a variable-projection least-squares helper."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

__all__ = ["ProfileData", "Fit", "criterion"]


@dataclass
class ProfileData:
    """One profile ready for fitting (sorted, finite, no duplicated distance).

    ``w`` are the least-squares weights: ``1 / sigma^2`` when ``known_sigma`` (absolute), else
    ones. ``min_core_um`` is the shortest core level a step or a ramp's core plateau must
    leave (image shell profiles: their deepest shells are unreliable); ``min_range`` the
    smallest zoning span a zoned model must have (shell systematics); both 0 for traverses.
    """

    d: np.ndarray
    v: np.ndarray
    w: np.ndarray
    known_sigma: bool
    min_core_um: float = 0.0
    min_range: float = 0.0
    min_gradient_fraction: float = 0.2
    variance_floor: float = 0.0

    @property
    def n(self) -> int:
        return int(self.d.size)

    @property
    def d0(self) -> float:
        return float(self.d[0])

    @property
    def d1(self) -> float:
        return float(self.d[-1])

    @property
    def length(self) -> float:
        return float(self.d[-1] - self.d[0])

    @property
    def spacing(self) -> float:
        s = float(np.median(np.diff(self.d))) if self.n > 1 else 1.0
        return s if s > 0 else max(self.length / max(self.n - 1, 1), 1e-9)


@dataclass
class Fit:
    """One fitted model: its name, family, parameter count, weighted RSS and prediction."""

    name: str
    family: str
    k: int
    rss: float
    predict: Callable[[np.ndarray], np.ndarray]
    info: dict = field(default_factory=dict)
    eligible: bool = True
    why: str = ""
    criterion: float = np.inf
    score: float = np.inf


def criterion(rss: float, n: int, k: int, known_sigma: bool, variance_floor: float = 0.0) -> float:
    """-2 ln L + k ln n (module notes); ``rss`` is weighted by ``1 / sigma^2`` when known."""
    if known_sigma:
        chi2 = max(rss, 0.0)
        m2l = chi2 if chi2 <= n else n + n * np.log(chi2 / n)
    else:
        m2l = n * np.log(max(rss / n, variance_floor, 1e-300))
    return float(m2l + k * np.log(n))


def _wls_rss(x: np.ndarray, v: np.ndarray, w: np.ndarray) -> float:
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(x * sw[:, None], v * sw, rcond=None)
    r = v - x @ coef
    return float(np.sum(w * r * r))


def _varpro(resid_of_nonlin, x0, lb, ub, max_nfev):
    """Least squares over the nonlinear parameters only (variable projection: the linear
    ones are solved exactly inside ``resid_of_nonlin``)."""
    x0 = np.clip(np.asarray(x0, float), lb, ub)
    return optimize.least_squares(
        resid_of_nonlin, x0, bounds=(lb, ub), method="trf", x_scale="jac", max_nfev=max_nfev
    )
