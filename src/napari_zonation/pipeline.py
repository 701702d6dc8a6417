"""The stages in order, for the command line, notebooks and batches.

:func:`check_pipeline` refuses what a run would fail on (pixel size, memory, image size
against the smallest crystal, options, diffusion conditions, LLM access) before anything is
computed; :func:`run_pipeline` calls it, then segments, profiles, describes, clusters and,
with a diffusivity or conditions, dates every crystal.
"""

from __future__ import annotations

import inspect
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from ._validation import (
    ZonationInputError,
    as_image,
    check_image_content,
    check_memory,
    check_sem_pixel_size,
)
from .cluster import cluster_crystals
from .descriptors import describe_zoning
from .diffusion import check_diffusion_options, fit_diffusion
from .profiles import rim_profiles
from .segment import crystal_table, segment_crystals

STAGES = ("segment", "profiles", "describe", "cluster", "diffusion")
#: stages of :func:`run_mosaic_pipeline`, as its ``progress`` names them
MOSAIC_STAGES = ("segment", "index", "levels", "fields", "measure", "describe", "cluster")
#: ``fit_status`` of a crystal cut by the image edge that was not dated
BORDER_STATUS = "cut by the image edge"
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")


@dataclass
class PipelineResult:
    """What :func:`run_pipeline` produces.

    Attributes
    ----------
    labels : numpy.ndarray
        int32 crystal labels.
    profiles : pandas.DataFrame
        Long profiles table (``rim_profiles``).
    crystals : pandas.DataFrame
        One row per crystal: segmentation properties, descriptors, ``cluster`` and, when
        diffusion conditions were given, the diffusion columns.
    pixel_size_um : float
        Micrometres per pixel.
    timings : dict
        Seconds per stage.
    notes : list of str
        What was skipped and why.
    empty_reason : str or None
        Why no crystal was found, when none was (then only ``segment`` ran).
    """

    labels: np.ndarray
    profiles: pd.DataFrame
    crystals: pd.DataFrame
    pixel_size_um: float
    timings: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    empty_reason: str | None = None


def _default(func, name: str):
    return inspect.signature(func).parameters[name].default


def _min_area_um2(segment_options: dict | None) -> float:
    value = (segment_options or {}).get("min_area_um2")
    if value is None:
        value = _default(segment_crystals, "min_area_um2")
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise ZonationInputError(f"min_area_um2={value!r} is not a number (µm²).") from exc
    if not (np.isfinite(value) and value >= 0):
        raise ZonationInputError(f"min_area_um2={value!r} must be a non-negative area in µm².")
    return value


def llm_server(base_url: str | None = None) -> str | None:
    """The OpenAI-compatible server the LLM backend will call: ``base_url``, else
    ``$OPENAI_BASE_URL``, else None (OpenAI's own)."""
    return base_url or os.environ.get("OPENAI_BASE_URL") or None


def check_llm_access(
    base_url: str | None = None, api_key: str | None = None, *, timeout_s: float = 3.0
) -> str | None:
    """Refuse the LLM backend before any work when it cannot be reached.

    A key is needed unless the server is on this machine (``localhost``, ``127.x``); a server
    named by ``base_url`` or ``OPENAI_BASE_URL`` must accept a connection. OpenAI's own
    server (no URL given) is not contacted here.

    Returns
    -------
    str or None
        The server's URL (None: OpenAI's).

    Raises
    ------
    ZonationInputError
        Naming the environment variable to set, or the server that does not answer.
    """
    url = llm_server(base_url)
    key = api_key or os.environ.get("OPENAI_API_KEY") or None
    host, port = None, None
    if url:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ZonationInputError(
                f"the LLM server URL {url!r} is not an http(s) URL; set OPENAI_BASE_URL to "
                "something like http://127.0.0.1:8080/v1."
            )
        host = parsed.hostname.lower()
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    local = host is not None and (host in _LOCAL_HOSTS or host.startswith("127."))
    if key is None and not local:
        where = f"the server {url}" if url else "OpenAI's API"
        raise ZonationInputError(
            f"the openai backend has no API key for {where}: set the OPENAI_API_KEY "
            "environment variable, or set OPENAI_BASE_URL to a local OpenAI-compatible server "
            "(e.g. http://127.0.0.1:8080/v1), which needs none."
        )
    if url:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                pass
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise ZonationInputError(
                f"the LLM server {url} does not answer ({why}); start it, or set "
                "OPENAI_BASE_URL to the server's address."
            ) from exc
    return url


