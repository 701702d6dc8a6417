"""``describe_llm``: one request per crystal, answers into ``llm_`` columns."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._validation import ZonationInputError, check_profiles
from ..channels import image_plane, select_channel
from .cache import AnswerCache, cache_key, default_cache_dir
from .client import (
    DEFAULT_MODEL,
    OPENAI_URL,
    RequestOptions,
    Scrubber,
    list_models,
    make_client,
    resolve_credentials,
)
from .cost import estimate_llm_cost, known_price
from .dispatch import INPUT_LEVELS, Batch, LLMCancelled, Outcome, Pacer, Request, Result
from .prompt import (
    PROMPT_VERSION,
    SHORT_RATIONALE_CHARS,
    instruction_text,
    messages_for,
    profile_text,
)
from .render import CropMaker, ProfilePlotter, image_part
from .schema import SCHEMA_NAME, max_answer_tokens, normalize_criteria, response_schema

log = logging.getLogger(__name__)

LLM_STATUSES = ("ok", "error", "timeout", "invalid_json", "refused", "schema_error", "truncated")


def describe_llm(
    prof: pd.DataFrame,
    table: pd.DataFrame | None = None,
    *,
    model: str = DEFAULT_MODEL,
    image: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    reference: int | None = None,
    reference_note: str = "",
    criteria: dict[str, str] | list[str] | None = None,
    channel: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout: float = 60.0,
    max_timeout: float = 600.0,
    max_retries: int = 2,
    max_concurrency: int = 4,
    cache_dir: str | os.PathLike | None = None,
    send_images: bool = True,
    budget_usd: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    confirm: Callable[[dict[str, Any]], bool] | None = None,
) -> pd.DataFrame:
    """Describe each crystal's zoning with an LLM through an OpenAI-compatible server.

    Calling this function is the user's opt-in to send the profiles (and, with ``image`` and
    ``labels``, crops of the image) to ``base_url``. The first request goes alone: it tells
    what the server accepts (a server that refuses pictures gets the plot without the crop,
    then text only, for the whole batch: ``llm_inputs``) and how long a request takes;
    requests in flight and timeouts then follow what the server sustains.

    Parameters
    ----------
    prof : pandas.DataFrame
        Long profiles table (``label``, ``distance_um``, ``value``; optional ``sigma``,
        ``channel``, ``source``).
    table : pandas.DataFrame, optional
        The offline descriptor table (one row per label, column ``label``); its numeric
        columns are sent as context. None: one row per label of ``prof``.
    model : str
        Model name.
    image, labels : numpy.ndarray, optional
        The image (2D, or a ``(channels, y, x)`` stack: the described channel's plane is
        shown) and its crystal labels; give both to send a crop of each crystal.
    reference : int, optional
        Label of a reference crystal: its numbers (and pictures) lead every prompt as the
        example, and ``llm_matches_reference`` / ``llm_reference_score`` are added.
    reference_note : str
        The user's note on the reference ("the reverse zoning I am looking for", ...).
    criteria : dict or list of str, optional
        Plain-text criteria, ``{name: text}`` or a list of texts; each adds
        ``llm_criterion_<slug>`` (bool) and ``llm_criterion_<slug>_rationale``.
    channel : str, optional
        The channel to describe when ``prof`` has several; default: the channel of
        ``table`` (the one the numeric descriptors describe), else the first in ``prof``.
    base_url : str, optional
        API base URL (``.../v1``); default ``$OPENAI_BASE_URL``, else OpenAI's.
    api_key : str, optional
        API key; default ``$OPENAI_API_KEY``. Not needed for a server on localhost.
    timeout : float
        Seconds the first request may take; later requests get at least three times the
        server's measured time per request, and twice as long after a timeout.
    max_timeout : float
        Longest wait for one request; a crystal that times out three times is ``timeout``.
    max_retries : int
        Retries of a crystal after a rate limit, a server error or a lost connection.
    max_concurrency : int
        Most requests in flight (fewer when more does not answer faster).
    cache_dir : str or os.PathLike, optional
        Answer cache folder; default :func:`default_cache_dir`.
    send_images : bool
        Send the plot and crops (False: text only, for text-only models).
    budget_usd : float, optional
        Stop sending once the answers received cost this much (models with a known price).
    progress : callable, optional
        ``progress(done, total)`` after each crystal (cached ones included). If it raises,
        requests not yet started are cancelled and the exception propagates; answers already
        received stay in the cache.
    cancel : callable, optional
        Checked several times a second; when it returns True the batch stops with
        :class:`~napari_zonation.llm.LLMCancelled`.
    confirm : callable, optional
        ``confirm(estimate) -> bool`` with :func:`~napari_zonation.llm.estimate_llm_cost`'s
        figures for this run, called before anything is sent (the command line shows them
        and asks when they are over the budget); False stops with ``LLMCancelled``.

    Returns
    -------
    pandas.DataFrame
        A copy of ``table`` with ``llm_zoning_type``, ``llm_n_plateaus``,
        ``llm_plateau_levels`` (JSON list, rim first), ``llm_slope``, ``llm_oscillatory``,
        ``llm_confidence``, ``llm_rationale``, [``llm_matches_reference``,
        ``llm_reference_score``], [``llm_criterion_<slug>``,
        ``llm_criterion_<slug>_rationale``], ``llm_model``, ``llm_prompt_version``,
        ``llm_status`` (one of :data:`LLM_STATUSES`), ``llm_error``, ``llm_cached`` and
        ``llm_inputs`` (``text``, ``text+plot`` or ``text+plot+crop``: what the crystal's
        answer was given). Existing ``llm_`` columns are replaced. ``attrs["llm_run"]``
        holds the batch's figures (requests, tokens, fall-backs, wall time, notes).

    Raises
    ------
    ZonationInputError
        For bad profiles, table, image/labels, reference or criteria, or a missing API key
        for a non-local server.
    LLMServerError
        When no crystal can be described (server unreachable, key refused, unknown model,
        not an OpenAI-compatible API, the first crystals all failing): one message.
    """
    check_profiles(prof)
    if not isinstance(model, str) or not model.strip():
        raise ZonationInputError(
            f"model must be a non-empty model name such as {DEFAULT_MODEL!r}.")
    for name, val in (("timeout", timeout), ("max_timeout", max_timeout)):
        if val is None or not float(val) > 0:
            raise ZonationInputError(f"{name}={val!r} must be a positive number of seconds.")
    if int(max_retries) < 0:
        raise ZonationInputError(f"max_retries={max_retries!r} must be >= 0.")
    crit = normalize_criteria(criteria)
    if channel is None and table is not None and "channel" in getattr(table, "columns", ()):
        chans = pd.unique(table["channel"].dropna())
        channel = chans[0] if len(chans) == 1 else None
    all_prof = prof
    prof, chan = select_channel(prof, channel)
    prof_labels = pd.unique(prof["label"])
    out = _base_table(table, prof_labels)

    crops = None
    if image is not None or labels is not None:
        if image is None or labels is None:
            raise ZonationInputError(
                "give both image and labels to send crystal crops, or neither (profiles only)."
            )
        if send_images:
            img = np.asarray(image)
            plane = image_plane(all_prof, chan, img.shape[0]) if img.ndim == 3 else 0
            crops = CropMaker(img, labels, plane=plane)
    plotter = ProfilePlotter() if send_images else None
    top = INPUT_LEVELS[0] if crops is not None else INPUT_LEVELS[1]
    requested = top if send_images else "text"

    have_prof = {_as_label(x) for x in prof_labels}
    ref = None
    if reference is not None:
        ref = _as_label(reference)
        if ref not in have_prof:
            raise ZonationInputError(
                f"reference crystal {reference!r} has no profile; pick a label present in the "
                "profiles table."
            )
    schema = response_schema(crit, reference=ref is not None)
    short_schema = response_schema(
        crit, reference=ref is not None, rationale_chars=SHORT_RATIONALE_CHARS
    )
    cache = AnswerCache(
        Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    )
    server = (base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL).rstrip("/")
    level = requested
    refused = cache.refused_inputs(server, model)
    notes: list[str] = []
    while level in refused and level != "text":
        level = INPUT_LEVELS[INPUT_LEVELS.index(level) + 1]
    if level != requested:
        notes.append(
            f"{server} refused {requested} for {model} recently: sending {level} "
            "(remembered in the cache folder for a day)"
        )

    ref_parts: dict[str, list[dict[str, Any]]] = {}
    instruction = {
        False: instruction_text(crit, ref is not None, reference_note),
        True: instruction_text(crit, ref is not None, reference_note, short=True),
    }

    def parts_at(label: int, lev: str, role: str, note: str = "") -> list[dict[str, Any]]:
        parts = [
            {"type": "text", "text": profile_text(prof, label, _row_for(table, label), role, note)}
        ]
        if lev != "text" and plotter is not None:
            who = "reference" if role == "reference" else "crystal to describe"
            parts.append(image_part(plotter(prof, label, f"label {label} ({who}): rim at left")))
            if lev == "text+plot+crop" and crops is not None:
                png = crops.png(label)
                if png is not None:
                    parts.append(
                        {"type": "text", "text": f"BSE crop of label {label}, outline in red:"}
                    )
                    parts.append(image_part(png))
        return parts

    def build(label: int, lev: str, short: bool) -> Request:
        if ref is not None and lev not in ref_parts:
            ref_parts[lev] = parts_at(ref, lev, "reference", reference_note)
        head = ref_parts.get(lev, [])
        own = parts_at(label, lev, "target")

        def msgs(s: bool) -> list[dict[str, Any]]:
            parts = [*head, *own, {"type": "text", "text": instruction[s]}]
            if lev == "text":  # plain string content: what text-only servers expect
                return messages_for("\n\n".join(p["text"] for p in parts))
            return messages_for(parts)

        normal = msgs(False)
        key = cache_key(model, normal, schema)
        return Request(label, lev, msgs(True) if short else normal, key, lev != "text")

    def lookup(req: Request) -> dict[str, Any] | None:
        return cache.read(req.key, schema)

    def store(req: Request, outcome: Outcome) -> None:
        cache.write(req.key, model, req.label, outcome.answer, outcome.usage, req.level)

    def client_factory():
        key, url = resolve_credentials(api_key, base_url)
        return make_client(key, url), Scrubber(key)

    def models_hint(client) -> str:
        names = list_models(client) if client is not None else None
        return f" The server lists: {', '.join(names[:20])}." if names else ""

    options = RequestOptions(
        model=model, schema=schema, max_tokens=max_answer_tokens(schema), schema_name=SCHEMA_NAME
    )
    batch = Batch(
        build=build,
        lookup=lookup,
        store=store,
        client_factory=client_factory,
        options=options,
        short_schema=short_schema,
        short_max_tokens=max_answer_tokens(short_schema),
        pacer=Pacer(float(timeout), float(max_timeout), int(max_concurrency)),
        level=level,
        max_retries=int(max_retries),
        progress=progress,
        cancel=cancel,
        on_refused=lambda lev: cache.remember_refusal(
            server, model, [x for x in INPUT_LEVELS[: INPUT_LEVELS.index(lev) + 1] if x != "text"]
        ),
        describe_server=server,
        price=known_price(model, server),
        budget_usd=budget_usd,
        models_hint=models_hint,
    )
    labs = list(dict.fromkeys(_as_label(x) for x in out["label"]))
    if confirm is not None:
        est = estimate_llm_cost(
            sum(lab in have_prof for lab in labs),
            requested != "text",
            crops=crops is not None,
            reference=ref is not None,
            n_criteria=len(crit),
            model=model,
            base_url=server,
        )
        if not confirm(est):
            raise LLMCancelled("not confirmed: nothing was sent")
    missing = {
        lab: f"no profile for label {lab} in the profiles" for lab in labs if lab not in have_prof
    }
    results = batch.run([lab for lab in labs if lab in have_prof], failed=missing)
    stats = batch.stats
    stats.notes[:0] = notes
    filled = _fill_columns(out, results, crit, ref is not None, model)
    run = stats.as_dict()
    run.update(requested_inputs=requested, channel=chan, model=model, server=server)
    filled.attrs["llm_run"] = run
    return filled


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------


def _as_label(x: Any) -> int:
    try:
        return int(x)
    except (TypeError, ValueError) as exc:
        raise ZonationInputError(f"label {x!r} is not an integer crystal id.") from exc


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
    drop = [c for c in table.columns if str(c).startswith("llm_")]
    return table.drop(columns=drop).copy()


def _row_for(table: pd.DataFrame | None, label: int) -> pd.Series | None:
    if table is None or "label" not in table.columns:
        return None
    rows = table[pd.to_numeric(table["label"], errors="coerce") == label]
    return None if rows.empty else rows.iloc[0]


def _fill_columns(
    out: pd.DataFrame,
    results: Mapping[int, Result],
    crit: Mapping[str, str],
    reference: bool,
    model: str,
) -> pd.DataFrame:
    labs = [_as_label(x) for x in out["label"]]
    res = [results.get(lab, Result("error", "not requested")) for lab in labs]
    ans = [r.answer if r.status == "ok" else None for r in res]

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
        cols[f"llm_criterion_{slug}"] = pd.array(
            [a["criteria"][slug]["met"] if a is not None else None for a in ans], dtype="boolean"
        )
        cols[f"llm_criterion_{slug}_rationale"] = [
            a["criteria"][slug]["rationale"] if a is not None else "" for a in ans
        ]
    cols["llm_model"] = model
    cols["llm_prompt_version"] = PROMPT_VERSION
    cols["llm_status"] = [r.status for r in res]
    cols["llm_error"] = [r.error for r in res]
    cols["llm_cached"] = [bool(r.cached) for r in res]
    cols["llm_inputs"] = [r.inputs if r.status == "ok" else "" for r in res]
    new = pd.DataFrame(cols, index=out.index)
    return pd.concat([out, new], axis=1)
