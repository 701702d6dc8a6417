"""Mg in plagioclase: An-dependent diffusivity and partitioning (Costa et al. 2003).

Trace-element diffusion in plagioclase follows the An content: the chemical potential of Mg
depends on X_An through its partition coefficient ``RT ln K = A X_An + B``, so (Costa, Chakraborty
& Dohmen 2003, eq. 7)

    dC/dt = d/dx ( D dC/dx - D C d(ln K)/dx ),      d(ln K)/dx = A / (R T) dX_An/dx

with D = D_Mg(X_An, T) at each node. The An profile is taken as fixed (CaAl-NaSi
interdiffusion is orders of magnitude slower) and lightly smoothed. The crystal starts in
equilibrium with a melt whose Mg steps at given or fitted positions: ``C0(x) = C_melt(x) K(x)``;
the profile then relaxes toward ``C ~ K(x)`` (equilibrium with one melt).

Diffusivities (m^2/s; X = X_An, T in K):

- Van Orman, Cherniak & Kita (2014), EPSL 385: ``D = exp(-6.06 - 7.96 X - 287 kJ/mol / RT)``.
- Costa et al. (2003), GCA 67: ``D = 2.92 10^(-4.1 X - 3.1) exp(-266 kJ/mol / RT)``.
- Faak, Chakraborty & Coogan (2013), GCA 123: ``D = 1.25e-4 a_SiO2^2.6 exp(-320.9 kJ/mol / RT)``
  (independent of An; silica activity 0.55-1).

Partitioning ``RT ln K_Mg`` (kJ/mol):

- Bindeman, Davis & Drake (1998), GCA 62: ``A X_An + B`` with A = -26.1, B = -25.7.
- Mutch et al. (2022), GCA 339 (doi:10.1016/j.gca.2022.10.035): ``(a1 + a2 beta)(X_An - X_C1I1)
  + a3 SiO2 + a4`` with a1 = 16.9, a2 = -37.2, a3 = 0.83, a4 = -83.3, X_C1I1 = 0.12 + 0.00038 T,
  beta = 1 above the C1-I1 transition (X_An > X_C1I1), SiO2 the melt's wt %.
- Dohmen & Blundy (2014), Am. J. Sci. 314: the lattice-strain model, K_Ca of the melt from
  its SiO2 (eq. 28a: RT ln K_Ca = -19107 + 467 SiO2, J/mol), Young's modulus
  E = 120.04 - 0.3686 X_An (GPa), site radius r0 = 1.2895 + 0.00013 (T - 1563) + (-0.0952 -
  0.00004 (T - 1563)) X_An (Angstrom), Shannon radii (VIII) Ca2+ 1.12, Mg2+ 0.89 Angstrom.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter1d

from .._validation import ZonationInputError, check_profiles
from .fitting import fit_model, guess_steps
from .laws import R_GAS
from .models import Domain, PartitionedPlateauModel, Physics, blurred_at

SECONDS_PER_YEAR = 365.25 * 86400.0
R_CA_VIII, R_MG_VIII = 1.12, 0.89  # Shannon (1976) ionic radii, Angstrom


def plagioclase_mg_diffusivity(an, temperature_c, law: str = "van_orman",
                               silica_activity: float = 0.55):
    """Mg diffusivity in plagioclase, um^2/s, at An fraction ``an`` (0-1) and ``temperature_c``.

    ``law``: ``"van_orman"`` (Van Orman et al. 2014), ``"costa"`` (Costa et al. 2003) or
    ``"faak"`` (Faak et al. 2013, with ``silica_activity``). Equations in the module docstring.
    """
    x = np.asarray(an, dtype=float)
    t_k = float(temperature_c) + 273.15
    key = str(law).lower().replace(" ", "_")
    if key in ("van_orman", "vanorman", "van_orman_2014"):
        d = np.exp(-6.06 - 7.96 * x - 287000.0 / (R_GAS * t_k))
    elif key in ("costa", "costa_2003"):
        d = 2.92 * 10 ** (-4.1 * x - 3.1) * np.exp(-266000.0 / (R_GAS * t_k))
    elif key in ("faak", "faak_2013"):
        if not 0.55 <= silica_activity <= 1.0:
            raise ZonationInputError("silica_activity must be 0.55-1 (Faak et al. 2013).")
        d = 1.25e-4 * silica_activity**2.6 * np.exp(-320924.0 / (R_GAS * t_k)) + 0.0 * x
    else:
        raise ZonationInputError(
            f"d_law={law!r} for Mg in plagioclase: use 'van_orman', 'costa' or 'faak'.")
    out = d * 1e12
    return float(out) if np.ndim(out) == 0 else out


def mg_rtlnk(an, temperature_c, model: str = "bindeman", sio2_melt_wt: float | None = None):
    """RT ln K (J/mol) of Mg between plagioclase and melt at An fraction ``an``.

    ``model``: ``"bindeman"`` (1998), ``"mutch"`` (2022; needs ``sio2_melt_wt``) or
    ``"dohmen"`` (Dohmen & Blundy 2014; needs ``sio2_melt_wt``). Equations in the module
    docstring.
    """
    x = np.asarray(an, dtype=float)
    t_k = float(temperature_c) + 273.15
    key = str(model).lower()
    if key.startswith("bindeman"):
        return (-26.1 * x - 25.7) * 1e3
    if sio2_melt_wt is None:
        raise ZonationInputError(f"partitioning={model!r} needs sio2_melt_wt (the melt's SiO2 in "
                                 "wt %, e.g. 70 for a rhyolite).")
    if key.startswith("mutch"):
        x_c1i1 = 0.12 + 0.00038 * t_k
        beta = (x > x_c1i1).astype(float)
        return ((16.9 - 37.2 * beta) * (x - x_c1i1) + 0.83 * sio2_melt_wt - 83.3) * 1e3
    if key.startswith("dohmen"):
        rt_ca = -19107.0 + 467.0 * sio2_melt_wt
        e_m = 120.0382 - 0.3686 * x
        r0 = 1.2895 + 0.00013 * (t_k - 1563.0) + (-0.0952 - 0.00004 * (t_k - 1563.0)) * x
        strain = (r0 / 2 * (R_CA_VIII**2 - R_MG_VIII**2)
                  - (R_CA_VIII**3 - R_MG_VIII**3) / 3)
        # ln K = ln K_Ca - 4 pi E N_A (...) / RT, 910.17 = 4 pi N_A 1e-21 / R (GPa, Angstrom)
        return rt_ca - 910.17 * e_m * strain * R_GAS
    raise ZonationInputError(
        f"partitioning={model!r}: use 'bindeman', 'mutch' or 'dohmen'.")


def mg_partition_slope(temperature_c, model="bindeman", sio2_melt_wt=None) -> float:
    """A = d(RT ln K)/dX_An (J/mol), the least-squares slope over X_An 0-1."""
    x = np.linspace(0.0, 1.0, 101)
    return float(np.polyfit(x, mg_rtlnk(x, temperature_c, model, sio2_melt_wt), 1)[0])


def fit_plagioclase_mg(
    prof: pd.DataFrame,
    *,
    temperature_c: float,
    an_channel: str = "An",
    mg_channel: str = "Mg",
    partitioning: str = "bindeman",
    d_law: str = "van_orman",
    sio2_melt_wt: float | None = None,
    silica_activity: float = 0.55,
    n_melt_steps: int = 1,
    rim: str = "fixed",
    an_smooth_points: float = 1.0,
    temperature_c_err: float = 0.0,
    n_samples: int = 2000,
    interval=(5.0, 95.0),
    seed: int = 0,
    skip_core_points: int = 0,
) -> pd.DataFrame:
    """Fit Mg diffusion in plagioclase with An-dependent D and partitioning.

    The profiles table holds, per ``label``, the An (mol %, or fraction) and Mg channels at the
    same distances (``distance_um`` from the rim, e.g. ``read_profiles(..., value=["An", "Mg"],
    rim="end")``). The crystal starts in equilibrium with a melt whose Mg steps
    ``n_melt_steps`` times (positions and melt levels fitted), then diffuses for t at
    ``temperature_c`` following Costa et al. (2003); the rim is held (``rim="fixed"``: a melt
    reservoir) or closed. Weighted by the Mg ``sigma`` when present.

    Returns
    -------
    pandas.DataFrame
        One row per label: ``fit_status``, ``fit_error``, ``sqrt_dt_um`` (sqrt(D_ref t), D_ref at
        the mean An), ``diffusivity_um2_s`` (D_ref), ``timescale_days``, ``timescale_years``
        and their ``_lo``/``_hi`` (the ``interval`` percentiles over the fit and
        ``temperature_c_err``), ``chi2_red``, ``partitioning``, ``d_law``, ``a_j_mol`` (the
        slope A of RT ln K), ``step_positions_um``, ``diffusion_assumption``.
    """
    prof = check_profiles(prof)
    if "channel" not in prof.columns:
        raise ZonationInputError(f"the profiles need a channel column with {an_channel!r} and "
                                 f"{mg_channel!r} (read_profiles(..., value=['An', 'Mg'])).")
    t_c = float(temperature_c)
    if not 500.0 <= t_c <= 1400.0:
        raise ZonationInputError(f"temperature_c={t_c:g} is outside 500-1400 C for plagioclase; "
                                 "give degrees Celsius.")
    rng = np.random.default_rng(seed)
    rows = []
    for label, g in prof.groupby("label", sort=True):
        row = {"label": label, "partitioning": partitioning, "d_law": d_law,
               "temperature_c": t_c}
        a = g[g["channel"] == an_channel].sort_values("distance_um")
        m = g[g["channel"] == mg_channel].sort_values("distance_um")
        if a.empty or m.empty:
            row.update(fit_status="no data", fit_error=f"label {label!r} lacks the {an_channel} "
                       f"or {mg_channel} channel.")
            rows.append(row)
            continue
        d = m["distance_um"].to_numpy(dtype=float)
        y = m["value"].to_numpy(dtype=float)
        sig = m["sigma"].to_numpy(dtype=float) if "sigma" in m.columns else None
        if sig is not None and not np.all(np.isfinite(sig) & (sig > 0)):
            sig = None
        if skip_core_points:
            keep = np.argsort(d)[: max(d.size - int(skip_core_points), 0)]
            keep.sort()
            d, y = d[keep], y[keep]
            sig = None if sig is None else sig[keep]
        an_d = a["distance_um"].to_numpy(dtype=float)
        an_v = a["value"].to_numpy(dtype=float)
        an_v = an_v / 100.0 if np.nanmax(an_v) > 1.5 else an_v
        if an_smooth_points > 0:
            an_v = gaussian_filter1d(an_v, an_smooth_points, mode="nearest")
        an_ref = float(np.mean(np.interp(d, an_d, an_v)))
        rt_ref = float(mg_rtlnk(an_ref, t_c, partitioning, sio2_melt_wt))
        d_ref = plagioclase_mg_diffusivity(an_ref, t_c, d_law, silica_activity)

        def an_at(x, an_d=an_d, an_v=an_v):
            return np.interp(x, an_d, an_v)

        def k_ratio(x, an_at=an_at, rt_ref=rt_ref):
            return np.exp((mg_rtlnk(an_at(x), t_c, partitioning, sio2_melt_wt) - rt_ref)
                          / (R_GAS * (t_c + 273.15)))

        def d_of_x(x, an_at=an_at, d_ref=d_ref):
            return plagioclase_mg_diffusivity(an_at(x), t_c, d_law, silica_activity) / d_ref

        def lnk_of_x(x, an_at=an_at):
            return mg_rtlnk(an_at(x), t_c, partitioning, sio2_melt_wt) / (
                R_GAS * (t_c + 273.15))

        k = int(n_melt_steps)
        model = PartitionedPlateauModel(n_steps=k, name="plagioclase_mg", k_ratio_of_x=k_ratio)
        start, end = float(d.min()), float(d.max())
        domain = Domain(start, end, rim=rim, core="closed")
        pos = guess_steps(d, y / k_ratio(d), k)
        melt = y / k_ratio(d)
        edges = [-np.inf] + pos + [np.inf]
        levels = [float(np.median(melt[(d > lo) & (d < hi)])) if np.any((d > lo) & (d < hi))
                  else float(np.median(melt)) for lo, hi in zip(edges[:-1], edges[1:],
                                                                strict=True)]
        span = float(np.ptp(d))
        spacing = float(np.median(np.diff(d)))
        theta0 = np.array(levels + pos + [2 * math.log(max(span / 10, spacing))])
        lo_v, hi_v = 0.0, float(5 * np.max(melt))
        lower = np.array([lo_v] * (k + 1) + [start] * k + [2 * math.log(0.05 * spacing)])
        upper = np.array([hi_v] * (k + 1) + [end] * k + [2 * math.log(5 * span)])
        physics = Physics(n_steps=80, d_of_x=d_of_x, lnk_of_x=lnk_of_x)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = fit_model(model, theta0, lower, upper, d, y, sig, domain, physics, 0.0,
                                max(span / 10, spacing), value_slots=list(range(k + 1)),
                                extra_starts=4)
        except (RuntimeError, ValueError) as exc:
            row.update(fit_status="fit failed", fit_error=str(exc))
            rows.append(row)
            continue
        lt = float(fit.theta[-1])
        e = fit.ln_tau_err(-1)
        tau = math.exp(lt)
        t_days = tau / d_ref / 86400.0
        # interval: the fit and the temperature (D's Arrhenius term moves with T)
        z = rng.standard_normal((n_samples, 2))
        lt_s = lt + (e if np.isfinite(e) else 0.0) * z[:, 0]
        t_s = t_c + temperature_c_err * z[:, 1]
        d_s = np.array([plagioclase_mg_diffusivity(an_ref, tt, d_law, silica_activity)
                        for tt in t_s]) if temperature_c_err else np.full(n_samples, d_ref)
        ts = np.exp(lt_s) / d_s / 86400.0
        lo_p, hi_p = interval
        row.update(
            fit_status="ok" if fit.success else "fit failed",
            fit_error="" if fit.success else fit.message,
            sqrt_dt_um=math.sqrt(tau),
            sqrt_dt_err_um=0.5 * math.sqrt(tau) * e if np.isfinite(e) else math.nan,
            diffusivity_um2_s=d_ref,
            timescale_days=t_days,
            timescale_days_lo=float(np.percentile(ts, lo_p)),
            timescale_days_hi=float(np.percentile(ts, hi_p)),
            chi2_red=fit.chi2_red,
            a_j_mol=mg_partition_slope(t_c, partitioning, sio2_melt_wt),
            step_positions_um=tuple(float(v) for v in fit.theta[k + 1 : 2 * k + 1]),
            n_points=int(d.size),
        )
        row["timescale_years"] = t_days / 365.25
        row["timescale_years_lo"] = row["timescale_days_lo"] / 365.25
        row["timescale_years_hi"] = row["timescale_days_hi"] / 365.25
        row["diffusion_assumption"] = (
            f"Mg in plagioclase (Costa et al. 2003 form), D {d_law} at each node's An, "
            f"partitioning {partitioning}"
            + (f" (melt SiO2 {sio2_melt_wt:g} wt %)" if sio2_melt_wt is not None else "")
            + f", {t_c:g} C; initial: equilibrium with a melt stepping {k} time(s); rim "
            + ("held" if rim == "fixed" else "closed") + f"; window from {start:g} um"
        )
        row["_curve"] = (fit, domain, physics)
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.drop(columns=[c for c in out.columns if c.startswith("_")])


__all__ = ["fit_plagioclase_mg", "mg_partition_slope", "mg_rtlnk", "plagioclase_mg_diffusivity",
           "blurred_at"]
