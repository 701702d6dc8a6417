"""Overlapping tiles for images too large to process in one piece (pure core: numpy, scipy).

The image is cut into tiles. A tile has a *core* (the cores partition the image) and a
*window*: the core with a halo of ``before`` pixels above and to the left and ``after`` pixels
below and to the right, clipped to the image. Each window is read and segmented on its own;
the labels are stitched by ownership:

- a label belongs to the tile whose core holds the top-left corner of the label's bounding box
  (one point per crystal, in exactly one core: no crystal is kept twice);
- the owning tile keeps it only when it stays at least ``margin`` pixels away from every side
  of the window that is not a side of the image (there a crystal may be cut, or shaped by
  missing context). With ``before >= margin`` a label whose corner is in the core is always far
  enough from the window's top and left sides, so only the bottom and right sides can cut it:
  ``after - margin`` is the largest crystal extent a tile is sure to hold;
- a label that its owning tile had to drop (larger than the halo, or joined to a neighbour the
  window cuts) is segmented again in a window around it, grown until the crystal lies well
  inside, and pasted where no other crystal is (:func:`stitch_tiles`).

Windows start on multiples of ``align`` pixels so that block-based stages (block means of
``align`` x ``align`` pixels) see the same blocks in every window as in the whole image.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ._runner import release_memory

__all__ = ["Tile", "tile_grid", "owned_labels", "stitch_tiles"]

Box = tuple[int, int, int, int]  # (row0, row1, col0, col1), half-open


@dataclass(frozen=True)
class Tile:
    """One tile: ``core`` and ``window`` as (row0, row1, col0, col1), half-open, in pixels."""

    core: Box
    window: Box

    @property
    def slices(self) -> tuple[slice, slice]:
        """The window as a pair of slices (for reading the image)."""
        r0, r1, c0, c1 = self.window
        return slice(r0, r1), slice(c0, c1)


def _round_up(value: int, align: int) -> int:
    return -(-int(value) // align) * align


def _window(box: Box, before: int, after: int, shape: tuple[int, int], align: int) -> Box:
    """A box grown by ``before``/``after``, its start on a multiple of ``align``, clipped."""
    r0, r1, c0, c1 = box
    r0 = max(0, (r0 - before) // align * align)
    c0 = max(0, (c0 - before) // align * align)
    r1 = min(shape[0], _round_up(r1 + after, align))
    c1 = min(shape[1], _round_up(c1 + after, align))
    return r0, r1, c0, c1


def tile_grid(
    shape: tuple[int, int],
    tile_size: int,
    *,
    before: int,
    after: int,
    align: int = 1,
) -> list[Tile]:
    """Cut an image into tiles with overlapping windows.

    Parameters
    ----------
    shape : (int, int)
        Image shape (rows, cols).
    tile_size : int
        Side of a tile's core in pixels (rounded up to a multiple of ``align``).
    before, after : int
        Halo in pixels above/left and below/right of each core.
    align : int
        Cores and windows start on multiples of this (block size of block-based stages).

    Returns
    -------
    list of Tile
        Row by row; the cores partition the image.
    """
    align = max(1, int(align))
    t = max(align, _round_up(max(1, int(tile_size)), align))
    before, after = _round_up(max(0, before), align), _round_up(max(0, after), align)
    h, w = int(shape[0]), int(shape[1])
    tiles = []
    for r0 in range(0, h, t):
        for c0 in range(0, w, t):
            core = (r0, min(h, r0 + t), c0, min(w, c0 + t))
            tiles.append(Tile(core, _window(core, before, after, (h, w), align)))
    return tiles


def _safe(box: Box, window: Box, shape: tuple[int, int], margin: int) -> bool:
    """Whether a global bounding box stays ``margin`` away from the window's inner sides."""
    r0, r1, c0, c1 = box
    w0, w1, v0, v1 = window
    return (
        (w0 == 0 or r0 >= w0 + margin)
        and (v0 == 0 or c0 >= v0 + margin)
        and (w1 == shape[0] or r1 <= w1 - margin)
        and (v1 == shape[1] or c1 <= v1 - margin)
    )


def _boxes(labels: np.ndarray, offset: tuple[int, int]) -> dict[int, Box]:
    """Global bounding boxes of the labels of a window, keyed by label id."""
    out = {}
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is not None:
            out[i] = (
                sl[0].start + offset[0],
                sl[0].stop + offset[0],
                sl[1].start + offset[1],
                sl[1].stop + offset[1],
            )
    return out


