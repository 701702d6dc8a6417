"""What the in-memory and the mosaic pipelines share: the checks made before a run
(:func:`check_pipeline`, LLM access) and the diffusion fits merged into the crystal table."""

from __future__ import annotations

import inspect
import os
import socket
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from ._validation import (
    ZonationInputError,
    check_memory,
    check_sem_pixel_size,
)
from .diffusion import check_diffusion_options, fit_diffusion
from .segment import segment_crystals

#: ``fit_status`` of a crystal cut by the image edge that was not dated
BORDER_STATUS = "cut by the image edge"
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")
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


