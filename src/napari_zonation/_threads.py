"""Worker threads of the core's parallel stages: how many, and a small runner for them.

One place decides the worker count (:func:`auto_threads`, :func:`resolve_threads`), so the
segmentation and the profiles agree. :class:`Workers` runs independent calls concurrently;
most of what they call (scipy.ndimage filters and labelling, scikit-image's watershed, numpy
sorts and ufuncs on large arrays) releases the GIL. With one worker every call runs in the
caller's thread when its result is asked for: the serial code path, in the serial order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from ._validation import ZonationInputError

__all__ = ["MAX_AUTO_THREADS", "SERIAL", "Workers", "auto_threads", "resolve_threads"]

#: Most worker threads chosen automatically (more rarely pays on images of a few megapixels).
MAX_AUTO_THREADS = 4


def _cpus() -> int:
    """CPUs this process may run on (its affinity where the OS tells it), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def auto_threads() -> int:
    """The automatic worker count: ``min(4, CPUs available)``."""
    return max(1, min(MAX_AUTO_THREADS, _cpus()))


def resolve_threads(threads: int | None, name: str = "threads") -> int:
    """Checked worker count: ``None`` -> :func:`auto_threads`, else an integer >= 1.

    Raises
    ------
    ZonationInputError
        ``threads`` is not None nor an integer >= 1 (booleans and floats are refused).
    """
    if threads is None:
        return auto_threads()
    if isinstance(threads, (bool, np.bool_)) or not isinstance(threads, (int, np.integer)):
        raise ZonationInputError(
            f"{name}={threads!r} must be an integer number of worker threads >= 1, or None "
            f"(automatic: min({MAX_AUTO_THREADS}, CPUs available) = {auto_threads()})."
        )
    if threads < 1:
        raise ZonationInputError(
            f"{name}={threads!r} must be >= 1 (1 runs serially), or None for automatic."
        )
    return int(threads)


class _Job:
    """A call submitted to a pool (or deferred, without one).

    ``result()`` runs the call in the asking thread when no worker has started it yet (the
    asking thread would only wait), else waits for the worker.
    """

    def __init__(self, pool, fn: Callable, args: tuple, kwargs: dict) -> None:
        self._call: tuple | None = (fn, args, kwargs)
        self._future: Future | None = None if pool is None else pool.submit(fn, *args, **kwargs)
        self._value: Any = None

    def result(self) -> Any:
        if self._call is None:
            return self._value
        if self._future is None or self._future.cancel():
            # no worker started it: run it here, as a finished future (run once; a call
            # that raised raises again from every later result())
            fn, args, kwargs = self._call
            self._future = Future()
            try:
                self._future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                self._future.set_exception(exc)
        value = self._future.result()
        self._call, self._future, self._value = None, None, value
        return value

    def cancel(self) -> None:
        """Drop the call if no worker has started it."""
        if self._future is not None:
            self._future.cancel()


class Workers:
    """Runs independent calls on up to ``n`` threads (the caller's counts as one).

    Use as a context manager (the threads end with it). ``submit`` starts a call in a
    worker thread and returns a job whose ``result()`` gives its value (running it in the
    asking thread if no worker has started it); ``map`` and ``calls`` run several calls at
    once (the first in the caller's thread) and return the results in order. With ``n == 1``
    nothing runs in another thread: ``submit`` defers the call to ``result()`` and ``map``
    calls in order, so the code path is the serial one.
    """

    def __init__(self, n: int = 1) -> None:
        self.n = max(1, int(n))
        self._pool = ThreadPoolExecutor(self.n - 1) if self.n > 1 else None

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """End the worker threads (waits for running calls; drops queued ones)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    @property
    def parallel(self) -> bool:
        """Whether calls may run in other threads."""
        return self._pool is not None

    def submit(self, fn: Callable, *args, **kwargs) -> _Job:
        """Start ``fn(*args, **kwargs)`` (deferred to ``result()`` when serial)."""
        return _Job(self._pool, fn, args, kwargs)

    def map(self, fn: Callable, items: Iterable) -> list:
        """``[fn(x) for x in items]``, the calls concurrent (the first in this thread)."""
        items = list(items)
        if self._pool is None or len(items) < 2:
            return [fn(x) for x in items]
        jobs = [_Job(self._pool, fn, (x,), {}) for x in items[1:]]
        try:
            first = fn(items[0])
            return [first] + [job.result() for job in jobs]
        finally:
            for job in jobs:
                job.cancel()

    def calls(self, *thunks: Callable[[], Any]) -> list:
        """``[t() for t in thunks]``, the calls concurrent (the first in this thread)."""
        return self.map(lambda t: t(), thunks)


#: The serial runner (no threads; safe to share).
SERIAL = Workers(1)
