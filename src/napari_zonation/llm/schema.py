"""The answer the model must give: a bounded JSON schema, its validation and its size.

Every string of the schema has a ``maxLength``, every number a range and every array a
``maxItems``, so that an answer has a known largest size: :func:`max_answer_tokens` turns
that size into the ``max_tokens`` of a request. A server whose structured outputs reject
these keywords gets :func:`plain_schema` (the same shape without them); the bounds are then
checked here, after the answer arrives (:func:`validate_answer`, :func:`clip_answer`).
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .._validation import ZonationInputError
from ..vocabulary import ZONING_TYPES

#: the zoning vocabulary the model answers in (the same as the offline descriptors')
LLM_ZONING_TYPES: tuple[str, ...] = tuple(ZONING_TYPES)
SCHEMA_NAME = "zoning_description"
#: longest free-text rationale, in characters (one or two sentences)
RATIONALE_CHARS = 200
#: longest criterion rationale, in characters (one sentence)
CRITERION_RATIONALE_CHARS = 120
#: most plateaus an answer may list
MAX_PLATEAUS = 8
#: magnitude bound of a plateau level or a slope (profile units: grey levels or compositions)
VALUE_LIMIT = 1.0e6
#: the keywords that bound values; a server that rejects them gets the schema without them
BOUND_KEYWORDS = ("maxLength", "minLength", "minimum", "maximum", "maxItems", "minItems")


def slugify(text: str, max_len: int = 40) -> str:
    """Turn a criterion name or text into a column-safe slug (lowercase, ``_`` separated).

    Parameters
    ----------
    text : str
        Criterion name or text.
    max_len : int
        Longest slug kept (cut at a word boundary when possible).

    Returns
    -------
    str
        The slug; ``"criterion"`` when nothing alphanumeric is left.
    """
    slug = re.sub(r"[^0-9a-z]+", "_", str(text).lower()).strip("_")
    if len(slug) > max_len:
        cut = slug[:max_len]
        slug = cut.rsplit("_", 1)[0] if "_" in cut[max_len // 2 :] else cut
    return slug.strip("_") or "criterion"


def normalize_criteria(criteria: Mapping[str, str] | Sequence[str] | None) -> dict[str, str]:
    """Return criteria as an ordered ``{slug: text}`` dict.

    Parameters
    ----------
    criteria : dict, list of str or None
        ``{name: text}`` (the slug comes from the name) or a list of texts (slugified).

    Returns
    -------
    dict
        Unique slugs (``_2``, ``_3`` appended on clashes) mapped to the criterion text.
    """
    if criteria is None:
        return {}
    if isinstance(criteria, str):
        criteria = [criteria]
    if isinstance(criteria, Mapping):
        items = [(str(k), str(v)) for k, v in criteria.items()]
    elif isinstance(criteria, Sequence):
        items = [(str(t), str(t)) for t in criteria]
    else:
        raise ZonationInputError(
            f"criteria must be a dict {{name: text}} or a list of texts; got "
            f"{type(criteria).__name__}."
        )
    out: dict[str, str] = {}
    for name, text in items:
        if not text.strip():
            raise ZonationInputError(
                f"criterion {name!r} has no text; write what the crystal must show."
            )
        base = slugify(name)
        slug, n = base, 2
        while slug in out:
            slug, n = f"{base}_{n}", n + 1
        out[slug] = text.strip()
    return out


def response_schema(
    criteria: Mapping[str, str] | None = None,
    *,
    reference: bool = False,
    rationale_chars: int = RATIONALE_CHARS,
) -> dict[str, Any]:
    """Build the bounded JSON schema the model must answer in.

    Parameters
    ----------
    criteria : dict, optional
        ``{slug: text}`` from :func:`normalize_criteria`; each becomes a required object
        ``{"met": bool, "rationale": str}`` under ``criteria``.
    reference : bool
        Add ``matches_reference`` and ``reference_score``.
    rationale_chars : int
        Longest ``rationale`` (criterion rationales get at most
        :data:`CRITERION_RATIONALE_CHARS`, and never more than this).

    Returns
    -------
    dict
        A JSON schema in the subset strict structured outputs accept (every property
        required, no additional properties), with ``maxLength`` on every string,
        ``minimum`` / ``maximum`` on every number and ``maxItems`` on the array.
    """
    rationale_chars = max(20, int(rationale_chars))
    crit_chars = min(CRITERION_RATIONALE_CHARS, rationale_chars)
    props: dict[str, Any] = {
        "zoning_type": {"type": "string", "enum": list(LLM_ZONING_TYPES)},
        "n_plateaus": {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_PLATEAUS,
            "description": "number of flat levels",
        },
        "plateau_levels": {
            "type": "array",
            "items": {"type": "number", "minimum": -VALUE_LIMIT, "maximum": VALUE_LIMIT},
            "maxItems": MAX_PLATEAUS,
            "description": "plateau values, rim first",
        },
        "slope": {
            "type": "number",
            "minimum": -VALUE_LIMIT,
            "maximum": VALUE_LIMIT,
            "description": "d(value)/d(distance_um), per micrometre",
        },
        "oscillatory": {"type": "boolean"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "rationale": {"type": "string", "maxLength": rationale_chars},
    }
    if reference:
        props["matches_reference"] = {
            "type": "boolean",
            "description": "true when this crystal shows the reference's kind of zoning",
        }
        props["reference_score"] = {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "0 (unlike the reference) to 1 (same zoning as the reference)",
        }
    if criteria:
        props["criteria"] = {
            "type": "object",
            "properties": {
                slug: {
                    "type": "object",
                    "description": text[:200],
                    "properties": {
                        "met": {"type": "boolean"},
                        "rationale": {"type": "string", "maxLength": crit_chars},
                    },
                    "required": ["met", "rationale"],
                    "additionalProperties": False,
                }
                for slug, text in criteria.items()
            },
            "required": list(criteria),
            "additionalProperties": False,
        }
    return {
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
    }


def plain_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema without its bound keywords (:data:`BOUND_KEYWORDS`), for servers that
    reject them; :func:`validate_answer` still checks the bounds of ``schema``."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: strip(v)
                for k, v in node.items()
                if not (k in BOUND_KEYWORDS and not isinstance(v, dict))
            }
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(copy.deepcopy(dict(schema)))


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------

_PY_TYPES = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "boolean": lambda x: isinstance(x, bool),
    "integer": lambda x: (
        (isinstance(x, int) and not isinstance(x, bool))
        or (isinstance(x, float) and x.is_integer())
    ),
    "number": lambda x: (
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
    ),
    "null": lambda x: x is None,
}


def validate_answer(obj: Any, schema: Mapping[str, Any], *, lengths: bool = True) -> list[str]:
    """Check a parsed answer against the response schema (plain Python, no dependencies).

    Parameters
    ----------
    obj : object
        The answer parsed from JSON.
    schema : dict
        The schema from :func:`response_schema`.
    lengths : bool
        Also check ``maxLength`` of strings (an answer from a server that ignores the
        keyword is clipped with :func:`clip_answer` instead).

    Returns
    -------
    list of str
        Problems found; empty when the answer is valid: types, enums, required and extra
        keys, number ranges, array lengths and (with ``lengths``) string lengths.
    """
    return _validate_node(obj, schema, "$", lengths)


def clip_answer(obj: Any, schema: Mapping[str, Any]) -> Any:
    """Cut every string of ``obj`` to its ``maxLength`` in ``schema`` (ending in ``...``)."""
    if isinstance(obj, dict):
        props = schema.get("properties", {})
        return {k: clip_answer(v, props.get(k, {})) for k, v in obj.items()}
    if isinstance(obj, list):
        return [clip_answer(v, schema.get("items", {})) for v in obj]
    limit = schema.get("maxLength")
    if isinstance(obj, str) and limit is not None and len(obj) > limit:
        return obj[: max(0, limit - 3)].rstrip() + "..."
    return obj


def _validate_node(obj: Any, schema: Mapping[str, Any], path: str, lengths: bool) -> list[str]:
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else list(types)
        if not any(_PY_TYPES[t](obj) for t in types):
            return [f"{path} should be {'/'.join(types)}, got {type(obj).__name__}"]
    if "enum" in schema and obj not in schema["enum"]:
        return [f"{path}={obj!r} is not one of {schema['enum']}"]
    problems: list[str] = []
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if (lo is not None and obj < lo) or (hi is not None and obj > hi):
            problems.append(f"{path}={obj!r} is outside [{lo}, {hi}]")
    if lengths and isinstance(obj, str) and "maxLength" in schema:
        if len(obj) > schema["maxLength"]:
            problems.append(f"{path} is {len(obj)} characters, over {schema['maxLength']}")
    if isinstance(obj, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in obj:
                problems.append(f"{path}.{key} is missing")
        if schema.get("additionalProperties") is False:
            problems += [f"{path}.{k} is not in the schema" for k in obj if k not in props]
        for key, sub in props.items():
            if key in obj:
                problems += _validate_node(obj[key], sub, f"{path}.{key}", lengths)
    elif isinstance(obj, list):
        if "maxItems" in schema and len(obj) > schema["maxItems"]:
            problems.append(f"{path} has {len(obj)} items, over {schema['maxItems']}")
        if "items" in schema:
            for i, item in enumerate(obj):
                problems += _validate_node(item, schema["items"], f"{path}[{i}]", lengths)
    return problems


# --------------------------------------------------------------------------------------------
# size
# --------------------------------------------------------------------------------------------

#: characters of the longest number written in an answer (sign, 16 digits, point, exponent)
_NUMBER_CHARS = 24


def max_answer_chars(schema: Mapping[str, Any]) -> int:
    """Largest compact JSON answer ``schema`` allows, in characters (strings at full length,
    every number at :data:`_NUMBER_CHARS` characters, arrays at ``maxItems``)."""
    t = schema.get("type")
    if "enum" in schema:
        return max(len(json.dumps(v)) for v in schema["enum"])
    if t == "object":
        props = schema.get("properties", {})
        inner = sum(len(json.dumps(k)) + 1 + max_answer_chars(v) for k, v in props.items())
        return 2 + inner + max(0, len(props) - 1)
    if t == "array":
        n = int(schema.get("maxItems", MAX_PLATEAUS))
        return 2 + n * (max_answer_chars(schema.get("items", {})) + 1)
    if t == "string":
        # JSON escapes can double a character; models rarely write them: 1.2 covers quotes
        return 2 + int(math.ceil(1.2 * int(schema.get("maxLength", 400))))
    if t == "boolean":
        return 5
    if t == "integer":
        return 12
    return _NUMBER_CHARS


def max_answer_tokens(schema: Mapping[str, Any]) -> int:
    """``max_tokens`` for an answer in ``schema``: its largest size at 2 characters a token
    (JSON punctuation and digits tokenise short) plus 64 tokens of whitespace and margin."""
    return int(math.ceil(max_answer_chars(schema) / 2.0)) + 64
