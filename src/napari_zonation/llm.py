"""Multimodal LLM zoning descriptors through the official ``openai`` client.

Each crystal becomes one chat-completions request: its core-to-rim profile as numbers, the
numeric descriptors of the offline table, a PNG plot of the profile and, when an image and
labels are given, a PNG crop of the BSE image around the crystal with its outline drawn. The
model answers in a strict JSON schema, validated here before it lands in ``llm_`` columns.

A one-shot reference crystal (its numbers and pictures, with the user's note) can lead every
prompt, and plain-text criteria become ``criterion_<slug>`` columns. Answers are cached on disk
(content-addressed, one JSON file per request), so re-running only asks for crystals that
failed or changed. The API key is never written anywhere.

``openai`` and ``matplotlib`` are imported inside functions: importing this module is cheap.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from ._validation import ZonationInputError, as_image, check_labels, check_profiles
from .vocabulary import ZONING_TYPES

log = logging.getLogger(__name__)

PROMPT_VERSION = "zoning-llm-v1"
"""Bumped whenever the prompt or schema changes meaning; part of every cache key."""

LLM_ZONING_TYPES = ZONING_TYPES  # the vocabulary of DESIGN.md, shared with the offline backend
LLM_STATUSES = ("ok", "error", "timeout", "invalid_json", "refused", "schema_error")
MAX_PROFILE_POINTS = 64
SCHEMA_NAME = "zoning_description"
SEED = 0
LOCAL_PLACEHOLDER_KEY = "not-needed"
CROP_MAX_SIDE = 384
_IMAGE_DETAIL = "low"
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}

SYSTEM_PROMPT = f"""You are a petrologist describing chemical zoning in crystals from \
backscattered-electron (BSE) images of volcanic thin sections.
For each crystal you get a profile of a measured value (BSE grey level or a composition) \
against distance_um, the distance from the crystal's rim (0) toward its core, a plot of that \
profile (rim on the left, core on the right) and sometimes a crop of the BSE image with the \
crystal outlined in red.
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
- rationale: one or two sentences on what you saw.
Judge steps against the scatter between neighbouring points (the noise), not against the \
size of the value: a step is a lasting change several times larger than that scatter. \
Answer only with the JSON object of the given schema. (prompt {PROMPT_VERSION})"""


# --------------------------------------------------------------------------------------------
# public helpers
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """Return the folder of the LLM answer cache.

    Returns
    -------
    pathlib.Path
        ``$NAPARI_ZONATION_CACHE_DIR`` when set, else a per-user cache folder
        (``platformdirs.user_cache_path("napari-zonation") / "llm"`` when platformdirs is
        installed, else ``$XDG_CACHE_HOME`` or ``~/.cache``, ``%LOCALAPPDATA%`` on Windows).
    """
    env = os.environ.get("NAPARI_ZONATION_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    try:
        import platformdirs
    except ImportError:
        platformdirs = None
    if platformdirs is not None:
        return Path(platformdirs.user_cache_path("napari-zonation")) / "llm"
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "napari-zonation" / "llm"


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
    criteria: Mapping[str, str] | None = None, *, reference: bool = False
) -> dict[str, Any]:
    """Build the strict JSON schema the model must answer in.

    Parameters
    ----------
    criteria : dict, optional
        ``{slug: text}`` from :func:`normalize_criteria`; each becomes a required object
        ``{"met": bool, "rationale": str}`` under ``criteria``.
    reference : bool
        Add ``matches_reference`` and ``reference_score``.

    Returns
    -------
    dict
        A JSON schema in the subset strict structured outputs accept (every property
        required, no additional properties).
    """
    props: dict[str, Any] = {
        "zoning_type": {"type": "string", "enum": list(LLM_ZONING_TYPES)},
        "n_plateaus": {"type": "integer", "description": "number of flat levels, >= 0"},
        "plateau_levels": {
            "type": "array",
            "items": {"type": "number"},
            "description": "plateau values, rim first",
        },
        "slope": {"type": "number", "description": "d(value)/d(distance_um), per micrometre"},
        "oscillatory": {"type": "boolean"},
        "confidence": {"type": "number", "description": "0 to 1"},
        "rationale": {"type": "string"},
    }
    if reference:
        props["matches_reference"] = {
            "type": "boolean",
            "description": "true when this crystal shows the reference's kind of zoning",
        }
        props["reference_score"] = {
            "type": "number",
            "description": "0 (unlike the reference) to 1 (same zoning as the reference)",
        }
    if criteria:
        props["criteria"] = {
            "type": "object",
            "properties": {
                slug: {
                    "type": "object",
                    "description": text,
                    "properties": {"met": {"type": "boolean"}, "rationale": {"type": "string"}},
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


def validate_answer(obj: Any, schema: Mapping[str, Any]) -> list[str]:
    """Check a parsed answer against the response schema (plain Python, no dependencies).

    Parameters
    ----------
    obj : object
        The answer parsed from JSON.
    schema : dict
        The schema from :func:`response_schema`.

    Returns
    -------
    list of str
        Problems found; empty when the answer is valid, including the ranges the schema only
        states in words (confidence and reference_score in [0, 1], n_plateaus >= 0).
    """
    problems = _validate_node(obj, schema, "$")
    if not problems and isinstance(obj, dict):
        for key, lo, hi in (
            ("confidence", 0, 1),
            ("reference_score", 0, 1),
            ("n_plateaus", 0, 100),
        ):
            if key in obj and not lo <= obj[key] <= hi:
                problems.append(f"$.{key}={obj[key]!r} is outside [{lo}, {hi}]")
    return problems


def estimate_llm_cost(
    n_crystals: int,
    send_images: bool = True,
    *,
    crops: bool = True,
    reference: bool = False,
    n_criteria: int = 0,
    input_usd_per_mtok: float | None = None,
    output_usd_per_mtok: float | None = None,
) -> dict[str, Any]:
    """Estimate the requests and tokens of :func:`describe_llm` before sending anything.

    Parameters
    ----------
    n_crystals : int
        Number of crystals (one request each, fewer when answers are cached).
    send_images : bool
        Send the profile plot (and crops) as images.
    crops : bool
        Count a BSE crop per crystal (when an image and labels will be given).
    reference : bool
        A one-shot reference crystal leads every prompt (doubles the crystal parts).
    n_criteria : int
        Number of plain-text criteria.
    input_usd_per_mtok, output_usd_per_mtok : float, optional
        Your model's prices in US dollars per million tokens; prices are not guessed here.

    Returns
    -------
    dict
        ``requests``, ``images``, ``input_tokens``, ``output_tokens``, per-request figures,
        ``usd`` (None unless both prices are given) and a ``note`` on the assumptions.
    """
    n = int(n_crystals)
    if n < 0:
        raise ZonationInputError(f"n_crystals={n_crystals!r} must be >= 0.")
    d = np.linspace(0.0, 100.0, 200)
    dummy = pd.DataFrame({"label": 1, "distance_um": d, "value": 100.0 + 0.123456 * d})
    text = _profile_text(dummy, 1, None, role="target")
    crit = {f"criterion_{i}": "x" * 80 for i in range(int(n_criteria))}
    schema = response_schema(crit, reference=reference)
    chars = len(SYSTEM_PROMPT) + len(text) * (2 if reference else 1)
    chars += len(_instruction_text(crit, reference, "")) + len(json.dumps(schema))
    images_per_crystal = (1 + int(crops)) if send_images else 0
    images = images_per_crystal * (2 if reference else 1)
    in_tok = int(math.ceil(chars / 4)) + 85 * images  # ~4 characters a token; 85 a low image
    out_tok = 180 + 45 * int(n_criteria) + (25 if reference else 0)
    usd = None
    if input_usd_per_mtok is not None and output_usd_per_mtok is not None:
        usd = n * (in_tok * input_usd_per_mtok + out_tok * output_usd_per_mtok) / 1e6
    return {
        "requests": n,
        "images": n * images,
        "input_tokens_per_request": in_tok,
        "output_tokens_per_request": out_tok,
        "input_tokens": n * in_tok,
        "output_tokens": n * out_tok,
        "usd": usd,
        "note": (
            "Rough figures: text at ~4 characters a token, images at 85 tokens each "
            "(detail='low', GPT-4o accounting; some models bill images differently), "
            "cached answers cost nothing."
        ),
    }


# --------------------------------------------------------------------------------------------
# main entry point
# --------------------------------------------------------------------------------------------


@dataclass
class _Job:
    label: int
    messages: list[dict[str, Any]]
    key: str


class _Dispatcher:
    """A bounded thread pool of chat requests; results and progress on the caller's thread."""

    def __init__(
        self,
        credentials,
        timeout,
        max_retries,
        max_concurrency,
        request_kwargs,
        schema,
        cache,
        model,
        progress,
    ) -> None:
        self._credentials = credentials
        self._timeout = timeout
        self._max_retries = max_retries
        self._workers = max_concurrency
        self._kwargs = request_kwargs
        self._schema = schema
        self._cache = cache
        self._model = model
        self._progress = progress
        self._pool: ThreadPoolExecutor | None = None
        self._client = None
        self._scrub: _Scrubber | None = None
        self._pending: dict[Any, _Job] = {}
        self.results: dict[int, dict[str, Any]] = {}
        self.total = 0

    def finish(self, label: int, result: dict[str, Any]) -> None:
        self.results[label] = result
        if self._progress is not None:
            self._progress(len(self.results), self.total)

    def submit(self, job: _Job) -> None:
        if self._pool is None:  # first uncached crystal: only now is a key needed
            key, url = self._credentials()
            self._client = _make_client(key, url, self._timeout, self._max_retries)
            self._scrub = _Scrubber(key)
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="nz-llm")
        fut = self._pool.submit(
            _run_job,
            self._client,
            job,
            self._kwargs,
            self._schema,
            self._cache,
            self._scrub,
            self._model,
        )
        self._pending[fut] = job

    def drain(self, block: bool) -> None:
        futures = list(self._pending)
        ready = as_completed(futures) if block else [f for f in futures if f.done()]
        for fut in ready:
            job = self._pending.pop(fut)
            try:
                result = fut.result()
            except Exception as exc:  # _run_job catches everything; belt and braces
                result = _failure("error", self._scrub(f"{type(exc).__name__}: {exc}"))
            self.finish(job.label, result)

    def close(self) -> None:
        """Cancel what has not started, wait for requests in flight, close the client."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._client is not None:
            self._client.close()


def describe_llm(
    prof: pd.DataFrame,
    table: pd.DataFrame | None = None,
    *,
    model: str = "gpt-4o-mini",
    image: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    reference: int | None = None,
    reference_note: str = "",
    criteria: dict[str, str] | list[str] | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout: float = 60.0,
    max_retries: int = 2,
    max_concurrency: int = 4,
    cache_dir: str | os.PathLike | None = None,
    send_images: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Describe each crystal's zoning with a multimodal LLM (OpenAI-compatible API).

    Calling this function is the user's opt-in to send the profiles (and, with ``image`` and
    ``labels``, crops of the image) to ``base_url``.

    Parameters
    ----------
    prof : pandas.DataFrame
        Long profiles table (``label``, ``distance_um``, ``value``; optional ``sigma``,
        ``channel``, ``source``). With several channels, the first one is sent.
    table : pandas.DataFrame, optional
        The offline descriptor table (one row per label, column ``label``); its numeric
        columns are sent as context. None: one row per label of ``prof``.
    model : str
        Model name.
    image, labels : numpy.ndarray, optional
        BSE image (2D, or channels first: the first channel is used) and its crystal labels;
        give both to send a crop of each crystal with its outline.
    reference : int, optional
        Label of a reference crystal: its plot, crop and numbers lead every prompt as the
        example, and ``llm_matches_reference`` / ``llm_reference_score`` are added.
    reference_note : str
        The user's note on the reference ("the reverse zoning I am looking for", ...).
    criteria : dict or list of str, optional
        Plain-text criteria, ``{name: text}`` or a list of texts; each adds
        ``criterion_<slug>`` (bool) and ``criterion_<slug>_rationale``.
    base_url : str, optional
        API base URL (``.../v1``); default ``$OPENAI_BASE_URL``, else OpenAI's.
    api_key : str, optional
        API key; default ``$OPENAI_API_KEY``. Not needed for a server on localhost.
    timeout : float
        Seconds per request attempt.
    max_retries : int
        Retries of the client on connection errors, timeouts, 408/409/429 and 5xx.
    max_concurrency : int
        Requests in flight at once.
    cache_dir : str or os.PathLike, optional
        Answer cache folder; default :func:`default_cache_dir`.
    send_images : bool
        Send the plot and crops (False: numbers only, for text-only models).
    progress : callable, optional
        ``progress(done, total)`` after each crystal (cached ones included). If it raises,
        requests not yet started are cancelled and the exception propagates; answers already
        received stay in the cache.

    Returns
    -------
    pandas.DataFrame
        A copy of ``table`` with ``llm_zoning_type``, ``llm_n_plateaus``,
        ``llm_plateau_levels`` (JSON list, rim first), ``llm_slope``, ``llm_oscillatory``,
        ``llm_confidence``, ``llm_rationale``, [``llm_matches_reference``,
        ``llm_reference_score``], [``criterion_<slug>``, ``criterion_<slug>_rationale``],
        ``llm_model``, ``llm_prompt_version``, ``llm_status`` (``ok``, ``error``, ``timeout``,
        ``invalid_json``, ``refused``, ``schema_error``), ``llm_error`` and ``llm_cached``.
        Existing ``llm_`` and ``criterion_`` columns are replaced.

    Raises
    ------
    ZonationInputError
        For bad profiles, table, image/labels, reference or criteria, or a missing API key
        for a non-local server.
    """
    check_profiles(prof)
    if not isinstance(model, str) or not model.strip():
        raise ZonationInputError("model must be a non-empty model name such as 'gpt-4o-mini'.")
    if timeout is None or not float(timeout) > 0:
        raise ZonationInputError(f"timeout={timeout!r} must be a positive number of seconds.")
    if int(max_retries) < 0:
        raise ZonationInputError(f"max_retries={max_retries!r} must be >= 0.")
    max_concurrency = max(1, int(max_concurrency))
    crit = normalize_criteria(criteria)
    prof = _first_channel(prof)
    prof_labels = pd.unique(prof["label"])

    out = _base_table(table, prof_labels)
    crops = _CropMaker(image, labels) if (image is not None or labels is not None) else None
    if crops is not None and not send_images:
        crops = None
    plotter = _Plotter() if send_images else None

    ref_parts: list[dict[str, Any]] = []
    if reference is not None:
        ref = _as_label(reference)
        if ref not in set(_as_label(x) for x in prof_labels):
            raise ZonationInputError(
                f"reference crystal {reference!r} has no profile; pick a label present in the "
                "profiles table."
            )
        ref_parts = _crystal_parts(
            prof,
            ref,
            _row_for(table, ref),
            crops,
            plotter,
            role="reference",
            note=reference_note,
        )
    schema = response_schema(crit, reference=reference is not None)
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": schema},
    }

    # Requests are built in this thread (matplotlib is not thread-safe) and handed to the
    # pool as they are built, so plotting overlaps with the network.
    cache = _Cache(Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir())
    request_kwargs = {
        "model": model,
        "response_format": response_format,
        "temperature": 0,
        "seed": SEED,
    }
    disp = _Dispatcher(
        lambda: _resolve_credentials(api_key, base_url),
        float(timeout),
        int(max_retries),
        max_concurrency,
        request_kwargs,
        schema,
        cache,
        model,
        progress,
    )
    have_prof = set(_as_label(x) for x in prof_labels)
    labs = list(dict.fromkeys(_as_label(x) for x in out["label"]))
    disp.total = len(labs)
    instruction = {
        "type": "text",
        "text": _instruction_text(crit, reference is not None, reference_note),
    }
    try:
        for lab in labs:
            if lab not in have_prof:
                disp.finish(lab, _failure("error", f"no profile for label {lab} in the profiles"))
                continue
            try:
                own = _crystal_parts(prof, lab, _row_for(table, lab), crops, plotter, "target")
            except Exception as exc:  # one odd crystal must not stop the others
                log.warning("label %s: cannot build the request: %s", lab, exc)
                disp.finish(lab, _failure("error", f"cannot build the request: {exc}"))
                continue
            parts = [*ref_parts, *own, instruction]
            messages = [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": parts},
            ]
            job = _Job(lab, messages, _cache_key(model, messages, schema))
            hit = cache.read(job.key, schema)
            if hit is not None:
                disp.finish(lab, {"status": "ok", "error": "", "answer": hit, "cached": True})
            else:
                disp.submit(job)
            disp.drain(block=False)
        disp.drain(block=True)
    finally:
        disp.close()
    results = disp.results

    return _fill_columns(out, results, crit, reference is not None, model)


