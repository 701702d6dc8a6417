"""The words of a request: the system prompt, each crystal's numbers and the instruction.

A crystal is described to the model as text first (its profile as at most
:data:`MAX_PROFILE_POINTS` averaged points, rim first, and the offline descriptors); plots
and crops (:mod:`.render`) come beside the text when the server accepts images.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .schema import CRITERION_RATIONALE_CHARS, RATIONALE_CHARS

PROMPT_VERSION = "zoning-llm-v2"
"""Bumped whenever the prompt or schema changes meaning; part of every cache key."""

MAX_PROFILE_POINTS = 64
#: the rationale limit of the second try after an answer was cut by the token limit
SHORT_RATIONALE_CHARS = 80

SYSTEM_PROMPT = f"""You are a petrologist describing chemical zoning in crystals from \
backscattered-electron (BSE) images of volcanic thin sections.
For each crystal you get a profile of a measured value (BSE grey level or a composition) \
against distance_um, the distance from the crystal's rim (0) toward its core, and sometimes \
a plot of that profile (rim on the left, core on the right) and a crop of the BSE image \
with the crystal outlined in red.
Describe the profile itself, in the measured quantity, whatever the mineral:
- zoning_type, one of: unzoned (flat within noise); rim_brighter (a core plateau and a rim \
plateau of higher value joined by a step); rim_darker (the same with a lower rim value); \
gradient (a core plateau, then a continuous slope to the rim); oscillatory (repeated fine \
bands, alternating up and down); multi_step (three or more plateaus joined by steps); \
complex (none of these).
- n_plateaus: the number of flat levels (1 for unzoned, gradient and oscillatory).
- plateau_levels: the value of each plateau, rim first, in the profile's own units.
- slope: the dominant linear slope d(value)/d(distance_um) in value units per micrometre \
(distance grows toward the core, so a rim higher than the core gives a negative slope); 0 \
when flat or stepped without a continuous slope.
- oscillatory: true when repeated bands (more than two alternations) are visible.
- confidence: 0 to 1, how sure you are of zoning_type.
- rationale: one short sentence on what you saw.
Judge steps against the scatter between neighbouring points (the noise), not against the \
size of the value: a step is a lasting change several times larger than that scatter. \
Answer only with the JSON object of the given schema, without comments. \
(prompt {PROMPT_VERSION})"""


def fmt(x: float | None) -> str:
    """A number in at most 4 significant digits (``nan`` for missing values)."""
    if x is None or not np.isfinite(x):
        return "nan"
    return f"{float(x):.4g}"


def downsample(d: np.ndarray, v: np.ndarray, n_max: int = MAX_PROFILE_POINTS):
    """Average consecutive points into at most ``n_max`` bins (rim first)."""
    if d.size <= n_max:
        return d, v
    edges = np.round(np.linspace(0, d.size, n_max + 1)).astype(int)
    parts = [np.arange(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    dd = np.array([np.nanmean(d[c]) for c in parts])
    vv = np.array([np.nanmean(v[c]) if np.isfinite(v[c]).any() else np.nan for c in parts])
    return dd, vv


def profile_arrays(prof: pd.DataFrame, label: int):
    """``(distance, value, sigma or None, source or None)`` of one label, sorted by distance."""
    sub = prof[pd.to_numeric(prof["label"], errors="coerce") == label]
    sub = sub.sort_values("distance_um", kind="stable")
    d = pd.to_numeric(sub["distance_um"], errors="coerce").to_numpy(dtype=float)
    v = pd.to_numeric(sub["value"], errors="coerce").to_numpy(dtype=float)
    s = (
        pd.to_numeric(sub["sigma"], errors="coerce").to_numpy(dtype=float)
        if "sigma" in sub.columns
        else None
    )
    keep = np.isfinite(d)
    src = None
    if "source" in sub.columns and len(sub):
        src = str(sub["source"].iloc[0])
    return d[keep], v[keep], (s[keep] if s is not None else None), src


_SKIP_COLUMNS = {"label", "index", "cluster"}


def descriptor_text(row: pd.Series | None) -> str:
    """The offline descriptors of one crystal as ``name=value`` pairs (numbers, booleans,
    the phase); LLM and criterion columns are left out."""
    if row is None:
        return ""
    items = []
    for col, val in row.items():
        name = str(col)
        if name in _SKIP_COLUMNS or name.startswith(("llm_", "criterion_", "reference_")):
            continue
        if name == "phase" and isinstance(val, str):
            items.append(f"phase={val}")
        elif isinstance(val, (bool, np.bool_)):
            items.append(f"{name}={bool(val)}")
        elif isinstance(val, (int, float, np.integer, np.floating)):
            items.append(f"{name}={fmt(float(val))}")
    if not items:
        return ""
    return "Numeric descriptors from the offline analysis: " + ", ".join(items) + "."


def profile_text(
    prof: pd.DataFrame, label: int, row: pd.Series | None, role: str, note: str = ""
) -> str:
    """One crystal's text part: who it is, its profile points and its descriptors."""
    d, v, _, src = profile_arrays(prof, label)
    dd, vv = downsample(d, v)
    pts = ",".join(f"[{fmt(a)},{fmt(b)}]" for a, b in zip(dd, vv, strict=True))
    where = (
        "distance_um is measured along the drawn line from its start"
        if src in ("shape", "traverse")
        else "distance_um is the distance from the crystal rim (0) toward the core"
    )
    if role == "reference":
        head = f"Reference crystal: label {label}. This is the user's example."
        if note.strip():
            head += f" The user's note on it: {note.strip()}"
    else:
        head = f"Crystal to describe: label {label}."
    lines = [
        head,
        f"Profile of {d.size} points from {fmt(d.min() if d.size else np.nan)} to "
        f"{fmt(d.max() if d.size else np.nan)} um; {where}.",
        f"profile_points (distance_um, value), {len(dd)} points"
        + (" (averaged bins)" if len(dd) < d.size else "")
        + f", rim first: [{pts}]",
    ]
    desc = descriptor_text(row)
    if desc:
        lines.append(desc)
    return "\n".join(lines)


def instruction_text(
    crit: Mapping[str, str], reference: bool, note: str, *, short: bool = False
) -> str:
    """The closing instruction; ``short`` is the second try after a cut answer."""
    chars = SHORT_RATIONALE_CHARS if short else RATIONALE_CHARS
    lines = ["Describe the crystal to describe (not the reference) in the JSON schema."]
    if short:
        lines.append(
            f"Your previous answer was too long and was cut. Be brief: rationale at most "
            f"{chars} characters, list only the plateaus you are sure of."
        )
    else:
        lines.append(f"Keep the rationale under {chars} characters.")
    if reference:
        lines.append(
            "matches_reference: true when it shows the same kind of zoning as the reference "
            "crystal"
            + (f" in the sense of the user's note ({note.strip()})" if note.strip() else "")
            + "; reference_score: 0 (unlike) to 1 (same zoning)."
        )
    if crit:
        lines.append(
            "criteria: for each criterion below, met (true/false) and a rationale of at most "
            f"{min(chars, CRITERION_RATIONALE_CHARS)} characters:"
        )
        lines += [f"- {slug}: {text}" for slug, text in crit.items()]
    return "\n".join(lines)


def messages_for(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chat messages of one request: the system prompt and one user message."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": parts},
    ]
