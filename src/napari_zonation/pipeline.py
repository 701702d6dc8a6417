"""The stages in order, for the command line, notebooks and batches."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._validation import as_image, check_pixel_size
from .cluster import cluster_crystals
from .descriptors import describe_zoning
from .diffusion import check_diffusion_options, fit_diffusion
from .profiles import rim_profiles
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
    """

    labels: np.ndarray
    profiles: pd.DataFrame
    crystals: pd.DataFrame
    pixel_size_um: float
    timings: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


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
    progress: Callable[[str, int, int], None] | None = None,
) -> PipelineResult:
    """Segment, profile, describe, cluster and (optionally) date every crystal of an image.

    Parameters
    ----------
    image : array-like
        2D BSE image or ``(channels, y, x)`` element maps.
    pixel_size_um : float
        Micrometres per pixel.
    segment_options : dict, optional
        Keyword arguments of :func:`segment_crystals`.
    profile_method : {"shells", "traverse"}
        See :func:`rim_profiles`.
    profile_options : dict, optional
        Further keyword arguments of :func:`rim_profiles` (e.g. ``contacts="rim"``).
    backend : {"offline", "openai"}
        Description backend; ``"openai"`` is the caller's opt-in to send crystal crops,
        profile plots and numbers to the configured server.
    describe_options : dict, optional
        Keyword arguments of :func:`describe_zoning` (for ``openai``: model, criteria, ...).
    n_clusters : int, optional
        Number of clusters (default: chosen automatically).
    cluster_method : str
        See :func:`cluster_crystals`.
    diffusion_options : dict, optional
        Keyword arguments of :func:`fit_diffusion` (e.g. ``diffusivity_um2_s`` or
        ``mineral``, ``temperature_c``, ``pressure_mpa``, ``delta_qfm``). Without them the
        diffusion stage is skipped and a note says so.
    progress : callable, optional
        Called as ``progress(stage, i, n_stages)`` before each stage.

    Returns
    -------
    PipelineResult
    """
    px = check_pixel_size(pixel_size_um)
    img = as_image(image)
    if diffusion_options:  # refuse bad conditions before the slow stages, not after them
        check_diffusion_options(**diffusion_options)
    timings, notes = {}, []

    def stage(name: str):
        if progress is not None:
            progress(name, STAGES.index(name), len(STAGES))
        return time.perf_counter()

    t = stage("segment")
    labels = segment_crystals(img, px, **(segment_options or {}))
    grey = img if img.ndim == 2 else img.mean(axis=0)
    crystals = crystal_table(grey, labels, px)
    timings["segment"] = time.perf_counter() - t
    if crystals.empty:
        notes.append("no crystal found: check the pixel size and min_area_um2")
        return PipelineResult(
            labels,
            pd.DataFrame(columns=["label", "distance_um", "value"]),
            crystals,
            px,
            timings,
            notes,
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
        fits = fit_diffusion(prof, **diffusion_options)
        new = [c for c in fits.columns if c == "label" or c not in table.columns]
        table = table.merge(fits[new], on="label", how="left")
        timings["diffusion"] = time.perf_counter() - t
    else:
        notes.append(
            "diffusion skipped: give a diffusivity (diffusivity_um2_s) or the conditions "
            "(mineral, temperature_c, pressure_mpa, delta_qfm) to date the crystals"
        )
    return PipelineResult(labels, prof, table, px, timings, notes)
