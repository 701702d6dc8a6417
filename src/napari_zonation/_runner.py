"""Run one function over many items, in order, in this process's threads or as tasks on a
dask.distributed cluster, with a bounded number in flight, progress and a cancel.

The function takes ``(shared, item)``: ``shared`` (the lazy image and labels, the levels,
the options) is sent to a cluster's workers once; the items are small (a window, a batch).
Results come back in the items' order whatever finishes first, so a run is the same on any
number of threads or workers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["Runner", "call_in_task", "hold", "release_memory"]


def _load_trim():
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc: nothing to do
        return None


_TRIM = _load_trim()


def release_memory() -> None:
    """Give the memory freed by finished windows back to the system (glibc keeps it in its
    per-thread arenas otherwise, and the process's resident memory only grows)."""
    if _TRIM is not None:
        _TRIM(0)


def _identity(obj: Any) -> Any:
    return obj


def hold(client, obj: Any):
    """``obj`` kept on the cluster as the result of a task, so that a worker lost with it is
    no loss: the scheduler runs the task again (scattered data would be gone for good)."""
    return client.submit(_identity, obj, pure=False)


def call_in_task(func: Callable, shared: Any, item: Any) -> Any:
    """``func(shared, item)``; dask arrays read inside it are computed in the calling thread
    (on a cluster's worker they are not submitted to the cluster again)."""
    try:
        import dask
    except ImportError:  # pragma: no cover - dask comes with napari
        return func(shared, item)
    with dask.config.set(scheduler="synchronous"):
        return func(shared, item)


class Runner:
    """Where the per-window and per-batch work runs.

    Parameters
    ----------
    client : distributed.Client, optional
        Run each item as a task on this cluster (a task lost with a dying worker is run
        again by the scheduler; one that raises is retried once, then its error is raised
        here). Default: threads of this process.
    threads : int
        Threads of this process (without a client); 1 runs everything in the calling thread.
    """

    def __init__(self, client=None, threads: int = 1) -> None:
        self.client = client
        self.threads = max(1, int(threads))
        if client is not None:
            self.slots = 2 * max(1, sum(client.nthreads().values()))
        else:
            self.slots = self.threads + 1

    @property
    def where(self) -> str:
        """Words for the report: a cluster's scheduler or the thread count."""
        if self.client is None:
            return f"{self.threads} thread(s) of this process"
        n = sum(self.client.nthreads().values())
        return f"the dask cluster at {self.client.scheduler.address} ({n} worker threads)"

    def map(
        self,
        func: Callable[[Any, Any], Any],
        shared: Any,
        items: Iterable,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> Iterator[Any]:
        """``func(shared, item)`` for every item, yielded in the items' order.

        ``progress(done, total)`` is called after each result is yielded back here; an
        exception it raises (a cancel) drops the items not started, cancels or waits for the
        running ones, and propagates.
        """
        items = list(items)
        total = len(items)
        if self.client is None and self.threads == 1:
            for k, item in enumerate(items):
                yield call_in_task(func, shared, item)
                release_memory()
                if progress is not None:
                    progress(k + 1, total)
            return
        if self.client is not None:
            held = hold(self.client, shared)

            def submit(item):
                return self.client.submit(
                    call_in_task, func, held, item, pure=False, retries=1
                )

        else:
            pool = ThreadPoolExecutor(self.threads)

            def submit(item):
                return pool.submit(call_in_task, func, shared, item)

        pending: deque = deque()
        rest = iter(items)
        try:
            for item in rest:
                pending.append(submit(item))
                if len(pending) >= self.slots:
                    break
            done = 0
            while pending:
                result = pending.popleft().result()
                nxt = next(rest, None)
                if nxt is not None:
                    pending.append(submit(nxt))
                yield result
                done += 1
                if self.client is None:
                    release_memory()
                if progress is not None:
                    progress(done, total)
        finally:
            if self.client is not None:
                if pending:
                    self.client.cancel(list(pending))
                self.client.cancel([held])
            else:
                for job in pending:
                    job.cancel()
                pool.shutdown(wait=True, cancel_futures=True)
