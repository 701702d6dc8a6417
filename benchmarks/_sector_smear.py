"""An experiment of issue #25 (not part of the method): the geometric blur of shell profiles
measured on the image from the scatter of a step's depth between angular sectors.

A shell profile averages the pixels at one distance from the crystal's outline. When the outline
is not exactly parallel to the zones (a segmented outline a little off the true one, a face
shifted or tilted by a pixel, zones that grew unequally on different faces), the pixels of one
shell sit at different true depths, so every step of the profile is smeared by the scatter of
the zone's depth along the outline: a blur the probe does not cause and the outline's own edge
does not show. :func:`geometric_blur` measures it from the image: each crystal is cut into
angular sectors about its centroid, the step's depth is found in each sector by shifting the
crystal's own mean profile onto the sector's pixels, and the scatter of those depths, less
their noise, is the blur (a Gaussian sigma, reported as FWHM).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

#: pixels of the band around the step per sector (the sectors' count follows from it)
_PIXELS_PER_SECTOR = 150
_MIN_SECTORS, _MAX_SECTORS = 4, 16
#: half-width of the band around the step that each sector's depth is measured on (pixels)
_BAND_PX = 5.0
#: the largest shift of a sector's step that is measured (pixels)
_MAX_SHIFT_PX = 3.0
_SHIFT_GRID = np.linspace(-_MAX_SHIFT_PX + 0.25, _MAX_SHIFT_PX - 0.25, 23)


def _shell_template(d: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The crystal's mean profile in one-pixel shells of ``d`` (pixels), lightly smoothed."""
    k = np.floor(d - 0.5).astype(int)
    ok = k >= 1  # the outermost pixel is mixed with the outside
    if ok.sum() < 20:
        return None
    k, dd, vv = k[ok], d[ok], v[ok]
    n = np.bincount(k)
    keep = n >= 5
    if keep.sum() < 6:
        return None
    dm = np.bincount(k, weights=dd)[keep] / n[keep]
    vm = np.bincount(k, weights=vv)[keep] / n[keep]
    vm = ndi.gaussian_filter1d(vm, 0.7, mode="nearest")
    return dm, vm


def _crystal_blur(d: np.ndarray, v: np.ndarray, rr: np.ndarray, cc: np.ndarray,
                  step_px: float | None) -> tuple[float, int]:
    """Geometric blur sigma (pixels) of one crystal and the number of sectors used."""
    tpl = _shell_template(d, v)
    if tpl is None:
        return math.nan, 0
    dm, vm = tpl
    grad = np.gradient(vm, dm)
    if step_px is None or not np.isfinite(step_px):
        # the largest jump: the difference of the mean shells either side, three shells
        # wide, beyond the first shells (they carry the rim's own edge)
        best = 0.0
        for i in range(3, vm.size - 2):
            if dm[i] < 2.5:
                continue
            jump = abs(float(np.mean(vm[i:i + 3]) - np.mean(vm[max(i - 3, 0):i])))
            if jump > best:
                best, step_px = jump, 0.5 * float(dm[i - 1] + dm[i])
        if step_px is None:
            return math.nan, 0
    band = np.abs(d - step_px) <= _BAND_PX
    if band.sum() < _MIN_SECTORS * _PIXELS_PER_SECTOR // 2:
        return math.nan, 0
    db, vb = d[band], v[band]
    fb = np.interp(db, dm, vm)
    gb = np.interp(db, dm, grad)
    resid = vb - fb
    noise = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
    if not np.isfinite(noise) or noise <= 0 or float(np.sum(gb * gb)) <= 0:
        return math.nan, 0
    # cracks, inclusions and the groundmass left inside the outline are not the zoning
    ok = np.abs(resid) <= 3.0 * noise
    db, vb = db[ok], vb[ok]
    rr, cc = rr[band][ok], cc[band][ok]
    # sectors of equal pixel count by angle about the band's centroid
    ang = np.arctan2(rr - rr.mean(), cc - cc.mean())
    n_sec = int(np.clip(round(db.size / _PIXELS_PER_SECTOR), _MIN_SECTORS, _MAX_SECTORS))
    order = np.argsort(ang, kind="stable")
    sector = np.empty(order.size, dtype=int)
    sector[order] = (np.arange(order.size) * n_sec) // order.size
    shifts, variances = [], []
    for k in range(n_sec):
        m = sector == k
        dk, vk = db[m], vb[m]
        # v ~ template(d + delta) + c: the level c takes what shifts the whole sector's grey
        # (a crack's or an inclusion's blurred pixels) so that it is not read as a shift
        # a grid of shifts first (the template is not convex in the shift: a sector can
        # lock onto the next feature), then Gauss-Newton from the best
        best_sse, delta = math.inf, 0.0
        for trial in _SHIFT_GRID:
            f = np.interp(dk + trial, dm, vm)
            r = vk - f
            sse = float(np.sum((r - r.mean()) ** 2))
            if sse < best_sse:
                best_sse, delta = sse, float(trial)
        var = math.nan
        for _ in range(6):  # Gauss-Newton on delta, c solved afresh each time (linear)
            f = np.interp(dk + delta, dm, vm)
            g = np.interp(dk + delta, dm, grad)
            jac = np.column_stack([g, np.ones_like(g)])
            jtj = jac.T @ jac
            if abs(float(np.linalg.det(jtj))) < 1e-12 * max(float(np.trace(jtj)) ** 2, 1e-300):
                var = math.nan
                break
            inv = np.linalg.inv(jtj)
            upd = inv @ (jac.T @ (vk - f))
            delta = float(np.clip(delta + upd[0], -_MAX_SHIFT_PX, _MAX_SHIFT_PX))
            var = noise * noise * float(inv[0, 0])
            if abs(float(upd[0])) < 1e-3:
                break
        if abs(delta) >= _MAX_SHIFT_PX - 1e-6:  # no minimum within reach: not measured
            continue
        if not np.isfinite(var) or var <= 0:
            continue
        shifts.append(delta)
        variances.append(var)
    if len(shifts) < _MIN_SECTORS:
        return math.nan, len(shifts)
    s = np.asarray(shifts)
    var = np.asarray(variances)
    keep = np.ones(s.size, dtype=bool)
    tau2 = 0.0
    for _ in range(3):  # a sector crossed by a crack or an inclusion is an outlier: left out
        tau2 = _between_variance(s[keep], var[keep])
        w = 1.0 / (var + tau2)
        mean = float(np.sum(w[keep] * s[keep]) / np.sum(w[keep]))
        new = np.abs(s - mean) * np.sqrt(w) <= 3.0
        if new.sum() < _MIN_SECTORS or np.array_equal(new, keep):
            break
        keep = new
    return math.sqrt(_between_variance(s[keep], var[keep])), int(keep.sum())


