"""Plain-text criteria judged offline from the numeric descriptors.

A criterion is a short phrase ("two plateaus", "rim at least 10 % brighter than the core",
"slope steeper than 0.5 per um", "oscillatory"). Phrases in the vocabulary below become a
rule on the descriptor table and a ``criterion_<slug>`` column (True / False per crystal,
missing where the crystal has no description); ``criterion_<slug>_rationale`` gives the rule
and the crystal's value. A phrase outside the vocabulary is not guessed: its column stays
empty and its rationale says it needs the LLM (``describe_zoning(backend="openai")``, whose
verdicts come as ``llm_criterion_<slug>``).

Vocabulary (case, a final full stop, "the", "is", "has", "a" and "µm" / "micron(s)" spellings
do not matter; numbers are digits or the words one to ten):

- zoning type: ``unzoned`` (or ``flat``, ``no zoning``), ``rim brighter`` (``bright rim``),
  ``rim darker`` (``dark rim``), ``gradient`` (``continuous slope``), ``oscillatory``,
  ``multi-step``, ``complex``; ``not ...`` negates;
- counts: ``[at least|at most|more than|fewer than|exactly] N plateaus|steps|oscillations``
  (``zones`` = plateaus; ``single plateau`` = 1; ``no steps`` = 0);
- relative contrast: ``rim [at least|at most|more than|less than] X % brighter|darker|higher|
  lower than the core`` (and ``core ... than the rim``): ``(rim - core) / |core|``, in the
  profile's own values (``brighter`` = higher value);
- absolute contrast: ``rim [at least ...] X brighter|darker|higher|lower than the core``
  (in the profile's units);
- slope: ``slope steeper|gentler than X per um`` (the steepest slope of the fitted model,
  ``max_slope_per_um``; ``shallower`` = gentler);
- widths: ``rim zone narrower|wider than X um`` (the first step's depth from the rim),
  ``core wider|narrower than X um`` (from where the core plateau starts to the deepest
  point), ``step wider|narrower than X um`` (the widest step's width ``2 sqrt(D t)``);
- levels: ``core|rim value above|below X``;
- interpretation: ``normal zoning``, ``reverse zoning``; mineral: ``olivine``,
  ``plagioclase``, ``clinopyroxene``, ``orthopyroxene``, ``pyroxene``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._validation import ZonationInputError
from .vocabulary import PHASES

__all__ = ["Criterion", "parse_criterion", "apply_criteria", "NEEDS_LLM"]

NEEDS_LLM = "needs the LLM: not in the offline vocabulary"

_NUMBER_WORDS = {
    "zero": 0, "no": 0, "one": 1, "single": 1, "a single": 1, "two": 2, "three": 3,
    "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
}  # fmt: skip
_TYPES = {
    "unzoned": "unzoned",
    "flat": "unzoned",
    "no zoning": "unzoned",
    "not zoned": "unzoned",
    "rim brighter": "rim_brighter",
    "bright rim": "rim_brighter",
    "brighter rim": "rim_brighter",
    "rim darker": "rim_darker",
    "dark rim": "rim_darker",
    "darker rim": "rim_darker",
    "gradient": "gradient",
    "continuous slope": "gradient",
    "oscillatory": "oscillatory",
    "oscillatory zoning": "oscillatory",
    "multi step": "multi_step",
    "multistep": "multi_step",
    "complex": "complex",
}
_CMP = {
    "at least": ">=", "no less than": ">=", "more than": ">", "over": ">", "above": ">",
    "greater than": ">", "at most": "<=", "no more than": "<=", "less than": "<",
    "fewer than": "<", "under": "<", "below": "<", "exactly": "==", "": "==",
}  # fmt: skip
_OPS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    ">=": np.greater_equal,
    ">": np.greater,
    "<=": np.less_equal,
    "<": np.less,
    "==": np.equal,
}
_NUM = r"(\d+(?:\.\d+)?|zero|no|one|a single|single|two|three|four|five|six|seven|eight|nine|ten)"
_CMP_RE = "(" + "|".join(sorted((k for k in _CMP if k), key=len, reverse=True)) + ")"


@dataclass
class Criterion:
    """A parsed criterion: ``rule`` (for people) and ``column``/``op``/``value`` or a test."""

    text: str
    rule: str | None
    test: Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]] | None

    @property
    def offline(self) -> bool:
        """True when the criterion is in the offline vocabulary."""
        return self.test is not None


def _normalise(text: str) -> str:
    t = str(text).lower().strip().rstrip(".!")
    t = t.replace("µm", " um").replace("μm", " um")
    t = re.sub(r"\bmicro(?:n|ns|meters?|metres?)\b", "um", t)
    t = re.sub(r"[-_]", " ", t)
    t = re.sub(r"\s*%", " %", t)
    t = re.sub(r"\b(the|is|are|has|have|shows|show|with|an|a)\b(?! single)", " ", t)
    return re.sub(r"\s+", " ", t).strip()


def _number(word: str) -> float:
    return float(_NUMBER_WORDS[word]) if word in _NUMBER_WORDS else float(word)


def _col(table: pd.DataFrame, name: str) -> np.ndarray:
    if name not in table.columns:
        return np.full(len(table), np.nan)
    return pd.to_numeric(table[name], errors="coerce").to_numpy(dtype=float)


def _compare(values: np.ndarray, op: str, x: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return _OPS[op](values, x)


def _numeric(name: str, values: Callable[[pd.DataFrame], np.ndarray], op: str, x: float):
    def test(table: pd.DataFrame):
        v = values(table)
        return _compare(v, op, x), v

    return Criterion("", f"{name} {op} {x:g}", test)


def _equals(name: str, value: str, negate: bool = False):
    def test(table: pd.DataFrame):
        col = table[name] if name in table.columns else pd.Series([None] * len(table))
        v = col.astype(object).to_numpy()
        hit = np.array([str(x) == value for x in v])
        return (~hit if negate else hit), v

    return Criterion("", f"{name} {'!=' if negate else '=='} {value}", test)


def _first_step(table: pd.DataFrame) -> np.ndarray:
    if "step_positions_um" not in table.columns:
        return np.full(len(table), np.nan)
    out = []
    for v in table["step_positions_um"]:
        try:
            out.append(float(v[0]) if len(v) else np.inf)
        except (TypeError, ValueError):
            out.append(np.nan)
    return np.array(out)


def _widest_step(table: pd.DataFrame) -> np.ndarray:
    if "step_widths_um" not in table.columns:
        return np.full(len(table), np.nan)
    out = []
    for v in table["step_widths_um"]:
        try:
            out.append(float(np.max(v)) if len(v) else 0.0)
        except (TypeError, ValueError):
            out.append(np.nan)
    return np.array(out)


def parse_criterion(text: str) -> Criterion:
    """Parse one plain-text criterion (see the module's vocabulary).

    Parameters
    ----------
    text : str
        The criterion as the user wrote it.

    Returns
    -------
    Criterion
        With a ``test`` when the phrase is in the offline vocabulary, else ``test=None``
        (the criterion needs the LLM).
    """
    t = _normalise(text)
    crit = _parse(t)
    if crit is None:
        return Criterion(str(text), None, None)
    crit.text = str(text)
    return crit


def _parse(t: str) -> Criterion | None:
    neg = False
    m = re.fullmatch(r"(not|no longer|never) (.+)", t)
    if m and m.group(2) in _TYPES:
        neg, t = True, m.group(2)
    if t in _TYPES:
        return _equals("zoning_type", _TYPES[t], neg)
    m = re.fullmatch(r"(normal|normally|reverse|reversely|reversed) (zoning|zoned)", t)
    if m:
        return _equals("interpretation", "normal" if m.group(1).startswith("normal") else "reverse")
    if t in PHASES:
        if t == "pyroxene":

            def test(table: pd.DataFrame):
                col = table["phase"] if "phase" in table.columns else pd.Series([None] * len(table))
                v = col.astype(object).to_numpy()
                return np.array([str(x).endswith("pyroxene") for x in v]), v

            return Criterion("", "phase is a pyroxene", test)
        return _equals("phase", t)
    # counts
    m = re.fullmatch(_CMP_RE + r"? ?" + _NUM + r" (plateaus?|zones?|steps?|oscillations?)", t)
    if m:
        op = _CMP[m.group(1) or ""]
        n = _number(m.group(2))
        what = m.group(3)
        col = (
            "n_plateaus"
            if what.startswith(("plateau", "zone"))
            else "n_steps"
            if what.startswith("step")
            else "n_oscillations"
        )
        return _numeric(col, lambda tab, c=col: _col(tab, c), op, n)
    # contrast: rim/core X (%) brighter/darker than core/rim
    m = re.fullmatch(
        r"(rim|core) (?:value )?" + _CMP_RE + r"? ?(\d+(?:\.\d+)?) ?(%)? ?"
        r"(?:grey levels? |units? )?(brighter|darker|higher|lower) than (core|rim)",
        t,
    )
    if m and m.group(1) != m.group(6):
        who, cmp_, x, pct, way, _ = m.groups()
        op = _CMP[cmp_ or "at least"]
        up = way in ("brighter", "higher")
        x = float(x)

        def diff(tab: pd.DataFrame, who=who, up=up, pct=pct) -> np.ndarray:
            rim, core = _col(tab, "rim_value"), _col(tab, "core_value")
            a, b = (rim, core) if who == "rim" else (core, rim)
            d = (a - b) if up else (b - a)
            if pct:
                with np.errstate(divide="ignore", invalid="ignore"):
                    d = 100.0 * d / np.abs(b)
            return d

        other = "core" if who == "rim" else "rim"
        sign = "" if up else "-"
        name = (
            f"100 {sign}({who} - {other}) / |{other}| (%)" if pct else f"{sign}({who} - {other})"
        )
        return _numeric(name, diff, op, x)
    # slope
    m = re.fullmatch(
        r"(?:max(?:imum)? |steepest )?slope (steeper|greater|more|gentler|shallower|less) than "
        r"(\d+(?:\.\d+)?) ?(?:per um|/ ?um|um ?\^? ?-1)",
        t,
    )
    if m:
        op = ">" if m.group(1) in ("steeper", "greater", "more") else "<"
        return _numeric(
            "max_slope_per_um", lambda tab: _col(tab, "max_slope_per_um"), op, float(m.group(2))
        )
    # widths
    m = re.fullmatch(
        r"(rim|outer|core|step|diffused step|diffusion) ?(?:zone|band|plateau|width)? "
        r"(narrower|thinner|smaller|less|wider|thicker|larger|broader|more) than "
        r"(\d+(?:\.\d+)?) ?um",
        t,
    )
    if m:
        op = "<" if m.group(2) in ("narrower", "thinner", "smaller", "less") else ">"
        x = float(m.group(3))
        where = m.group(1)
        if where in ("rim", "outer"):
            return _numeric("first step depth (um)", _first_step, op, x)
        if where == "core":

            def core_width(tab: pd.DataFrame) -> np.ndarray:
                return _col(tab, "length_um") - _col(tab, "core_start_um")

            return _numeric("core width (um)", core_width, op, x)
        return _numeric("widest step width (um)", _widest_step, op, x)
    # levels
    m = re.fullmatch(
        r"(core|rim) (?:value )?(above|over|higher than|greater than|below|under|lower than|"
        r"less than) (-?\d+(?:\.\d+)?)",
        t,
    )
    if m:
        op = ">" if m.group(2) in ("above", "over", "higher than", "greater than") else "<"
        col = f"{m.group(1)}_value"
        return _numeric(col, lambda tab, c=col: _col(tab, c), op, float(m.group(3)))
    return None


def apply_criteria(
    table: pd.DataFrame, criteria: Mapping[str, str] | Sequence[str] | str | None
) -> pd.DataFrame:
    """Add ``criterion_<slug>`` and ``criterion_<slug>_rationale`` columns to ``table``.

    Parameters
    ----------
    table : pandas.DataFrame
        The descriptor table of :func:`~napari_zonation.describe_zoning`.
    criteria : dict, list of str or str
        ``{name: text}`` or texts (slugs as :func:`napari_zonation.llm.normalize_criteria`).

    Returns
    -------
    pandas.DataFrame
        A copy with the columns (boolean; missing where the crystal has no description or
        the criterion needs the LLM) and ``attrs["criteria"]``: per slug its ``text``, the
        offline ``rule`` (None when it needs the LLM) and ``needs_llm``. A ``UserWarning``
        names the criteria that need the LLM.
    """
    from .llm.schema import normalize_criteria

    crit = normalize_criteria(criteria)
    if not isinstance(table, pd.DataFrame):
        raise ZonationInputError("apply_criteria needs the descriptor table (a DataFrame).")
    out = table.copy()
    ok = (
        out["describe_status"].eq("ok").to_numpy()
        if "describe_status" in out.columns
        else np.ones(len(out), bool)
    )
    report: dict[str, dict] = {}
    needs = []
    for slug, text in crit.items():
        c = parse_criterion(text)
        report[slug] = {"text": text, "rule": c.rule, "needs_llm": not c.offline}
        if not c.offline:
            needs.append(text)
            out[f"criterion_{slug}"] = pd.array([pd.NA] * len(out), dtype="boolean")
            out[f"criterion_{slug}_rationale"] = NEEDS_LLM
            continue
        hit, values = c.test(out)
        known = ok & np.array([_is_known(v) for v in values])
        col = pd.array(np.where(known, hit, False), dtype="boolean")
        col[~known] = pd.NA
        out[f"criterion_{slug}"] = col
        pairs = zip(values, known, strict=True)
        out[f"criterion_{slug}_rationale"] = [
            f"{c.rule} ({_show(v)})" if k else "no description" for v, k in pairs
        ]
    if needs:
        warnings.warn(
            "criteria not in the offline vocabulary (their columns are empty; describe with "
            f"backend='openai' to have the LLM judge them): {needs}",
            UserWarning,
            stacklevel=2,
        )
    out.attrs = {**table.attrs, "criteria": report}
    return out


def _is_known(v) -> bool:
    if v is None:
        return False
    if isinstance(v, (float, np.floating)):
        return not np.isnan(v)
    return not (isinstance(v, str) and v in ("", "None", "nan"))


def _show(v) -> str:
    if isinstance(v, (float, np.floating, int, np.integer)):
        return f"{float(v):.4g}"
    return str(v)
