"""Resolving the diffusion conditions of a call (keywords, or one row per profile) into a law,
nominal conditions with their uncertainties, and the words that state the assumptions."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._validation import ZonationInputError
from .laws import (
    ConstantLaw,
    DiffusionLaw,
    anisotropy_factor,
    check_angles,
    euler_to_axis_angles,
    law_from_name,
    qfm_log_fo2_pa,
)
from .uncertainty import ConditionSpec

#: plausible magmatic temperatures; outside: probably kelvin or a typo
T_MIN_C, T_MAX_C = 600.0, 1600.0

#: condition keywords (and their errors) a call or a conditions row may carry
CONDITION_KEYS = (
    "mineral",
    "d_law",
    "temperature_c",
    "temperature_c_err",
    "temperature2_c",
    "temperature2_c_err",
    "pressure_mpa",
    "pressure_mpa_err",
    "delta_qfm",
    "delta_qfm_err",
    "log_fo2_pa",
    "log_fo2_pa_err",
    "angles_deg",
    "euler_deg",
    "azimuth_deg",
    "xfe",
    "diffusivity_um2_s",
    "diffusivity_um2_s_err",
    "ea_kj_mol_err",
    "law_uncertainty",
    "d0_m2_s",
    "ea_kj_mol",
    "va_cm3_mol",
    "log10_d0_err",
)


@dataclass
class Resolved:
    """A law, the nominal conditions and errors, and the assumptions in words."""

    kind: str  # "none", "law"
    law: DiffusionLaw | None = None
    spec: ConditionSpec = field(default_factory=ConditionSpec)
    temperature2_c: float | None = None
    temperature2_c_err: float = 0.0
    olivine: bool = False
    xfe: float | None = None
    composition_dependent: bool = False
    assumption: str = ""
    angles: tuple | None = None
    notes: list = field(default_factory=list)


def _num(value, name: str, *, allow_none: bool = True):
    if value is None or (isinstance(value, float) and math.isnan(value) and allow_none):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise ZonationInputError(f"{name}={value!r} is not a number.") from exc
    if not math.isfinite(out):
        if allow_none and math.isnan(out):
            return None
        raise ZonationInputError(f"{name}={value!r} must be a finite number.")
    return out


def _err(value, name: str) -> float:
    v = _num(value, name)
    return 0.0 if v is None else abs(v)


def _check_temperature(t_c: float, name: str = "temperature_c") -> None:
    if not T_MIN_C <= t_c <= T_MAX_C:
        hint = ""
        if t_c > T_MAX_C:
            hint = (f" Is it in kelvin? {t_c:g} K is {t_c - 273.15:.0f} C; give degrees "
                    "Celsius.")
        raise ZonationInputError(
            f"{name}={t_c:g} is outside {T_MIN_C:.0f}-{T_MAX_C:.0f} C, the range of magmatic "
            f"diffusion chronometry.{hint}"
        )


def resolve(cond: dict, *, warn: bool = True) -> Resolved:
    """The law and conditions from keyword values (None: not given)."""
    mineral = cond.get("mineral")
    mineral = None if mineral is None or (isinstance(mineral, float) and math.isnan(mineral)) \
        else str(mineral).strip().lower()
    if mineral in ("ol", "olv", "olivine"):
        mineral = "olivine"
    d_law = cond.get("d_law")
    d_law = None if d_law is None or (isinstance(d_law, float) and math.isnan(d_law)) else d_law
    t_c = _num(cond.get("temperature_c"), "temperature_c")
    p_mpa = _num(cond.get("pressure_mpa"), "pressure_mpa")
    dq = _num(cond.get("delta_qfm"), "delta_qfm")
    lf = _num(cond.get("log_fo2_pa"), "log_fo2_pa")
    xfe = _num(cond.get("xfe"), "xfe")
    d_direct = _num(cond.get("diffusivity_um2_s"), "diffusivity_um2_s")
    t_err = _num(cond.get("temperature_c_err"), "temperature_c_err")
    angles = cond.get("angles_deg")
    if angles is not None and not isinstance(angles, (str, bytes)) and np.ndim(angles) == 0:
        angles = None if pd.isna(angles) else angles
    euler = cond.get("euler_deg")
    azimuth = _num(cond.get("azimuth_deg"), "azimuth_deg")
    if euler is not None and not (np.ndim(euler) == 0 and pd.isna(euler)):
        if angles is not None:
            raise ZonationInputError(
                "both angles_deg and euler_deg were given; give the traverse's angles to the "
                "axes, or the EBSD Euler angles with azimuth_deg, not both."
            )
        if azimuth is None:
            raise ZonationInputError(
                "euler_deg needs azimuth_deg, the traverse's direction in the EBSD map (degrees "
                "from the sample X axis toward Y)."
            )
        angles = euler_to_axis_angles(euler, azimuth)
    elif azimuth is not None:
        raise ZonationInputError("azimuth_deg is used with euler_deg (EBSD Euler angles); "
                                 "give both, or the angles to the axes as angles_deg.")
    if xfe is not None and not 0.0 <= xfe <= 1.0:
        raise ZonationInputError(
            f"xfe={xfe} must be the mole fraction of fayalite, between 0 and 1 (Fo85 is "
            "xfe=0.15)."
        )
    given = [k for k, v in (("temperature_c", t_c), ("pressure_mpa", p_mpa),
                            ("delta_qfm", dq), ("log_fo2_pa", lf)) if v is not None]

    if d_direct is not None:
        if d_direct <= 0:
            raise ZonationInputError(
                f"diffusivity_um2_s={d_direct!r} must be positive (um^2/s; 1e-16 m^2/s is "
                "1e-4 um^2/s)."
            )
        if given or d_law is not None:
            raise ZonationInputError(
                f"both diffusivity_um2_s and {', '.join(given) or 'd_law'} were given; pass "
                "either a direct diffusivity_um2_s or the conditions to compute it (mineral="
                "'olivine', temperature_c, pressure_mpa, delta_qfm or log_fo2_pa), not both."
            )
        if angles is not None:
            raise ZonationInputError(
                "angles_deg applies to the olivine laws; a direct diffusivity_um2_s is taken as "
                "the diffusivity along the traverse. Drop angles_deg, or compute D from "
                "mineral='olivine' and the conditions."
            )
        if t_err is not None:
            raise ZonationInputError(
                "temperature_c_err needs the temperature dependence of D (mineral='olivine' "
                "with temperature_c ...); with a direct diffusivity_um2_s give its uncertainty "
                "as diffusivity_um2_s_err (um^2/s, 1-sigma) instead."
            )
        d_err = _err(cond.get("diffusivity_um2_s_err"), "diffusivity_um2_s_err")
        law = ConstantLaw(d_um2_s=d_direct, rel_err=d_err / d_direct)
        if mineral == "olivine":
            law.composition_dependent_xfe_slope = 3.0 * math.log(10.0)
        return Resolved(kind="law", law=law, olivine=mineral == "olivine", xfe=xfe,
                        composition_dependent=mineral == "olivine",
                        assumption=law.describe())
    if cond.get("diffusivity_um2_s_err") is not None and not pd.isna(
            cond.get("diffusivity_um2_s_err")):
        raise ZonationInputError(
            "diffusivity_um2_s_err was given without diffusivity_um2_s; pass both, or compute D "
            "from mineral='olivine' and the conditions with temperature_c_err."
        )
    if mineral is None and d_law is None:
        if given or angles is not None or t_err is not None:
            raise ZonationInputError(
                f"{', '.join(given) or 'angles_deg/temperature_c_err'} given but no mineral; "
                "pass mineral='olivine' to compute the Fe-Mg diffusivity from the conditions, "
                "d_law='arrhenius' with d0_m2_s and ea_kj_mol for your own law, or a direct "
                "diffusivity_um2_s for any mineral."
            )
        return Resolved(kind="none", xfe=xfe,
                        assumption="no diffusivity given: sqrt(Dt) only, no timescale")
    if mineral not in (None, "olivine") and (d_law is None or str(d_law).lower() in (
            "dc07", "dfens")):
        raise ZonationInputError(
            f"no built-in diffusivity for mineral={mineral!r} in fit_diffusion (olivine Fe-Mg: "
            "d_law 'dc07' or 'dfens'; Mg in plagioclase: fit_plagioclase_mg); pass "
            "diffusivity_um2_s (um^2/s along the traverse) or d_law='arrhenius' for it."
        )
    law_name = d_law if d_law is not None else "dc07"
    law = law_name if isinstance(law_name, DiffusionLaw) else law_from_name(
        law_name,
        law_uncertainty=cond.get("law_uncertainty", True),
        d0_m2_s=_num(cond.get("d0_m2_s"), "d0_m2_s"),
        ea_kj_mol=_num(cond.get("ea_kj_mol"), "ea_kj_mol"),
        ea_kj_mol_err=_num(cond.get("ea_kj_mol_err"), "ea_kj_mol_err"),
        va_cm3_mol=_num(cond.get("va_cm3_mol"), "va_cm3_mol"),
        log10_d0_err=_num(cond.get("log10_d0_err"), "log10_d0_err"),
        anisotropic=mineral == "olivine",
    ) if not isinstance(law_name, DiffusionLaw) else law_name
    olivine = mineral == "olivine" or law.anisotropic
    missing = []
    if t_c is None:
        missing.append("temperature_c")
    if law.needs_fo2 and dq is None and lf is None:
        missing.append("delta_qfm or log_fo2_pa")
    if missing:
        raise ZonationInputError(
            f"the {law.name} diffusivity needs {' and '.join(missing)} (with pressure_mpa); "
            "or pass diffusivity_um2_s directly."
        )
    if dq is not None and lf is not None:
        raise ZonationInputError(
            "both delta_qfm and log_fo2_pa were given; the oxygen fugacity takes exactly one: "
            "delta_qfm (log units relative to the QFM buffer) or log_fo2_pa (log10 fO2 in Pa)."
        )
    _check_temperature(t_c)
    t2 = _num(cond.get("temperature2_c"), "temperature2_c")
    if t2 is not None:
        _check_temperature(t2, "temperature2_c")
    notes: list[str] = []
    if p_mpa is None:
        p_mpa = 0.1
        notes.append("pressure not given: 0.1 MPa (1 bar) assumed")
        if warn:
            warnings.warn(
                "pressure_mpa not given: the diffusivity is computed at 0.1 MPa (1 bar). The "
                "activation volume is 7 cm^3/mol, so 500 MPa lowers D by about 0.12 log units.",
                UserWarning,
                stacklevel=4,
            )
    elif p_mpa < 0:
        raise ZonationInputError(f"pressure_mpa={p_mpa} must be >= 0 (MPa).")
    if olivine and not 1000.0 <= t_c <= 1300.0 and law.name.startswith("Dohmen"):
        notes.append(f"T = {t_c:g} C outside the law's experimental range (mostly 1000-1300 C)")
    factor = 1.0
    angle_tuple = None
    if olivine:
        if angles is None:
            orient = ("angles unknown: D along [001] (the fastest axis) used, so timescales are "
                      "minima, up to 6x longer if the traverse is along [100] or [010]")
            if warn:
                warnings.warn(
                    "angles_deg not given: the olivine diffusivity along [001] (the fastest "
                    "axis, 6x D[100] and D[010]) is used, so timescales are minima. Measure the "
                    "traverse's orientation (EBSD) and pass angles_deg=(alpha, beta, gamma) or "
                    "euler_deg with azimuth_deg.",
                    UserWarning,
                    stacklevel=4,
                )
        else:
            ang = check_angles(angles, warn=warn)
            factor = anisotropy_factor(ang)
            angle_tuple = tuple(float(a) for a in ang)
            orient = f"angles {angle_tuple} to [100],[010],[001]: D = {factor:.3f} x D[001]"
            s = float(np.sum(np.cos(np.deg2rad(ang)) ** 2))
            if abs(s - 1) > 0.02:
                orient += f" (sum cos^2 = {s:.2f}, angles used as given)"
    else:
        orient = "D along the traverse"
    spec = ConditionSpec(
        temperature_c=t_c,
        temperature_c_err=t_err or 0.0,
        pressure_mpa=p_mpa,
        pressure_mpa_err=_err(cond.get("pressure_mpa_err"), "pressure_mpa_err"),
        delta_qfm=dq,
        delta_qfm_err=_err(cond.get("delta_qfm_err"), "delta_qfm_err"),
        log_fo2_pa=lf,
        log_fo2_pa_err=_err(cond.get("log_fo2_pa_err"), "log_fo2_pa_err"),
        anisotropy=factor,
    )
    fo2_text = ""
    if dq is not None:
        fo2_text = f", dQFM {dq:+g}"
    elif lf is not None:
        fo2_text = f", log fO2 {lf:g} Pa"
    if spec.delta_qfm_err or spec.log_fo2_pa_err:
        fo2_text += f" +/- {spec.delta_qfm_err or spec.log_fo2_pa_err:g}"
    t_text = f"{t_c:g}" + (f" +/- {spec.temperature_c_err:g}" if spec.temperature_c_err else "")
    p_text = f"{p_mpa:g}" + (f" +/- {spec.pressure_mpa_err:g}" if spec.pressure_mpa_err else "")
    mech = ""
    if law.name.startswith("Dohmen") and law.needs_fo2:
        lfo2 = lf if lf is not None else qfm_log_fo2_pa(t_c, p_mpa) + dq
        mech = " (TaMED)" if lfo2 > -10 else " (PED)"
    assumption = (f"{'olivine Fe-Mg, ' if olivine else ''}{law.describe()}{mech}, {t_text} C, "
                  f"{p_text} MPa{fo2_text}; {orient}")
    if notes:
        assumption += "; " + "; ".join(notes)
    return Resolved(
        kind="law",
        law=law,
        spec=spec,
        temperature2_c=t2,
        temperature2_c_err=_err(cond.get("temperature2_c_err"), "temperature2_c_err")
        or spec.temperature_c_err,
        olivine=olivine,
        xfe=xfe,
        composition_dependent=olivine,
        assumption=assumption,
        angles=angle_tuple,
        notes=notes,
    )


def conditions_rows(conditions: pd.DataFrame | None) -> dict:
    """``{label: {keyword: value}}`` from a per-profile conditions table.

    Columns are the keyword names; ``angles_deg`` may also be given as ``angle_100_deg``,
    ``angle_010_deg``, ``angle_001_deg`` and ``euler_deg`` as ``euler1_deg``, ``euler2_deg``,
    ``euler3_deg``. Empty cells fall back to the call's keywords.
    """
    if conditions is None:
        return {}
    if not isinstance(conditions, pd.DataFrame) or "label" not in conditions.columns:
        raise ZonationInputError(
            "conditions must be a DataFrame with a 'label' column and one row per profile, with "
            "columns named like the keywords (temperature_c, pressure_mpa, log_fo2_pa, ...)."
        )
    if conditions["label"].duplicated().any():
        dup = conditions.loc[conditions["label"].duplicated(), "label"].tolist()[:5]
        raise ZonationInputError(f"conditions has several rows for label(s) {dup}; give one.")
    known = set(CONDITION_KEYS) | {"label", "angle_100_deg", "angle_010_deg", "angle_001_deg",
                                   "euler1_deg", "euler2_deg", "euler3_deg"}
    unknown = [c for c in conditions.columns if c not in known]
    if unknown:
        raise ZonationInputError(
            f"conditions has column(s) {unknown} that are not conditions; known: "
            f"{', '.join(sorted(known - {'label'}))}."
        )
    out = {}
    for _, row in conditions.iterrows():
        d = {k: row[k] for k in CONDITION_KEYS if k in row.index and _given(row[k])}
        trio = ("angle_100_deg", "angle_010_deg", "angle_001_deg")
        if all(c in row.index and _given(row[c]) for c in trio):
            d["angles_deg"] = tuple(float(row[c]) for c in trio)
        eul = ("euler1_deg", "euler2_deg", "euler3_deg")
        if all(c in row.index and _given(row[c]) for c in eul):
            d["euler_deg"] = tuple(float(row[c]) for c in eul)
        out[row["label"]] = d
    return out


def _given(v) -> bool:
    if v is None:
        return False
    if isinstance(v, (tuple, list, np.ndarray)):
        return True
    try:
        return not pd.isna(v)
    except (TypeError, ValueError):  # pragma: no cover
        return True
