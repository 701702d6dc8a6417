"""Monte Carlo timescales: the fit's reduced time combined with the uncertainty of the
conditions and of the diffusivity law.

A fit gives ``ln tau`` (tau = D_ref t, um^2) with a 1-sigma error. Each sample draws ``ln tau``
from that Gaussian, the temperature, pressure and oxygen fugacity from Gaussians (``delta_qfm``
is added to the QFM buffer at the sampled T and P, so the buffer follows the temperature), the
law's own parameters from their uncertainty (the DFENS coefficient covariance, the D&C Ea), and
optionally a scale factor of D (a distribution the user gives) or a P-T path (a table of
temperature, pressure and relative duration: D is then the duration-weighted mean along the
path). ``t = tau / D_traverse`` per sample; the interval is the samples' percentiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .laws import Conditions, DiffusionLaw, qfm_log_fo2_pa

SECONDS_PER_DAY = 86400.0


@dataclass
class ConditionSpec:
    """Nominal conditions and their 1-sigma errors (0: fixed)."""

    temperature_c: float = math.nan
    temperature_c_err: float = 0.0
    pressure_mpa: float = 0.1
    pressure_mpa_err: float = 0.0
    delta_qfm: float | None = None
    delta_qfm_err: float = 0.0
    log_fo2_pa: float | None = None
    log_fo2_pa_err: float = 0.0
    anisotropy: float = 1.0  # D_traverse / D_law (angles), 1 without angles

    def nominal(self) -> Conditions:
        return self.draw(None, 0)

    def draw(self, z: np.ndarray | None, n: int,
             temperature_c: float | None = None, temperature_c_err: float | None = None
             ) -> Conditions:
        """Nominal conditions (``z`` None) or one sample per column of the standard normal
        deviates ``z`` (shape (3, n): temperature, pressure, fO2)."""
        t0 = self.temperature_c if temperature_c is None else temperature_c
        te = self.temperature_c_err if temperature_c_err is None else temperature_c_err
        if z is None:
            t = np.asarray(t0, dtype=float)
            p = np.asarray(self.pressure_mpa, dtype=float)
            if self.delta_qfm is not None:
                fo2 = qfm_log_fo2_pa(t, p) + self.delta_qfm if np.isfinite(t) else np.nan
            elif self.log_fo2_pa is not None:
                fo2 = np.asarray(self.log_fo2_pa, dtype=float)
            else:
                fo2 = np.asarray(np.nan)
            return Conditions(t, p, np.asarray(fo2, dtype=float))
        t = t0 + te * z[0]
        p = np.maximum(self.pressure_mpa + self.pressure_mpa_err * z[1], 0.0)
        if self.delta_qfm is not None:
            fo2 = qfm_log_fo2_pa(t, p) + self.delta_qfm + self.delta_qfm_err * z[2]
        elif self.log_fo2_pa is not None:
            fo2 = self.log_fo2_pa + self.log_fo2_pa_err * z[2]
        else:
            fo2 = np.full(n, np.nan)
        return Conditions(t, p, np.asarray(fo2, dtype=float))


def antithetic_normals(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """``(n, k)`` standard normal deviates in antithetic pairs (z, -z): the samples of a
    symmetric distribution are then symmetric about its centre, so a Monte Carlo median of a
    symmetric case equals the nominal value exactly."""
    half = rng.standard_normal(((n + 1) // 2, k))
    return np.concatenate([half, -half])[:n]


def ln_d_traverse(law: DiffusionLaw, spec: ConditionSpec, cond: Conditions, xfe_ref: float,
                  theta=None) -> np.ndarray:
    """ln D (m^2/s) along the traverse at ``xfe_ref``."""
    return law.ln_d(cond, xfe_ref, theta) + math.log(spec.anisotropy)


def path_ln_d(law: DiffusionLaw, spec: ConditionSpec, path: pd.DataFrame, xfe_ref: float,
              z: np.ndarray | None, n: int, theta=None) -> np.ndarray:
    """ln of the duration-weighted mean D along a P-T path (one value, or n samples with the
    path's temperatures shifted together by the temperature error)."""
    temps = path["temperature_c"].to_numpy(dtype=float)
    press = (path["pressure_mpa"].to_numpy(dtype=float) if "pressure_mpa" in path
             else np.full(temps.size, spec.pressure_mpa))
    weights = (path["duration"].to_numpy(dtype=float) if "duration" in path
               else np.ones(temps.size))
    weights = weights / weights.sum()
    if z is None:
        shift = np.zeros(1)
        p_shift = np.zeros(1)
        fo2_shift = np.zeros(1)
    else:
        shift = spec.temperature_c_err * z[0]
        p_shift = spec.pressure_mpa_err * z[1]
        fo2_shift = (spec.delta_qfm_err if spec.delta_qfm is not None
                     else spec.log_fo2_pa_err) * z[2]
    total = np.zeros(shift.size)
    for ti, pi, wi in zip(temps, press, weights, strict=True):
        t = ti + shift
        p = np.maximum(pi + p_shift, 0.0)
        if spec.delta_qfm is not None:
            fo2 = qfm_log_fo2_pa(t, p) + spec.delta_qfm + fo2_shift
        elif spec.log_fo2_pa is not None:
            fo2 = spec.log_fo2_pa + fo2_shift
        else:
            fo2 = np.full(shift.size, np.nan)
        cond = Conditions(t, p, np.asarray(fo2, dtype=float))
        total = total + wi * np.exp(law.ln_d(cond, xfe_ref, theta))
    out = np.log(total) + math.log(spec.anisotropy)
    return out if z is not None else out[:1]


def timescale_samples(
    ln_tau: float,
    ln_tau_err,
    law: DiffusionLaw,
    spec: ConditionSpec,
    xfe_ref: float,
    *,
    n: int,
    rng: np.random.Generator,
    d_factors=None,
    pt_path: pd.DataFrame | None = None,
    temperature_c: float | None = None,
    temperature_c_err: float | None = None,
    theta: np.ndarray | None = None,
    law_samples: np.ndarray | None = None,
) -> np.ndarray:
    """Monte Carlo samples of the timescale in days.

    ``ln_tau_err`` is the 1-sigma of ln tau, or a pair (below, above) for a split normal (an
    asymmetric profile-likelihood interval).

    ``temperature_c`` / ``temperature_c_err`` override the spec's (a second stage at its own
    temperature); ``law_samples`` reuses the law parameters of another stage (one law for the
    whole history).
    """
    if isinstance(ln_tau_err, tuple):  # split normal: (1-sigma below, 1-sigma above)
        e_lo, e_hi = (v if np.isfinite(v) else 0.0 for v in ln_tau_err)
    else:
        e_lo = e_hi = ln_tau_err if np.isfinite(ln_tau_err) else 0.0
    z = antithetic_normals(rng, n, 4 + law.n_z)
    ln_tau_s = ln_tau + np.where(z[:, 0] < 0, e_lo, e_hi) * z[:, 0]
    theta_s = law.from_z(z[:, 4:]) if law_samples is None else law_samples
    if pt_path is not None:
        ln_d = path_ln_d(law, spec, pt_path, xfe_ref, z[:, 1:4].T, n, theta_s)
    else:
        cond = spec.draw(z[:, 1:4].T, n, temperature_c, temperature_c_err)
        ln_d = ln_d_traverse(law, spec, cond, xfe_ref, theta_s)
    if d_factors is not None:
        f = np.asarray(d_factors, dtype=float).ravel()
        ln_d = ln_d + np.log(rng.choice(f, size=n, replace=True))
    # tau in um^2, D in m^2/s -> um^2/s
    return np.exp(ln_tau_s - ln_d - math.log(1e12)) / SECONDS_PER_DAY


def nominal_ln_d(law: DiffusionLaw, spec: ConditionSpec, xfe_ref: float, *,
                 pt_path: pd.DataFrame | None = None, d_factors=None,
                 temperature_c: float | None = None) -> float:
    """ln D (m^2/s) along the traverse at the nominal conditions and law parameters (the
    median of the D factors when given)."""
    if pt_path is not None:
        out = float(path_ln_d(law, spec, pt_path, xfe_ref, None, 1)[0])
    else:
        cond = spec.draw(None, 0, temperature_c, None)
        out = float(ln_d_traverse(law, spec, cond, xfe_ref))
    if d_factors is not None:
        out += math.log(float(np.median(np.asarray(d_factors, dtype=float))))
    return out
