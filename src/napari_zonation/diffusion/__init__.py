"""Diffusion chronometry: diffusivity laws, a finite-difference solver, initial and boundary
conditions, chi-square fits, Monte Carlo intervals, and Mg in plagioclase.

Modules: :mod:`.laws` (olivine Fe-Mg after Dohmen & Chakraborty 2007 and the DFENS
regression, a user Arrhenius law, a plain D; anisotropy; EBSD Euler angles; QFM),
:mod:`.solver` (finite volumes, D at each node's composition, Crank-Nicolson), :mod:`.models`
(one step, several steps, a two-stage history, a given initial profile; rim and core
boundaries; the measurement blur), :mod:`.fitting` (weighted least squares),
:mod:`.uncertainty` (Monte Carlo over the fit, the conditions and the law),
:mod:`.erf` (the analytical quick look), :mod:`.plagioclase` (Mg in plagioclase, Costa et al.
2003), :mod:`.api` (:func:`fit_diffusion`) and :mod:`.plots` (the timescale density figure;
matplotlib, imported only when used).
"""

from __future__ import annotations

from .api import OUTPUT_COLUMNS, check_diffusion_options, fit_diffusion
from .erf import erf_step
from .laws import (
    DFENS2021,
    DFENS_COV,
    DFENS_MEAN,
    FO2_TAMED_MIN_PA,
    OLIVINE_ANISOTROPY,
    R_GAS,
    ArrheniusLaw,
    DohmenChakraborty2007,
    anisotropy_factor,
    euler_to_axis_angles,
    olivine_diffusivity,
    qfm_log_fo2_pa,
)
from .plagioclase import fit_plagioclase_mg, mg_rtlnk, plagioclase_mg_diffusivity
from .plots import timescale_density, timescale_density_table
from .solver import relax
from .uncertainty import SECONDS_PER_DAY

__all__ = [
    "DFENS2021",
    "DFENS_COV",
    "DFENS_MEAN",
    "FO2_TAMED_MIN_PA",
    "OLIVINE_ANISOTROPY",
    "OUTPUT_COLUMNS",
    "R_GAS",
    "SECONDS_PER_DAY",
    "ArrheniusLaw",
    "DohmenChakraborty2007",
    "anisotropy_factor",
    "check_diffusion_options",
    "erf_step",
    "euler_to_axis_angles",
    "fit_diffusion",
    "fit_plagioclase_mg",
    "mg_rtlnk",
    "plagioclase_mg_diffusivity",
    "timescale_density",
    "timescale_density_table",
    "olivine_diffusivity",
    "qfm_log_fo2_pa",
    "relax",
]
