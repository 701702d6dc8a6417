"""A small fake OpenAI-compatible server for tests (no network beyond 127.0.0.1).

The ``openai`` client (3.x, on httpx2) is not intercepted by respx, so tests talk to a real
``ThreadingHTTPServer`` on 127.0.0.1. Usage::

    from llm_server import FakeOpenAIServer

    with FakeOpenAIServer() as server:
        server.fault_for_label(3, "429")            # first request for label 3 -> 429, then ok
        server.fault_for_label(5, "500", times=None)  # always 500
        describe_llm(prof, base_url=server.base_url, api_key="test-key", ...)
        assert server.problems == []                 # every request was well formed
        server.requests_for(3)                       # the recorded requests of label 3

Or as a pytest fixture with the environment set: ``openai_env(monkeypatch)`` below.

``POST /v1/chat/completions`` only. Every request is recorded (``body``, lower-cased
``headers``, ``label``, ``fault``); it is checked for data-URL PNG images and a strict
``json_schema`` response_format (problems go to ``server.problems`` and get a 400).

Answers: ``answer(body, label) -> dict | str`` (a dict is sent as JSON content, a str as is);
the default, :func:`default_answer`, reads the crystal's ``profile_points`` from the prompt,
calls it unzoned / rim_brighter / rim_darker from its rim and core levels, and fills every
other field of the request's schema.

Faults (per call index with :meth:`fault_for_call`, or per crystal label with
:meth:`fault_for_label`, consumed one per request, ``times=None`` for always):
``"429"``, ``"500"`` (both with ``retry-after-ms: 10`` so client retries are fast),
``"401_echo"`` (401 whose message echoes the bearer key, like OpenAI's "Incorrect API key"),
``"truncated"`` (cut JSON, finish_reason ``length``), ``"non_json"`` (prose content),
``"refusal"``, ``"bad_schema"`` (valid JSON that breaks the schema), ``"slow"`` (waits
``slow_s`` seconds before answering: use a client timeout shorter than that), ``"html"`` (a
web page with status 200, as a proxy's login page), ``"empty"`` (an empty body).

Server-wide behaviours of the servers people run (constructor arguments): ``images=False``
refuses any request with a picture as llama.cpp's ``llama-server`` does without a vision
projector (HTTP 500 "image input is not supported"); ``max_images=1`` refuses requests
with more pictures than that; ``models=[...]`` answers 404 "model not found" to other model
names (``GET /v1/models`` lists them); ``reject_bounds`` refuses schemas with ``maxLength``
and ranges (400); ``reject_max_tokens`` refuses ``max_tokens`` as OpenAI's reasoning models
do; ``serial`` answers one request at a time, as a one-slot local server; ``html_only``
answers every route with a web page (a base URL that is not the API).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = (
    "429",
    "500",
    "401_echo",
    "truncated",
    "non_json",
    "refusal",
    "bad_schema",
    "slow",
    "html",
    "empty",
)
HTML_PAGE = b"<!DOCTYPE html><html><body><h1>Sign in</h1></body></html>"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DATA_URL_PREFIX = "data:image/png;base64,"

_LABEL_RE = re.compile(r"Crystal to describe: label (\d+)")
_POINTS_RE = re.compile(r"profile_points[^\[]*(\[\[.*?\]\])", re.S)


# --------------------------------------------------------------------------------------------
# reading requests
# --------------------------------------------------------------------------------------------


def user_parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    """All content parts of the user messages of a chat request, in order."""
    parts: list[dict[str, Any]] = []
    for msg in body.get("messages", []):
        if msg.get("role") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            parts.append({"type": "text", "text": content})
        elif isinstance(content, list):
            parts.extend(content)
    return parts


def request_text(body: dict[str, Any]) -> str:
    """The text of all user parts joined by newlines."""
    return "\n".join(p.get("text", "") for p in user_parts(body) if p.get("type") == "text")


def request_images(body: dict[str, Any]) -> list[str]:
    """The image URLs of the user parts, in order."""
    return [
        p.get("image_url", {}).get("url", "")
        for p in user_parts(body)
        if p.get("type") == "image_url"
    ]


def decode_data_url(url: str) -> bytes:
    """The bytes of a ``data:image/png;base64,...`` URL."""
    if not url.startswith(DATA_URL_PREFIX):
        raise ValueError(f"not a PNG data URL: {url[:40]!r}")
    return base64.b64decode(url[len(DATA_URL_PREFIX) :], validate=True)


def target_label(body: dict[str, Any]) -> int | None:
    """The label of the crystal to describe (the last ``Crystal to describe: label N``)."""
    found = _LABEL_RE.findall(request_text(body))
    return int(found[-1]) if found else None


def target_points(body: dict[str, Any]) -> list[list[float]]:
    """The crystal to describe's ``profile_points`` (the last list in the prompt)."""
    found = _POINTS_RE.findall(request_text(body))
    if not found:
        return []
    return json.loads(found[-1].replace("nan", "null"))


