"""Talking to an OpenAI-compatible server: credentials, one request, what its failure means.

:func:`send` makes one chat-completions request and returns an :class:`Outcome` (it never
raises): the validated answer, or a status for the crystal (``timeout``, ``refused``,
``invalid_json``, ...) and a *kind* that tells the dispatcher what to do next:

- the server cannot work for anyone (``connection``, ``auth``, ``not_found``, ``html``,
  ``bad_body``, ``no_schema``): one message for the batch;
- a feature the server does not take (``images``, ``params``): change the request for the
  whole batch, never per crystal;
- a passing trouble (``rate_limit``, ``server``, ``timeout``, ``length``, ``invalid_json``,
  ``schema``): try this crystal again, or record why it failed.

:class:`RequestOptions` holds what the batch has learned the server accepts (temperature,
seed, the name of the token limit, bounded schemas).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from .._validation import ZonationInputError
from .schema import clip_answer, plain_schema, validate_answer

LOCAL_PLACEHOLDER_KEY = "not-needed"
OPENAI_URL = "https://api.openai.com/v1"
#: the model asked when none is named (the API's, the command line's and the widget's default)
DEFAULT_MODEL = "gpt-4o-mini"
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}
#: kinds of failure after which no request of the batch can work
FATAL_KINDS = ("connection", "auth", "not_found", "html", "bad_body", "no_schema")
_IMAGE_WORDS = re.compile(
    r"image|vision|multimodal|multi-modal|mmproj|image_url|content part|content type", re.I
)
_SCHEMA_WORDS = re.compile(r"maxLength|minLength|minimum|maximum|maxItems|minItems", re.I)
_NO_SCHEMA_WORDS = re.compile(r"response_format|json_schema|structured output", re.I)


def is_local(url: str | None) -> bool:
    """True for a base URL on this machine (localhost, 127.x, ::1)."""
    if not url:
        return False
    host = (urlparse(url).hostname or "").lower()
    return host in _LOCAL_HOSTS or host.startswith("127.")


def resolve_credentials(api_key: str | None, base_url: str | None) -> tuple[str, str | None]:
    """The key and base URL to use: the arguments, else ``$OPENAI_API_KEY`` and
    ``$OPENAI_BASE_URL``; a local server needs no key.

    Raises
    ------
    ZonationInputError
        No key for a server that is not on this machine.
    """
    url = base_url or os.environ.get("OPENAI_BASE_URL") or None
    key = api_key or os.environ.get("OPENAI_API_KEY") or None
    if key is None:
        if is_local(url):
            key = LOCAL_PLACEHOLDER_KEY
        else:
            raise ZonationInputError(
                f"no API key for the LLM server {url or OPENAI_URL}: set the OPENAI_API_KEY "
                "environment variable (or pass api_key=...), or point base_url / "
                "OPENAI_BASE_URL at a local OpenAI-compatible server on localhost, which "
                "needs none."
            )
    return key, url


def make_client(api_key: str, base_url: str | None):
    """An ``openai.OpenAI`` client without retries of its own (the dispatcher retries)."""
    from openai import OpenAI

    kwargs: dict[str, Any] = {"api_key": api_key, "max_retries": 0}
    if base_url:
        kwargs["base_url"] = base_url
    return OpenAI(**kwargs)


class Scrubber:
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


@dataclass
class RequestOptions:
    """What the batch sends besides the messages; changed once when the server refuses a
    part of it (:meth:`adapt`), shared by every request of the batch."""

    model: str
    schema: dict[str, Any]
    max_tokens: int
    schema_name: str = "zoning_description"
    temperature: bool = True
    seed: int | None = 0
    token_key: str | None = "max_tokens"
    bounded: bool = True
    notes: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def kwargs(self, schema: dict[str, Any] | None = None, max_tokens: int | None = None):
        """Keyword arguments of ``chat.completions.create`` (without the messages)."""
        with self._lock:
            sch = self.schema if schema is None else schema
            if not self.bounded:
                sch = plain_schema(sch)
            kw: dict[str, Any] = {
                "model": self.model,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": self.schema_name, "strict": True, "schema": sch},
                },
            }
            if self.temperature:
                kw["temperature"] = 0
            if self.seed is not None and self.temperature:
                kw["seed"] = self.seed
            if self.token_key:
                kw[self.token_key] = int(max_tokens or self.max_tokens)
            return kw

    def adapt(self, message: str, sent: dict[str, Any]) -> bool:
        """Drop or rename the parameter a 400 answer names; True when something changed.

        Only a parameter that the refused request carried is changed (a concurrent request
        may already have changed it: then the request is simply sent again).
        """
        low = message.lower()
        with self._lock:
            if "temperature" in low and "temperature" in sent:
                self.temperature = False
                self.notes.append("the model takes only its default temperature")
                return True
            if "seed" in low and "seed" in sent:
                self.seed = None
                self.notes.append("the server takes no seed")
                return True
            if "max_completion_tokens" in low and "max_tokens" in sent:
                self.token_key = "max_completion_tokens"
                return True
            if "max_tokens" in low and "max_tokens" in sent:
                self.token_key = "max_completion_tokens"
                return True
            if "max_completion_tokens" in low and "max_completion_tokens" in sent:
                self.token_key = None
                self.notes.append("the server takes no token limit")
                return True
            if self.bounded and _SCHEMA_WORDS.search(message):
                self.bounded = False
                self.notes.append(
                    "the server's structured outputs take no length or range bounds; they "
                    "are checked on each answer instead"
                )
                return True
            return False

    def sent_differs(self, sent: dict[str, Any]) -> bool:
        """True when the options changed since ``sent`` was built (by another request)."""
        fresh = self.kwargs()
        keys = ("temperature", "seed", "max_tokens", "max_completion_tokens")
        if any((k in fresh) != (k in sent) for k in keys):
            return True
        return fresh["response_format"] != sent["response_format"]


@dataclass
class Outcome:
    """The result of one request."""

    status: str
    kind: str
    error: str = ""
    answer: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    latency: float = 0.0
    retry_after: float | None = None
    sent: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _retry_after(exc) -> float | None:
    try:
        headers = exc.response.headers
    except AttributeError:
        return None
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        val = headers.get(name)
        if val is None:
            continue
        try:
            return max(0.0, float(val) * scale)
        except ValueError:
            continue
    return None


def _body_text(exc) -> str:
    try:
        return exc.response.text or ""
    except Exception:  # noqa: BLE001 - the response may be gone
        return ""


def looks_like_html(text: str) -> bool:
    """True for a web page (an HTML document) rather than an API answer."""
    head = text.lstrip()[:200].lower()
    return head.startswith("<") and ("<html" in head or "<!doctype" in head or "<body" in head)


def send(
    client,
    messages: list[dict[str, Any]],
    options: RequestOptions,
    *,
    timeout: float,
    scrub: Scrubber,
    schema: dict[str, Any] | None = None,
    max_tokens: int | None = None,
    has_images: bool = False,
) -> Outcome:
    """Send one request and classify its result (never raises).

    Parameters
    ----------
    client : openai.OpenAI
        The client (no retries of its own).
    messages : list of dict
        The chat messages.
    options : RequestOptions
        Model, schema and parameters the batch sends.
    timeout : float
        Seconds this request may take.
    scrub : Scrubber
        Removes the key from error text.
    schema, max_tokens : optional
        A stricter schema and token limit than the options' (the short second try).
    has_images : bool
        The messages carry pictures (a refusal that names them is kind ``images``).
    """
    import openai

    schema = options.schema if schema is None else schema
    kw = options.kwargs(schema, max_tokens)
    t0 = time.perf_counter()

    def out(status, kind, error="", **more) -> Outcome:
        return Outcome(
            status, kind, scrub(error), latency=time.perf_counter() - t0, sent=kw, **more
        )

    try:
        resp = client.chat.completions.create(messages=messages, timeout=timeout, **kw)
    except openai.APITimeoutError:
        return out("timeout", "timeout", f"no answer within {timeout:.0f} s")
    except openai.APIConnectionError as exc:
        cause = exc.__cause__ or exc
        return out("error", "connection", f"cannot connect: {type(cause).__name__}: {cause}")
    except openai.APIStatusError as exc:
        code = exc.status_code
        text = _body_text(exc)
        msg = str(getattr(exc, "message", "") or exc)
        if looks_like_html(text):
            return out("error", "html", f"HTTP {code}: the server answered with a web page")
        if code in (401, 403):
            return out("error", "auth", f"HTTP {code}: {msg}")
        if code == 429:
            return out("error", "rate_limit", f"HTTP 429: {msg}", retry_after=_retry_after(exc))
        if has_images and _IMAGE_WORDS.search(msg) and code in (400, 415, 422, 500, 501):
            return out("error", "images", f"HTTP {code}: {msg}")
        if code == 404:
            return out("error", "not_found", f"HTTP 404: {msg}")
        if code in (400, 422):
            if options.adapt(msg, kw):
                return out("error", "params", f"HTTP {code}: {msg}")
            if _NO_SCHEMA_WORDS.search(msg):
                return out("error", "no_schema", f"HTTP {code}: {msg}")
            if options.sent_differs(kw):  # another request already adapted the options
                return out("error", "params", f"HTTP {code}: {msg}")
            return out("error", "bad_request", f"HTTP {code}: {msg}")
        return out("error", "server", f"HTTP {code}: {msg}", retry_after=_retry_after(exc))
    except ValueError as exc:  # the body is not JSON (json.JSONDecodeError)
        return out("error", "bad_body", f"the server's reply is not JSON ({exc})")
    except Exception as exc:  # noqa: BLE001 - one request must not stop the batch
        return out("error", "error", f"{type(exc).__name__}: {exc}")

    if isinstance(resp, str):  # a 200 that is not JSON: a web page or plain text
        if looks_like_html(resp):
            return out("error", "html", "the server answered with a web page")
        return out("error", "bad_body", f"the server's reply is not JSON: {resp[:80]!r}")
    try:
        choice = resp.choices[0]
        msg = choice.message
    except (AttributeError, IndexError, TypeError):
        return out("error", "bad_body", "the server's reply has no choices")
    usage = _usage(resp)
    refusal = getattr(msg, "refusal", None)
    if refusal or choice.finish_reason == "content_filter":
        return out("refused", "refused", f"model refused: {refusal or 'content filter'}")
    content = msg.content
    if choice.finish_reason == "length":
        return out("truncated", "length", "the answer was cut by the token limit", usage=usage)
    if not content:
        return out("invalid_json", "invalid_json", "the reply is empty", usage=usage)
    try:
        answer = json.loads(content)
    except ValueError as exc:
        return out(
            "invalid_json",
            "invalid_json",
            f"reply is not JSON ({exc}): {content[:80]!r}",
            usage=usage,
        )
    # a complete answer whose text runs past its bound is cut there, not thrown away
    answer = clip_answer(answer, schema)
    problems = validate_answer(answer, schema)
    if problems:
        return out("schema_error", "schema", "; ".join(problems[:5]), usage=usage)
    return out("ok", "ok", answer=answer, usage=usage)


def _usage(resp) -> dict[str, Any] | None:
    usage = getattr(resp, "usage", None)
    if usage is None:
        return None
    return {
        k: getattr(usage, k, None) for k in ("prompt_tokens", "completion_tokens", "total_tokens")
    }


def list_models(client) -> list[str] | None:
    """The model names the server lists (None when it cannot say)."""
    try:
        return sorted(m.id for m in client.models.list())
    except Exception:  # noqa: BLE001 - best effort, for a message
        return None