# --------------------------------------------------------------------------------------------
# tables, prompts, pictures
# --------------------------------------------------------------------------------------------


def _as_label(x: Any) -> int:
    try:
        return int(x)
    except (TypeError, ValueError) as exc:
        raise ZonationInputError(f"label {x!r} is not an integer crystal id.") from exc


def _first_channel(prof: pd.DataFrame) -> pd.DataFrame:
    if "channel" in prof.columns and prof["channel"].nunique(dropna=True) > 1:
        first = sorted(prof["channel"].dropna().unique(), key=str)[0]
        log.info("profiles have several channels; sending channel %r only", first)
        return prof[prof["channel"] == first]
    return prof


def _base_table(table: pd.DataFrame | None, prof_labels: np.ndarray) -> pd.DataFrame:
    if table is None:
        labs = sorted(_as_label(x) for x in prof_labels)
        return pd.DataFrame({"label": np.asarray(labs, dtype=np.int64)})
    if not isinstance(table, pd.DataFrame):
        raise ZonationInputError(
            f"table must be the crystal table (a DataFrame with a 'label' column) or None; "
            f"got {type(table).__name__}."
        )
    if "label" not in table.columns:
        raise ZonationInputError(
            "table has no 'label' column; pass the crystal table from describe_zoning "
            "(one row per label) or None."
        )
    drop = [c for c in table.columns if str(c).startswith(("llm_", "criterion_"))]
    return table.drop(columns=drop).copy()


