"""Crystal segmentation from a few painted strokes (scribbles): a pixel random forest.

The user paints a few strokes on a Labels layer of the image's shape. Stroke classes
(:data:`SCRIBBLE_CLASSES`):

- ``1`` groundmass (glass, microlites),
- ``2`` vesicle / epoxy (near-black holes),
- ``3`` and up: crystals (one class per phase if they differ in grey, e.g. 3 olivine,
  4 plagioclase; one class is enough when all crystals look alike).

0 is unpainted. Other conventions can be given as a dict ``{class: name}``: names
``"groundmass"``, ``"vesicle"``, ``"epoxy"``, ``"background"`` (and ``"hole"``) are not
crystals; every other name is a crystal class.

:func:`train_scribbles` computes scikit-image's multiscale features (intensity, edges,
texture at Gaussian scales given in micrometres), fits a scikit-learn random forest on the
painted pixels (:func:`skimage.future.fit_segmenter`), predicts every pixel, and turns the
crystal classes into crystal instances: connected components per class, holes (inclusions,
cracks) filled, touching crystals cut by a watershed of the distance transform (as in
:func:`napari_zonation.segment.segment_crystals`), and crystals under ``min_area_um2``
dropped.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage as ndi
from skimage import segmentation

from ._validation import ZonationInputError, as_image, check_pixel_size
from .segment.cleanup import fill_label_holes
from .segment.cutting import cut_cores
from .segment.morphology import open_mask

if TYPE_CHECKING:  # scikit-learn and skimage.feature load in the functions that use them
    from sklearn.ensemble import RandomForestClassifier

__all__ = ["SCRIBBLE_CLASSES", "NON_CRYSTAL_NAMES", "train_scribbles"]

#: Default stroke classes of a scribble layer (class value -> name).
SCRIBBLE_CLASSES = {1: "groundmass", 2: "vesicle / epoxy", 3: "crystal"}
#: Class names that are not crystals (lower case, compared by their first word).
NON_CRYSTAL_NAMES = ("groundmass", "vesicle", "epoxy", "background", "hole", "glass")


def _crystal_classes(present: np.ndarray, classes: dict | None) -> np.ndarray:
    """The painted classes that are crystals."""
    if classes is None:
        return present[present >= 3]
    if not isinstance(classes, dict):
        raise ZonationInputError(
            "classes must be a dict {class value: name}, e.g. {1: 'groundmass', 2: 'vesicle', "
            "3: 'olivine'}."
        )
    out = []
    for value in present:
        name = classes.get(int(value))
        if name is None:
            raise ZonationInputError(
                f"stroke class {int(value)} is painted but has no name in classes "
                f"{classes}; add it or repaint with a named class."
            )
        first = str(name).strip().lower().replace("/", " ").split()
        if not first or first[0] not in NON_CRYSTAL_NAMES:
            out.append(int(value))
    return np.asarray(out, dtype=np.int64)


def train_scribbles(
    image,
    scribbles,
    pixel_size_um: float = 1.0,
    *,
    sigma_min_um: float = 1.0,
    sigma_max_um: float = 16.0,
    min_area_um2: float = 400.0,
    classes: dict | None = None,
    split_touching: bool = False,
    split_h_um: float = 3.0,
    open_um: float = 1.5,
    random_state: int = 0,
    predict_stride: int | None = None,
) -> tuple[np.ndarray, RandomForestClassifier]:
    """Train a pixel classifier on painted strokes and return crystal labels.

    Parameters
    ----------
    image : array-like
        2D BSE image (or ``(channels, y, x)`` element maps: features from every channel).
    scribbles : array-like of int
        Strokes of the image's (y, x) shape: 0 unpainted, 1 groundmass, 2 vesicle / epoxy,
        3+ crystal classes (see ``classes`` for another convention).
    pixel_size_um : float
        Micrometres per pixel; the feature scales and areas are converted with it.
    sigma_min_um, sigma_max_um : float
        Smallest and largest Gaussian scale of the features, in micrometres (the smallest is
        kept at 0.5 pixel or more, the largest above the smallest).
    min_area_um2 : float
        Smallest crystal kept.
    classes : dict, optional
        ``{class value: name}``; names starting with groundmass, vesicle, epoxy, background,
        hole or glass are not crystals, all others are. Default: classes 3+ are crystals.
    split_touching : bool
        Cut touching crystals of one class by a watershed of the distance transform.
    split_h_um : float
        Depth (h-maxima) of the distance transform that makes a separate crystal.
    open_um : float
        Opening radius that removes specks (microlites) from the crystal mask.
    random_state : int
        Seed of the random forest.
    predict_stride : int, optional
        Predict every ``predict_stride``-th pixel first, then every pixel of the cells whose
        neighbourhood holds more than one class (the class boundaries): the forest runs on
        a fraction of the pixels, and only features thinner than the stride that lie inside
        a region of another class are lost (they are smaller than any crystal kept).
        Default: 1 (every pixel) up to 2 Mpx, 4 above.

    Returns
    -------
    labels : numpy.ndarray
        int32 crystal labels (0 = not a crystal), numbered 1..n.
    classifier : sklearn.ensemble.RandomForestClassifier
        The fitted forest (50 trees, depth 10); its ``classes_`` are the stroke classes.

    Raises
    ------
    ZonationInputError
        When the strokes do not match the image, or do not hold at least one crystal class
        and one other class.
    """
    px = check_pixel_size(pixel_size_um)
    img = as_image(image)
    yx = img.shape[-2:]
    scr = np.asarray(scribbles)
    if scr.shape != tuple(yx):
        raise ZonationInputError(
            f"scribbles have shape {scr.shape} but the image is {tuple(yx)}; paint the strokes "
            "on a Labels layer of the image's shape (New scribble layer)."
        )
    if not np.issubdtype(scr.dtype, np.integer):
        raise ZonationInputError(
            f"scribbles have dtype {scr.dtype}; paint them on an integer Labels layer."
        )
    scr = scr.astype(np.int64)
    if scr.min() < 0:
        raise ZonationInputError("scribbles contain negative classes; use 0 for unpainted.")
    present = np.unique(scr[scr > 0])
    crystal = _crystal_classes(present, classes)
    if crystal.size == 0 or present.size < 2 or crystal.size == present.size:
        raise ZonationInputError(
            f"the strokes hold classes {present.tolist()}; paint at least one crystal stroke "
            "(class 3 or more) and one groundmass (1) or vesicle/epoxy (2) stroke."
        )
    smin = max(0.5, float(sigma_min_um) / px)
    smax = max(smin * 2.0, float(sigma_max_um) / px)
    finite = np.all(np.isfinite(img), axis=0) if img.ndim == 3 else np.isfinite(img)
    fill = float(np.nanmedian(img)) if not finite.all() else 0.0
    # float32: scikit-image filters it twice as fast as float64, features are float32 anyway
    work = np.where(np.isfinite(img), img, fill).astype(np.float32, copy=False)
    features = _features(work, smin, smax, img.ndim == 3)
    from skimage.future import fit_segmenter
    from sklearn.ensemble import RandomForestClassifier

    clf = RandomForestClassifier(
        n_estimators=50, max_depth=10, n_jobs=-1, random_state=random_state
    )
    train = np.where(finite, scr, 0)
    clf = fit_segmenter(train, features, clf)
    if predict_stride is None:
        predict_stride = 1 if work.shape[-2] * work.shape[-1] <= 2**21 else 4
    pred = _predict(features, clf, int(predict_stride))
    labels = _instances(
        pred, crystal, finite, px, min_area_um2, split_touching, split_h_um, open_um
    )
    return labels, clf


#: The last image's features (key, array): retraining on the same image with new strokes,
#: as one does in napari, skips their computation.
_FEATURE_CACHE: list = []
_CACHE_MAX_BYTES = 4 * 2**30


def _features(work: np.ndarray, smin: float, smax: float, channels: bool) -> np.ndarray:
    """scikit-image's multiscale features (float32), cached for the last image."""
    digest = hashlib.blake2b(np.ascontiguousarray(work).view(np.uint8), digest_size=16)
    key = (digest.hexdigest(), work.shape, str(work.dtype), round(smin, 6), round(smax, 6))
    if _FEATURE_CACHE and _FEATURE_CACHE[0][0] == key:
        return _FEATURE_CACHE[0][1]
    _FEATURE_CACHE.clear()
    from skimage.feature import multiscale_basic_features

    features = multiscale_basic_features(
        work,
        intensity=True,
        edges=True,
        texture=True,
        sigma_min=smin,
        sigma_max=smax,
        channel_axis=0 if channels else None,
    )
    if features.nbytes <= _CACHE_MAX_BYTES:
        _FEATURE_CACHE.append((key, features))
    return features