def request_schema(body: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of the request's response_format (empty dict if absent)."""
    rf = body.get("response_format") or {}
    return (rf.get("json_schema") or {}).get("schema") or {}


# --------------------------------------------------------------------------------------------
# answers
# --------------------------------------------------------------------------------------------


def fill_from_schema(schema: dict[str, Any]) -> Any:
    """A value that satisfies ``schema`` (first enum, False, 0.5, 1, "fake", [], objects)."""
    if "enum" in schema:
        return schema["enum"][0]
    t = schema.get("type")
    t = t[0] if isinstance(t, list) else t
    if t == "object":
        return {k: fill_from_schema(v) for k, v in schema.get("properties", {}).items()}
    return {"array": [], "string": "fake", "boolean": False, "number": 0.5, "integer": 1}.get(t)


def classify_points(points: list[list[float]]) -> dict[str, Any]:
    """A plausible reading of a rim-first profile: unzoned, rim_brighter or rim_darker."""
    vals = [v for _, v in points if v is not None]
    if len(vals) < 4:
        return {"zoning_type": "complex", "n_plateaus": 0, "plateau_levels": []}
    n = len(vals)
    rim = sum(vals[: max(1, n // 10)]) / max(1, n // 10)
    core_part = vals[-max(1, n // 4) :]
    core = sum(core_part) / len(core_part)
    diffs = sorted(abs(b - a) for a, b in itertools.pairwise(vals))
    noise = 1.4826 * diffs[len(diffs) // 2] / 2**0.5  # robust point-to-point scatter
    if abs(rim - core) < max(6 * noise, 1e-6 * max(abs(core), 1.0)):
        return {"zoning_type": "unzoned", "n_plateaus": 1, "plateau_levels": [core]}
    kind = "rim_brighter" if rim > core else "rim_darker"
    return {"zoning_type": kind, "n_plateaus": 2, "plateau_levels": [rim, core]}


def default_answer(body: dict[str, Any], label: int | None) -> dict[str, Any]:
    """Answer every field of the request's schema, zoning from the prompt's profile."""
    answer = fill_from_schema(request_schema(body))
    answer.update(classify_points(target_points(body)))
    answer["confidence"] = 0.8
    answer["rationale"] = f"fake answer for label {label}"
    if "reference_score" in answer:
        answer["reference_score"] = 0.5
    return answer


# --------------------------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------------------------


class FakeOpenAIServer:
    """OpenAI-compatible chat-completions server on 127.0.0.1 for tests.

    Parameters
    ----------
    answer : callable, optional
        ``answer(body, label) -> dict | str``; default :func:`default_answer`.
    slow_s : float
        How long a ``"slow"`` fault waits before answering (cut short on shutdown).
    delay_s : float
        A pause before every answer (to let requests overlap in concurrency tests).
    reject_temperature : bool
        Answer 400 to any request that sets ``temperature``, as OpenAI's reasoning models do.
    images : bool
        Accept pictures (False: HTTP 500 "image input is not supported", as llama-server).
    max_images : int, optional
        Most pictures a request may carry (HTTP 400 beyond).
    models : list of str, optional
        The only model names served (others: HTTP 404 model not found).
    reject_bounds : bool
        Refuse schemas with ``maxLength`` / ``minimum`` / ``maximum`` / ``maxItems`` (400).
    reject_max_tokens : bool
        Refuse ``max_tokens`` (400; ``max_completion_tokens`` is taken).
    serial : bool
        Answer one request at a time (the others wait), as a one-slot local server.
    html_only : bool
        Answer every request with a web page (HTTP 404 text/html).
    """

    def __init__(
        self,
        answer: Callable[[dict[str, Any], int | None], dict[str, Any] | str] | None = None,
        *,
        slow_s: float = 5.0,
        delay_s: float = 0.0,
        reject_temperature: bool = False,
        images: bool = True,
        max_images: int | None = None,
        models: list[str] | None = None,
        reject_bounds: bool = False,
        reject_max_tokens: bool = False,
        serial: bool = False,
        html_only: bool = False,
    ) -> None:
        self.images = images
        self.max_images = max_images
        self.models = models
        self.reject_bounds = reject_bounds
        self.reject_max_tokens = reject_max_tokens
        self.serial = serial
        self.html_only = html_only
        self._serial_lock = threading.Lock()
        self.answer = answer or default_answer
        self.reject_temperature = reject_temperature
        self.slow_s = slow_s
        self.delay_s = delay_s
        self.requests: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._calls = itertools.count()
        self._call_faults: dict[int, str] = {}
        self._label_faults: dict[int, list[tuple[str, int | None]]] = {}
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- scripting ------------------------------------------------------------------------
    def fault_for_call(self, index: int, fault: str) -> None:
        """Make the request number ``index`` (0-based, in arrival order) fail with ``fault``."""
        _check_fault(fault)
        self._call_faults[int(index)] = fault

    def fault_for_label(self, label: int, fault: str, times: int | None = 1) -> None:
        """Queue ``fault`` for the next ``times`` requests about ``label`` (None: always)."""
        _check_fault(fault)
        with self._lock:
            self._label_faults.setdefault(int(label), []).append((fault, times))

    def clear_faults(self) -> None:
        """Forget every scripted fault."""
        with self._lock:
            self._call_faults.clear()
            self._label_faults.clear()

    # ---- inspecting -----------------------------------------------------------------------
    @property
    def n_requests(self) -> int:
        """Number of chat-completion requests received."""
        with self._lock:
            return len(self.requests)

    def requests_for(self, label: int) -> list[dict[str, Any]]:
        """The recorded requests whose crystal to describe is ``label``."""
        with self._lock:
            return [r for r in self.requests if r["label"] == label]

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        if self._httpd is None:
            raise RuntimeError("the server is not running; use it as a context manager")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        """Start serving in a daemon thread."""
        handler = _make_handler(self)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- internals ------------------------------------------------------------------------
    def _take_fault(self, index: int, label: int | None) -> str | None:
        with self._lock:
            if index in self._call_faults:
                return self._call_faults.pop(index)
            queue = self._label_faults.get(label) if label is not None else None
            if not queue:
                return None
            fault, times = queue[0]
            if times is not None:
                times -= 1
                if times <= 0:
                    queue.pop(0)
                else:
                    queue[0] = (fault, times)
            return fault

    def _check_request(self, body: dict[str, Any]) -> list[str]:
        problems = []
        rf = body.get("response_format")
        if not isinstance(rf, dict) or rf.get("type") != "json_schema":
            problems.append("response_format is not {'type': 'json_schema', ...}")
        else:
            js = rf.get("json_schema") or {}
            if not js.get("name") or js.get("strict") is not True:
                problems.append("json_schema lacks a name or strict=true")
            if not isinstance(js.get("schema"), dict) or js["schema"].get("type") != "object":
                problems.append("json_schema.schema is not an object schema")
        if not body.get("model"):
            problems.append("no model")
        for url in request_images(body):
            try:
                png = decode_data_url(url)
            except ValueError as exc:
                problems.append(f"bad image URL: {exc}")
                continue
            if not png.startswith(PNG_SIGNATURE):
                problems.append("image data is not a PNG")
        return problems


def _has_bounds(node: Any) -> bool:
    if isinstance(node, dict):
        keys = ("maxLength", "minimum", "maximum", "maxItems")
        return any(k in node for k in keys) or any(_has_bounds(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_bounds(v) for v in node)
    return False


def _check_fault(fault: str) -> None:
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")


def _completion(
    model: str, content: str | None, *, refusal: str | None = None, finish_reason: str = "stop"
) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-fake-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
    }


def _make_handler(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

        def _send(
            self,
            status: int,
            payload: Any,
            headers: dict[str, str] | None = None,
            content_type: str = "application/json",
        ):
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout)

        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            if server.html_only:
                self._send(404, HTML_PAGE, content_type="text/html")
            elif self.path.rstrip("/") == "/v1/models":
                names = server.models or ["fake-model"]
                self._send(200, {"object": "list", "data": [{"id": m} for m in names]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            if server.html_only:
                self._send(404, HTML_PAGE, content_type="text/html")
                return
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            try:
                body = json.loads(raw)
            except ValueError:
                with server._lock:
                    server.problems.append("request body is not JSON")
                self._send(400, {"error": {"message": "body is not JSON"}})
                return
            label = target_label(body)
            index = next(server._calls)
            fault = server._take_fault(index, label)
            problems = server._check_request(body)
            headers = {k.lower(): v for k, v in self.headers.items()}
            with server._lock:
                server.requests.append(
                    {
                        "index": index,
                        "label": label,
                        "fault": fault,
                        "body": body,
                        "headers": headers,
                    }
                )
                server.problems.extend(problems)
                server._in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server._in_flight)
            try:
                if server.serial:
                    with server._serial_lock:
                        self._respond(body, label, fault, problems, headers)
                else:
                    self._respond(body, label, fault, problems, headers)
            finally:
                with server._lock:
                    server._in_flight -= 1

        def _respond(self, body, label, fault, problems, headers) -> None:
            model = body.get("model", "fake")
            fast_retry = {"retry-after-ms": "10"}
            if problems:
                self._send(400, {"error": {"message": "; ".join(problems)}})
                return
            if server.reject_temperature and "temperature" in body:
                msg = (
                    "Unsupported value: 'temperature' does not support 0 with this model. "
                    "Only the default (1) value is supported."
                )
                self._send(400, {"error": {"message": msg, "param": "temperature"}})
                return
            if server.models is not None and model not in server.models:
                msg = f"The model `{model}` does not exist or you do not have access to it."
                self._send(404, {"error": {"message": msg, "code": "model_not_found"}})
                return
            n_images = len(request_images(body))
            if n_images and not server.images:
                msg = (
                    "image input is not supported - hint: if this is unexpected, you may need "
                    "to provide the mmproj"
                )
                self._send(500, {"error": {"code": 500, "message": msg, "type": "server_error"}})
                return
            if server.max_images is not None and n_images > server.max_images:
                msg = f"at most {server.max_images} image(s) per request; got {n_images}"
                self._send(400, {"error": {"message": msg}})
                return
            if server.reject_bounds and _has_bounds(request_schema(body)):
                msg = (
                    "Invalid schema for response_format 'zoning_description': "
                    "'maxLength' is not permitted."
                )
                self._send(400, {"error": {"message": msg, "param": "response_format"}})
                return
            if server.reject_max_tokens and "max_tokens" in body:
                msg = (
                    "Unsupported parameter: 'max_tokens' is not supported with this model. "
                    "Use 'max_completion_tokens' instead."
                )
                self._send(400, {"error": {"message": msg, "param": "max_tokens"}})
                return
            if server.delay_s:
                server._stop.wait(server.delay_s)
            if fault == "429":
                self._send(
                    429, {"error": {"message": "rate limited", "type": "rate_limit"}}, fast_retry
                )
                return
            if fault == "500":
                self._send(500, {"error": {"message": "internal error"}}, fast_retry)
                return
            if fault == "401_echo":
                key = headers.get("authorization", "").removeprefix("Bearer ")
                self._send(
                    401,
                    {
                        "error": {
                            "message": f"Incorrect API key provided: {key}",
                            "type": "invalid_request_error",
                        }
                    },
                )
                return
            if fault == "slow":
                server._stop.wait(server.slow_s)
            if fault == "html":
                self._send(200, HTML_PAGE, content_type="text/html")
                return
            if fault == "empty":
                self._send(200, b"")
                return
            if fault == "refusal":
                self._send(200, _completion(model, None, refusal="I can't help with that."))
                return
            if fault == "non_json":
                self._send(200, _completion(model, "This crystal looks normally zoned to me."))
                return
            ans = server.answer(body, label)
            content = ans if isinstance(ans, str) else json.dumps(ans)
            if fault == "truncated":
                self._send(
                    200, _completion(model, content[: len(content) // 2], finish_reason="length")
                )
                return
            if fault == "bad_schema":
                broken = dict(ans) if isinstance(ans, dict) else {}
                broken["zoning_type"] = "stripy"
                broken.pop("confidence", None)
                content = json.dumps(broken)
            self._send(200, _completion(model, content))

    return Handler


def openai_env(monkeypatch, server: FakeOpenAIServer, api_key: str | None = "test-key") -> None:
    """Point ``OPENAI_BASE_URL`` at ``server`` and set (or clear) ``OPENAI_API_KEY``."""
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    if api_key is None:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    else:
        monkeypatch.setenv("OPENAI_API_KEY", api_key)
