"""Small statistics the stages share, written once.

- :func:`robust_sigma`: 1-sigma of Gaussian scatter from the median absolute deviation.
- :func:`noise_sigma_diff`: 1-sigma of white noise on a smooth signal, from the MAD of its
  first differences (the signal's slow trend cancels in the differences).
- :func:`iqr_sigma`: 1-sigma from the interquartile range, ignoring NaN.
- :func:`unit_step`: the erf step from 0 to 1, ``0.5 (1 + erf((d - p) / w))``: the shape of
  a relaxed diffusion step (``w = 2 sqrt(D t)``) and of the generator's steps.
- :func:`median_profile`: the median of several profiles on a common distance grid.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np
from scipy.special import erf

__all__ = ["MAD_TO_SIGMA", "IQR_TO_SIGMA", "robust_sigma", "noise_sigma_diff", "iqr_sigma",
           "unit_step", "median_profile"]

#: sigma of a Gaussian over its median absolute deviation (1 / Phi^-1(3/4), rounded)
MAD_TO_SIGMA = 1.4826
#: interquartile range of a Gaussian over its sigma (2 Phi^-1(3/4), rounded)
IQR_TO_SIGMA = 1.349


def robust_sigma(x) -> float:
    """1-sigma of Gaussian scatter, ``1.4826 * median(|x - median(x)|)``.

    Parameters
    ----------
    x : array-like
        Values (NaN not allowed: drop them first).

    Returns
    -------
    float
        0 for an empty input.

    Examples
    --------
    >>> from napari_zonation._stats import robust_sigma
    >>> robust_sigma([1.0, 2.0, 3.0, 4.0, 100.0])  # the outlier barely counts
    1.4826
    """
    x = np.asarray(x, dtype=float).ravel()
    if x.size == 0:
        return 0.0
    return float(MAD_TO_SIGMA * np.median(np.abs(x - np.median(x))))


def noise_sigma_diff(r) -> float:
    """1-sigma of white noise from the MAD of first differences, ``robust_sigma(diff) / sqrt 2``.

    Parameters
    ----------
    r : array-like
        Samples in order (a profile, a row of pixels); fewer than 3 give 0.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> from napari_zonation._stats import noise_sigma_diff
    >>> rng = np.random.default_rng(0)
    >>> ramp = np.linspace(0.0, 50.0, 20_000) + rng.normal(0.0, 0.3, 20_000)
    >>> round(noise_sigma_diff(ramp), 2)  # the ramp cancels in the differences
    0.3
    """
    r = np.asarray(r, dtype=float).ravel()
    if r.size < 3:
        return 0.0
    dr = np.diff(r)
    return float(MAD_TO_SIGMA * np.median(np.abs(dr - np.median(dr))) / np.sqrt(2.0))


def iqr_sigma(x, axis: int | None = None):
    """1-sigma from the interquartile range, ``(q75 - q25) / 1.349``, NaN ignored.

    Parameters
    ----------
    x : array-like
        Values.
    axis : int, optional
        Axis along which to compute (None: the whole array).

    Returns
    -------
    float or numpy.ndarray
    """
    q75, q25 = np.nanpercentile(np.asarray(x, dtype=float), [75, 25], axis=axis)
    return (q75 - q25) / IQR_TO_SIGMA


def unit_step(d, position, width):
    """The erf step from 0 (``d`` well below ``position``) to 1: ``0.5 (1 + erf((d - p) / w))``.

    Parameters
    ----------
    d : array-like
        Distances.
    position : float
        Where the step is half-way.
    width : float
        Its width ``w`` (a Gaussian-blurred step of sigma ``w / sqrt 2``; a diffusion step
        after time t has ``w = 2 sqrt(D t)``).

    Returns
    -------
    numpy.ndarray

    Examples
    --------
    >>> from napari_zonation._stats import unit_step
    >>> unit_step([-1e3, 0.0, 1e3], 0.0, 2.0).tolist()
    [0.0, 0.5, 1.0]
    """
    return 0.5 * (1.0 + erf((np.asarray(d, dtype=float) - position) / width))


def median_profile(
    curves: Iterable[tuple[np.ndarray, np.ndarray]], n: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """Median of several profiles on a common distance grid.

    Parameters
    ----------
    curves : iterable of (distance, value) arrays
        Profiles (distances increasing); those of fewer than 2 points are ignored.
    n : int
        Points of the grid, from 0 to the length of the median-length profile, so that the
        median is taken over at least half the profiles everywhere.

    Returns
    -------
    grid, median : numpy.ndarray
        Empty when no profile has 2 points.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_zonation._stats import median_profile
    >>> d = np.linspace(0.0, 10.0, 11)
    >>> grid, med = median_profile([(d, d), (d, 2 * d), (d, 3 * d)], n=3)
    >>> grid.tolist(), med.tolist()
    ([0.0, 5.0, 10.0], [0.0, 10.0, 20.0])
    """
    curves = [(np.asarray(d, float), np.asarray(v, float)) for d, v in curves if len(d) >= 2]
    if not curves:
        return np.array([]), np.array([])
    ends = sorted(float(np.nanmax(d)) for d, _ in curves)
    grid = np.linspace(0.0, ends[len(ends) // 2], n)
    stack = np.full((len(curves), n), np.nan)
    for i, (d, v) in enumerate(curves):
        inside = grid <= np.nanmax(d)
        stack[i, inside] = np.interp(grid[inside], d, v)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # columns of NaN only: none here
        return grid, np.nanmedian(stack, axis=0)