def _olivine_needs_xfe(options: dict) -> bool:
    mineral = str(options.get("mineral") or "").strip().lower()
    return (
        mineral == "olivine"
        and options.get("xfe") is None
        and options.get("diffusivity_um2_s") is None
    )


def check_pipeline(
    shape: tuple[int, ...],
    pixel_size_um: float,
    *,
    itemsize: int = 8,
    segment_options: dict | None = None,
    profile_method: str = "shells",
    profile_options: dict | None = None,
    backend: str = "offline",
    describe_options: dict | None = None,
    n_clusters: int | None = None,
    cluster_method: str = "kmeans",
    diffusion_options: dict | None = None,
    date_border_crystals: bool = False,
    out_of_core: bool = False,
) -> float:
    """Check everything a :func:`run_pipeline` run needs, before anything is computed.

    Parameters
    ----------
    shape : tuple of int
        The image's shape, ``(y, x)``, ``(channels, y, x)`` or ``(y, x, 3|4)`` (RGB).
    pixel_size_um : float
        Micrometres per pixel.
    itemsize : int
        Bytes per value of the image as read (for the memory estimate).
    segment_options, profile_method, profile_options, backend, describe_options, n_clusters,
    cluster_method, diffusion_options, date_border_crystals
        As for :func:`run_pipeline`.
    out_of_core : bool
        The image is a mosaic read window by window (:func:`run_mosaic_pipeline`): no check
        of the memory against the whole image, and only the offline description.

    Returns
    -------
    float
        The checked pixel size.

    Raises
    ------
    ZonationInputError
        For a pixel size outside the range of SEM images (0.005-50 µm/px), an image the
        memory cannot hold, an image smaller than the smallest crystal kept, an unknown
        profile method or backend, a cluster count below 1, diffusion conditions that
        :func:`fit_diffusion` would refuse (olivine from grey profiles needs ``xfe``), or an
        LLM server without key or that does not answer.
    """
    shape = tuple(int(n) for n in shape)
    yx = shape[:2] if (len(shape) == 3 and shape[-1] in (3, 4) and shape[0] > 4) else shape[-2:]
    px = check_sem_pixel_size(pixel_size_um, yx)
    if not out_of_core:
        check_memory(yx if len(shape) == 2 else shape, px, itemsize=itemsize)
    elif backend != "offline":
        raise ZonationInputError(
            "a whole-section mosaic is described offline only; leave out --backend openai "
            "(run the LLM description on a crop of the crystals of interest)."
        )
    min_area = _min_area_um2(segment_options)
    area = yx[0] * yx[1] * px * px
    if area < min_area:
        raise ZonationInputError(
            f"at {px:g} µm/px the {yx[0]} x {yx[1]} px image covers {area:.3g} µm², less than "
            f"the smallest crystal kept (min_area_um2 = {min_area:g} µm²): no crystal can be "
            "found. Check the pixel size (micrometres per pixel), or lower min_area_um2."
        )
    if profile_method not in ("shells", "traverse"):
        raise ZonationInputError(
            f"profile_method={profile_method!r} is unknown; use 'shells' or 'traverse'."
        )
    if backend not in ("offline", "openai"):
        raise ZonationInputError(
            f"backend={backend!r} is unknown; use 'offline' or 'openai'."
        )
    if backend == "openai":
        opts = describe_options or {}
        check_llm_access(opts.get("base_url"), opts.get("api_key"))
    if n_clusters is not None and not (
        isinstance(n_clusters, (int, np.integer)) and not isinstance(n_clusters, bool)
        and n_clusters >= 1
    ):
        raise ZonationInputError(f"n_clusters={n_clusters!r} must be an integer >= 1, or None.")
    if not isinstance(cluster_method, str):
        raise ZonationInputError(f"cluster_method={cluster_method!r} must be a method name.")
    if not isinstance(date_border_crystals, (bool, np.bool_)):
        raise ZonationInputError("date_border_crystals must be True or False.")
    if diffusion_options:
        check_diffusion_options(**diffusion_options)
        if _olivine_needs_xfe(diffusion_options):
            raise ZonationInputError(
                "olivine Fe-Mg dating of an image's rim profiles needs xfe, the fayalite "
                "fraction of the crystals (e.g. xfe=0.15 for Fo85): the profiles are grey "
                "levels, not Fo, so it cannot be read from them."
            )
    return px