def owned_labels(
    labels: np.ndarray, tile: Tile, shape: tuple[int, int], margin: int
) -> tuple[list[int], list[int]]:
    """Labels of a window that its tile owns: (kept, cut).

    Parameters
    ----------
    labels : numpy.ndarray of int
        Labels of the tile's window (window shape).
    tile : Tile
        The tile.
    shape : (int, int)
        The whole image's shape.
    margin : int
        Distance in pixels that a kept label keeps from the window's sides inside the image.

    Returns
    -------
    kept, cut : list of int
        Ids whose bounding box's top-left corner lies in the tile's core: ``kept`` are far
        enough from the window's inner sides, ``cut`` are not (possibly truncated).
    """
    kept, cut = [], []
    cr0, cr1, cc0, cc1 = tile.core
    for i, box in _boxes(labels, (tile.window[0], tile.window[2])).items():
        if not (cr0 <= box[0] < cr1 and cc0 <= box[2] < cc1):
            continue
        (kept if _safe(box, tile.window, shape, margin) else cut).append(i)
    return kept, cut


# --------------------------------------------------------------------------------------------
# where the stitched labels go


class ArrayCanvas:
    """The stitched labels in memory: one int32 array of the image's shape."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.array = np.zeros(shape, dtype=np.int32)

    def region(self, box: Box) -> np.ndarray:
        """A writable view of ``box``."""
        r0, r1, c0, c1 = box
        return self.array[r0:r1, c0:c1]

    def commit(self, box: Box, region: np.ndarray) -> None:
        """Nothing to do: :meth:`region` is a view."""

    def release(self, row: int) -> None:
        """Nothing to do: the whole array stays in memory."""

    def finish(self) -> np.ndarray:
        """The labels."""
        return self.array


class BandCanvas:
    """The stitched labels written to an array-like store (e.g. a zarr array) band by band.

    Tiles are stitched in row-major order and a tile pastes its crystals at or below the first
    row of its core, so once a row of tiles starts, the rows above it are final: they are
    written to ``store`` in whole chunk rows and dropped from memory (:meth:`release`). Only
    the band from the current row of tiles down to the lowest row pasted so far is held in
    memory (about ``(tile + halo + chunk) x width`` int32 values). After :meth:`finish`,
    regions are read from and written back to the store (the second look at cut crystals).

    Parameters
    ----------
    store : array-like
        2D, of the image's shape, supporting ``store[r0:r1, c0:c1]`` reads and writes of
        int32 values; written in whole rows of ``chunk_rows``.
    chunk_rows : int
        The store's chunk height: bands are written in multiples of it.
    """

    def __init__(self, store, chunk_rows: int) -> None:
        self.store = store
        self.shape = (int(store.shape[0]), int(store.shape[1]))
        self.chunk = max(1, int(chunk_rows))
        self.top = 0
        self.band = np.zeros((0, self.shape[1]), dtype=np.int32)
        self.closed = False

    def _hold(self, row: int) -> None:
        """Hold rows up to ``row`` (exclusive) in the band."""
        end = min(self.shape[0], _round_up(row, self.chunk))
        have = self.top + self.band.shape[0]
        if end > have:
            grown = np.zeros((end - self.top, self.shape[1]), dtype=np.int32)
            grown[: self.band.shape[0]] = self.band
            self.band = grown

    def _in_band(self, box: Box) -> bool:
        return not self.closed and box[0] >= self.top

    def region(self, box: Box) -> np.ndarray:
        """``box`` as a writable array: a view of the band, or a copy read from the store."""
        r0, r1, c0, c1 = box
        if self._in_band(box):
            self._hold(r1)
            return self.band[r0 - self.top : r1 - self.top, c0:c1]
        return np.array(self.store[r0:r1, c0:c1], dtype=np.int32)

    def commit(self, box: Box, region: np.ndarray) -> None:
        """Write a region changed outside the band back to the store."""
        if not self._in_band(box):
            r0, r1, c0, c1 = box
            self.store[r0:r1, c0:c1] = region

    def release(self, row: int) -> None:
        """Rows above ``row`` are final: write their whole chunk rows and drop them."""
        cut = min(row // self.chunk * self.chunk, self.top + self.band.shape[0])
        if self.closed or cut <= self.top:
            return
        n = cut - self.top
        self.store[self.top : cut, :] = self.band[:n]
        self.band = self.band[n:].copy()
        self.top = cut

    def finish(self):
        """Write what the band still holds; afterwards regions go through the store."""
        if not self.closed:
            end = self.top + self.band.shape[0]
            if end > self.top:
                self.store[self.top : end, :] = self.band
            self.band = np.zeros((0, self.shape[1]), dtype=np.int32)
            self.top = self.shape[0]
            self.closed = True
        return self.store


# --------------------------------------------------------------------------------------------
# running the windows


def run_window(segment: Callable[[Box], np.ndarray], window: Box) -> np.ndarray:
    """``segment(window)`` as a task of a dask.distributed worker: a dask array read inside it
    is computed in the task's own thread (not submitted to the cluster again)."""
    try:
        import dask
    except ImportError:  # pragma: no cover - dask comes with napari
        return np.asarray(segment(window))
    with dask.config.set(scheduler="synchronous"):
        return np.asarray(segment(window))


