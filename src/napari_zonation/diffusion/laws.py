"""Diffusivity laws: olivine Fe-Mg (Dohmen & Chakraborty 2007; the DFENS regression), a user
Arrhenius law, a plain D; the QFM buffer. Olivine anisotropy and EBSD Euler angles live in
:mod:`.anisotropy` and are importable from here too.

Every law gives ln D (m^2/s) for arrays of conditions and of the law's own parameters, so the
same code serves the nominal value and a Monte Carlo over the conditions and the law's
uncertainty (:mod:`.uncertainty`). D depends on composition only through a factor
``exp(slope * (XFe - XFe_ref))`` (:meth:`DiffusionLaw.composition_slope`), which the
finite-difference solver evaluates at each node's own composition.

References
----------
- Dohmen, R. & Chakraborty, S. (2007) Fe-Mg diffusion in olivine II: point defect chemistry,
  change of diffusion mechanisms and a model for calculation of diffusion coefficients in
  natural olivine. Phys. Chem. Minerals 34, 409-430, doi:10.1007/s00269-007-0158-6.
- Mutch, E. J. F., Maclennan, J., Shorttle, O., Rudge, J. F. & Neave, D. A. (2021) DFENS: Diffusion
  chronometry using Finite Elements and Nested Sampling. Geochem. Geophys. Geosyst. 22,
  e2020GC009303, doi:10.1029/2020GC009303 (regression of the experimental Fe-Mg data, TaMED
  mechanism, [001]: coefficient means and covariance below).
- Frost, B. R. (1991) Introduction to oxygen fugacity and its petrologic importance. Rev.
  Mineral. 25, 1-9 (the QFM buffer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .._validation import ZonationInputError
from .anisotropy import (  # noqa: F401 - importable from here as before
    OLIVINE_ANISOTROPY,
    anisotropy_factor,
    check_angles,
    euler_to_axis_angles,
)

#: Gas constant, J/(mol K).
R_GAS = 8.314462618
LN10 = math.log(10.0)
#: D&C (2007): the TaMED mechanism holds above this fO2 (Pa); the PED mechanism below it.
FO2_TAMED_MIN_PA = 1e-10

#: DFENS Fe-Mg regression (Mutch et al. 2021), TaMED, [001]:
#: ln D001 [m^2/s] = a0 + a1 ln fO2 [bar] + a2 XFo + a3 / T + a4 P + a5 P / T  (T in K, P in Pa).
DFENS_MEAN = np.array([-6.755, 0.2244, -7.181, -26740.0, -5.213e-10, -1.028e-7])
#: Covariance of the six DFENS coefficients (same order as DFENS_MEAN).
DFENS_COV = np.array(
    [
        [0.719988227888066, 0.013604944263792, -0.137206914066245, -316.542691119953,
         -5.10703480738867e-11, 3.56565852966258e-08],
        [0.013604944263792, 0.00082469230762, 0.000224829433256, 11.8157816556034,
         -1.60520420649397e-12, 2.06662706021798e-10],
        [-0.137206914066245, 0.000224829433256, 0.133506645898472, 44.4762047396756,
         1.76263206439128e-12, -5.04771041057526e-09],
        [-316.542691119953, 11.8157816556034, 44.4762047396756, 819871.010459364,
         8.11565428517953e-09, -3.61035571275858e-05],
        [-5.10703480738867e-11, -1.60520420649397e-12, 1.76263206439128e-12,
         8.11565428517953e-09, 2.07869617518516e-19, -3.45519816705532e-16],
        [3.56565852966258e-08, 2.06662706021798e-10, -5.04771041057526e-09,
         -3.61035571275858e-05, -3.45519816705532e-16, 5.82629996012315e-13],
    ]
)
_DFENS_CHOL = np.linalg.cholesky(DFENS_COV)


# --------------------------------------------------------------------------------------------
# QFM
# --------------------------------------------------------------------------------------------
def qfm_log_fo2_pa(temperature_c, pressure_mpa=0.1):
    """log10 fO2 (Pa) of the quartz-fayalite-magnetite buffer, after Frost (1991).

    ``log10 fO2 (bar) = A / T + B + C (P - 1) / T`` with T in K and P in bar; beta-quartz
    (T > 573 C): A = -25096.3, B = 8.735, C = 0.110; alpha-quartz: A = -26455.3, B = 10.344,
    C = 0.092 (Frost 1991, Rev. Mineral. 25, table 1). Returned in Pa (+5 log units).

    Parameters
    ----------
    temperature_c : float or array-like
        Temperature, degrees Celsius.
    pressure_mpa : float or array-like
        Pressure, MPa (0.1 MPa = 1 bar).

    Returns
    -------
    float or numpy.ndarray
        log10 of the buffer's oxygen fugacity in pascals.
    """
    t_k = np.asarray(temperature_c, dtype=float) + 273.15
    p_bar = np.asarray(pressure_mpa, dtype=float) * 10.0
    beta = t_k > 573.0 + 273.15
    a = np.where(beta, -25096.3, -26455.3)
    b = np.where(beta, 8.735, 10.344)
    c = np.where(beta, 0.110, 0.092)
    out = a / t_k + b + c * (p_bar - 1.0) / t_k + 5.0
    return float(out) if np.ndim(out) == 0 else out


# --------------------------------------------------------------------------------------------
# Conditions
# --------------------------------------------------------------------------------------------
@dataclass
class Conditions:
    """Intensive conditions as arrays (one value, or one per Monte Carlo sample).

    ``temperature_c``, ``pressure_mpa``, and the oxygen fugacity as ``log_fo2_pa`` (log10 Pa;
    already resolved from ``delta_qfm`` at the sampled temperature when given relative to
    QFM). ``log_fo2_pa`` may be NaN for laws that do not need it.
    """

    temperature_c: np.ndarray
    pressure_mpa: np.ndarray
    log_fo2_pa: np.ndarray

    @property
    def t_k(self) -> np.ndarray:
        return np.asarray(self.temperature_c, dtype=float) + 273.15

    @property
    def p_pa(self) -> np.ndarray:
        return np.asarray(self.pressure_mpa, dtype=float) * 1e6


# --------------------------------------------------------------------------------------------
# Laws
# --------------------------------------------------------------------------------------------
@dataclass
class DiffusionLaw:
    """Base class of a diffusivity law.

    A law returns ln D (m^2/s) along its reference direction ([001] for olivine) from
    :class:`Conditions`, the fayalite fraction and an array of its own parameters ``theta``
    (shape ``(k,)`` or ``(n, k)``: one row per Monte Carlo sample). ``nominal()`` gives the
    parameters' best values and ``sample(n, rng)`` draws them from their uncertainty.
    """

    name: str = "law"
    citation: str = ""
    needs_temperature: bool = True
    needs_fo2: bool = False
    anisotropic: bool = False  # olivine: D along the traverse from the angles

    #: standard normal deviates one sample of the law's parameters takes
    n_z: int = 0

    def nominal(self) -> np.ndarray:
        return np.zeros(0)

    def from_z(self, z: np.ndarray) -> np.ndarray:
        """Parameters from standard normal deviates ``z`` of shape (n, n_z)."""
        return np.tile(self.nominal(), (np.shape(z)[0], 1))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.from_z(rng.standard_normal((n, self.n_z)))

    def ln_d(self, cond: Conditions, xfe, theta=None) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def composition_slope(self) -> float:
        """d ln D / d XFe (0 when D does not depend on the fayalite fraction)."""
        return 0.0

    def describe(self) -> str:
        return self.name


@dataclass
class DohmenChakraborty2007(DiffusionLaw):
    """Olivine Fe-Mg interdiffusion along [001] after Dohmen & Chakraborty (2007).

    TaMED mechanism (fO2 > 1e-10 Pa):

        D001 = 10^-9.21 (fO2 / 1e-7 Pa)^(1/6) 10^(3 (XFe - 0.1))
               exp(-(Ea + (P - 1e5 Pa) 7e-6 m^3/mol) / (R T))   [m^2/s]

    with Ea = 201 kJ/mol; PED mechanism (fO2 <= 1e-10 Pa):

        D001 = 10^-8.91 10^(3 (XFe - 0.1)) exp(-(220 kJ/mol + (P - 1e5) 7e-6) / (R T)).

    T in K, P in Pa, fO2 in Pa, XFe the fayalite mole fraction. The law's own uncertainty is
    taken as that of Ea: 1-sigma ``ea_err_j_mol`` (20 kJ/mol by default, the value published
    with the law and used as a Gaussian prior by Bayesian inversions of olivine profiles).
    """

    name: str = "Dohmen & Chakraborty 2007"
    citation: str = "Dohmen & Chakraborty (2007), Phys. Chem. Minerals 34, 409-430"
    needs_fo2: bool = True
    anisotropic: bool = True
    ea_j_mol: float = 201000.0
    ea_err_j_mol: float = 20000.0
    n_z: int = 1

    def nominal(self) -> np.ndarray:
        return np.array([self.ea_j_mol])

    def from_z(self, z):
        return (self.ea_j_mol + self.ea_err_j_mol * np.asarray(z)[:, 0])[:, None]

    def ln_d(self, cond, xfe, theta=None):
        theta = self.nominal() if theta is None else np.asarray(theta, dtype=float)
        ea = theta[..., 0]
        t_k, p_pa = cond.t_k, cond.p_pa
        log_fo2 = np.asarray(cond.log_fo2_pa, dtype=float)
        pv = (p_pa - 1e5) * 7e-6
        xfe = np.asarray(xfe, dtype=float)
        tamed = (
            -9.21 * LN10 + (log_fo2 + 7.0) / 6.0 * LN10 + 3.0 * (xfe - 0.1) * LN10
            - (ea + pv) / (R_GAS * t_k)
        )
        # PED: its own pre-factor and Ea (the Ea uncertainty shifts both mechanisms alike)
        ped = (
            -8.91 * LN10 + 3.0 * (xfe - 0.1) * LN10
            - (ea + (220000.0 - self.ea_j_mol) + pv) / (R_GAS * t_k)
        )
        return np.where(log_fo2 > math.log10(FO2_TAMED_MIN_PA), tamed, ped)

    def composition_slope(self) -> float:
        return 3.0 * LN10

    def describe(self) -> str:
        return (f"Dohmen & Chakraborty 2007 (Ea {self.ea_j_mol / 1e3:g} +/- "
                f"{self.ea_err_j_mol / 1e3:g} kJ/mol)")


@dataclass
class DFENS2021(DiffusionLaw):
    """Olivine Fe-Mg interdiffusion along [001]: the DFENS regression (Mutch et al. 2021).

    A regression of the experimental Fe-Mg data (TaMED mechanism):

        ln D001 [m^2/s] = a0 + a1 ln fO2 [bar] + a2 XFo + a3 / T + a4 P + a5 P / T

    with T in K, P in Pa, XFo = 1 - XFe, and the coefficients' means ``DFENS_MEAN``
    (a0 = -6.755, a1 = 0.2244, a2 = -7.181, a3 = -26740, a4 = -5.213e-10, a5 = -1.028e-7) and
    covariance ``DFENS_COV``. The law's uncertainty is the coefficients' multivariate Gaussian
    (``use_covariance=False`` fixes them at their means).
    """

    name: str = "DFENS (Mutch et al. 2021)"
    citation: str = "Mutch et al. (2021), G-cubed 22, e2020GC009303 (DFENS)"
    needs_fo2: bool = True
    anisotropic: bool = True
    use_covariance: bool = True
    n_z: int = 6

    def nominal(self) -> np.ndarray:
        return DFENS_MEAN.copy()

    def from_z(self, z):
        z = np.asarray(z, dtype=float)
        if not self.use_covariance:
            return np.tile(DFENS_MEAN, (z.shape[0], 1))
        return DFENS_MEAN + z @ _DFENS_CHOL.T

    def ln_d(self, cond, xfe, theta=None):
        theta = self.nominal() if theta is None else np.asarray(theta, dtype=float)
        a = [theta[..., i] for i in range(6)]
        t_k, p_pa = cond.t_k, cond.p_pa
        ln_fo2_bar = (np.asarray(cond.log_fo2_pa, dtype=float) - 5.0) * LN10
        xfo = 1.0 - np.asarray(xfe, dtype=float)
        return (a[0] + a[1] * ln_fo2_bar + a[2] * xfo + a[3] / t_k + a[4] * p_pa
                + a[5] * p_pa / t_k)

    def composition_slope(self) -> float:
        return -float(DFENS_MEAN[2])

    def describe(self) -> str:
        return "DFENS regression (Mutch et al. 2021)" + (
            ", coefficients sampled from their covariance" if self.use_covariance else ""
        )


@dataclass
class ArrheniusLaw(DiffusionLaw):
    """A user Arrhenius law: ``D = D0 exp(-(Ea + P Va) / (R T))``, optionally with
    ``(fO2 / fO2_ref)^m`` and ``10^(k (XFe - xfe_ref))``.

    Parameters (fields)
    -------------------
    d0_m2_s : float
        Pre-exponential factor, m^2/s.
    ea_kj_mol, ea_kj_mol_err : float
        Activation energy and its 1-sigma, kJ/mol.
    va_cm3_mol : float
        Activation volume, cm^3/mol (0: no pressure dependence).
    log10_d0_err : float
        1-sigma of log10 D0.
    fo2_exponent : float
        m in ``(fO2 / 1e-7 Pa)^m`` (0: no fO2 dependence).
    xfe_slope : float
        k in ``10^(k (XFe - xfe_ref))`` (0: no composition dependence).
    anisotropic : bool
        True when D is along olivine [001] and the traverse's angles apply.
    """

    name: str = "Arrhenius (user)"
    citation: str = "user law"
    d0_m2_s: float = 1e-9
    ea_kj_mol: float = 200.0
    ea_kj_mol_err: float = 0.0
    va_cm3_mol: float = 0.0
    log10_d0_err: float = 0.0
    fo2_exponent: float = 0.0
    xfe_slope: float = 0.0
    xfe_ref: float = 0.1
    n_z: int = 2

    def __post_init__(self):
        if not (math.isfinite(self.d0_m2_s) and self.d0_m2_s > 0):
            raise ZonationInputError(f"d0_m2_s={self.d0_m2_s!r} must be a positive number.")
        if not math.isfinite(self.ea_kj_mol):
            raise ZonationInputError(f"ea_kj_mol={self.ea_kj_mol!r} must be a number.")
        self.needs_fo2 = self.fo2_exponent != 0.0

    def nominal(self):
        return np.array([math.log(self.d0_m2_s), self.ea_kj_mol * 1e3])

    def from_z(self, z):
        z = np.asarray(z, dtype=float)
        ln_d0 = math.log(self.d0_m2_s) + self.log10_d0_err * LN10 * z[:, 0]
        ea = (self.ea_kj_mol + self.ea_kj_mol_err * z[:, 1]) * 1e3
        return np.column_stack([ln_d0, ea])

    def ln_d(self, cond, xfe, theta=None):
        theta = self.nominal() if theta is None else np.asarray(theta, dtype=float)
        ln_d0, ea = theta[..., 0], theta[..., 1]
        out = ln_d0 - (ea + cond.p_pa * self.va_cm3_mol * 1e-6) / (R_GAS * cond.t_k)
        if self.fo2_exponent:
            out = out + self.fo2_exponent * (np.asarray(cond.log_fo2_pa) + 7.0) * LN10
        if self.xfe_slope:
            out = out + self.xfe_slope * (np.asarray(xfe, dtype=float) - self.xfe_ref) * LN10
        return out

    def composition_slope(self) -> float:
        return self.xfe_slope * LN10

    def describe(self) -> str:
        return (f"Arrhenius D0 {self.d0_m2_s:.3g} m^2/s, Ea {self.ea_kj_mol:g} +/- "
                f"{self.ea_kj_mol_err:g} kJ/mol, Va {self.va_cm3_mol:g} cm^3/mol")


@dataclass
class ConstantLaw(DiffusionLaw):
    """A plain diffusivity along the traverse, ``D`` in um^2/s with a relative 1-sigma."""

    name: str = "plain D"
    citation: str = "given"
    needs_temperature: bool = False
    d_um2_s: float = 1.0
    rel_err: float = 0.0
    composition_dependent_xfe_slope: float = 0.0  # olivine with a given D: 10^(3 XFe) shape
    extra: dict = field(default_factory=dict)
    n_z: int = 1

    def nominal(self):
        return np.array([math.log(self.d_um2_s * 1e-12)])

    def from_z(self, z):
        # log-normal with the given relative 1-sigma (small errors: ~ Gaussian)
        s = math.log1p(self.rel_err) if self.rel_err > 0 else 0.0
        return (math.log(self.d_um2_s * 1e-12) + s * np.asarray(z)[:, 0])[:, None]

    def ln_d(self, cond, xfe, theta=None):
        theta = self.nominal() if theta is None else np.asarray(theta, dtype=float)
        return theta[..., 0] + 0.0 * np.asarray(xfe, dtype=float)

    def composition_slope(self) -> float:
        return self.composition_dependent_xfe_slope

    def describe(self) -> str:
        err = f" +/- {self.rel_err * 100:.3g} %" if self.rel_err else ""
        return f"diffusivity given: D = {self.d_um2_s:.4g} um^2/s{err} along the traverse"


#: names accepted for ``d_law``
LAW_ALIASES = {
    "dc07": "dc07",
    "dc2007": "dc07",
    "d&c": "dc07",
    "d&c07": "dc07",
    "d&c2007": "dc07",
    "dohmen": "dc07",
    "dohmen2007": "dc07",
    "dohmen_chakraborty": "dc07",
    "dohmen_chakraborty_2007": "dc07",
    "dfens": "dfens",
    "mutch": "dfens",
    "mutch2021": "dfens",
    "dfens2021": "dfens",
    "arrhenius": "arrhenius",
    "user": "arrhenius",
    "constant": "constant",
    "plain": "constant",
}


def law_from_name(name: str, **params) -> DiffusionLaw:
    """A law from its name (``"dc07"``, ``"dfens"``, ``"arrhenius"``) and its parameters."""
    raw = str(name).strip().lower()
    key = LAW_ALIASES.get(raw.replace(" ", "_").replace("-", "_"))
    if key is None:  # free spellings: "Dohmen & Chakraborty (2007)", "DFENS 2021", ...
        flat = "".join(ch for ch in raw if ch.isalnum())
        if "dfens" in flat or "mutch" in flat:
            key = "dfens"
        elif "dohmen" in flat or flat.startswith(("dc07", "dc2007", "dandc", "dc")):
            key = "dc07"
        elif "arrhenius" in flat:
            key = "arrhenius"
    if key is None:
        raise ZonationInputError(
            f"d_law={name!r} is not known; use 'dc07' (Dohmen & Chakraborty 2007), 'dfens' (the "
            "DFENS regression of Mutch et al. 2021), 'arrhenius' (your own D0, Ea) or give "
            "diffusivity_um2_s."
        )
    if key == "dc07":
        kw = {}
        if params.get("ea_kj_mol_err") is not None:
            kw["ea_err_j_mol"] = abs(float(params["ea_kj_mol_err"])) * 1e3
        return DohmenChakraborty2007(**kw)
    if key == "dfens":
        return DFENS2021(use_covariance=bool(params.get("law_uncertainty", True)))
    if key == "arrhenius":
        need = [k for k in ("d0_m2_s", "ea_kj_mol") if params.get(k) is None]
        if need:
            raise ZonationInputError(
                f"d_law='arrhenius' needs {' and '.join(need)} (D = D0 exp(-(Ea + P Va)/RT); "
                "D0 in m^2/s, Ea in kJ/mol)."
            )
        kw = {k: float(params[k]) for k in ("d0_m2_s", "ea_kj_mol", "ea_kj_mol_err",
                                            "va_cm3_mol", "log10_d0_err", "fo2_exponent",
                                            "xfe_slope") if params.get(k) is not None}
        kw["anisotropic"] = bool(params.get("anisotropic", False))
        return ArrheniusLaw(**kw)
    raise ZonationInputError("d_law='constant' is given as diffusivity_um2_s=<D in um^2/s>.")


def olivine_diffusivity(
    temperature_c,
    *,
    xfe,
    pressure_mpa=0.1,
    delta_qfm=None,
    log_fo2_pa=None,
    angles_deg=None,
    law: str = "dc07",
):
    """Fe-Mg interdiffusion coefficient in olivine, um^2/s.

    ``law="dc07"`` (default): Dohmen & Chakraborty (2007), along [001] for the TaMED mechanism
    (fO2 > 1e-10 Pa):

        log10 D001 (m^2/s) = -9.21 - (201000 + (P - 1e5) * 7e-6) / (2.303 R T)
                             + 1/6 log10(fO2 / 1e-7) + 3 (XFe - 0.1)

    and for the PED mechanism (fO2 <= 1e-10 Pa):

        log10 D001 (m^2/s) = -8.91 - (220000 + (P - 1e5) * 7e-6) / (2.303 R T) + 3 (XFe - 0.1)

    ``law="dfens"``: the DFENS regression (Mutch et al. 2021) at its coefficient means,
    ``ln D001 = a0 + a1 ln fO2[bar] + a2 XFo + a3/T + a4 P + a5 P/T`` (see :class:`DFENS2021`).

    T in K, P in Pa, fO2 in Pa and XFe the mole fraction of fayalite. D[100] = D[010] =
    D[001] / 6, and along a traverse at angles (alpha, beta, gamma) to [100], [010], [001]:
    D = D100 cos^2 alpha + D010 cos^2 beta + D001 cos^2 gamma.

    Parameters
    ----------
    temperature_c : float or array-like
        Temperature, degrees Celsius.
    xfe : float or array-like
        Mole fraction of fayalite, 1 - Fo/100.
    pressure_mpa : float
        Pressure, MPa (default 0.1 MPa = 1 bar).
    delta_qfm, log_fo2_pa : float, optional
        Oxygen fugacity, either in log units relative to QFM (Frost 1991; the buffer follows
        the temperature) or as log10 fO2 in Pa. Exactly one.
    angles_deg : sequence of 3 floats, optional
        Angles between the traverse and [100], [010], [001]. Omitted: D along [001].
    law : {"dc07", "dfens"}
        The diffusivity law.

    Returns
    -------
    float or numpy.ndarray
        Diffusivity along the traverse (or [001]) in um^2/s.
    """
    if (delta_qfm is None) == (log_fo2_pa is None):
        raise ZonationInputError(
            "olivine diffusivity needs the oxygen fugacity as exactly one of delta_qfm (log units "
            "relative to QFM) or log_fo2_pa (log10 fO2 in Pa)."
        )
    t_c = np.asarray(temperature_c, dtype=float)
    if delta_qfm is not None:
        log_fo2 = qfm_log_fo2_pa(t_c, pressure_mpa) + float(delta_qfm)
    else:
        log_fo2 = np.asarray(float(log_fo2_pa)) + 0.0 * t_c
    cond = Conditions(t_c, np.asarray(float(pressure_mpa)), np.asarray(log_fo2))
    model = law if isinstance(law, DiffusionLaw) else law_from_name(law)
    ln_d = model.ln_d(cond, np.asarray(xfe, dtype=float))
    factor = 1.0 if angles_deg is None else anisotropy_factor(angles_deg)
    d_um2_s = factor * np.exp(ln_d) * 1e12
    return float(d_um2_s) if np.ndim(d_um2_s) == 0 else d_um2_s