def _between_variance(s: np.ndarray, var: np.ndarray) -> float:
    """The scatter of ``s`` beyond what their variances ``var`` give (the DerSimonian-Laird
    moment estimate: ``E[sum w (s - mean)^2] = (k - 1) + tau^2 (sum w - sum w^2 / sum w)``
    with ``w = 1 / var``), at least 0."""
    w = 1.0 / var
    mean = float(np.sum(w * s) / np.sum(w))
    q = float(np.sum(w * (s - mean) ** 2))
    denom = float(np.sum(w) - np.sum(w * w) / np.sum(w))
    return max(0.0, (q - (s.size - 1)) / denom) if denom > 0 else 0.0


def geometric_blur(image, labels, pixel_size_um: float = 1.0, *,
                   steps_um: dict | None = None) -> pd.DataFrame:
    """The geometric blur of every crystal's shell profile, measured on the image.

    Parameters
    ----------
    image : array-like
        2D grey image (a BSE image or one element map).
    labels : array-like of int
        Crystal labels of the image's shape; 0 = not a crystal.
    pixel_size_um : float
        Micrometres per pixel.
    steps_um : dict, optional
        ``{label: distance}`` of the step whose blur is wanted (e.g. a fitted
        ``step_position_um``), in the crystal's distance from its free outline. By default
        the steepest point of the crystal's own shell profile beyond its first shell.

    Returns
    -------
    pandas.DataFrame
        ``label``, ``geometric_blur_um`` (FWHM, um, of the Gaussian the scatter of the
        step's depth along the outline amounts to; 0 when the sectors agree within their
        noise, NaN when the crystal is too small or flat to measure) and ``n_sectors``.

    Notes
    -----
    Distances run to the nearest pixel that is not a crystal (a free face); pixels nearer a
    face shared with another crystal are left out, as :func:`rim_profiles` does by default.
    The band within four pixels of the step is cut into angular sectors about its centroid
    (about 60 pixels each, 4-24 sectors); in each, the shift of the crystal's mean profile
    that best fits the sector's pixels is the step's depth there, with its noise variance
    from the pixels' scatter. The blur is the scatter of the shifts beyond that noise (a
    random-effects moment estimate, 0 when the shifts agree within their noise). A 1D
    profile (a measured traverse) has no outline and no geometric blur.
    """
    px = float(pixel_size_um)
    img = np.asarray(image, dtype=float)
    lab = np.asarray(labels)
    rows = []
    objs = ndi.find_objects(lab)
    for i, sl in enumerate(objs):
        if sl is None:
            continue
        label = i + 1
        sl = tuple(slice(max(a.start - 2, 0), min(a.stop + 2, n))
                   for a, n in zip(sl, lab.shape, strict=True))
        sub = lab[sl]
        own = sub == label
        d_any = ndi.distance_transform_edt(own)
        d_free = ndi.distance_transform_edt(sub != 0)
        touches_edge = any(a.start == 0 or a.stop == n for a, n in zip(sl, lab.shape,
                                                                       strict=True))
        has_free = bool(np.any(own & (d_free <= 1.0)))
        if has_free and not touches_edge:
            d = np.where(d_any < d_free, 0.0, d_free)
        else:
            d = d_any
        use = own & (d > 0) & np.isfinite(img[sl])
        rr, cc = np.nonzero(use)
        step = None
        if steps_um is not None and label in steps_um:
            step = float(steps_um[label]) / px
        sig, n_sec = _crystal_blur(d[use], img[sl][use], rr.astype(float), cc.astype(float),
                                   step)
        rows.append((label, sig * px * 2.3548 if np.isfinite(sig) else math.nan, n_sec))
    return pd.DataFrame(rows, columns=["label", "geometric_blur_um", "n_sectors"])


