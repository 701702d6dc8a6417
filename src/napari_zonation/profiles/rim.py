"""Automatic core-to-rim profiles of every crystal (:func:`rim_profiles`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from .._threads import resolve_threads
from .._validation import (
    ZonationInputError,
    check_labels,
    check_pixel_size,
)
from ._rim_distance import (
    _band_neighbours,
    _gather_shells,
    _narrow,
    _nearer_a_contact,
    _rim_edt_sq,
    _Shells,
)
from ._shell_stats import _as_integers, _clipped_shell_stats, _shell_stats, _sorted_shell_stats
from ._table import _channels, _finish
from .halo import HALO_CONTRAST, _halo_band, _outside_grey, _range_of, skip_edge_band
from .traverses import place_traverses, traverse_profiles


def rim_profiles(
    image,
    labels,
    pixel_size_um: float = 1.0,
    *,
    method: str = "shells",
    shell_um: float | None = None,
    skip_rim_um: float | None = None,
    min_pixels: int = 5,
    width_um: float = 3.0,
    channel_names: list[str] | None = None,
    return_traverses: bool = False,
    clip_sigmas: float | None = 3.0,
    statistic: str = "mean",
    contacts: str = "exclude",
    halo_um: float | None = None,
    halo_contrast: float = HALO_CONTRAST,
    grey_ranges: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
    threads: int | None = None,
):
    """Core-to-rim profiles of every crystal.

    Parameters
    ----------
    image : array-like
        2D BSE image or ``(channels, y, x)`` element maps.
    labels : array-like of int
        Crystal labels of the image's (y, x) shape; 0 = not a crystal.
    pixel_size_um : float
        Micrometres per pixel.
    method : {"shells", "traverse"}
        ``"shells"``: the clipped mean (see ``statistic``) of the values in shells of equal
        distance to the crystal's boundary (robust to cracks and inclusions, which cover a
        minority of each shell and are clipped), one shell per ``shell_um``.
        ``"traverse"``: a straight traverse per crystal, placed as an analyst places an EPMA
        traverse: from the innermost point of the crystal, perpendicular to its longest
        well-developed face, avoiding faces shared with other crystals or the image edge,
        and avoiding cracks (see :func:`place_traverses`).
    shell_um : float, optional
        Shell thickness (default: one pixel).
    skip_rim_um : float, optional
        Ignore this outer band, blurred by the probe (default: one pixel).
    min_pixels : int
        Shells with fewer pixels are dropped.
    width_um : float
        Width of the band averaged across a traverse (traverse method).
    channel_names : list of str, optional
        Names of the channels of an element-map stack (default ``ch0, ch1, ...``; ``bse`` for
        a 2D image).
    return_traverses : bool
        With ``method="traverse"``, also return the traverse table (see
        :func:`place_traverses`).
    clip_sigmas : float or None, default 3.0
        Shells method: after a first median, pixels farther than ``clip_sigmas`` times the
        crystal's pixel noise from their shell's median are dropped and the shell's value
        (see ``statistic``) and its ``sigma`` are taken from the kept pixels; the shell's
        distance is unchanged.
        The pixel noise is the median over the crystal's shells of their spread
        (interquartile range / 1.349, a robust sigma). This
        removes what a segmentation leaves at the outline (groundmass, microlites, the
        blurred rim) and what the shells cross inside (cracks, seams, inclusions): with
        noise, a fraction ``f`` of such pixels moves a plain median by about ``1.25 f`` pixel
        sigmas (1-2 DN for ``f = 0.2-0.4`` at 2 % noise), which reads as a step at the rim.
        ``None`` (or 0) keeps every pixel.
    statistic : {"mean", "median"}, default "mean"
        Shells method: the value of a shell, from the pixels the clip kept. The clipped mean
        (a sigma-clipped mean) is the more precise: the median of integer grey levels
        scatters about 1.25 times as much for Gaussian noise (``sqrt(pi / 2)``), which
        shows as noise on every profile and in every fitted timescale
        (``benchmarks/diffusion.py --estimator`` compares the two on the same shells), and
        its ``sigma`` understates that scatter on whole numbers. The clip keeps it
        robust to what lies far from the shell's level, and a crystal without pixel noise
        to clip by (a noise-free image) keeps its shell medians, exact there; ``"median"``
        is the more robust to a large share of foreign pixels within a few sigmas.
    contacts : {"exclude", "rim"}, default "exclude"
        Shells method: how a crystal's faces against other crystals count. ``"exclude"``:
        only free faces (against groundmass, glass, vesicles) are rims, and the pixels nearer
        a face shared with another crystal than a free face are left out; the others keep
        their distance to the nearest free face, which is then their distance to any other
        label. In a glomerocryst a contact often truncates a crystal's zoning (a neighbour
        grew over, or was cut across, part of it): those pixels are nearer the contact than
        their zone is to the crystal's own outline and, with noise, they pull the shell
        medians toward the core's values, so a step reads one or two pixels nearer the rim
        (tested). A crystal with no free face keeps its contacts as rims. This costs a
        second distance transform (to the background, in windows around the clusters of
        touching crystals) when crystals touch. ``"rim"``: every face is a rim,
        distances run to the nearest pixel of any other label.
    halo_um : float, optional
        Widest outer band examined for an edge halo or another imaging artefact (default
        three pixels; 0 turns the check off). BSE images show a bright line one to three
        pixels wide at a polished grain's edge (on the shipped real plagioclase, ~164 grey
        against a rim band of ~100-140), and a label that reaches past the crystal's edge
        blurs the outside into its first shells: a first point there reads as a false
        "reverse rim". When one of the profile's points less than ``halo_um`` from its first
        point departs from the trend of the next eight points (their median, or their line
        where it slopes significantly) by more than
        ``halo_contrast`` of the image's grey range, the band is dropped up to its last point
        that still departs on that side by more than three times the trend's scatter.
        Compositional zoning within one crystal rarely changes the grey that much within
        three pixels; a real rim zone of such contrast only one to three pixels wide would
        be dropped too, and ``rim_skipped_um`` shows it (set ``halo_um=0`` to keep it).
    halo_contrast : float, default 0.1
        The least departure that makes the outer band an artefact, as a fraction of the
        image's grey range (its 99.9th minus its 0.1th percentile, per channel).
    grey_ranges : dict, optional
        That grey range per channel name, when ``image`` is a window of a larger image (a
        whole-section mosaic profiled window by window gives the same profiles as the whole
        image; see :func:`grey_range`). By default it is measured on ``image``.
    progress : callable, optional
        ``progress(done, total)`` as the crystals are profiled, ``total`` the number of
        crystals (traverses with ``method="traverse"``): ``progress(0, total)`` first,
        ``progress(total, total)`` last, ``done`` never decreasing. The shells method
        measures every crystal at once, channel by channel: ``done`` grows after each
        channel's statistics. An exception it raises (a Cancel button's) stops the call and
        propagates.
    threads : int or None
        Worker threads reading the shells (``None``, default: ``min(4, CPUs available)``;
        1: serial), as in :func:`~napari_zonation.segment_crystals`. The profiles are the
        same for every thread count. The traverse method runs in the calling thread.

    Returns
    -------
    pandas.DataFrame
        Long table: ``label, channel, distance_um`` (0 at the rim, growing toward the core),
        ``value``, ``sigma`` (1-sigma uncertainty of the value: the standard error of the
        shell mean, ``(IQR / 1.349) / sqrt(n)``, or of the shell median,
        ``sqrt(pi / 2) * (IQR / 1.349) / sqrt(n)``, or the standard error across a
        traverse's width), ``n_pixels``, ``rim_skipped_um`` (the outer band the
        profile leaves out, from the rim to its first point: ``skip_rim_um`` plus the edge
        band found as an artefact, if any), ``source`` (``"rim"`` or ``"traverse"``).

    Examples
    --------
    >>> import napari_zonation as nz
    >>> s = nz.make_thin_section((192, 192), n_crystals=3, seed=1)
    >>> seen = []
    >>> prof = nz.rim_profiles(s.image, s.labels, s.pixel_size_um, threads=1,
    ...                        progress=lambda done, total: seen.append((done, total)))
    >>> seen[0][0], seen[-1][0] == seen[-1][1] == prof["label"].nunique()
    (0, True)
    >>> list(prof.columns[:4])
    ['label', 'channel', 'distance_um', 'value']
    """
    px = check_pixel_size(pixel_size_um)
    n_threads = resolve_threads(threads)
    raw = np.asarray(image)
    native = (
        method == "shells"
        and raw.dtype.kind in "uif"
        and (raw.ndim == 2 or (raw.ndim == 3 and raw.shape[0] <= 32))
    )
    if native:
        # integer and float images are read as they are (no float64 copy of the whole
        # image): only the crystal pixels are gathered, channel by channel
        stack = raw[None] if raw.ndim == 2 else raw
        _, names = _channels(raw[..., :1, :1], channel_names)
    else:
        stack, names = _channels(image, channel_names)
    integer = native and raw.dtype.kind in "ui"
    lab = check_labels(labels, stack.shape[1:])
    if method == "traverse":
        trav = place_traverses(lab, px, image=stack[0], width_um=width_um)
        prof = traverse_profiles(
            stack,
            trav,
            px,
            width_um=width_um,
            channel_names=names,
            skip_rim_um=skip_rim_um,
            halo_um=halo_um,
            halo_contrast=halo_contrast,
            labels=lab,
            grey_ranges=grey_ranges,
            progress=progress,
        )
        return (prof, trav) if return_traverses else prof
    if method != "shells":
        raise ZonationInputError(f"method={method!r}; choose 'shells' or 'traverse'.")
    shell = px if shell_um is None else float(shell_um)
    skip = px if skip_rim_um is None else float(skip_rim_um)
    halo_band = _halo_band(px, halo_um)
    if shell <= 0:
        raise ZonationInputError("shell_um must be positive (micrometres).")
    if contacts not in ("exclude", "rim"):
        raise ZonationInputError(f"contacts={contacts!r}; choose 'exclude' or 'rim'.")
    if statistic not in ("mean", "median"):
        raise ZonationInputError(f"statistic={statistic!r}; choose 'mean' or 'median'.")
    # standard error of a shell's value per pixel sigma: of a mean 1, of a median sqrt(pi/2)
    se_factor = 1.0 if statistic == "mean" else float(np.sqrt(np.pi / 2))

    lab_n = _narrow(lab)
    flat = _rim_edt_sq(lab_n).ravel()  # 0 outside crystals
    lab_flat = lab_n.ravel()
    # crystal pixels beyond the skipped rim band (squared distances are exact integers)
    # with the edge check, the shells inside the skipped band are gathered too (the halo
    # peaks there; the same shell boundaries beyond it), and dropped after the check
    skip_at = skip - shell * np.floor(skip / shell + 1e-9) if halo_band > 0 else skip
    inner = max(skip_at / px + 0.5, 0.5)
    least = np.float32(inner * inner * (1 - 1e-6))
    # every crystal with a boundary has a pixel next to it (squared distance 1); one without
    # a boundary fills the image and is counted from its pixels below
    band = np.flatnonzero(flat == 1)
    lab_band = lab_flat[band]
    in_band = np.bincount(lab_band)
    if contacts == "exclude":
        free_side, pa, pb = _band_neighbours(lab_flat, band, lab_band, lab_n.shape)
        if pa.size:
            # pixels nearer another crystal than a free face: their distance to the grain
            # boundary is not their distance to the crystal's growth faces
            near = _nearer_a_contact(lab_n, flat, band, lab_band, pa, pb)
            # a crystal with no free face at all keeps its contacts as rims
            has_free = np.bincount(lab_band[free_side], minlength=in_band.size)
            enclosed = (in_band > 0) & (has_free == 0)
            if enclosed.any():
                near = near[~enclosed[lab_flat[near]]]
            flat[near] = 0  # (the transform is this call's own array) not gathered below
            del near
    present = np.flatnonzero(in_band)
    if progress is not None:
        total = int(present.size) if present.size else int(lab_n.max(initial=0) > 0)
        progress(0, total)
    top_label = int(present[-1]) if present.size else int(lab_flat.max(initial=0))
    shells = _Shells(float(flat.max(initial=0)), px, skip_at, shell, lab.shape)
    n_bins = shells.n_bins
    n_keys = (top_label + 1) * n_bins
    planes = [stack[ci].ravel() for ci in range(len(names))]
    # (label, shell) keys, sorted like (label, shell), and the values of each channel
    key, dsum, d_px, values = _gather_shells(
        flat, least, lab_flat, planes, shells, n_keys, n_threads
    )
    del flat
    if not present.size and key.size:  # one crystal fills the image: no boundary anywhere
        present = np.unique(key // n_bins)
    if not present.size:
        if progress is not None:
            progress(total, total)
        return _finish([], [], "rim")
    total = int(present.size)
    key_ids = None
    if d_px is not None:  # many keys for the pixels: number them densely
        key_ids, key = np.unique(key, return_inverse=True)
        n_keys = key_ids.size
        dsum = np.bincount(key, weights=d_px, minlength=n_keys)
        del d_px

    def crystal_of_key(k):
        return (k if key_ids is None else key_ids[k]) // n_bins

    frames, failures = [], []
    for ci, (name, vals) in enumerate(zip(names, values, strict=True)):
        if ci and progress is not None:
            progress(total * ci // len(names), total)
        if integer:
            st = _sorted_shell_stats(
                key, dsum, vals, n_keys, crystal_of_key, clip_sigmas, statistic=statistic
            )
        else:
            if vals.dtype not in (np.float32, np.float64):  # float32 stays (a faster sort)
                vals = vals.astype(np.float32 if vals.dtype == np.float16 else np.float64)
            ok = np.isfinite(vals)
            # a shell's distance is that of all its pixels, NaN or not
            counts = None if ok.all() else np.bincount(key, minlength=n_keys)
            k, v = (key, vals) if counts is None else (key[ok], vals[ok])
            iv = _as_integers(v)
            if iv is None and v.dtype == np.float64:
                with np.errstate(over="ignore"):  # beyond float32: inf, not equal
                    v32 = v.astype(np.float32)
                v = v32 if np.array_equal(v32, v) else v  # float32 codes when exact
            # whole numbers (counts, an integer image stored as float): integer codes
            v = v if iv is None else iv
            st = _sorted_shell_stats(
                k, dsum, v, n_keys, crystal_of_key, clip_sigmas, counts=counts,
                statistic=statistic,
            )
            if st is None:  # float64 values that float32 does not hold
                st = _shell_stats(k, dsum, v, n_keys, counts, statistic=statistic)
                if clip_sigmas:
                    st = _clipped_shell_stats(
                        st, k, v, n_keys, n_bins, key_ids, clip_sigmas, statistic=statistic
                    )
        full_key = st["key"].to_numpy() if key_ids is None else key_ids[st["key"].to_numpy()]
        n = st["n_pixels"].to_numpy()
        out = pd.DataFrame(
            {
                "label": (full_key // n_bins).astype(lab.dtype),
                "distance_um": st["distance_um"].to_numpy(),
                "value": st["value"].to_numpy(),
                "sigma": st["spread"].to_numpy() * se_factor / np.sqrt(n),
                "n_pixels": n,
            }
        )
        out = out[out["n_pixels"] >= min_pixels]
        out["channel"] = name
        frames.append(out)
    prof = pd.concat(frames, ignore_index=True)
    counts = np.bincount(prof["label"].to_numpy(), minlength=int(present.max()) + 1) / len(names)
    for lab_id in present[counts[present] < 3]:
        n_pts = int(counts[lab_id])
        failures.append(
            (int(lab_id), f"only {n_pts} shell(s) of >= {min_pixels} px: too small or thin")
        )
    bad = {f[0] for f in failures}
    if bad:
        prof = prof[~prof["label"].isin(bad)]
    floors = (
        {
            name: halo_contrast * _range_of(name, p, grey_ranges)
            for name, p in zip(names, planes, strict=True)
        }
        if halo_band > 0
        else {}
    )
    outside = _outside_grey(lab, {name: stack[ci] for ci, name in enumerate(names)}, band)
    prof = skip_edge_band(
        prof, halo_band, floors, always_um=skip, lead_um=skip_at, outside=outside
    )
    if halo_band > 0 and len(prof):  # the band left out: whole shells from the rim
        first = prof.groupby(["label", "channel"], sort=False)["distance_um"].transform("first")
        prof["rim_skipped_um"] = skip_at + shell * np.floor((first - skip_at) / shell + 1e-9)
    if progress is not None:
        progress(total, total)
    return _finish([prof], failures, "rim")


