"""The batch: which crystal is sent when, with what, and what happens after each answer.

One request is sent alone first. Its answer tells what the server accepts (a refusal of
pictures drops the crop, then the plot, for the whole batch; a refused parameter is dropped
for the whole batch) and how long a request takes (measured on a second request sent alone:
the first carries the warm-up). Then :class:`Pacer` raises the number of
requests in flight while the throughput grows (a local server on 2 cores serves one request
at a time: more in flight only makes each wait longer) and sizes each timeout from the
answers seen, so that a slow server is waited for rather than failed.

What is retried, at most once or ``max_retries`` times per crystal: rate limits and server
errors (after ``Retry-After`` or a back-off), timeouts (twice, with twice the time), an
answer cut by the token limit (once, with a shorter instruction), an answer that is not JSON
or breaks the schema (once). What stops the batch with one message: a server that cannot be
reached, refuses the key, has no such model or is not an OpenAI-compatible API, before any
answer came (:class:`LLMServerError`); the first crystals all failing the same way.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from .._validation import ZonationCancelled, ZonationInputError
from .client import FATAL_KINDS, Outcome, RequestOptions, Scrubber, send

log = logging.getLogger(__name__)

#: what a crystal may be sent, richest first
INPUT_LEVELS = ("text+plot+crop", "text+plot", "text")
#: consecutive failures of the first crystals after which the batch stops
FIRST_FAILURES_STOP = 3
#: consecutive unreachable-server failures (after answers came) after which sending stops
LOST_SERVER_STOP = 5
_POLL_S = 0.2


class LLMServerError(ZonationInputError):
    """No request of the batch can work (the message says why and what to do)."""


class LLMCancelled(ZonationCancelled):
    """The batch was cancelled; answers already received are in the cache."""


@dataclass
class Request:
    """One crystal's request, built for one input level."""

    label: int
    level: str
    messages: list[dict[str, Any]]
    key: str
    has_images: bool


@dataclass
class Result:
    """What one crystal ends with."""

    status: str
    error: str = ""
    answer: dict[str, Any] | None = None
    cached: bool = False
    inputs: str = ""
    attempts: int = 0


@dataclass
class _Job:
    label: int
    short: bool = False
    retries: int = 0
    timeouts: int = 0
    repaired: bool = False
    attempts: int = 0
    not_before: float = 0.0


def _next_ready(queue: deque) -> _Job | None:
    """Take the first job whose back-off is over (None when all wait)."""
    now = time.monotonic()
    for i, job in enumerate(queue):
        if job.not_before <= now:
            del queue[i]
            return job
    return None


