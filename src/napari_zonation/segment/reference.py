"""The one-shot reference: one crystal outlined by the user teaches the segmentation.

The reference is a boolean mask of the image's shape or a polygon of (row, col) vertices of
one crystal, rim included; a patch of groundmass may be given the same way. From it:

- a pixel classifier (a random forest on block features: grey at several scales, its
  gradient, the block texture and its larger-scale means, the grey's local spread) is trained
  on the reference's inside (the outline eroded by a few micrometres) against a ring around
  it (and the groundmass patch, and near-black blocks: epoxy and vesicles are never crystal);
  the blocks it calls crystal (with a probability above 0.8, away from near-black blocks)
  extend the crystal cores they touch, so that a zone of a crystal whose grey equals the
  groundmass's joins its crystal. It starts no crystal of its own: taught by one crystal, it
  calls too much of a glass crystal-like;
- the reference itself comes back as one label, exactly its outline.

Bad references (empty, self-intersecting, outside the image, below the size limit, of another
image's shape) raise :class:`~napari_zonation.ZonationInputError`; a reference that covers
groundmass as well as crystal gives a warning naming the share.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import polygon as draw_polygon

from .._validation import ZonationInputError
from .fields import block_mean
from .morphology import distance_inside
from .outline import edge_profiles, nanmedian_rows
from .state import CoarseFields, Levels

#: The block features' smoothing scales, in micrometres.
_SCALES_UM = (3.0, 6.0, 12.0)


@dataclass
class ReferenceModel:
    """What the segmentation learned from the reference crystal."""

    classifier: object  # a fitted sklearn classifier of block features (1 = crystal)
    mask: np.ndarray  # the reference's mask (image shape)
    groundmass_share: float  # the share of the reference's outline without an edge


def _polygon_self_intersects(v: np.ndarray) -> bool:
    """Whether a closed polygon's edges cross (edges sharing a vertex excepted)."""
    n = len(v)
    a = v
    b = np.roll(v, -1, axis=0)
    i, j = np.triu_indices(n, k=2)
    keep = ~((i == 0) & (j == n - 1))  # the first and last edges share vertex 0
    i, j = i[keep], j[keep]
    if i.size == 0:
        return False

    def orient(p, q, r):
        return np.sign(
            (q[:, 0] - p[:, 0]) * (r[:, 1] - p[:, 1]) - (q[:, 1] - p[:, 1]) * (r[:, 0] - p[:, 0])
        )

    p1, p2, q1, q2 = a[i], b[i], a[j], b[j]
    o1, o2 = orient(p1, p2, q1), orient(p1, p2, q2)
    o3, o4 = orient(q1, q2, p1), orient(q1, q2, p2)
    return bool(np.any((o1 * o2 < 0) & (o3 * o4 < 0)))


def outline_mask(
    outline, shape: tuple[int, int], px: float, min_area_um2: float, what: str = "reference"
) -> np.ndarray:
    """The checked mask of a reference (or groundmass) outline: a boolean mask of ``shape`` or
    an ``(N, 2)`` polygon of (row, col) vertices.

    Raises :class:`~napari_zonation.ZonationInputError` (naming ``what``) for an empty mask or
    polygon, a polygon that is not ``(N, 2)`` numbers or crosses itself, an outline outside the
    image (more than 5 % of its area beyond the image's edge), a mask of another shape, or an area
    below ``min_area_um2``.
    """
    arr = np.asarray(outline)
    h, w = shape
    is_mask = arr.ndim == 2 and arr.shape == (h, w) and (arr.dtype == bool or w != 2)
    if is_mask:
        if not (arr.dtype == bool or np.issubdtype(arr.dtype, np.integer)):
            raise ZonationInputError(
                f"the {what} mask has dtype {arr.dtype}; give a boolean mask (True inside the "
                "crystal) or an (N, 2) polygon of (row, col) vertices."
            )
        mask = arr != 0
        if not mask.any():
            raise ZonationInputError(
                f"the {what} mask is empty; outline the crystal (rim included) or select its label."
            )
    elif arr.ndim == 2 and (arr.dtype == bool or arr.shape[1] != 2):
        raise ZonationInputError(
            f"the {what} mask has shape {arr.shape} but the image is {h} x {w}: it was drawn "
            "on another image. Give a mask of this image's shape, or an (N, 2) polygon of "
            "(row, col) vertices."
        )
    elif arr.ndim == 2:
        if arr.shape[0] == 0:
            raise ZonationInputError(
                f"the {what} polygon is empty; draw it around the crystal (rim included)."
            )
        if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
            raise ZonationInputError(
                f"the {what} polygon must hold finite numbers (row, col); got dtype {arr.dtype}."
            )
        v = arr.astype(np.float64)
        if np.allclose(v[0], v[-1]) and len(v) > 3:
            v = v[:-1]
        if len(v) < 3 or len(np.unique(v, axis=0)) < 3:
            raise ZonationInputError(
                f"the {what} polygon has {len(v)} distinct vertices; draw at least 3 around "
                "the crystal (rim included)."
            )
        if _polygon_self_intersects(v):
            raise ZonationInputError(
                f"the {what} polygon crosses itself; redraw it once around the crystal, "
                "without loops."
            )
        rr, cc = draw_polygon(v[:, 0], v[:, 1], shape=shape)
        if rr.size == 0:
            raise ZonationInputError(
                f"the {what} polygon lies outside the image ({h} x {w} pixels) or encloses no "
                "pixel; draw it on the image, in pixel coordinates (row, col)."
            )
        # its area (shoelace) against the pixels it holds inside the image
        area = 0.5 * abs(
            np.dot(v[:, 0], np.roll(v[:, 1], -1)) - np.dot(v[:, 1], np.roll(v[:, 0], -1))
        )
        outside = 1.0 - rr.size / max(area, 1.0)
        if outside > 0.05:
            raise ZonationInputError(
                f"{100 * outside:.0f} % of the {what} polygon lies outside the image ({h} x {w} "
                "pixels); outline a crystal inside the image, in pixel coordinates (row, col)."
            )
        mask = np.zeros(shape, dtype=bool)
        mask[rr, cc] = True
    else:
        raise ZonationInputError(
            f"the {what} must be a boolean mask of the image's shape ({h} x {w}) or an (N, 2) "
            f"polygon of (row, col) vertices; got an array of shape {arr.shape}."
        )
    area_um2 = float(mask.sum()) * px * px
    if area_um2 < min_area_um2:
        raise ZonationInputError(
            f"the {what} covers {area_um2:.0f} um^2, below the smallest crystal kept "
            f"(min_area_um2={min_area_um2:g}); outline a larger crystal or lower min_area_um2."
        )
    return mask