class _OnCluster:
    """``segment`` run on a dask.distributed client: shipped to the cluster once, each window
    a task (a task lost with a dying worker is run again elsewhere by the scheduler)."""

    def __init__(self, client, segment: Callable[[Box], np.ndarray]) -> None:
        from ._runner import hold

        self.client = client
        self.segment = hold(client, segment)  # run again if its worker dies
        self.slots = max(1, sum(client.nthreads().values())) * 2

    def submit(self, window: Box):
        return self.client.submit(run_window, self.segment, window, pure=False, retries=1)

    def __call__(self, window: Box) -> np.ndarray:
        return np.asarray(self.submit(window).result())

    def cancel(self, pending) -> None:
        """Cancel windows submitted and not consumed."""
        if pending:
            self.client.cancel(list(pending))

    def close(self) -> None:
        """Drop the shipped ``segment`` from the workers."""
        self.client.cancel([self.segment])


def _segmented(
    tiles: list[Tile], segment: Callable[[Box], np.ndarray], threads: int, cluster=None
) -> Iterator[tuple[Tile, np.ndarray]]:
    """``(tile, segment(tile.window))`` in tile order, up to ``threads`` windows at once.

    At most ``threads + 1`` windows are submitted and not yet consumed (the labels of one
    finished window wait while an earlier one is being stitched); on a cluster, twice its
    thread count. Closing the generator (an exception in the consumer) drops the windows not
    started and waits for the running ones (cancels them on a cluster).
    (Its own pool, not ``_threads.Workers``: there the caller is one of the workers, but here
    it stitches while ``threads`` windows are segmented; with Workers the 8192^2 mosaic took
    23.6 s against 13.8 s, one window at a time.)
    """
    if cluster is None and threads <= 1:
        for tile in tiles:
            yield tile, np.asarray(segment(tile.window))
        return
    pool = ThreadPoolExecutor(threads) if cluster is None else None
    slots = threads + 1 if cluster is None else cluster.slots

    def submit(tile: Tile):
        if cluster is not None:
            return cluster.submit(tile.window)
        return pool.submit(segment, tile.window)

    pending: deque = deque()
    try:
        rest = iter(tiles)
        for tile in rest:
            pending.append((tile, submit(tile)))
            if len(pending) >= slots:
                break
        while pending:
            tile, job = pending.popleft()
            lab = np.asarray(job.result())
            nxt = next(rest, None)
            if nxt is not None:
                pending.append((nxt, submit(nxt)))
            yield tile, lab
    finally:
        if cluster is not None:
            cluster.cancel([job for _, job in pending])
        else:
            for _, job in pending:
                job.cancel()
            pool.shutdown(wait=True, cancel_futures=True)


def _paste(canvas, gsl: tuple[slice, slice], mine: np.ndarray, label: int) -> int:
    """Paste a crystal onto the free pixels of its box; the number of pixels pasted."""
    box = (gsl[0].start, gsl[0].stop, gsl[1].start, gsl[1].stop)
    region = canvas.region(box)
    free = mine & (region == 0)
    n = int(np.count_nonzero(free))
    if n:
        region[free] = label
        canvas.commit(box, region)
    return n


