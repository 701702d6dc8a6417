"""The geometry of a crystal's zoning, read from the image: distance from the rim or scaled.

A zone boundary lies at one depth all around a crystal **in the crystal's own geometry**:

- ``distance``: at one distance from the outline, as diffusion from the rim and zones grown
  parallel to the faces at equal rates make it (the shells of :func:`rim_profiles`);
- ``scaled``: at one fraction of the centre-to-rim distance, as zones grown at rates
  proportional to the face's distance from the centre make it (concentric copies of the
  outline scaled about its centroid: along the long axis of a lath the zones are wider than
  along its short axis).

A shell of one geometry crossing a crystal zoned in the other mixes the values of several
zones, so the pixels of its shells spread more than the noise. :func:`zoning_geometry` bins
every crystal's pixels by depth in both geometries and compares the pooled within-bin
variance; the scaled geometry is kept only when it explains the image clearly better.
:func:`profiles_in_own_geometry` then gives, for description, each crystal's profile in the
geometry its image shows. The rim-distance profiles of :func:`rim_profiles` stay the
profiles of record (diffusion models are fitted on them).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from .._validation import ZonationInputError, check_labels, check_pixel_size
from ..vocabulary import parse_quantity
from ._shell_stats import IQR_SIGMA

#: ``geometry_note`` of the crystals described on their rim-distance shells without a test
#: (``run_pipeline(depth_geometry="distance")``, the streamed whole-section stages).
NOT_TESTED = "not tested: described on the rim-distance shells"
#: ``depth_geometry`` choices of the pipelines: read from the image, or the distance alone.
DEPTH_GEOMETRIES = ("auto", "distance")
#: Least depth (deepest distance to the outline, in pixels) for a geometry test.
MIN_DEPTH_PX = 8.0
#: The scaled geometry is kept when the variance it explains beyond the distance geometry
#: exceeds this many times its scatter for noise alone.
MIN_EVIDENCE = 8.0


def _angles_rmax(er, ec, r0, c0, n_bins):
    ang_e = np.arctan2(er - r0, ec - c0)
    rad_e = np.hypot(er - r0, ec - c0) + 0.5
    bins = ((ang_e + np.pi) / (2 * np.pi) * n_bins).astype(int) % n_bins
    rmax = np.zeros(n_bins)
    np.maximum.at(rmax, bins, rad_e)
    have = rmax > 0
    idx = np.arange(n_bins)
    return np.interp(idx, idx[have], rmax[have], period=n_bins)


def _relative_radius(mask: np.ndarray) -> np.ndarray:
    """Relative radius (0 at the centroid, 1 at the outline) of the mask's pixels, along
    rays from the centroid: the outline scaled about its centroid."""
    rr, cc = np.nonzero(mask)
    r0, c0 = rr.mean(), cc.mean()
    edge = mask & ~ndi.binary_erosion(mask)
    er, ec = np.nonzero(edge)
    n_bins = int(np.clip(er.size // 2, 16, 720))
    rmax = _angles_rmax(er, ec, r0, c0, n_bins)
    ang = np.arctan2(rr - r0, cc - c0)
    b = ((ang + np.pi) / (2 * np.pi) * n_bins).astype(int) % n_bins
    return np.clip(np.hypot(rr - r0, cc - c0) / rmax[b], 0.0, 1.0)


def _bin_stats(coord_px: np.ndarray, vals: np.ndarray, clip: float, min_pixels: int):
    """Per 1-px bin of ``coord_px``: clipped mean, robust sigma, count, mean coordinate; and
    the pooled within-bin variance of the kept pixels with its degrees of freedom."""
    k = np.floor(coord_px).astype(int)
    order = np.argsort(k, kind="stable")
    k, v, c = k[order], vals[order], coord_px[order]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    ends = np.r_[starts[1:], k.size]
    rows, ss, dof = [], 0.0, 0
    for s, e in zip(starts, ends, strict=True):
        seg = v[s:e]
        if seg.size < min_pixels:
            continue
        med = float(np.median(seg))
        keep = np.abs(seg - med) <= clip
        kept = seg[keep]
        if kept.size < min_pixels:
            continue
        q1, q3 = np.percentile(seg, [25, 75])
        mean = float(kept.mean())
        ss += float(((kept - mean) ** 2).sum())
        dof += kept.size - 1
        rows.append((float(c[s:e].mean()), mean, (q3 - q1) / IQR_SIGMA, int(seg.size)))
    return rows, ss, dof


def _crystal_geometry(box_img, mask, px, skip_px, min_pixels, min_evidence, min_depth_px):
    dist = ndi.distance_transform_edt(mask)
    depth = float(dist.max())
    if depth < min_depth_px:
        note = f"too small (depth {depth:.1f} px < {min_depth_px:g})"
        return "distance", note, (np.nan, np.nan), None
    inner = dist[mask] >= skip_px + 0.5
    vals = box_img[mask].astype(float)[inner]
    d_px = dist[mask][inner]
    t_px = (1.0 - _relative_radius(mask)[inner]) * depth
    # clip foreign pixels (cracks, inclusions) at 4 robust pixel sigmas of the neighbours'
    # differences (independent of either geometry); a noise-free image is not clipped
    dif = np.diff(box_img.astype(float), axis=1)[mask[:, 1:] & mask[:, :-1]]
    s0 = 1.4826 * float(np.median(np.abs(dif - np.median(dif)))) / np.sqrt(2) if dif.size else 0
    clip = 4.0 * s0 if s0 > 0 else np.inf
    _, ss_d, dof_d = _bin_stats(d_px, vals, clip, min_pixels)
    rows_t, ss_t, dof_t = _bin_stats(t_px, vals, clip, min_pixels)
    if dof_d < 1 or dof_t < 1 or len(rows_t) < 5:
        return "distance", "too few pixels", (np.nan, np.nan), None
    q = (ss_t / dof_t) / max(ss_d / dof_d, 1e-300)
    # the two partitions share the pixels: ss_d - ss_t is the between-bin sum of squares the
    # relative radius explains beyond the distance, and for noise alone it scatters by about
    # 2 sqrt(bins) noise variances
    var = min(ss_t / dof_t, ss_d / dof_d)
    z = (ss_d - ss_t) / max(var, 1e-300) / (2.0 * np.sqrt(len(rows_t)))
    if z > min_evidence:
        prof = pd.DataFrame(rows_t, columns=["depth_px", "value", "spread", "n_pixels"])
        prof["distance_um"] = prof["depth_px"] * px
        prof["sigma"] = prof["spread"] / np.sqrt(prof["n_pixels"])
        return "scaled", "", (q, z), prof
    return "distance", "", (q, z), None


def zoning_geometry(
    image,
    labels,
    pixel_size_um: float = 1.0,
    *,
    skip_rim_um: float | None = None,
    min_pixels: int = 5,
    min_evidence: float = MIN_EVIDENCE,
    min_depth_px: float = MIN_DEPTH_PX,
):
    """The geometry of every crystal's zoning, read from the image, and its scaled profile.

    Every crystal's pixels (beyond the skipped rim band) are binned in one-pixel bins of two
    depths: the distance to the outline, and ``(1 - rho) * depth`` where ``rho`` is the
    relative radius along rays from the centroid (0 there, 1 at the outline) and ``depth``
    the crystal's deepest distance to the outline. Both partitions hold the same pixels, so
    the sum of squares about the bins' clipped means that the relative-radius bins leave
    below the distance bins' is variance the scaled geometry explains and the distance does
    not. For noise alone it scatters by about ``2 sqrt(bins)`` noise variances: a crystal
    whose gain exceeds ``min_evidence`` times that is zoned in the ``scaled`` geometry (its
    zone boundaries lie at one relative radius, not at one distance from the rim). An
    unzoned crystal, or one whose two geometries nearly coincide (a round crystal), keeps
    the distance. Crystals cut by the frame (their outline along the image edge is not a rim),
    shallower than ``min_depth_px`` pixels, or with too few bins keep the ``distance``
    geometry and ``geometry_note`` says why.

    Parameters
    ----------
    image : array-like
        2D image (BSE grey).
    labels : array-like of int
        Crystal labels of the image's shape; 0 = not a crystal.
    pixel_size_um : float
        Micrometres per pixel.
    skip_rim_um : float, optional
        Outer band left out, as in :func:`rim_profiles` (default: one pixel).
    min_pixels : int
        Bins with fewer pixels are dropped.
    min_evidence : float
        Least gain of the scaled geometry, in units of its scatter for noise alone, that
        makes a crystal ``scaled``.
    min_depth_px : float
        Least depth (pixels) for the test.

    Returns
    -------
    geometry : pandas.DataFrame
        ``label``, ``depth_geometry`` (``"distance"`` or ``"scaled"``), ``variance_ratio``
        (the within-bin variance of the scaled bins over the distance bins'),
        ``scaled_evidence`` (the gain over its noise scatter; both NaN when not measured),
        ``geometry_note`` (why a crystal was not tested).
    scaled : pandas.DataFrame
        Profiles table of the ``scaled`` crystals: ``label, channel, distance_um`` (the
        scaled depth ``(1 - rho) * depth`` in micrometres), ``value`` (clipped bin mean),
        ``sigma``, ``n_pixels``, ``rim_skipped_um``, ``source`` (``"scaled"``).
    """
    px = check_pixel_size(pixel_size_um)
    img = np.asarray(image)
    if img.ndim != 2:
        raise ZonationInputError(
            f"zoning_geometry reads a 2D image; got shape {img.shape}. Pass one channel."
        )
    lab = check_labels(labels, img.shape)
    skip_px = 1.0 if skip_rim_um is None else float(skip_rim_um) / px
    geo, frames = [], []
    for label, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        mask = lab[sl] == label
        cut = (
            sl[0].start == 0
            or sl[1].start == 0
            or sl[0].stop == lab.shape[0]
            or sl[1].stop == lab.shape[1]
        )
        if cut:
            geo.append((label, "distance", np.nan, np.nan, "cut by the image frame"))
            continue
        mask_p = np.pad(mask, 1)  # the outline's pixels at distance 1, as in rim_profiles
        box = np.pad(img[sl], 1, mode="edge")
        g, note, (q, z), prof = _crystal_geometry(
            box, mask_p, px, skip_px, min_pixels, min_evidence, min_depth_px
        )
        geo.append((label, g, q, z, note))
        if prof is not None:
            prof["label"] = label
            frames.append(prof)
    geometry = pd.DataFrame(
        geo,
        columns=["label", "depth_geometry", "variance_ratio", "scaled_evidence", "geometry_note"],
    )
    cols = ["label", "channel", "distance_um", "value", "sigma", "n_pixels"]
    if frames:
        scaled = pd.concat(frames, ignore_index=True)
        scaled["channel"] = "bse"
        scaled = scaled[cols].assign(rim_skipped_um=skip_px * px, source="scaled")
    else:
        scaled = pd.DataFrame(columns=[*cols, "rim_skipped_um", "source"])
    return geometry, scaled


def profiles_in_own_geometry(
    prof: pd.DataFrame,
    image,
    labels,
    pixel_size_um: float = 1.0,
    **options,
) -> pd.DataFrame:
    """The profiles to describe: each crystal's in the geometry its image shows.

    The rows of the crystals :func:`zoning_geometry` finds ``scaled`` are replaced by their
    relative-radius profile; the others are ``prof``'s rows unchanged. A ``depth_geometry``
    column says which (and ``geometry_note`` why a crystal kept the distance geometry
    without a test). Tables with several channels, not from :func:`rim_profiles`' shells, or
    calibrated to a composition (a ``quantity`` other than grey: the relative-radius profile
    is read from the image's grey) are returned with every crystal in the ``distance``
    geometry.

    Parameters
    ----------
    prof : pandas.DataFrame
        Shell profiles from :func:`rim_profiles` of ``image`` and ``labels``.
    image, labels, pixel_size_um
        As given to :func:`rim_profiles`.
    **options
        Keyword arguments of :func:`zoning_geometry`.

    Returns
    -------
    pandas.DataFrame
        A profiles table with ``depth_geometry`` and ``geometry_note`` columns.
    """
    out = prof.copy()
    out["depth_geometry"] = "distance"
    out["geometry_note"] = ""
    img = np.asarray(image)
    channels = set(prof["channel"]) if "channel" in prof else {"bse"}
    shells = "source" in prof and set(prof["source"]) <= {"rim"}
    if img.ndim != 2 or len(channels) != 1 or not shells or prof.empty:
        out["geometry_note"] = "not a single-channel shells table"
        return out
    if "quantity" in prof and any(
        parse_quantity(q).kind != "grey" for q in prof["quantity"].dropna().unique()
    ):  # the relative-radius profiles are read from the image: grey, not the calibration
        out["geometry_note"] = "not tested: calibrated profiles"
        return out
    geo, scaled = zoning_geometry(image, labels, pixel_size_um, **options)
    geo = geo[geo["label"].isin(prof["label"])]
    notes = geo.set_index("label")["geometry_note"]
    out["geometry_note"] = out["label"].map(notes).fillna("")
    use = geo.loc[geo["depth_geometry"] == "scaled", "label"]
    if use.empty:
        return out
    scaled = scaled[scaled["label"].isin(use)].copy()
    scaled["channel"] = next(iter(channels))
    scaled["depth_geometry"] = "scaled"
    scaled["geometry_note"] = ""
    keep = out[~out["label"].isin(use)]
    res = pd.concat([keep, scaled[[c for c in out.columns if c in scaled]]], ignore_index=True)
    res = res.sort_values(["label", "distance_um"], kind="stable").reset_index(drop=True)
    res.attrs = dict(prof.attrs)
    return res


def check_depth_geometry(depth_geometry: str) -> str:
    """``depth_geometry`` if it is one of :data:`DEPTH_GEOMETRIES`, else a clear error."""
    if depth_geometry not in DEPTH_GEOMETRIES:
        raise ZonationInputError(
            f"depth_geometry={depth_geometry!r}; choose 'auto' or 'distance'."
        )
    return depth_geometry


def profiles_to_describe(
    prof: pd.DataFrame,
    image,
    labels,
    pixel_size_um: float = 1.0,
    depth_geometry: str = "auto",
) -> pd.DataFrame:
    """The profiles a pipeline describes and clusters (``run_pipeline``, the streamed stages).

    With ``depth_geometry="auto"``, :func:`profiles_in_own_geometry` (each crystal in the
    geometry its image shows; tables that are not single-channel grey shells keep the
    distance, and say why); with ``"distance"``, ``prof`` on its rim-distance shells, every
    crystal's ``geometry_note`` :data:`NOT_TESTED`. Either way the table has the
    ``depth_geometry`` and ``geometry_note`` columns, so that tables of several runs
    concatenate.
    """
    if check_depth_geometry(depth_geometry) == "distance":
        return prof.assign(depth_geometry="distance", geometry_note=NOT_TESTED)
    return profiles_in_own_geometry(prof, image, labels, pixel_size_um)