def _predict(features: np.ndarray, clf, stride: int) -> np.ndarray:
    """Class of every pixel: on a grid of step ``stride``, then at full resolution in the
    cells next to a change of class."""
    if stride <= 1:
        from skimage.future import predict_segmenter

        return predict_segmenter(features, clf)
    h, w, n_feat = features.shape
    coarse = clf.predict(features[::stride, ::stride].reshape(-1, n_feat))
    coarse = coarse.reshape((h + stride - 1) // stride, (w + stride - 1) // stride)
    mixed = ndi.maximum_filter(coarse, size=3) != ndi.minimum_filter(coarse, size=3)
    pred = np.repeat(np.repeat(coarse, stride, axis=0), stride, axis=1)[:h, :w]
    redo = np.repeat(np.repeat(mixed, stride, axis=0), stride, axis=1)[:h, :w]
    idx = np.flatnonzero(redo)
    if idx.size:
        flat = pred.reshape(-1)
        for part in np.array_split(idx, max(1, idx.size // 2**20)):
            flat[part] = clf.predict(features.reshape(-1, n_feat)[part])
    return pred


def _absorb_enclosed(
    labels: np.ndarray, min_share: float = 0.75, max_passes: int = 5
) -> np.ndarray:
    """Give a piece (nearly) surrounded by one other crystal that crystal's id.

    ``min_share`` of the piece's outer ring must be that crystal (the rest may be gaps).

    A zoned crystal whose core and rim fall in different stroke classes comes out as a core
    inside a ring; the core is part of the ring's crystal.
    """
    labels = labels.copy()
    h, w = labels.shape
    for _ in range(max_passes):
        changed = False
        for i, sl in enumerate(ndi.find_objects(labels), start=1):
            if sl is None:
                continue
            r0, r1 = sl[0].start, sl[0].stop
            c0, c1 = sl[1].start, sl[1].stop
            if r0 == 0 or c0 == 0 or r1 == h or c1 == w:
                continue  # reaches the image edge: not enclosed
            box = labels[r0 - 1 : r1 + 1, c0 - 1 : c1 + 1]
            mask = box == i
            ring = ndi.binary_dilation(mask) & ~mask
            nb = np.bincount(box[ring], minlength=int(box.max()) + 1)
            nb[i] = 0
            best = int(np.argmax(nb[1:])) + 1 if nb[1:].any() else 0
            if best and nb[best] >= min_share * nb.sum():
                box[mask] = best
                changed = True
        if not changed:
            break
    return labels


def _instances(pred, crystal, finite, px, min_area_um2, split_touching, split_h_um, open_um):
    """Crystal instances from a class map: components per class, filled, cut, size-filtered."""
    labels = np.zeros(pred.shape, dtype=np.int32)
    n = 0
    for cls in crystal:
        mask = (pred == cls) & finite
        mask = open_mask(mask, open_um / px)
        lab, k = ndi.label(mask)
        labels = np.where(lab > 0, lab + n, labels).astype(np.int32)
        n += k
    if n == 0:
        return labels
    # specks far below the size limit go before the per-piece passes (a large noisy image
    # has thousands); enclosed ones come back as holes, filled by their crystal
    area = np.bincount(labels.ravel())
    speck = area < 0.25 * min_area_um2 / (px * px)
    speck[0] = False
    if speck.any():
        labels[speck[labels]] = 0
    labels = fill_label_holes(labels, 0.5)
    labels = _absorb_enclosed(labels)
    if split_touching:
        labels = cut_cores(labels, max(split_h_um / px, 1.0)).astype(np.int32)
    labels[~finite] = 0
    area = np.bincount(labels.ravel())
    keep = area >= min_area_um2 / (px * px)
    keep[0] = False
    labels = np.where(keep[labels], labels, 0)
    labels, _, _ = segmentation.relabel_sequential(labels)
    return labels.astype(np.int32, copy=False)
