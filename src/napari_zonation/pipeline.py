"""The stages in order, for the command line, notebooks and batches.

:func:`check_pipeline` refuses what a run would fail on (pixel size, memory, image size
against the smallest crystal, options, diffusion conditions, LLM access) before anything is
computed; :func:`run_pipeline` calls it, then segments, profiles, describes, clusters and,
with a diffusivity or conditions, dates every crystal.

:func:`run_mosaic_pipeline` (module ``mosaic_pipeline``) runs the stages on a whole-section
mosaic out of core; the checks and the merging of fits both share live in
``_pipeline_shared``. Every name is importable from here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._pipeline_shared import (  # noqa: F401 - importable from here
    BORDER_STATUS,
    _date,
    _min_area_um2,
    check_llm_access,
    check_pipeline,
    llm_server,
    merge_fits,
)
from ._validation import (
    as_image,
    check_image_content,
)
from .cluster import cluster_crystals
from .descriptors import describe_zoning
from .mosaic_pipeline import MOSAIC_STAGES, MosaicResult, run_mosaic_pipeline  # noqa: F401
from .profiles import rim_profiles
from .profiles.geometry import check_depth_geometry, profiles_to_describe
from .segment import crystal_table, segment_crystals

STAGES = ("segment", "profiles", "describe", "cluster", "diffusion")


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
    depth_geometry: str = "auto",
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
    depth_geometry : {"auto", "distance"}
        ``"auto"`` (default): each crystal is described (and clustered) on its profile in
        the geometry its image shows, distance from the rim or relative radius of the
        outline scaled about its centroid (:func:`~napari_zonation.profiles.
        profiles_in_own_geometry`; the table's ``depth_geometry`` says which).
        ``"distance"``: on the rim-distance shells alone. The profiles returned, and those
        the diffusion fits use, are the rim-distance profiles either way.
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
    check_depth_geometry(depth_geometry)  # before the long stages
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
    described = profiles_to_describe(prof, img, labels, px, depth_geometry)
    table = describe_zoning(described, backend=backend, crystals=crystals, **opts)
    timings["describe"] = time.perf_counter() - t

    t = stage("cluster")
    table = cluster_crystals(
        table, n_clusters=n_clusters, method=cluster_method, profiles=described
    )
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