def block_features(fl: CoarseFields, lv: Levels) -> np.ndarray:
    """Features of every block for the pixel classifier, ``(rows, cols, k)`` float32.

    The block grey (normalised), smoothed at :data:`_SCALES_UM`; its gradient magnitude at the
    two smaller scales; the block texture and its means at the two larger scales; the spread of
    the block grey at the middle scale.
    """
    pc = lv.pc
    cm = fl.cm.astype(np.float32, copy=False)
    tex = fl.tex.astype(np.float32, copy=False)
    out = [cm]
    for s in _SCALES_UM:
        out.append(ndi.gaussian_filter(cm, s / pc))
    for s in _SCALES_UM[:2]:
        out.append(ndi.gaussian_gradient_magnitude(cm, s / pc))
    out.append(tex)
    for s in _SCALES_UM[1:]:
        out.append(ndi.gaussian_filter(tex, s / pc))
    g = ndi.gaussian_filter(cm, _SCALES_UM[1] / pc)
    out.append(np.sqrt(np.clip(ndi.gaussian_filter(cm * cm, _SCALES_UM[1] / pc) - g * g, 0, None)))
    return np.stack(out, axis=-1)


def _blocks_within(mask: np.ndarray, f: int, shape_c: tuple[int, int]) -> np.ndarray:
    """Blocks (of ``f`` x ``f`` pixels) wholly inside ``mask``."""
    share = block_mean(mask.astype(np.float32), f)[: shape_c[0], : shape_c[1]]
    return share > 0.999


def outline_without_edge(norm: np.ndarray, mask: np.ndarray, lv: Levels) -> float:
    """The share of an outline along which the image shows no edge: the grey just inside
    and just outside (profiles across it, pieces of about 24 um) differ by less than three
    standard errors. A reference drawn through groundmass has no edge there."""
    px = lv.px
    found = edge_profiles(
        mask.astype(np.int32),
        norm,
        max(4, int(np.ceil(4.0 / px))),
        max(24, int(round(24.0 / px))),
    )
    if found is None or not lv.noise:
        return 0.0
    _, _, _, _, profiles, counts = found
    k = 2
    g_out = nanmedian_rows(np.where(counts[:, :k] > 0, profiles[:, :k], np.nan))
    g_in = nanmedian_rows(np.where(counts[:, -k:] > 0, profiles[:, -k:], np.nan))
    n_out, n_in = counts[:, :k].sum(axis=1), counts[:, -k:].sum(axis=1)
    # pieces of a few pixels (cut by the tiles' grid) say little: the share is of the pixels
    ok = np.isfinite(g_out) & np.isfinite(g_in) & (n_out >= 6) & (n_in >= 6)
    if not ok.any():
        return 0.0
    se = 1.2533 * lv.noise * np.sqrt(1.0 / np.maximum(n_out, 1) + 1.0 / np.maximum(n_in, 1))
    step = np.abs(g_in - g_out)
    edge = step > 3.0 * se
    weight = (n_out + n_in)[ok]
    return float(1.0 - np.sum(edge[ok] * weight) / np.sum(weight))


