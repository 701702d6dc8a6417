"""The stages of a whole-section mosaic, out of core (:func:`run_mosaic_pipeline`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ._pipeline_shared import _min_area_um2, check_pipeline, merge_fits
from ._validation import (
    ZonationInputError,
)
from .segment import segment_crystals

#: stages of :func:`run_mosaic_pipeline`, as its ``progress`` names them
MOSAIC_STAGES = ("segment", "index", "levels", "fields", "measure", "describe", "cluster")
@dataclass
class MosaicResult:
    """What :func:`run_mosaic_pipeline` produces.

    Attributes
    ----------
    labels : dask.array.Array
        The labels, read from ``labels_path``.
    labels_path : pathlib.Path
        The zarr store written.
    crystals : pandas.DataFrame
        The crystal table with descriptors, clusters and diffusion columns.
    profile_files : list of pathlib.Path
        The profiles, one pickled DataFrame per batch of crystals
        (:func:`~napari_zonation.streaming.iter_profiles`).
    pixel_size_um : float
        Micrometres per pixel.
    timings : dict
        Seconds per stage.
    notes : list of str
        What was skipped and why.
    stats : dict
        Segmentation and streaming figures (tiles, batches, crystals profiled again).
    empty_reason : str or None
        Why no crystal was found, when none was.
    """

    labels: object
    labels_path: Path
    crystals: pd.DataFrame
    profile_files: list
    pixel_size_um: float
    timings: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    empty_reason: str | None = None


def run_mosaic_pipeline(
    image,
    pixel_size_um: float,
    labels_out,
    *,
    workdir=None,
    overwrite: bool = False,
    client=None,
    threads: int | None = None,
    segment_options: dict | None = None,
    profile_method: str = "shells",
    profile_options: dict | None = None,
    describe_options: dict | None = None,
    n_clusters: int | None = None,
    cluster_method: str = "kmeans",
    diffusion_options: dict | None = None,
    date_border_crystals: bool = False,
    depth_geometry: str = "auto",
    progress: Callable[[str, int, int], None] | None = None,
) -> MosaicResult:
    """The whole pipeline on a section too large for memory, window by window.

    The labels are written to a zarr store (``segment_crystals(..., out=labels_out)``), then
    the crystal table, profiles, description, clustering and diffusion are streamed over it
    (:func:`~napari_zonation.streaming.stream_stages`). Memory holds a few windows and the
    tables, whatever the section's size; the results equal :func:`run_pipeline`'s.

    Parameters
    ----------
    image : array-like
        2D grey section read by slicing (a dask array from
        :func:`~napari_zonation.mosaic.open_mosaic`, a zarr array, or numpy).
    pixel_size_um : float
        Micrometres per pixel.
    labels_out : path-like
        The labels store to write (``labels.zarr``).
    workdir : path-like, optional
        Folder for the batches' profiles (default: ``labels_out`` with ``.work`` beside it).
    overwrite : bool
        Replace an existing ``labels_out`` (refused otherwise, before any work).
    client : distributed.Client or str, optional
        Run the tiles and batches on this dask cluster (or the scheduler at this address);
        default: the process's default client for a dask array, else threads.
    threads : int, optional
        Threads of this process when no cluster is used (default: automatic).
    segment_options, profile_method, profile_options, describe_options, n_clusters,
    cluster_method, diffusion_options, date_border_crystals, depth_geometry
        As for :func:`run_pipeline` (offline description only).
    progress : callable, optional
        ``progress(stage, done, total)`` as tiles, strips and batches finish (stages in
        :data:`MOSAIC_STAGES`); an exception it raises stops the run (the labels store
        being written is removed).

    Returns
    -------
    MosaicResult

    Raises
    ------
    ZonationInputError
        What :func:`check_pipeline` refuses (but the memory), an existing ``labels_out``, a
        scheduler that does not answer.
    """
    from ._cluster import using
    from ._runner import Runner
    from ._threads import resolve_threads
    from .streaming import stream_stages

    shape = tuple(int(n) for n in image.shape)
    if len(shape) != 2:
        raise ZonationInputError(
            f"a mosaic is one 2D grey image (y, x); got shape {shape}."
        )
    px = check_pipeline(
        shape,
        pixel_size_um,
        itemsize=np.dtype(image.dtype).itemsize,
        segment_options=segment_options,
        profile_method=profile_method,
        profile_options=profile_options,
        backend="offline",
        describe_options=describe_options,
        n_clusters=n_clusters,
        cluster_method=cluster_method,
        diffusion_options=diffusion_options,
        date_border_crystals=date_border_crystals,
        out_of_core=True,
    )
    n_threads = resolve_threads(threads)
    labels_out = Path(labels_out)
    if labels_out.exists() and not overwrite:
        raise ZonationInputError(
            f"{labels_out} already exists; choose another output, delete it, or pass "
            "overwrite=True (--overwrite) to replace it."
        )
    workdir = Path(workdir) if workdir is not None else labels_out.with_suffix(".work")
    timings: dict = {}

    def stage(name):
        return None if progress is None else (lambda d, t: progress(name, d, t))

    with using(client, lazy=not isinstance(image, np.ndarray)) as cluster:
        t = time.perf_counter()
        labels, info = segment_crystals(
            image, px, out=labels_out, overwrite=overwrite, client=cluster, threads=n_threads,
            progress=stage("segment"), return_info=True, **(segment_options or {}),
        )
        timings["segment"] = time.perf_counter() - t
        stats = {k: info[k] for k in ("n_tiles", "n_cut", "n_regrown", "n_truncated")
                 if k in info}
        stats["n_segmented"] = info["n_crystals"]
        if info["n_crystals"] == 0:
            min_area = _min_area_um2(segment_options)
            reason = (
                f"no region of the image stands out from the groundmass over the smallest "
                f"crystal area kept ({min_area:g} µm², {min_area / px**2:,.0f} px at "
                f"{px:g} µm/px); check the pixel size, lower min_area_um2, or lower "
                "segment_crystals' contrast"
            )
            return MosaicResult(labels, labels_out, pd.DataFrame(columns=["label"]), [], px,
                                timings, [f"no crystal found: {reason}"], stats, reason)
        runner = Runner(cluster, n_threads)
        streamed = stream_stages(
            image, labels, px, workdir,
            profile_method=profile_method, profile_options=profile_options,
            describe_options=describe_options, n_clusters=n_clusters,
            cluster_method=cluster_method, diffusion_options=diffusion_options,
            date_border_crystals=date_border_crystals, depth_geometry=depth_geometry,
            runner=runner, progress=progress,
        )
    timings.update(streamed.timings)
    stats.update({k: v for k, v in streamed.stats.items() if k != "levels"})
    stats["where"] = runner.where
    notes = list(streamed.notes)
    crystals = streamed.crystals
    if diffusion_options:
        crystals = merge_fits(crystals, streamed.fits, diffusion_options, date_border_crystals,
                              notes)
    if not diffusion_options:
        notes.append(
            "diffusion skipped: give a diffusivity (diffusivity_um2_s) or the conditions "
            "(mineral, temperature_c, pressure_mpa, delta_qfm) to date the crystals"
        )
    return MosaicResult(labels, labels_out, crystals, streamed.profile_files, px,
                        timings, notes, stats)