def stitch_tiles(
    shape: tuple[int, int],
    tiles: list[Tile],
    segment: Callable[[Box], np.ndarray],
    *,
    margin: int,
    align: int = 1,
    max_window_px: int | None = None,
    max_rounds: int = 4,
    progress: Callable[[int, int], None] | None = None,
    threads: int = 1,
    canvas=None,
    client=None,
) -> tuple[np.ndarray, dict]:
    """Segment every tile's window and stitch the labels each tile owns.

    Parameters
    ----------
    shape : (int, int)
        Image shape.
    tiles : list of Tile
        From :func:`tile_grid`, with ``before >= margin``, in its (row-major) order.
    segment : callable
        ``segment(window) -> labels`` of the window's shape (0 = background), for a window
        (row0, row1, col0, col1).
    margin : int
        Distance from a window's inner sides within which a label may be cut or shaped by the
        missing context (see :func:`owned_labels`).
    align : int
        Windows grown for a second look start on multiples of this.
    max_window_px : int, optional
        Largest window (pixels) tried for a crystal its tile had to drop; default four times
        the largest tile window. A crystal still cut at that size is kept as it is (counted in
        ``n_truncated``).
    max_rounds : int
        Window growths tried per dropped crystal (the halo doubles each round).
    progress : callable, optional
        ``progress(done, total)`` after each tile, in tile order, in the calling thread.
        An exception it raises stops the run (windows not started are dropped, running
        ones are waited for, or cancelled on a cluster) and propagates.
    threads : int
        Tile windows segmented at once, in a pool of this many threads (``segment`` must
        then be safe to call from several threads); 1 (default) calls it in this thread.
        The labels are consumed in tile order, so the result is the same for any count.
        The windows grown for a second look are segmented one after another.
    canvas : ArrayCanvas or BandCanvas, optional
        Where the labels are stitched: in memory (default) or, with a :class:`BandCanvas`,
        written to a store (a zarr array) band by band, so that the whole labels image never
        sits in memory.
    client : dask.distributed.Client, optional
        Run the windows as tasks on this cluster instead of in threads (``segment`` is
        pickled, with what it refers to, and sent to the workers once). The stitching stays
        in this process, in tile order: the labels are the same as with threads.

    Returns
    -------
    labels : numpy.ndarray or the canvas's store
        int32 labels of ``shape``, 1..n consecutive (numbered in the order they are pasted).
    stats : dict
        ``n_tiles``, ``n_cut`` (crystals a tile had to drop), ``n_regrown`` (of those, found
        again in a larger window), ``n_truncated`` (kept though still cut), ``n_labels``.
    """
    canvas = ArrayCanvas(shape) if canvas is None else canvas
    cluster = None if client is None else _OnCluster(client, segment)
    call = segment if cluster is None else cluster
    n_next = 1
    cut_records: list[tuple[Box, np.ndarray]] = []
    biggest = 0
    row = -1
    try:
        with closing(_segmented(tiles, segment, threads, cluster)) as windows:
            for k, (tile, lab) in enumerate(windows):
                if tile.core[0] != row:  # a new row of tiles: the rows above are final
                    row = tile.core[0]
                    canvas.release(row)
                r0, r1, c0, c1 = tile.window
                biggest = max(biggest, (r1 - r0) * (c1 - c0))
                kept, cut = owned_labels(lab, tile, shape, margin)
                slices = ndi.find_objects(lab)
                for i in kept:
                    sl = slices[i - 1]
                    gsl = (
                        slice(sl[0].start + r0, sl[0].stop + r0),
                        slice(sl[1].start + c0, sl[1].stop + c0),
                    )
                    # a crystal covered by those pasted before it gets no id
                    if _paste(canvas, gsl, lab[sl] == i, n_next):
                        n_next += 1
                for i in cut:
                    sl = slices[i - 1]
                    box = (sl[0].start + r0, sl[0].stop + r0, sl[1].start + c0, sl[1].stop + c0)
                    cut_records.append((box, lab[sl] == i))
                del lab
                if cluster is None:
                    release_memory()
                if progress is not None:
                    progress(k + 1, len(tiles))
        canvas.finish()
        max_px = max_window_px if max_window_px is not None else 4 * biggest
        stats = {"n_tiles": len(tiles), "n_cut": 0, "n_regrown": 0, "n_truncated": 0}
        for box, mask in cut_records:
            r0, r1, c0, c1 = box
            if np.mean(canvas.region(box)[mask] > 0) >= 0.5:
                continue  # found whole by another tile (the cut piece was its edge)
            stats["n_cut"] += 1
            grow = max(margin, r1 - r0, c1 - c0)
            for rnd in range(max_rounds):
                win = _window(box, grow, grow, shape, align)
                area = (win[1] - win[0]) * (win[3] - win[2])
                last = rnd == max_rounds - 1 or area >= max_px
                whole = win == (0, shape[0], 0, shape[1])
                lab = np.asarray(call(win))
                # the labels of the new window over the dropped crystal
                local = lab[r0 - win[0] : r1 - win[0], c0 - win[2] : c1 - win[2]][mask]
                ids = np.unique(local[local > 0])
                boxes = _boxes(lab, (win[0], win[2]))
                safe = all(_safe(boxes[i], win, shape, margin) for i in ids)
                if not (safe or last or whole):
                    grow *= 2
                    continue
                slices = ndi.find_objects(lab)
                for i in ids:
                    sl = slices[i - 1]
                    gbox = (
                        sl[0].start + win[0],
                        sl[0].stop + win[0],
                        sl[1].start + win[2],
                        sl[1].stop + win[2],
                    )
                    mine = lab[sl] == i
                    if np.mean(canvas.region(gbox)[mine] > 0) >= 0.5:
                        continue  # already there
                    if _paste(canvas, (slice(*gbox[:2]), slice(*gbox[2:])), mine, n_next):
                        n_next += 1
                stats["n_regrown" if safe or whole else "n_truncated"] += 1
                break
    finally:
        if cluster is not None:
            cluster.close()
    stats["n_labels"] = n_next - 1
    return canvas.finish(), stats