def _row_for(table: pd.DataFrame | None, label: int) -> pd.Series | None:
    if table is None or "label" not in table.columns:
        return None
    rows = table[pd.to_numeric(table["label"], errors="coerce") == label]
    return None if rows.empty else rows.iloc[0]


def _fmt(x: float) -> str:
    if x is None or not np.isfinite(x):
        return "nan"
    return f"{float(x):.4g}"


def _downsample(d: np.ndarray, v: np.ndarray, n_max: int = MAX_PROFILE_POINTS):
    """Average consecutive points into at most n_max bins (rim first)."""
    if d.size <= n_max:
        return d, v
    edges = np.round(np.linspace(0, d.size, n_max + 1)).astype(int)
    chunks = [np.arange(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    dd = np.array([np.nanmean(d[c]) for c in chunks])
    vv = np.array([np.nanmean(v[c]) if np.isfinite(v[c]).any() else np.nan for c in chunks])
    return dd, vv


def _profile_arrays(prof: pd.DataFrame, label: int):
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


def _descriptor_text(row: pd.Series | None) -> str:
    if row is None:
        return ""
    items = []
    for col, val in row.items():
        name = str(col)
        if name in _SKIP_COLUMNS or name.startswith(("llm_", "criterion_")):
            continue
        if name == "phase" and isinstance(val, str):
            items.append(f"phase={val}")
        elif isinstance(val, (bool, np.bool_)):
            items.append(f"{name}={bool(val)}")
        elif isinstance(val, (int, float, np.integer, np.floating)):
            items.append(f"{name}={_fmt(float(val))}")
    if not items:
        return ""
    return "Numeric descriptors from the offline analysis: " + ", ".join(items) + "."


def _profile_text(
    prof: pd.DataFrame, label: int, row: pd.Series | None, role: str, note: str = ""
) -> str:
    d, v, _, src = _profile_arrays(prof, label)
    dd, vv = _downsample(d, v)
    pts = ",".join(f"[{_fmt(a)},{_fmt(b)}]" for a, b in zip(dd, vv, strict=True))
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
        f"Profile of {d.size} points from {_fmt(d.min() if d.size else np.nan)} to "
        f"{_fmt(d.max() if d.size else np.nan)} um; {where}.",
        f"profile_points (distance_um, value), {len(dd)} points"
        + (" (averaged bins)" if len(dd) < d.size else "")
        + f", rim first: [{pts}]",
    ]
    desc = _descriptor_text(row)
    if desc:
        lines.append(desc)
    return "\n".join(lines)


def _instruction_text(crit: Mapping[str, str], reference: bool, note: str) -> str:
    lines = ["Describe the crystal to describe (not the reference) in the JSON schema."]
    if reference:
        lines.append(
            "matches_reference: true when it shows the same kind of zoning as the reference "
            "crystal"
            + (f" in the sense of the user's note ({note.strip()})" if note.strip() else "")
            + "; reference_score: 0 (unlike) to 1 (same zoning)."
        )
    if crit:
        lines.append(
            "criteria: for each criterion below, met (true/false) and a one-sentence rationale:"
        )
        lines += [f"- {slug}: {text}" for slug, text in crit.items()]
    return "\n".join(lines)


def _png_data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _image_part(png: bytes) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": _png_data_url(png), "detail": _IMAGE_DETAIL}}


class _Plotter:
    """Profile plots as PNG bytes; one figure reused (about twice as fast as a new one).

    Every artist that depends on the data is reset for each plot and the limits are set from
    the data alone, so a plot's bytes do not depend on the plots made before it.
    """

    def __init__(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.fig = Figure(figsize=(4.0, 2.8), dpi=80)
        FigureCanvasAgg(self.fig)
        self.ax = self.fig.add_subplot(1, 1, 1)
        (self.line,) = self.ax.plot([], [], "-", color="k", linewidth=1.0, marker=".", ms=3)
        self.ax.set_ylabel("value")
        self.title = self.ax.set_title("", fontsize=9)
        self.band = None
        self.fig.subplots_adjust(left=0.2, right=0.96, bottom=0.19, top=0.9)

    def __call__(self, prof: pd.DataFrame, label: int, title: str) -> bytes:
        d, v, s, src = _profile_arrays(prof, label)
        ax = self.ax
        if self.band is not None:
            self.band.remove()
            self.band = None
        if s is not None and np.isfinite(s).any():
            self.band = ax.fill_between(d, v - s, v + s, color="0.8", linewidth=0, zorder=1)
        self.line.set_data(d, v)
        self.line.set_zorder(2)
        ax.set_xlabel(
            "distance along line (µm)" if src in ("shape", "traverse") else "distance from rim (µm)"
        )
        self.title.set_text(title)
        dmax = float(np.nanmax(d)) if d.size else 1.0
        ax.set_xlim(min(0.0, float(np.nanmin(d)) if d.size else 0.0), dmax if dmax > 0 else 1.0)
        lo_hi = v if s is None else np.concatenate([v - s, v + s])
        lo_hi = lo_hi[np.isfinite(lo_hi)]
        lo, hi = (float(lo_hi.min()), float(lo_hi.max())) if lo_hi.size else (0.0, 1.0)
        pad = 0.05 * (hi - lo) if hi > lo else max(1.0, abs(hi) * 0.01)
        ax.set_ylim(lo - pad, hi + pad)
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", metadata={"Software": None})
        return buf.getvalue()


class _CropMaker:
    """PNG crops of the BSE image around each crystal, with its outline in red."""

    def __init__(self, image: np.ndarray | None, labels: np.ndarray | None) -> None:
        if image is None or labels is None:
            raise ZonationInputError(
                "give both image and labels to send crystal crops, or neither (profiles only)."
            )
        img = as_image(image, allow_channels=True)
        if img.ndim == 3:
            img = img[0]
        self.labels = check_labels(labels, img.shape)
        finite = img[np.isfinite(img)]
        lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
        if not hi > lo:
            hi = lo + 1.0
        self.grey = np.clip((np.nan_to_num(img, nan=lo) - lo) / (hi - lo), 0, 1)
        from scipy import ndimage

        self.slices = ndimage.find_objects(self.labels)

    def png(self, label: int) -> bytes | None:
        from matplotlib.image import imsave
        from skimage.segmentation import find_boundaries
        from skimage.transform import downscale_local_mean

        if label < 1 or label > len(self.slices) or self.slices[label - 1] is None:
            return None
        sl = self.slices[label - 1]
        h, w = self.labels.shape
        r0, r1, c0, c1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        pad = max(8, int(0.15 * max(r1 - r0, c1 - c0)))
        r0, r1, c0, c1 = max(0, r0 - pad), min(h, r1 + pad), max(0, c0 - pad), min(w, c1 + pad)
        grey = self.grey[r0:r1, c0:c1]
        mask = self.labels[r0:r1, c0:c1] == label
        side = max(grey.shape)
        if side > CROP_MAX_SIDE:
            f = int(math.ceil(side / CROP_MAX_SIDE))
            grey = downscale_local_mean(grey, (f, f))
            mask = mask[::f, ::f][: grey.shape[0], : grey.shape[1]]
        elif side < 64:
            f = min(8, int(math.ceil(64 / side)))
            grey = np.kron(grey, np.ones((f, f)))
            mask = np.kron(mask, np.ones((f, f), dtype=bool))
        rgb = np.repeat((grey * 255).round().astype(np.uint8)[..., None], 3, axis=2)
        edge = find_boundaries(mask, mode="inner")
        rgb[edge] = (255, 0, 0)
        buf = io.BytesIO()
        imsave(buf, rgb, format="png", metadata={"Software": None})
        return buf.getvalue()


def _crystal_parts(
    prof: pd.DataFrame,
    label: int,
    row: pd.Series | None,
    crops: _CropMaker | None,
    plotter: _Plotter | None,
    role: str,
    note: str = "",
) -> list[dict[str, Any]]:
    """Text, plot and crop of one crystal (no pictures when ``plotter`` is None)."""
    parts: list[dict[str, Any]] = [
        {"type": "text", "text": _profile_text(prof, label, row, role, note)}
    ]
    if plotter is not None:
        who = "reference" if role == "reference" else "crystal to describe"
        parts.append(_image_part(plotter(prof, label, f"label {label} ({who}): rim at left")))
        if crops is not None:
            png = crops.png(label)
            if png is not None:
                parts.append(
                    {"type": "text", "text": f"BSE crop of label {label}, outline in red:"}
                )
                parts.append(_image_part(png))
    return parts


# --------------------------------------------------------------------------------------------
# schema validation
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


def _validate_node(obj: Any, schema: Mapping[str, Any], path: str) -> list[str]:
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else list(types)
        if not any(_PY_TYPES[t](obj) for t in types):
            return [f"{path} should be {'/'.join(types)}, got {type(obj).__name__}"]
    if "enum" in schema and obj not in schema["enum"]:
        return [f"{path}={obj!r} is not one of {schema['enum']}"]
    problems: list[str] = []
    if isinstance(obj, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in obj:
                problems.append(f"{path}.{key} is missing")
        if schema.get("additionalProperties") is False:
            problems += [f"{path}.{k} is not in the schema" for k in obj if k not in props]
        for key, sub in props.items():
            if key in obj:
                problems += _validate_node(obj[key], sub, f"{path}.{key}")
    elif isinstance(obj, list) and "items" in schema:
        for i, item in enumerate(obj):
            problems += _validate_node(item, schema["items"], f"{path}[{i}]")
    return problems


# --------------------------------------------------------------------------------------------
# cache
# --------------------------------------------------------------------------------------------


def _cache_key(model: str, messages: list[dict[str, Any]], schema: Mapping[str, Any]) -> str:
    payload = {
        "model": model,
        "prompt_version": PROMPT_VERSION,
        "messages": messages,
        "schema": schema,
        "temperature": 0,
        "seed": SEED,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class _Cache:
    """Validated answers as ``<sha256>.json`` files; failures are never stored."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._warned = False

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def read(self, key: str, schema: Mapping[str, Any]) -> dict[str, Any] | None:
        p = self.path(key)
        try:
            with open(p, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            log.warning("ignoring unreadable cache file %s", p)
            return None
        if not isinstance(data, dict) or data.get("key") != key:
            return None
        answer = data.get("answer")
        return None if validate_answer(answer, schema) else answer

    def write(self, key: str, model: str, label: int, answer: dict[str, Any], usage: Any) -> None:
        record = {
            "key": key,
            "model": model,
            "prompt_version": PROMPT_VERSION,
            "label": label,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "usage": usage,
            "answer": answer,
        }
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=self.folder)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(record, fh, indent=1, sort_keys=True)
            os.replace(tmp, self.path(key))
        except OSError as exc:
            if not self._warned:
                log.warning(
                    "cannot write the LLM cache in %s (%s); answers not cached", self.folder, exc
                )
                self._warned = True


# --------------------------------------------------------------------------------------------
# client and requests
# --------------------------------------------------------------------------------------------


def _is_local(url: str | None) -> bool:
    if not url:
        return False
    host = (urlparse(url).hostname or "").lower()
    return host in _LOCAL_HOSTS or host.startswith("127.")


def _resolve_credentials(api_key: str | None, base_url: str | None) -> tuple[str, str | None]:
    url = base_url or os.environ.get("OPENAI_BASE_URL") or None
    key = api_key or os.environ.get("OPENAI_API_KEY") or None
    if key is None:
        if _is_local(url):
            key = LOCAL_PLACEHOLDER_KEY
        else:
            raise ZonationInputError(
                "no API key for the LLM backend: set the OPENAI_API_KEY environment variable "
                "(or pass api_key=...), or point base_url / OPENAI_BASE_URL at a local "
                "OpenAI-compatible server on localhost, which needs none."
            )
    return key, url


def _make_client(api_key: str, base_url: str | None, timeout: float, max_retries: int):
    from openai import OpenAI

    kwargs: dict[str, Any] = {"api_key": api_key, "timeout": timeout, "max_retries": max_retries}
    if base_url:
        kwargs["base_url"] = base_url
    return OpenAI(**kwargs)


class _Scrubber:
    """Remove the API key (and anything that looks like one) from error text."""

    _pattern = re.compile(r"sk-[A-Za-z0-9_\-*]{6,}")

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, text: str) -> str:
        if self.key and self.key != LOCAL_PLACEHOLDER_KEY:
            text = text.replace(self.key, "***")
            if len(self.key) >= 12:  # partially masked echoes: "sk-ab***********yz12"
                text = re.sub(r"\*{3,}" + re.escape(self.key[-4:]), "***", text)
        return self._pattern.sub("sk-***", text)[:500]


def _failure(status: str, error: str) -> dict[str, Any]:
    return {"status": status, "error": error, "answer": None, "cached": False}


def _run_job(client, job: _Job, kwargs, schema, cache: _Cache, scrub: _Scrubber, model: str):
    """Send one crystal's request; return a result dict, never raise."""
    import openai

    try:
        try:
            resp = client.chat.completions.create(messages=job.messages, **kwargs)
        except openai.BadRequestError as exc:
            # Reasoning models accept only the default temperature: drop it (and the seed)
            # for this and every later request of the run.
            if "temperature" not in str(exc.message).lower() or "temperature" not in kwargs:
                raise
            log.info("the model rejects temperature=0; sending the default temperature")
            kwargs.pop("temperature", None)
            kwargs.pop("seed", None)
            resp = client.chat.completions.create(messages=job.messages, **kwargs)
    except openai.APITimeoutError as exc:
        return _failure("timeout", scrub(f"request timed out: {exc}"))
    except openai.APIStatusError as exc:
        return _failure("error", scrub(f"HTTP {exc.status_code}: {exc.message}"))
    except Exception as exc:
        return _failure("error", scrub(f"{type(exc).__name__}: {exc}"))
    try:
        choice = resp.choices[0]
        msg = choice.message
    except (AttributeError, IndexError, TypeError):
        return _failure("error", "the server's reply has no choices")
    refusal = getattr(msg, "refusal", None)
    if refusal or choice.finish_reason == "content_filter":
        return _failure("refused", scrub(f"model refused: {refusal or 'content filter'}"))
    content = msg.content
    if not content:
        return _failure("invalid_json", "the reply is empty")
    try:
        answer = json.loads(content)
    except ValueError as exc:
        why = "truncated at the token limit, " if choice.finish_reason == "length" else ""
        return _failure("invalid_json", scrub(f"reply is not JSON ({why}{exc}): {content[:80]!r}"))
    problems = validate_answer(answer, schema)
    if problems:
        return _failure("schema_error", scrub("; ".join(problems[:5])))
    usage = getattr(resp, "usage", None)
    usage_d = None
    if usage is not None:
        usage_d = {
            k: getattr(usage, k, None)
            for k in ("prompt_tokens", "completion_tokens", "total_tokens")
        }
    cache.write(job.key, model, job.label, answer, usage_d)
    return {"status": "ok", "error": "", "answer": answer, "cached": False}


# --------------------------------------------------------------------------------------------
# results -> columns
# --------------------------------------------------------------------------------------------


def _fill_columns(
    out: pd.DataFrame,
    results: Mapping[int, Mapping[str, Any]],
    crit: Mapping[str, str],
    reference: bool,
    model: str,
) -> pd.DataFrame:
    labs = [_as_label(x) for x in out["label"]]
    res = [results.get(lab, _failure("error", "not requested")) for lab in labs]
    ans = [r["answer"] if r["status"] == "ok" else None for r in res]

    def get(key: str, conv=lambda x: x):
        return [conv(a[key]) if a is not None else None for a in ans]

    cols: dict[str, Any] = {
        "llm_zoning_type": pd.array(get("zoning_type"), dtype="object"),
        "llm_n_plateaus": pd.array(get("n_plateaus", int), dtype="Int64"),
        "llm_plateau_levels": pd.array(
            get("plateau_levels", lambda x: json.dumps([float(v) for v in x])), dtype="object"
        ),
        "llm_slope": np.array(get("slope", float), dtype=float),
        "llm_oscillatory": pd.array(get("oscillatory", bool), dtype="boolean"),
        "llm_confidence": np.array(get("confidence", float), dtype=float),
        "llm_rationale": [a["rationale"] if a is not None else "" for a in ans],
    }
    if reference:
        cols["llm_matches_reference"] = pd.array(get("matches_reference", bool), dtype="boolean")
        cols["llm_reference_score"] = np.array(get("reference_score", float), dtype=float)
    for slug in crit:
        cols[f"criterion_{slug}"] = pd.array(
            [a["criteria"][slug]["met"] if a is not None else None for a in ans], dtype="boolean"
        )
        cols[f"criterion_{slug}_rationale"] = [
            a["criteria"][slug]["rationale"] if a is not None else "" for a in ans
        ]
    cols["llm_model"] = model
    cols["llm_prompt_version"] = PROMPT_VERSION
    cols["llm_status"] = [r["status"] for r in res]
    cols["llm_error"] = [r["error"] for r in res]
    cols["llm_cached"] = [bool(r.get("cached", False)) for r in res]
    new = pd.DataFrame(cols, index=out.index)
    return pd.concat([out, new], axis=1)
