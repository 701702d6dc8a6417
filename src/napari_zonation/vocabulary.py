"""The shared zoning vocabulary: zoning types, measured quantities, phases, interpretation.

Every other module takes these names from here, so that a zoning type, a quantity or a
mineral means one thing across the descriptors, the clustering, the LLM prompt, the plots and
the synthetic generators.

Zoning types
------------
:data:`ZONING_TYPES` names the shape of a core-to-rim profile *in the measured quantity*,
whatever the mineral (see :data:`ZONING_TYPE_DESCRIPTIONS`). ``rim_brighter`` means a rim whose
value is higher than the core's: a brighter rim in a BSE image, a higher Fo, An or grey value
in a traverse. The petrological reading (normal or reverse) is separate: see
:func:`interpret`.

Quantities
----------
A profiles table says what its ``value`` is in a ``quantity`` column: ``grey`` for BSE image
profiles (also what a table without the column is taken to be), ``Fo``, ``XFo``, ``Mg#``,
``An``, ``XAn``, ... for compositions, an oxide or element (``FeO``, ``Sr``) with its unit,
or any other name. :func:`parse_quantity` reads a column name or a calibration name such as
``"Fo (mol%)"``, ``"fo"``, ``"xfo"`` or ``"An_mol"`` into a :class:`Quantity`.

Interpretation
--------------
Zoning is *normal* when the rim grew from a more evolved melt than the core (a less primitive
rim) and *reverse* when the rim is more primitive than the core. Which way a quantity points:

- Fo, XFo, Mg#, MgO (olivine, pyroxenes) and An, XAn (plagioclase) are higher in more
  primitive crystals; Fa, FeO (olivine, pyroxenes) and Ab, Or (plagioclase) lower; Ni in
  olivine higher.
- BSE grey follows the mean atomic number: an Fe-richer olivine or pyroxene is brighter (a
  brighter rim is normal zoning), a Ca-richer (An-richer) plagioclase is brighter (a brighter
  rim is reverse zoning).

A quantity without a rule for the mineral (an element in ppm, a name the vocabulary does not
know, Fo given for a plagioclase) is described all the same; its interpretation is left empty
and :func:`interpret` says why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ZONING_TYPES",
    "ZONING_TYPE_DESCRIPTIONS",
    "INTERPRETATIONS",
    "PHASES",
    "PHASE_ALIASES",
    "FE_MG_PHASES",
    "OXIDE",
    "ALL_PHASES",
    "GREY_CLASS_PHASES",
    "Quantity",
    "QUANTITIES",
    "GREY",
    "normalise_phase",
    "parse_quantity",
    "quantity_name",
    "interpret",
]

ZONING_TYPES: tuple[str, ...] = (
    "unzoned",
    "rim_brighter",
    "rim_darker",
    "gradient",
    "oscillatory",
    "multi_step",
    "complex",
)

ZONING_TYPE_DESCRIPTIONS: dict[str, str] = {
    "unzoned": "one level: no change larger than the noise from the rim to the core",
    "rim_brighter": "two levels joined by one step (sharp or diffused into an error function, "
    "also one held at the rim), the rim's level higher than the core's",
    "rim_darker": "the same with the rim's level lower than the core's",
    "gradient": "a continuous slope, straight or curved, that is not an error-function step: "
    "from the rim to a core plateau, to the deepest point, or over any part of the radius",
    "oscillatory": "repeated bands alternating up and down with a regular period (which may "
    "drift with depth), possibly under a rim step or above a core plateau",
    "multi_step": "three or more levels joined by steps",
    "complex": "none of these describes the profile to its noise level",
}

#: values of the ``interpretation`` column (``None`` when no rule applies: see
#: :func:`interpret`)
INTERPRETATIONS: tuple[str, ...] = ("normal", "reverse", "unzoned", "oscillatory", "unknown")

#: minerals the vocabulary knows, by their full names
PHASES: tuple[str, ...] = ("olivine", "clinopyroxene", "orthopyroxene", "pyroxene", "plagioclase")
#: opaque Fe-Ti oxides: :func:`~napari_zonation.crystal_table` names its brightest grey class so;
#: no zoning rule
OXIDE = "oxide"
#: every phase name the package writes: the minerals above and :data:`OXIDE`
ALL_PHASES: tuple[str, ...] = PHASES + (OXIDE,)
#: the phase :func:`~napari_zonation.crystal_table` gives each grey class by default (a
#: heuristic: plagioclase darker than the groundmass, pyroxene and olivine brighter, oxides
#: near full scale)
GREY_CLASS_PHASES: dict[str, str] = {
    "darker": "plagioclase",
    "brighter_low": "clinopyroxene",
    "brighter_high": "olivine",
    "very_bright": OXIDE,
}
#: minerals whose zoning is Fe-Mg exchange (BSE brightness follows Fe)
FE_MG_PHASES: frozenset[str] = frozenset({"olivine", "clinopyroxene", "orthopyroxene", "pyroxene"})

PHASE_ALIASES: dict[str, str] = {
    "ol": "olivine",
    "olv": "olivine",
    "oliv": "olivine",
    "olivine": "olivine",
    "cpx": "clinopyroxene",
    "clinopyroxene": "clinopyroxene",
    "augite": "clinopyroxene",
    "diopside": "clinopyroxene",
    "opx": "orthopyroxene",
    "orthopyroxene": "orthopyroxene",
    "enstatite": "orthopyroxene",
    "hypersthene": "orthopyroxene",
    "px": "pyroxene",
    "pyx": "pyroxene",
    "pyroxene": "pyroxene",
    "pl": "plagioclase",
    "plg": "plagioclase",
    "plag": "plagioclase",
    "plagioclase": "plagioclase",
}


def normalise_phase(phase) -> str | None:
    """Full mineral name of a phase name or alias (``"ol"`` -> ``"olivine"``), else None.

    Case, surrounding spaces, a trailing dot and a plural ``s`` are ignored; None, NaN and
    names the vocabulary does not know give None.
    """
    if phase is None or (isinstance(phase, float) and np.isnan(phase)):
        return None
    key = str(phase).strip().lower().rstrip(".")
    if key in PHASE_ALIASES:
        return PHASE_ALIASES[key]
    if key.endswith("s") and key[:-1] in PHASE_ALIASES:
        return PHASE_ALIASES[key[:-1]]
    return None


@dataclass(frozen=True)
class Quantity:
    """What a profile's ``value`` measures.

    Attributes
    ----------
    name : str
        Canonical name (``"grey"``, ``"Fo"``, ``"An"``, ...) or, for a name the vocabulary does
        not know, the name as given.
    kind : {"grey", "composition", "element", "unknown"}
        BSE grey levels; a composition (mol %, a fraction or a number such as Mg#); an oxide
        or element concentration; or unknown.
    unit : str
        Unit as given or implied (``"mol%"``, ``"fraction"``, ``"ppm"``, ``"wt%"``, ``""``).
    primitive_higher : dict
        ``{phase group: bool}``: for each group of minerals (``"fe_mg"``, ``"plagioclase"``)
        the quantity applies to, whether a higher value means a more primitive crystal. For
        ``grey`` this holds the BSE rule. Empty: no rule (interpretation left empty).
    """

    name: str
    kind: str
    unit: str = ""
    primitive_higher: tuple[tuple[str, bool], ...] = ()

    def rule(self, phase: str | None) -> bool | None:
        """True / False: a higher value is more / less primitive in ``phase``; None: no rule."""
        mineral = normalise_phase(phase)
        if mineral is None:
            return None
        rules = dict(self.primitive_higher)
        if mineral in rules:
            return rules[mineral]
        return rules.get("fe_mg" if mineral in FE_MG_PHASES else mineral)


_FE_MG_UP = (("fe_mg", True),)
_FE_MG_DOWN = (("fe_mg", False),)
_PLAG_UP = (("plagioclase", True),)
_PLAG_DOWN = (("plagioclase", False),)

#: grey: brighter olivine / pyroxene = Fe-richer (less primitive); brighter plagioclase =
#: An-richer (more primitive)
GREY = Quantity("grey", "grey", "", (("fe_mg", False), ("plagioclase", True)))

#: the quantities the vocabulary knows, by canonical name
QUANTITIES: dict[str, Quantity] = {
    "grey": GREY,
    "Fo": Quantity("Fo", "composition", "mol%", _FE_MG_UP),
    "XFo": Quantity("XFo", "composition", "fraction", _FE_MG_UP),
    "Fa": Quantity("Fa", "composition", "mol%", _FE_MG_DOWN),
    "XFa": Quantity("XFa", "composition", "fraction", _FE_MG_DOWN),
    "Mg#": Quantity("Mg#", "composition", "", _FE_MG_UP),
    "En": Quantity("En", "composition", "mol%", _FE_MG_UP),
    "An": Quantity("An", "composition", "mol%", _PLAG_UP),
    "XAn": Quantity("XAn", "composition", "fraction", _PLAG_UP),
    "Ab": Quantity("Ab", "composition", "mol%", _PLAG_DOWN),
    "Or": Quantity("Or", "composition", "mol%", _PLAG_DOWN),
    "MgO": Quantity("MgO", "element", "wt%", _FE_MG_UP),
    "FeO": Quantity("FeO", "element", "wt%", _FE_MG_DOWN),
    "Ni": Quantity("Ni", "element", "ppm", (("olivine", True),)),
    # the primitive-composition indicator of the mineral (Fo / Mg# / An): what
    # describe_zoning(quantity="composition") has always meant
    "composition": Quantity("composition", "composition", "", _FE_MG_UP + _PLAG_UP),
}

_QUANTITY_ALIASES: dict[str, str] = {
    "grey": "grey",
    "gray": "grey",
    "greylevel": "grey",
    "graylevel": "grey",
    "grey level": "grey",
    "gray level": "grey",
    "bse": "grey",
    "bse grey": "grey",
    "dn": "grey",
    "intensity": "grey",
    "fo": "Fo",
    "forsterite": "Fo",
    "xfo": "XFo",
    "x fo": "XFo",
    "fa": "Fa",
    "fayalite": "Fa",
    "xfa": "XFa",
    "mg#": "Mg#",
    "mg #": "Mg#",
    "mgno": "Mg#",
    "mg no": "Mg#",
    "mg number": "Mg#",
    "mgnumber": "Mg#",
    "mg_number": "Mg#",
    "en": "En",
    "an": "An",
    "anorthite": "An",
    "xan": "XAn",
    "x an": "XAn",
    "ab": "Ab",
    "albite": "Ab",
    "or": "Or",
    "mgo": "MgO",
    "feo": "FeO",
    "feot": "FeO",
    "feo t": "FeO",
    "feo_t": "FeO",
    "feo*": "FeO",
    "ni": "Ni",
    "composition": "composition",
}

#: element symbols an element or oxide column may be named by (no interpretation rule)
_ELEMENTS = frozenset(
    "H Li Be B C N O F Na Mg Al Si P S Cl K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Rb "
    "Sr Y Zr Nb Mo Ag Cd In Sn Sb Te I Cs Ba La Ce Pr Nd Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W "
    "Au Hg Tl Pb Bi Th U".split()
)
_UNIT_WORDS = {
    "mol%": "mol%",
    "mol": "mol%",
    "molpct": "mol%",
    "mol pct": "mol%",
    "%": "mol%",
    "ppm": "ppm",
    "ug/g": "ppm",
    "µg/g": "ppm",
    "ppb": "ppb",
    "wt%": "wt%",
    "wt": "wt%",
    "wt.%": "wt%",
    "wtpct": "wt%",
    "wt pct": "wt%",
    "dn": "",
}
_OXIDE = re.compile(r"^([a-z]{1,2})(\d*)(o\d*)$")


def _split_unit(name: str) -> tuple[str, str]:
    """``"Fo (mol%)"`` -> ``("Fo", "mol%")``; ``"mgo_wt"`` -> ``("mgo", "wt%")``."""
    text = name.strip()
    unit = ""
    m = re.match(r"^(.*?)[\s_]*[\(\[]\s*([^\)\]]*)\s*[\)\]]\s*$", text)
    if m:
        text, unit = m.group(1).strip(), m.group(2).strip()
    else:
        m = re.match(r"^(.*?)[\s_]+([A-Za-z.%/µ]+)$", text) or re.match(
            r"^(.*?[^\s_%])\s*((?:mol|wt\.?)?%)$", text
        )
        if m and m.group(2).lower() in _UNIT_WORDS:
            text, unit = m.group(1).strip(), m.group(2)
    return text, _UNIT_WORDS.get(unit.lower(), unit)


def parse_quantity(name) -> Quantity:
    """The :class:`Quantity` a column or calibration name stands for.

    Parameters
    ----------
    name : str or None
        ``"grey"``, ``"Fo"``, ``"fo"``, ``"Fo (mol%)"``, ``"xfo"``, ``"Mg#"``, ``"An_mol"``,
        ``"FeO (wt%)"``, ``"Sr ppm"``, ... Case, units in brackets and unit suffixes are
        ignored. None or an empty name is ``grey`` (a BSE image profile).

    Returns
    -------
    Quantity
        A known quantity (``kind`` grey or composition, or an oxide with a rule); an element
        or oxide without a rule (``kind="element"``, no rule); or, for any other name,
        ``Quantity(name, "unknown")``.
    """
    if name is None or (isinstance(name, float) and np.isnan(name)) or not str(name).strip():
        return GREY
    raw = str(name).strip()
    base, unit = _split_unit(raw)
    key = re.sub(r"[\s_\-]+", " ", base.lower()).strip()
    canon = _QUANTITY_ALIASES.get(key) or _QUANTITY_ALIASES.get(key.replace(" ", ""))
    if canon is None and key.startswith("x") and key[1:].strip() in ("fo", "an", "fa"):
        canon = {"fo": "XFo", "an": "XAn", "fa": "XFa"}[key[1:].strip()]
    if canon is not None:
        q = QUANTITIES[canon]
        if unit and unit != q.unit:
            return Quantity(q.name, q.kind, unit, q.primitive_higher)
        return q
    symbol = base.strip()
    m = _OXIDE.match(symbol.lower())
    if m and m.group(1).capitalize() in _ELEMENTS:
        oxide = f"{m.group(1).capitalize()}{m.group(2)}O{m.group(3)[1:]}"
        return Quantity(oxide, "element", unit or "wt%")
    if symbol.capitalize() in _ELEMENTS and len(symbol) <= 2:
        return Quantity(symbol.capitalize(), "element", unit)
    return Quantity(raw, "unknown", unit)


def quantity_name(name) -> str:
    """The canonical name of a quantity (``"fo"`` -> ``"Fo"``); unknown names unchanged."""
    return parse_quantity(name).name


def interpret(zoning_type, contrast, phase, quantity) -> tuple[str | None, str]:
    """Petrological reading of a zoning pattern, and why when there is none.

    Parameters
    ----------
    zoning_type : str
        One of :data:`ZONING_TYPES`.
    contrast : float
        Rim value minus core value, in the quantity.
    phase : str or None
        The mineral (any name :func:`normalise_phase` knows).
    quantity : str or Quantity
        What the values are (any name :func:`parse_quantity` reads).

    Returns
    -------
    interpretation : str or None
        ``"unzoned"``, ``"oscillatory"``, ``"normal"`` (the rim less primitive than the core),
        ``"reverse"`` (the rim more primitive), ``"unknown"`` when the mineral is not known,
        or None when the quantity has no rule for the mineral.
    note : str
        Empty when the reading follows from the rule; else the reason it is unknown or
        empty.
    """
    if zoning_type is None or (isinstance(zoning_type, float) and np.isnan(zoning_type)):
        return None, "no zoning type"
    if zoning_type == "unzoned":
        return "unzoned", ""
    if zoning_type == "oscillatory":
        return "oscillatory", ""
    q = quantity if isinstance(quantity, Quantity) else parse_quantity(quantity)
    mineral = normalise_phase(phase)
    if mineral is None:
        known = ", ".join(PHASES)
        return "unknown", f"mineral {phase!r} not known (one of {known}, or an alias)"
    rule = q.rule(mineral)
    if rule is None:
        if q.kind == "unknown":
            why = f"quantity {q.name!r} is not in the vocabulary"
        else:
            why = f"no normal/reverse rule for {q.name} in {mineral}"
        return None, why + "; pass quantity= (e.g. 'Fo', 'An', 'grey') if it is one of those"
    try:
        c = float(contrast)
    except (TypeError, ValueError):
        c = np.nan
    if not np.isfinite(c) or c == 0:
        return "unzoned", "rim and core values are equal"
    rim_more_primitive = (c > 0) == rule
    return ("reverse" if rim_more_primitive else "normal"), ""