def learn_reference(
    fl: CoarseFields,
    lv: Levels,
    mask: np.ndarray,
    groundmass: np.ndarray | None = None,
    *,
    norm: np.ndarray | None = None,
    threads: int = 1,
    seed: int = 0,
) -> ReferenceModel:
    """Train the block classifier on the reference crystal (see the module's notes).

    ``fl``: the coarse fields of the whole image (or of a window holding the reference and
    its surroundings, with ``mask`` on that window); ``norm``: the normalised grey of the
    same window, on which the share of the outline without an edge is measured
    (:func:`outline_without_edge`).
    """
    from sklearn.ensemble import RandomForestClassifier

    px, f = lv.px, lv.f
    shape_c = fl.cm.shape
    d_in = distance_inside(mask)
    d_out = distance_inside(~mask)
    inner_px = max(2.0, 3.0 / px)
    inside = _blocks_within(d_in > inner_px, f, shape_c)
    if not inside.any():  # a thin crystal: its blocks that are mostly inside
        inside = block_mean((d_in > 1.0).astype(np.float32), f)[: shape_c[0], : shape_c[1]] > 0.5
    ring = _blocks_within((d_out > max(2.0, 3.0 / px)) & (d_out < max(8.0, 15.0 / px)), f, shape_c)
    negative = ring.copy()
    if groundmass is not None:
        negative |= block_mean(groundmass.astype(np.float32), f)[: shape_c[0], : shape_c[1]] > 0.5
    if not inside.any() or not negative.any():
        raise ZonationInputError(
            "the reference is too thin or covers the whole image: outline one crystal (rim "
            "included) with some groundmass around it."
        )
    feats = block_features(fl, lv)
    rng = np.random.default_rng(seed)

    def sample(sel: np.ndarray, n: int) -> np.ndarray:
        x = feats[sel]
        if len(x) > n:
            x = x[rng.choice(len(x), n, replace=False)]
        return x

    pos = sample(inside, 20000)
    neg = [sample(negative, 20000)]
    dark = fl.smooth_c < lv.dark_thr
    if dark.any() and np.isfinite(lv.dark_thr):
        neg.append(sample(dark & ~ndi.binary_dilation(inside, iterations=2), 5000))
    neg = np.concatenate(neg)
    x = np.concatenate([pos, neg])
    y = np.concatenate([np.ones(len(pos), np.int8), np.zeros(len(neg), np.int8)])
    clf = RandomForestClassifier(
        n_estimators=40,
        max_depth=12,
        min_samples_leaf=3,
        class_weight="balanced",
        n_jobs=max(1, int(threads)),
        random_state=seed,
    ).fit(x, y)
    share = outline_without_edge(norm, mask, lv) if norm is not None else 0.0
    return ReferenceModel(classifier=clf, mask=mask, groundmass_share=share)


def reference_probability(fl: CoarseFields, lv: Levels, model: ReferenceModel) -> np.ndarray:
    """Probability that each block is crystal like the reference (block image)."""
    feats = block_features(fl, lv)
    shape = feats.shape[:2]
    flat = feats.reshape(-1, feats.shape[-1])
    prob = np.empty(flat.shape[0], dtype=np.float32)
    step = 1 << 18
    for s in range(0, flat.shape[0], step):
        prob[s : s + step] = model.classifier.predict_proba(flat[s : s + step])[:, 1]
    return prob.reshape(shape)


def warn_groundmass_share(model: ReferenceModel, limit: float = 0.25) -> None:
    """Warn when much of the reference's outline runs where the image shows no edge."""
    if model.groundmass_share > limit:
        warnings.warn(
            f"about {100 * model.groundmass_share:.0f} % of the reference's outline runs "
            "where the image shows no edge: it seems to cover groundmass as well as crystal "
            "(or the crystal's rim has the groundmass's grey there). Outline only the crystal, "
            "rim included, along its edge.",
            UserWarning,
            stacklevel=4,
        )


def stamp_reference(labels: np.ndarray, mask: np.ndarray, min_px: float = 0.0) -> np.ndarray:
    """The labels with the reference as one label, exactly its mask; ids renumbered 1..n.

    Labels that reach into the reference lose those pixels; what is left of each outside it
    stays a label when its parts are at least ``min_px`` pixels (another crystal beside the
    reference, or a fragment the segmentation had joined to it), else it goes.
    """
    out = np.where(mask, 0, labels).astype(np.int32)
    touched = np.unique(labels[mask])
    touched = touched[touched > 0]
    if touched.size:
        lut = np.zeros(int(labels.max()) + 1, dtype=bool)
        lut[touched] = True
        rest = lut[out]
        parts, n = ndi.label(rest)
        if n:
            small = np.bincount(parts.ravel(), minlength=n + 1) < max(min_px, 1.0)
            small[0] = False
            out[small[parts]] = 0
    n = int(out.max())
    out[mask] = n + 1
    present = np.zeros(n + 2, dtype=bool)
    present[out.ravel()] = True
    present[0] = False
    lut = np.zeros(n + 2, dtype=np.int32)
    lut[present] = np.arange(1, int(present.sum()) + 1, dtype=np.int32)
    return lut[out]
