"""Spot values and a linear grey-to-composition calibration of profiles."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._validation import (
    ZonationInputError,
    as_image,
    check_pixel_size,
    check_profiles,
)

# ----------------------------------------------------------------------------------------
# calibration


def spot_values(image, points_rc, pixel_size_um: float = 1.0, radius_um: float = 1.5) -> np.ndarray:
    """Median grey of an image in a small disk around each reference spot.

    Parameters
    ----------
    image : array-like
        2D image.
    points_rc : array-like of shape (n, 2)
        Spot centres in (row, col) pixel coordinates (fractional allowed).
    pixel_size_um : float
        Micrometres per pixel.
    radius_um : float
        Radius of the disk (micrometres), e.g. half the analysed spot's diameter. Pixels
        whose centre lies within it count; the pixel under the centre always counts.

    Returns
    -------
    numpy.ndarray
        One median per spot (float); NaN for a spot outside the image or whose disk holds
        no finite value.
    """
    px = check_pixel_size(pixel_size_um)
    img = as_image(image, allow_channels=False)
    pts = np.asarray(points_rc, dtype=float)
    if pts.size == 0:
        return np.zeros(0)
    if pts.ndim != 2 or pts.shape[1] < 2:
        raise ZonationInputError(
            f"points_rc has shape {pts.shape}; give an (n, 2) array of (row, col) pixel "
            "coordinates."
        )
    if not np.isfinite(radius_um) or radius_um < 0:
        raise ZonationInputError(f"radius_um={radius_um!r} must be zero or a positive number.")
    pts = pts[:, -2:]
    rad = float(radius_um) / px
    H, W = img.shape
    out = np.full(len(pts), np.nan)
    for i, (r, c) in enumerate(pts):
        if not (np.isfinite(r) and np.isfinite(c)):
            continue
        r0, r1 = max(int(np.floor(r - rad)), 0), min(int(np.ceil(r + rad)) + 1, H)
        c0, c1 = max(int(np.floor(c - rad)), 0), min(int(np.ceil(c + rad)) + 1, W)
        if r0 >= r1 or c0 >= c1:
            continue
        rr, cc = np.mgrid[r0:r1, c0:c1]
        inside = (rr - r) ** 2 + (cc - c) ** 2 <= rad**2
        nr, nc = int(np.round(r)), int(np.round(c))
        if 0 <= nr < H and 0 <= nc < W:
            inside[nr - r0, nc - c0] = True
        vals = img[r0:r1, c0:c1][inside]
        vals = vals[np.isfinite(vals)]
        if vals.size:
            out[i] = float(np.median(vals))
    return out


@dataclass
class Calibration:
    """A linear grey-to-composition calibration ``composition = slope * grey + intercept``.

    Attributes
    ----------
    slope, intercept : float
        The fit.
    r2 : float
        Coefficient of determination (NaN for two points).
    residuals : numpy.ndarray
        Composition minus fit at the reference points.
    name : str
        Name of the quantity with its unit, e.g. ``"Fo (mol%)"``.
    """

    slope: float
    intercept: float
    r2: float
    residuals: np.ndarray
    name: str = "composition"

    def __call__(self, grey):
        return self.slope * np.asarray(grey, dtype=float) + self.intercept

    def as_dict(self) -> dict:
        return {
            "slope": self.slope,
            "intercept": self.intercept,
            "r2": self.r2,
            "residuals": [float(r) for r in self.residuals],
            "name": self.name,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        """The calibration stored by :meth:`as_dict`."""
        return cls(
            float(d["slope"]),
            float(d["intercept"]),
            float(d.get("r2", np.nan)),
            np.asarray(d.get("residuals", []), dtype=float),
            str(d.get("name", "composition")),
        )


def calibrate(grey, composition, name: str = "composition") -> Calibration:
    """Fit a linear grey-to-composition calibration from two or more reference spots.

    Parameters
    ----------
    grey : array-like
        Grey values at the reference points (e.g. the image at analysed spots).
    composition : array-like
        Measured composition at the same points (e.g. Fo mol% by EPMA).
    name : str
        The quantity and its unit, used as the calibrated column's name.
    """
    g = np.asarray(grey, dtype=float).ravel()
    c = np.asarray(composition, dtype=float).ravel()
    if g.shape != c.shape:
        raise ZonationInputError(f"{g.size} grey values for {c.size} compositions; pair them.")
    ok = np.isfinite(g) & np.isfinite(c)
    g, c = g[ok], c[ok]
    if g.size < 2 or np.ptp(g) == 0:
        raise ZonationInputError(
            "calibration needs at least two reference points with different grey values."
        )
    slope, intercept = np.polyfit(g, c, 1)
    fit = slope * g + intercept
    res = c - fit
    ss_tot = np.sum((c - c.mean()) ** 2)
    r2 = float(1 - np.sum(res**2) / ss_tot) if g.size > 2 and ss_tot > 0 else np.nan
    return Calibration(float(slope), float(intercept), r2, res, name)


def apply_calibration(prof: pd.DataFrame, cal: Calibration) -> pd.DataFrame:
    """Return a copy of a profiles table with ``value`` (and ``sigma``) in composition.

    The grey values are kept in ``value_grey``; the quantity is named in ``quantity``.
    """
    check_profiles(prof)
    out = prof.copy()
    out["value_grey"] = out["value"]
    out["value"] = cal(out["value"])
    if "sigma" in out:
        out["sigma"] = np.abs(cal.slope) * out["sigma"]
    out["quantity"] = cal.name
    return out