def run_pipeline(
    image,
    pixel_size_um: float,
    *,
    segment_options: dict | None = None,
    profile_method: str = "shells",
    profile_options: dict | None = None,
    backend: str = "offline",
    describe_options: dict | None = None,
    n_clusters: int | None = None,
    cluster_method: str = "kmeans",
    diffusion_options: dict | None = None,
    date_border_crystals: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> PipelineResult:
    """Segment, profile, describe, cluster and (optionally) date every crystal of an image.

    Parameters
    ----------
    image : array-like
        2D BSE image or ``(channels, y, x)`` element maps.
    pixel_size_um : float
        Micrometres per pixel, within the range of SEM images (0.005-50).
    segment_options : dict, optional
        Keyword arguments of :func:`segment_crystals`.
    profile_method : {"shells", "traverse"}
        See :func:`rim_profiles`.
    profile_options : dict, optional
        Further keyword arguments of :func:`rim_profiles` (e.g. ``contacts="rim"``).
    backend : {"offline", "openai"}
        Description backend; ``"openai"`` is the caller's opt-in to send crystal crops,
        profile plots and numbers to the configured server (checked for a key and an answer
        before the first stage).
    describe_options : dict, optional
        Keyword arguments of :func:`describe_zoning` (for ``openai``: model, criteria, ...).
    n_clusters : int, optional
        Number of clusters (default: chosen automatically).
    cluster_method : str
        See :func:`cluster_crystals`.
    diffusion_options : dict, optional
        Keyword arguments of :func:`fit_diffusion` (e.g. ``diffusivity_um2_s`` or
        ``mineral``, ``temperature_c``, ``pressure_mpa``, ``delta_qfm``, ``xfe``). Without
        them the diffusion stage is skipped and a note says so.
    date_border_crystals : bool
        Date the crystals cut by the image edge too. By default they are left out of the
        diffusion fits (their profile there runs to the image edge, not to a crystal face):
        their ``fit_status`` says so.
    progress : callable, optional
        Called as ``progress(stage, i, n_stages)`` before each stage; a stage that does not
        run is reported as ``"<stage> skipped"`` in its turn.

    Returns
    -------
    PipelineResult
        With ``empty_reason`` set (and only the segmentation run) when no crystal is found.

    Raises
    ------
    ZonationInputError
        For what :func:`check_pipeline` refuses, and a constant or all-NaN image; all before
        the first stage.
    """
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or arr.size == 0 or not (
        np.issubdtype(arr.dtype, np.number) or arr.dtype == bool
    ):
        as_image(arr)  # raises the message naming what is wrong with the array
    px = check_pipeline(
        arr.shape,
        pixel_size_um,
        itemsize=arr.dtype.itemsize,
        segment_options=segment_options,
        profile_method=profile_method,
        profile_options=profile_options,
        backend=backend,
        describe_options=describe_options,
        n_clusters=n_clusters,
        cluster_method=cluster_method,
        diffusion_options=diffusion_options,
        date_border_crystals=date_border_crystals,
    )
    img = as_image(arr)
    check_image_content(img)
    timings, notes = {}, []

    def stage(name: str, skipped: bool = False):
        if progress is not None:
            label = f"{name} skipped" if skipped else name
            progress(label, STAGES.index(name), len(STAGES))
        return time.perf_counter()

    t = stage("segment")
    # a grey image is segmented as given (its dtype decides how windows are normalised), so
    # the pipeline gives the labels of segment_crystals(image) and of a mosaic read lazily
    grey = arr if arr.ndim == 2 and arr.dtype != bool else img
    labels = segment_crystals(grey, px, **(segment_options or {}))
    crystals = crystal_table(grey, labels, px)  # element maps combined as the segmentation does
    timings["segment"] = time.perf_counter() - t
    if crystals.empty:
        min_area = _min_area_um2(segment_options)
        reason = (
            f"no region of the image stands out from the groundmass over the smallest crystal "
            f"area kept ({min_area:g} µm², {min_area / px**2:,.0f} px at {px:g} µm/px); check "
            "the pixel size, lower min_area_um2, or lower segment_crystals' contrast"
        )
        notes.append(f"no crystal found: {reason}")
        return PipelineResult(
            labels,
            pd.DataFrame(columns=["label", "distance_um", "value"]),
            crystals,
            px,
            timings,
            notes,
            empty_reason=reason,
        )

    t = stage("profiles")
    prof = rim_profiles(img, labels, px, method=profile_method, **(profile_options or {}))
    failures = prof.attrs.get("failures", ())
    if len(failures):
        notes.append(f"{len(failures)} crystal(s) without a profile (too small or thin)")
    timings["profiles"] = time.perf_counter() - t

    t = stage("describe")
    opts = dict(describe_options or {})
    if backend == "openai":  # the crops show the channel the numbers describe
        opts.setdefault("image", img)
        opts.setdefault("labels", labels)
    table = describe_zoning(prof, backend=backend, crystals=crystals, **opts)
    timings["describe"] = time.perf_counter() - t

    t = stage("cluster")
    table = cluster_crystals(table, n_clusters=n_clusters, method=cluster_method, profiles=prof)
    timings["cluster"] = time.perf_counter() - t

    if diffusion_options:
        t = stage("diffusion")
        table = _date(table, prof, diffusion_options, date_border_crystals, notes)
        timings["diffusion"] = time.perf_counter() - t
    else:
        stage("diffusion", skipped=True)
        notes.append(
            "diffusion skipped: give a diffusivity (diffusivity_um2_s) or the conditions "
            "(mineral, temperature_c, pressure_mpa, delta_qfm) to date the crystals"
        )
    return PipelineResult(labels, prof, table, px, timings, notes)


def _border_labels(table: pd.DataFrame, date_border_crystals: bool) -> set:
    """Labels of the crystals cut by the image edge, unless they are to be dated."""
    if date_border_crystals or "touches_border" not in table:
        return set()
    cut = table["touches_border"].fillna(False).astype(bool)
    return set(table.loc[cut, "label"])


def _date(
    table: pd.DataFrame,
    prof: pd.DataFrame,
    diffusion_options: dict,
    date_border_crystals: bool,
    notes: list,
) -> pd.DataFrame:
    """Fit the profiles and merge the timescales into the crystal table."""
    border = _border_labels(table, date_border_crystals)
    fits = fit_diffusion(prof[~prof["label"].isin(border)], **diffusion_options)
    return merge_fits(table, fits, diffusion_options, date_border_crystals, notes)


def merge_fits(
    table: pd.DataFrame,
    fits: pd.DataFrame | None,
    diffusion_options: dict,
    date_border_crystals: bool,
    notes: list,
) -> pd.DataFrame:
    """Merge diffusion fits into the crystal table; the crystals cut by the image edge that
    were not dated get ``fit_status`` saying so (``fits`` None: nothing was fitted)."""
    border = _border_labels(table, date_border_crystals)
    if fits is None:
        empty = pd.DataFrame({"label": pd.Series(dtype=np.int32),
                              "distance_um": pd.Series(dtype=float),
                              "value": pd.Series(dtype=float)})
        fits = fit_diffusion(empty, **diffusion_options)
    new = [c for c in fits.columns if c == "label" or c not in table.columns]
    table = table.merge(fits[new], on="label", how="left")
    if border:
        if "fit_status" not in table:
            table["fit_status"] = pd.Series(pd.NA, index=table.index, dtype=object)
        table.loc[table["label"].isin(border), "fit_status"] = BORDER_STATUS
        notes.append(
            f"{len(border)} crystal(s) cut by the image edge not dated (their profile runs to "
            "the image edge, not to a crystal face); date_border_crystals=True dates them"
        )
    return table


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
    cluster_method, diffusion_options, date_border_crystals
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
            date_border_crystals=date_border_crystals, runner=runner, progress=progress,
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
