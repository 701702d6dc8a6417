"""The stages after the segmentation, streamed over a whole section window by window.

A section's labels (a zarr store written by ``segment_crystals(..., out=...)``, or any lazy
labels array) and its image are never read whole; memory holds one strip or one window per
worker, plus the tables (a few hundred bytes per crystal):

1. :func:`section_index`: one pass over the labels in strips of rows: every crystal's
   bounding box and pixel count.
2. :func:`section_levels`: two passes over the image in strips: the levels every crystal is
   compared with (robust grey range, pixel noise, groundmass mode and width, the detector's
   full scale, the grey range of the edge-halo check), computed as
   :func:`~napari_zonation.crystal_table` and :func:`~napari_zonation.rim_profiles` compute
   them on the whole image: from the same regular samples, the smoothing read with a halo of
   rows, so they are the same numbers.
3. :func:`plan_batches`: crystals grouped by the tile of a grid that holds their bounding
   box's top-left corner; a batch's window holds its crystals with a margin.
4. :func:`measure_batch`: the crystal table's rows and the rim profiles of one batch, from
   its window. Everything they measure lies within a few micrometres of the crystal, which
   the margin holds, except the distance to the nearest free face of a crystal touching
   others (``contacts="exclude"``): that is checked per crystal, and a crystal whose free
   face may lie beyond the window is profiled again in a window large enough.
5. The phases, from all crystals' grey (one threshold over the whole table).
6. :func:`describe_batch`: the zoning description and diffusion fits of one batch.
7. The clustering, on the whole crystal table and its profiles.

The per-crystal results equal those of the in-memory functions on the whole image (tested).
Batches run in this process's threads or as tasks on a dask.distributed cluster
(:class:`~napari_zonation._runner.Runner`); results are gathered in batch order, so the
tables are the same wherever they ran.

Steps 1-2 live in :mod:`napari_zonation.section_passes`, steps 3-6 in
:mod:`napari_zonation.stream_batches`; their public names are importable from here too.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from ._validation import ZonationInputError
from .section_passes import (  # noqa: F401 - importable from here as before
    STRIP_PIXELS,
    SectionIndex,
    SectionLevels,
    _read,
    _strips,
    section_index,
    section_levels,
)
from .segment.table import TABLE_COLUMNS
from .stream_batches import (  # noqa: F401 - importable from here as before
    BATCH_PX,
    Batch,
    _compact,
    assign_phases,
    describe_batch,
    edge_grid,
    measure_batch,
    plan_batches,
    table_batch,
    table_margin,
)

__all__ = [
    "Batch",
    "SectionLevels",
    "StreamResult",
    "TABLE_COLUMNS",
    "assign_phases",
    "describe_batch",
    "iter_profiles",
    "measure_batch",
    "plan_batches",
    "section_index",
    "section_levels",
    "stream_stages",
    "stream_table",
]

#: Columns the batch profiles keep for the clustering's shape embedding.
SHAPE_COLUMNS = ["label", "channel", "distance_um", "value"]


# --------------------------------------------------------------------------------------------
# the stages in order


@dataclass
class StreamResult:
    """What :func:`stream_stages` produces.

    Attributes
    ----------
    crystals : pandas.DataFrame
        The crystal table with descriptors, ``cluster`` and (with diffusion options) the
        diffusion columns, by label.
    profile_files : list of pathlib.Path
        The profiles of record, one pickled DataFrame per batch, in batch order (each
        crystal's rows together); :func:`iter_profiles` reads them back. The profiles
        described (each crystal in the geometry its image shows) lie beside them, as
        ``described-*.pkl``.
    n_profile_rows : int
        Rows in all of them.
    failures : tuple
        ``(label, reason)`` of the crystals without a profile.
    timings : dict
        Seconds per stage.
    notes : list of str
        What was skipped and why.
    stats : dict
        ``n_crystals``, ``n_batches``, ``n_regrown`` (profiles read again in a larger window).
    fits : pandas.DataFrame or None
        The diffusion fits of the batches (``diffusion_options`` given), not yet merged into
        ``crystals`` (:func:`napari_zonation.pipeline.merge_fits` does, as
        :func:`~napari_zonation.pipeline.run_mosaic_pipeline` does).
    """

    crystals: pd.DataFrame
    profile_files: list
    n_profile_rows: int
    failures: tuple
    timings: dict = dataclasses.field(default_factory=dict)
    notes: list = dataclasses.field(default_factory=list)
    stats: dict = dataclasses.field(default_factory=dict)
    fits: pd.DataFrame | None = None


def iter_profiles(files, columns: list[str] | None = None):
    """The batch profiles of a :class:`StreamResult`, one DataFrame at a time."""
    for f in files:
        prof = pd.read_pickle(f)
        yield prof if columns is None else prof[[c for c in columns if c in prof.columns]]


ProgressFn = Callable[[str, int, int], None]


def stream_stages(
    image,
    labels,
    pixel_size_um: float,
    workdir,
    *,
    profile_method: str = "shells",
    profile_options: dict | None = None,
    backend: str = "offline",
    describe_options: dict | None = None,
    n_clusters: int | None = None,
    cluster_method: str = "kmeans",
    diffusion_options: dict | None = None,
    date_border_crystals: bool = False,
    depth_geometry: str = "auto",
    runner=None,
    progress: ProgressFn | None = None,
    batch_px: int = BATCH_PX,
) -> StreamResult:
    """Crystal table, profiles, description, clustering and diffusion of a whole section,
    streamed window by window (the module's steps 1-7).

    Parameters
    ----------
    image, labels : array-like
        The section (2D grey, read by slicing: a dask array from :func:`open_mosaic`, a zarr
        array, numpy) and its labels (e.g. the dask array ``segment_crystals(..., out=...)``
        returns).
    pixel_size_um : float
        Micrometres per pixel.
    workdir : path-like
        A folder for the batches' profiles (created; on storage the workers can reach when
        they run on other machines is not needed: results come back to this process).
    profile_method, profile_options, backend, describe_options, n_clusters, cluster_method,
    diffusion_options, date_border_crystals, depth_geometry
        As for :func:`~napari_zonation.pipeline.run_pipeline` (``backend="offline"`` only):
        each crystal is described and clustered in the geometry its image shows, read in its
        batch's window; diffusion is fitted on the profiles of record.
    runner : Runner, optional
        Threads of this process or a dask cluster (default: automatic threads).
    progress : callable, optional
        ``progress(stage, done, total)`` as the strips and batches of each stage finish
        (stages ``"index"``, ``"levels"``, ``"fields"``, ``"measure"``, ``"describe"``,
        ``"cluster"``);
        an exception it raises stops the run.
    batch_px : int
        Side of the grid whose tiles group crystals into batches.

    Returns
    -------
    StreamResult
    """
    import time
    from pathlib import Path

    from ._runner import Runner
    from ._threads import auto_threads
    from .cluster import cluster_crystals
    from .profiles.geometry import check_depth_geometry

    check_depth_geometry(depth_geometry)
    if backend != "offline":
        raise ZonationInputError(
            "a whole-section mosaic is described with backend='offline'; run the LLM "
            "description on a crop, or on the crystals of interest, in memory."
        )
    runner = runner or Runner(threads=auto_threads())
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    px = float(pixel_size_um)
    timings: dict = {}
    notes: list = []

    def step(name):
        if progress is None:
            return None
        return lambda done, total: progress(name, done, total)

    t = time.perf_counter()
    index = section_index(image, labels, runner=runner, progress=step("index"))
    timings["index"] = time.perf_counter() - t
    t = time.perf_counter()
    lv = section_levels(image, labels, px, index, runner=runner, progress=step("levels"),
                        progress_fields=step("fields"))
    timings["levels"] = time.perf_counter() - t
    batches = plan_batches(index.boxes, lv.shape, px, batch_px=batch_px)
    options = {"method": profile_method, **(profile_options or {})}
    t = time.perf_counter()
    rows, files, failures, n_rows, n_regrown = [], [], [], 0, 0
    measured = runner.map(measure_batch, (image, labels, px, lv, options, depth_geometry),
                          batches, progress=step("measure"))
    with warnings.catch_warnings():  # process-wide: the batches' threads see it too
        # the profiles each batch skips are told once, for the whole section, below
        warnings.filterwarnings("ignore", message=r"\d+ profile\(s\) skipped",
                                category=UserWarning)
        for batch, got in zip(batches, measured, strict=True):
            rows.append(got["table"])
            path = workdir / f"profiles-{batch.index:06d}.pkl"
            got["profiles"].to_pickle(path)  # on disk as they come: memory holds one batch
            files.append(path)
            # the profiles to describe (each crystal in the geometry its image shows)
            got["described"].to_pickle(workdir / f"described-{batch.index:06d}.pkl")
            failures.extend(got["failures"])
            n_rows += len(got["profiles"])
            n_regrown += got["n_regrown"]
    timings["measure"] = time.perf_counter() - t
    table = assign_phases(pd.concat(rows, ignore_index=True) if rows else
                          pd.DataFrame(columns=TABLE_COLUMNS), lv)
    stats = {"n_crystals": len(table), "n_batches": len(batches), "n_regrown": n_regrown,
             "levels": dataclasses.asdict(lv)}
    failures = tuple(sorted(failures))
    if failures:
        shown = "; ".join(f"{lab}: {why}" for lab, why in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        warnings.warn(f"{len(failures)} profile(s) skipped: {shown}{more}", UserWarning,
                      stacklevel=2)
        notes.append(f"{len(failures)} crystal(s) without a profile (too small or thin)")
    if table.empty:
        return StreamResult(table, files, 0, failures, timings, notes, stats)

    t = time.perf_counter()
    by_label = table.set_index("label", drop=False)

    described_files = [workdir / f"described-{batch.index:06d}.pkl" for batch in batches]

    def described():
        for batch, path, dpath in zip(batches, files, described_files, strict=True):
            yield (pd.read_pickle(path), by_label.loc[batch.labels].reset_index(drop=True),
                   pd.read_pickle(dpath))

    shared = (backend, describe_options, diffusion_options, date_border_crystals)
    parts, fits = [], []
    for got in runner.map(describe_batch, shared, described(), progress=step("describe")):
        parts.append(got["table"])
        if got["fits"] is not None:
            fits.append(got["fits"])
    described_table = (
        pd.concat(parts, ignore_index=True).sort_values("label", kind="stable")
        .reset_index(drop=True)
    )
    timings["describe"] = time.perf_counter() - t

    t = time.perf_counter()
    if progress is not None:
        progress("cluster", 0, 1)
    # clustered on the profiles described, as run_pipeline clusters
    shapes = pd.concat(list(iter_profiles(described_files, SHAPE_COLUMNS)), ignore_index=True)
    clustered = cluster_crystals(described_table, n_clusters=n_clusters, method=cluster_method,
                                 profiles=shapes)
    del shapes
    if progress is not None:
        progress("cluster", 1, 1)
    timings["cluster"] = time.perf_counter() - t
    fitted = None
    if diffusion_options:
        fitted = pd.concat(fits, ignore_index=True) if fits else None
        notes.append("the diffusion fits ran beside the description (timed with it)")
    return StreamResult(clustered, files, n_rows, failures, timings, notes, stats, fitted)


def stream_table(
    image,
    labels,
    pixel_size_um: float,
    *,
    runner=None,
    progress: ProgressFn | None = None,
    batch_px: int = BATCH_PX,
) -> pd.DataFrame:
    """The crystal table of a whole section (as :func:`~napari_zonation.crystal_table` on the
    whole image), streamed window by window: the module's steps 1-3, the table's rows of each
    batch and the phases, without the profiles.

    Parameters
    ----------
    image, labels : array-like
        The section and its labels, read by slicing (as for :func:`stream_stages`).
    pixel_size_um : float
        Micrometres per pixel.
    runner : Runner, optional
        Threads of this process or a dask cluster (default: automatic threads).
    progress : callable, optional
        ``progress(stage, done, total)`` per strip or batch (stages ``"index"``,
        ``"levels"``, ``"fields"``, ``"measure"``); an exception it raises stops the run.
    batch_px : int
        Side of the grid whose tiles group crystals into batches.

    Returns
    -------
    pandas.DataFrame
        One row per crystal, by label, with the columns of the in-memory crystal table.
    """
    from ._runner import Runner
    from ._threads import auto_threads

    runner = runner or Runner(threads=auto_threads())
    px = float(pixel_size_um)

    def step(name):
        return None if progress is None else (lambda done, total: progress(name, done, total))

    index = section_index(image, labels, runner=runner, progress=step("index"))
    lv = section_levels(image, labels, px, index, runner=runner, progress=step("levels"),
                        progress_fields=step("fields"))
    batches = plan_batches(index.boxes, lv.shape, px, batch_px=batch_px)
    rows = list(runner.map(table_batch, (image, labels, px, lv), batches,
                           progress=step("measure")))
    return assign_phases(pd.concat(rows, ignore_index=True) if rows else
                         pd.DataFrame(columns=TABLE_COLUMNS), lv)