__all__ = ["geometric_blur"]


def contour_blur(image, labels, pixel_size_um: float, steps_um: dict, *,
                 smooth_px: float = 0.7) -> pd.DataFrame:
    """The geometric blur from a sub-pixel outline (an experiment of issue #25).

    Each crystal's outline is traced at sub-pixel precision on the lightly smoothed image, as
    the iso-grey line half way between the crystal's outer shells (2-3.5 px in) and the
    groundmass next to it (2-3.5 px out), kept where it runs within 1.5 px of the segmented
    outline's free faces. The blur is the robust sd (interquartile range / 1.349) of the
    difference between each pixel's distance to that line and its pixel-exact distance to the
    segmented outline, over the pixels of the shell at ``steps_um[label]``: how much the
    rasterised outline moves the shell's pixels off a smooth outline's depth.
    """
    from scipy.spatial import cKDTree
    from skimage.measure import find_contours

    px = float(pixel_size_um)
    lab = np.asarray(labels)
    rows = []
    for label, step_um in steps_um.items():
        sl = ndi.find_objects((lab == label).astype(np.int8))
        if not sl or sl[0] is None:
            continue
        sl = tuple(slice(max(a.start - 4, 0), min(a.stop + 4, n))
                   for a, n in zip(sl[0], lab.shape, strict=True))
        sub = lab[sl]
        own = sub == label
        img = ndi.gaussian_filter(np.asarray(image, dtype=float)[sl], smooth_px)
        d_any = ndi.distance_transform_edt(own)
        d_free = ndi.distance_transform_edt(sub != 0)
        d = np.where(d_any < d_free, 0.0, d_free) if (own & (d_free <= 1)).any() else d_any
        d_out = ndi.distance_transform_edt(~own)
        inner = own & (d >= 2) & (d <= 3.5)
        outer = (sub == 0) & (d_out >= 2) & (d_out <= 3.5)
        if inner.sum() < 10 or outer.sum() < 10:
            rows.append((label, math.nan))
            continue
        level = 0.5 * (float(np.median(img[inner])) + float(np.median(img[outer])))
        pts = []
        for c in find_contours(img, level):
            r = np.clip(np.round(c[:, 0]).astype(int), 0, own.shape[0] - 1)
            k = np.clip(np.round(c[:, 1]).astype(int), 0, own.shape[1] - 1)
            near = (((d[r, k] > 0) & (d[r, k] <= 1.5))
                    | ((sub[r, k] == 0) & (d_out[r, k] <= 1.5)))
            for a, b, ok in zip(c[:-1], c[1:], near[:-1] & near[1:], strict=True):
                if ok:
                    n = max(2, int(np.hypot(*(b - a)) / 0.1))
                    pts.append(a + np.linspace(0.0, 1.0, n)[:, None] * (b - a))
        rr, cc = np.nonzero(own & (d > 0) & (np.abs(d * px - step_um) <= 0.75 * px))
        if not pts or rr.size < 5:
            rows.append((label, math.nan))
            continue
        dist, _ = cKDTree(np.vstack(pts)).query(np.column_stack([rr, cc]))
        off = dist - d[rr, cc]
        q1, q3 = np.percentile(off, [25, 75])
        rows.append((label, float((q3 - q1) / 1.349) * px * 2.3548))
    return pd.DataFrame(rows, columns=["label", "geometric_blur_um"])