class Pacer:
    """Requests in flight and timeouts that follow what the server sustains.

    Parameters
    ----------
    timeout : float
        Seconds the first request may take. Later ones get at least three times the
        longest service time seen (an answer's latency over the requests that were out with
        it) per request queued at the server, and twice as long after each timeout, up to
        ``max_timeout``.
    max_timeout : float
        Longest wait for one request.
    max_concurrency : int
        Most requests in flight.
    """

    def __init__(self, timeout: float, max_timeout: float, max_concurrency: int) -> None:
        self.base_timeout = float(timeout)
        self.max_timeout = max(float(max_timeout), float(timeout))
        self.max_limit = max(1, int(max_concurrency))
        self.limit = 1
        self.scale = 1.0
        self.phase = "probe"
        self.service_s: float | None = None
        self._prev_throughput = 0.0
        self._prev_limit = 1
        self._samples: list[float] = []
        self.history: list[tuple[int, float]] = []

    def timeout_for(self, in_flight: int) -> float:
        """Seconds for a request sent while ``in_flight`` requests are out."""
        t = self.base_timeout
        if self.service_s is not None:
            t = max(t, 3.0 * self.service_s * (in_flight + 1))
        return min(self.max_timeout, t * self.scale)

    def on_success(self, latency: float, concurrency: int) -> None:
        """An answer came ``latency`` s after it was sent with ``concurrency`` requests out
        (itself included)."""
        self.history.append((concurrency, latency))
        service = latency / max(1, concurrency)
        self.service_s = service if self.service_s is None else max(self.service_s, service)
        if self.phase == "probe":
            # two answers alone before the first trial with more in flight: the first one
            # carries the warm-up (connection, the server's prompt cache), which would make
            # any concurrency look faster
            self._samples.append(latency)
            if len(self._samples) < 2 and self.max_limit > 1:
                return
            best = min(self._samples)
            self._samples = []
            self._prev_throughput, self._prev_limit = 1.0 / max(best, 1e-6), 1
            self.limit, self.phase = (2, "ramp") if self.max_limit > 1 else (1, "steady")
            return
        if self.phase != "ramp" or concurrency != self.limit:
            return
        self._samples.append(latency)
        if len(self._samples) < max(2, self.limit):
            return
        throughput = self.limit / max(statistics.median(self._samples), 1e-6)
        self._samples = []
        if throughput < 1.25 * self._prev_throughput:  # more in flight only queued them
            self.limit, self.phase = self._prev_limit, "steady"
        elif self.limit < self.max_limit:
            self._prev_throughput, self._prev_limit = throughput, self.limit
            self.limit = min(2 * self.limit, self.max_limit)
        else:
            self.phase = "steady"

    def on_timeout(self) -> None:
        """A request timed out: fewer in flight, more time for each."""
        self.limit = max(1, self.limit // 2)
        self.scale *= 2.0
        self.phase = "steady" if self.phase == "ramp" else self.phase

    def on_rate_limit(self) -> None:
        """The server asked to slow down."""
        self.limit = max(1, self.limit // 2)
        self.phase = "steady" if self.phase == "ramp" else self.phase


@dataclass
class BatchStats:
    """What a batch did: for the widget, the command line and benchmarks."""

    requests: int = 0
    answered: int = 0
    cached: int = 0
    retries: int = 0
    timeouts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    fallbacks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    inputs: str = ""
    concurrency: int = 1
    wall_s: float = 0.0
    usd: float | None = None
    stopped: str = ""

    def as_dict(self) -> dict[str, Any]:
        """A plain dict of the figures."""
        return dict(self.__dict__)


class Batch:
    """Send the requests of one batch (see the module notes).

    Parameters
    ----------
    build : callable
        ``build(label, level, short) -> Request`` (raises for a crystal whose request cannot
        be built).
    lookup : callable
        ``lookup(request) -> dict | None``: the cached record of a request.
    store : callable
        ``store(request, outcome)``: keep a validated answer.
    client_factory : callable
        ``() -> (client, Scrubber)``; called when the first request must be sent.
    options : RequestOptions
        What every request carries besides its messages.
    short_schema, short_max_tokens :
        Schema and token limit of the second try after a cut answer.
    pacer : Pacer
        Concurrency and timeouts.
    level : str
        The richest input level to try (one of :data:`INPUT_LEVELS`).
    max_retries : int
        Retries of a crystal after a rate limit, a server error or a lost connection.
    progress : callable, optional
        ``progress(done, total)`` after each crystal; an exception it raises stops the batch.
    cancel : callable, optional
        ``cancel() -> bool``; True stops the batch (:class:`LLMCancelled`).
    on_refused : callable, optional
        ``on_refused(level)`` when the server refuses the pictures of ``level``.
    describe_server : str
        Where the server is, for messages.
    price : tuple of float, optional
        US dollars per million input and output tokens, for ``budget_usd``.
    budget_usd : float, optional
        Stop sending once the answers received cost this much.
    models_hint : callable, optional
        ``models_hint(client) -> str`` for the message of a model the server lacks.
    """

    def __init__(
        self,
        *,
        build: Callable[[int, str, bool], Request],
        lookup: Callable[[Request], dict[str, Any] | None],
        store: Callable[[Request, Outcome], None],
        client_factory: Callable[[], tuple[Any, Scrubber]],
        options: RequestOptions,
        short_schema: dict[str, Any],
        short_max_tokens: int,
        pacer: Pacer,
        level: str,
        max_retries: int,
        progress: Callable[[int, int], None] | None = None,
        cancel: Callable[[], bool] | None = None,
        on_refused: Callable[[str], None] | None = None,
        describe_server: str = "the server",
        price: tuple[float, float] | None = None,
        budget_usd: float | None = None,
        models_hint: Callable[[Any], str] | None = None,
    ) -> None:
        self.build = build
        self.lookup = lookup
        self.store = store
        self.client_factory = client_factory
        self.options = options
        self.short_schema = short_schema
        self.short_max_tokens = short_max_tokens
        self.pacer = pacer
        self.level = level
        self.max_retries = max(0, int(max_retries))
        self.progress = progress
        self.cancel = cancel
        self.on_refused = on_refused
        self.server = describe_server
        self.price = price
        self.budget_usd = budget_usd
        self.models_hint = models_hint
        self.results: dict[int, Result] = {}
        self.stats = BatchStats(inputs=level)
        self._client = None
        self._scrub: Scrubber | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._fresh_ok = 0
        self._fatal = False
        self._first_failures: list[str] = []
        self._lost = 0
        self._total = 0

    # ---------------------------------------------------------------- bookkeeping
    def _finish(self, label: int, result: Result) -> None:
        self.results[label] = result
        if self.progress is not None:
            self.progress(len(self.results), self._total)

    def _spent(self) -> float | None:
        if self.price is None:
            return None
        return (
            self.stats.prompt_tokens * self.price[0] + self.stats.completion_tokens * self.price[1]
        ) / 1e6

    def _halt(self, reason: str, fatal: bool = False) -> None:
        """Send nothing more; the crystals left get their cached answers or ``reason``."""
        if not self.stats.stopped:
            self.stats.stopped = reason
            self._fatal = fatal
            log.warning("LLM batch stopped: %s", reason)

    # ---------------------------------------------------------------- the run
    def run(self, labels: list[int], failed: dict[int, str] | None = None) -> dict[int, Result]:
        """Describe ``labels``; ``failed`` holds crystals that failed before (``{label:
        error}``), reported as they are. Returns ``{label: Result}``.

        Raises
        ------
        LLMServerError
            When no crystal got an answer (cached or new) because the server cannot work
            or the first crystals all failed: one message for the batch.
        LLMCancelled
            When ``cancel()`` became true.
        """
        t0 = time.perf_counter()
        self._total = len(labels) + len(failed or {})
        for lab, err in (failed or {}).items():
            self._finish(lab, Result("error", err))
        queue: deque[_Job] = deque(_Job(lab) for lab in labels)
        in_flight: dict[Future, tuple[_Job, Request, int]] = {}
        try:
            while queue or in_flight:
                if self.cancel is not None and self.cancel():
                    raise LLMCancelled()
                self._fill(queue, in_flight)
                if not in_flight:
                    if queue:  # every crystal left waits for its back-off
                        time.sleep(_POLL_S)
                    continue
                done, _ = wait(list(in_flight), timeout=_POLL_S, return_when=FIRST_COMPLETED)
                for fut in done:
                    job, req, conc = in_flight.pop(fut)
                    try:
                        outcome = fut.result()
                    except Exception as exc:  # noqa: BLE001 - send() catches everything
                        outcome = Outcome("error", "error", f"{type(exc).__name__}: {exc}")
                    self._handle(job, req, conc, outcome, queue)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            if self._client is not None and not in_flight:
                self._client.close()
            self.stats.wall_s = time.perf_counter() - t0
            self.stats.concurrency = self.pacer.limit
            self.stats.inputs = self.level
            self.stats.usd = self._spent()
            self.stats.notes.extend(n for n in self.options.notes if n not in self.stats.notes)
        if self.stats.stopped and not any(r.status == "ok" for r in self.results.values()):
            if self._fatal or self._first_failures:
                raise LLMServerError(self.stats.stopped)
        return self.results

    def _fill(self, queue: deque, in_flight: dict) -> None:
        """Start requests while there is room; cached answers finish at once."""
        while queue and len(in_flight) < self.pacer.limit:
            if self.cancel is not None and self.cancel():
                raise LLMCancelled()
            spent = self._spent() if self.budget_usd is not None else None
            if spent is not None and spent >= self.budget_usd:
                self._halt(f"the budget of {self.budget_usd:g} USD was reached")
            job = _next_ready(queue)
            if job is None:
                return
            try:
                req = self.build(job.label, self.level, job.short)
            except Exception as exc:  # noqa: BLE001 - one odd crystal must not stop the others
                log.warning("label %s: cannot build the request: %s", job.label, exc)
                self._finish(job.label, Result("error", f"cannot build the request: {exc}"))
                continue
            if not job.short and job.attempts == 0:
                hit = self.lookup(req)
                if hit is not None:
                    self.stats.cached += 1
                    inputs = str(hit.get("inputs") or req.level)
                    self._finish(job.label, Result("ok", "", hit["answer"], True, inputs))
                    continue
            if self.stats.stopped:
                self._finish(job.label, Result("error", f"not sent: {self.stats.stopped}"))
                continue
            if self._fresh_ok == 0 and in_flight:
                queue.appendleft(job)  # the first request goes alone: it is the probe
                return
            if self._pool is None:
                self._client, self._scrub = self.client_factory()
                self._pool = ThreadPoolExecutor(self.pacer.max_limit, thread_name_prefix="nz-llm")
            timeout = self.pacer.timeout_for(len(in_flight))
            job.attempts += 1
            self.stats.requests += 1
            fut = self._pool.submit(
                send,
                self._client,
                req.messages,
                self.options,
                timeout=timeout,
                scrub=self._scrub,
                schema=self.short_schema if job.short else None,
                max_tokens=self.short_max_tokens if job.short else None,
                has_images=req.has_images,
            )
            in_flight[fut] = (job, req, len(in_flight) + 1)

    def _handle(self, job: _Job, req: Request, conc: int, out: Outcome, queue: deque) -> None:
        if out.usage:
            self.stats.prompt_tokens += int(out.usage.get("prompt_tokens") or 0)
            self.stats.completion_tokens += int(out.usage.get("completion_tokens") or 0)
        kind = out.kind
        if out.ok:
            self._fresh_ok += 1
            self._lost = 0
            self._first_failures.clear()
            self.stats.answered += 1
            self.pacer.on_success(out.latency, conc)
            self.store(req, out)
            self._finish(job.label, Result("ok", "", out.answer, False, req.level, job.attempts))
            return
        if kind == "images" and req.level != "text":
            self._refuse(req.level, out.error)
            job.attempts = 0  # asked again at the lower level (its cache first)
            queue.appendleft(job)
            return
        if kind == "params":
            queue.appendleft(job)
            return
        if kind in FATAL_KINDS and self._fresh_ok == 0:
            message = self._fatal_message(kind, out.error)
            self._finish(job.label, Result("error", message, attempts=job.attempts))
            self._halt(message, fatal=True)
            return
        if kind == "connection":
            self._lost += 1
            if self._lost >= LOST_SERVER_STOP:
                self._finish(job.label, Result("error", out.error, attempts=job.attempts))
                self._halt(f"the server stopped answering ({out.error})")
                return
        if kind == "timeout":
            self.stats.timeouts += 1
            self.pacer.on_timeout()
            if job.timeouts < 2:
                job.timeouts += 1
                queue.appendleft(job)
                return
        elif kind in ("rate_limit", "server", "connection", "html", "bad_body"):
            if kind == "rate_limit":
                self.pacer.on_rate_limit()
            if job.retries < self.max_retries:
                job.retries += 1
                self.stats.retries += 1
                wait_s = out.retry_after if out.retry_after is not None else 0.5 * 2**job.retries
                job.not_before = time.monotonic() + min(20.0, wait_s)
                queue.appendleft(job)
                return
        elif kind == "length" and not job.short:
            job.short = True
            self.stats.retries += 1
            queue.appendleft(job)
            return
        elif kind in ("invalid_json", "schema") and not job.repaired:
            job.repaired = True
            job.short = True
            self.stats.retries += 1
            queue.appendleft(job)
            return
        self._finish(job.label, Result(out.status, out.error, attempts=job.attempts))
        if self._fresh_ok == 0:
            self._first_failures.append(f"{out.status}: {out.error}")
            if len(self._first_failures) >= min(FIRST_FAILURES_STOP, self._total):
                reasons = "; ".join(dict.fromkeys(self._first_failures))
                self._halt(
                    f"the first {len(self._first_failures)} crystals sent to {self.server} "
                    f"all failed ({reasons[:300]}); nothing more was sent"
                )

    def _refuse(self, level: str, error: str) -> None:
        i = INPUT_LEVELS.index(level)
        cur = INPUT_LEVELS.index(self.level)
        if i < cur:  # another request already moved the batch down
            return
        self.level = INPUT_LEVELS[min(i + 1, len(INPUT_LEVELS) - 1)]
        self.stats.fallbacks.append(f"{level} -> {self.level} ({error[:120]})")
        log.info("the server refused %s; sending %s from now on", level, self.level)
        if self.on_refused is not None:
            self.on_refused(level)

    def _fatal_message(self, kind: str, error: str) -> str:
        where = self.server
        if kind == "connection":
            return (
                f"cannot reach the LLM server at {where} ({error}). Start the server, or "
                "check the base URL (OPENAI_BASE_URL) and the network."
            )
        if kind == "auth":
            return (
                f"the LLM server at {where} refused the API key ({error}). Check "
                "OPENAI_API_KEY or the key typed in the widget."
            )
        if kind == "not_found":
            hint = self.models_hint(self._client) if self.models_hint else ""
            return (
                f"the LLM server at {where} has no such model or route ({error}). Check the "
                f"model name and that the base URL ends in /v1.{hint}"
            )
        if kind == "html":
            return (
                f"the server at {where} answered with a web page, not an OpenAI-compatible "
                "API: check the base URL (it usually ends in /v1)."
            )
        if kind == "no_schema":
            return (
                f"the LLM server at {where} does not take structured outputs "
                f"(response_format json_schema): {error}. Use a server that does (llama.cpp's "
                "llama-server, vLLM, Ollama, LM Studio, OpenAI)."
            )
        return (
            f"the server at {where} did not answer as an OpenAI-compatible API ({error}): "
            "check the base URL (it usually ends in /v1)."
        )
