"""Hand corrections of crystal labels: merge, split along a drawn line, delete.

Pure functions on int labels arrays (0 = not a crystal). Each returns a new int32 array and
never modifies its input, so a GUI can compare old and new labels and write only the changed
pixels (napari's ``Labels.data_setitem`` keeps them undoable).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import line as draw_line

from ._validation import ZonationInputError

__all__ = ["delete_labels", "merge_labels", "split_label"]


def _as_labels(labels) -> np.ndarray:
    """A 2D non-negative integer labels array, copied to int32."""
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ZonationInputError(
            f"labels are {lab.ndim}D with shape {lab.shape}; give a 2D crystal labels array."
        )
    if not np.issubdtype(lab.dtype, np.integer):
        raise ZonationInputError(
            f"labels have dtype {lab.dtype}; give an integer Labels array (0 = background)."
        )
    if lab.size and lab.min() < 0:
        raise ZonationInputError("labels contain negative ids; use 0 for background, >0 crystals.")
    return lab.astype(np.int32, copy=True)


def _as_ids(ids) -> np.ndarray:
    """Unique positive ids from an int or an iterable of ints."""
    if isinstance(ids, (int, np.integer)):
        ids = [ids]
    try:
        arr = np.unique(np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids))
    except TypeError as exc:
        raise ZonationInputError(f"ids {ids!r} are not a list of label ids.") from exc
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.mod(arr, 1) == 0):
            arr = arr.astype(np.int64)
        else:
            raise ZonationInputError(f"ids {ids!r} must be whole numbers (label ids).")
    return arr[arr > 0].astype(np.int64)


def _present(lab: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids found in the labels, ids missing)."""
    found = np.isin(ids, np.unique(lab))
    return ids[found], ids[~found]


def merge_labels(labels, ids: Iterable[int]) -> np.ndarray:
    """Merge crystals into one: every id in ``ids`` becomes the smallest of them.

    Parameters
    ----------
    labels : array-like of int
        2D crystal labels, 0 = not a crystal.
    ids : iterable of int
        The ids to merge (at least two present in ``labels``; 0 is ignored).

    Returns
    -------
    numpy.ndarray
        New int32 labels; the input is not modified.

    Raises
    ------
    ZonationInputError
        When fewer than two of the ids are in the labels.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_zonation import make_thin_section, merge_labels
    >>> s = make_thin_section((160, 160), n_crystals=3, size_um=(40.0, 70.0), seed=1)
    >>> np.unique(s.labels).tolist()
    [0, 1, 2, 3]
    >>> merged = merge_labels(s.labels, [2, 3])
    >>> np.unique(merged).tolist()
    [0, 1, 2]
    >>> int((merged == 2).sum()) == int(np.isin(s.labels, [2, 3]).sum())
    True
    """
    lab = _as_labels(labels)
    found, missing = _present(lab, _as_ids(ids))
    if found.size < 2:
        raise ZonationInputError(
            f"merging needs at least two crystal ids present in the labels; found {found.tolist()}"
            + (f", not found {missing.tolist()}" if missing.size else "")
            + ". Type the ids of the crystals to merge (hover a crystal to read its id)."
        )
    lab[np.isin(lab, found)] = int(found.min())
    return lab


def delete_labels(labels, ids: Iterable[int]) -> np.ndarray:
    """Delete crystals: their pixels become 0 (not a crystal).

    Parameters
    ----------
    labels : array-like of int
        2D crystal labels, 0 = not a crystal.
    ids : iterable of int
        The ids to delete (at least one present in ``labels``).

    Returns
    -------
    numpy.ndarray
        New int32 labels; the input is not modified.

    Raises
    ------
    ZonationInputError
        When none of the ids is in the labels.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_zonation import delete_labels, make_thin_section
    >>> s = make_thin_section((160, 160), n_crystals=3, size_um=(40.0, 70.0), seed=1)
    >>> np.unique(delete_labels(s.labels, [3])).tolist()
    [0, 1, 2]
    >>> np.unique(s.labels).tolist()  # the input is left as it was
    [0, 1, 2, 3]
    """
    lab = _as_labels(labels)
    found, missing = _present(lab, _as_ids(ids))
    if found.size == 0:
        raise ZonationInputError(
            f"none of the ids {missing.tolist()} is a crystal of these labels; type the ids of "
            "the crystals to delete (hover a crystal to read its id)."
        )
    lab[np.isin(lab, found)] = 0
    return lab


def _rasterize(line_rc, shape: tuple[int, int], width_px: float) -> np.ndarray:
    """Pixels of a polyline (row, col vertices), thickened to ``width_px``."""
    pts = np.asarray(line_rc, dtype=float)
    if pts.ndim != 2 or pts.shape[1] < 2 or pts.shape[0] < 2:
        raise ZonationInputError(
            f"the split line has shape {pts.shape}; give at least two (row, col) vertices."
        )
    pts = pts[:, -2:]
    if not np.all(np.isfinite(pts)):
        raise ZonationInputError("the split line has non-finite vertices.")
    # a big margin so lines that start outside the image still cross it
    pad = 2
    h, w = shape
    canvas = np.zeros((h + 2 * pad, w + 2 * pad), dtype=bool)
    v = np.round(pts).astype(np.int64)
    v[:, 0] = np.clip(v[:, 0], -pad, h - 1 + pad) + pad
    v[:, 1] = np.clip(v[:, 1], -pad, w - 1 + pad) + pad
    for (r0, c0), (r1, c1) in zip(v[:-1], v[1:], strict=True):
        rr, cc = draw_line(int(r0), int(c0), int(r1), int(c1))
        canvas[rr, cc] = True
    cut = canvas[pad : pad + h, pad : pad + w]
    if width_px > 1:
        cut = ndi.distance_transform_edt(~cut) <= (float(width_px) - 1.0) / 2.0
    return cut


def split_label(labels, label_id: int, line_rc, width_px: float = 1) -> np.ndarray:
    """Cut one crystal along a drawn polyline.

    The line's pixels (``width_px`` wide) are removed from the crystal; what is left falls
    into pieces (4-connected components, so a one-pixel diagonal line cuts); the line's own
    pixels then go to the nearest piece. The biggest piece keeps ``label_id``, the others get
    new ids ``labels.max() + 1``, ``+ 2``, ... (biggest first).

    Parameters
    ----------
    labels : array-like of int
        2D crystal labels, 0 = not a crystal.
    label_id : int
        The crystal to split.
    line_rc : array-like, shape (n, 2)
        Polyline vertices in (row, col) pixel coordinates of ``labels`` (extra leading
        coordinates are dropped). It must cross the crystal from edge to edge.
    width_px : float
        Width of the cut in pixels.

    Returns
    -------
    numpy.ndarray
        New int32 labels; the input is not modified.

    Raises
    ------
    ZonationInputError
        When the crystal is absent, or the line does not cross it from edge to edge.

    Examples
    --------
    Cut crystal 1 of a synthetic section with a vertical line through its centre:

    >>> import numpy as np
    >>> from napari_zonation import make_thin_section, split_label
    >>> s = make_thin_section((160, 160), n_crystals=3, size_um=(40.0, 70.0), seed=1)
    >>> r, c = np.argwhere(s.labels == 1).mean(axis=0).round().astype(int)
    >>> cut = split_label(s.labels, 1, [(r - 40, c), (r + 40, c)])
    >>> np.unique(cut).tolist()  # the smaller piece gets the new id 4
    [0, 1, 2, 3, 4]
    >>> int(np.isin(cut, [1, 4]).sum()) == int((s.labels == 1).sum())
    True
    """
    lab = _as_labels(labels)
    label_id = int(label_id)
    mask = lab == label_id
    if label_id <= 0 or not mask.any():
        raise ZonationInputError(
            f"crystal {label_id} is not in the labels; give the id of the crystal to split."
        )
    cut = _rasterize(line_rc, lab.shape, width_px) & mask
    if not cut.any():
        raise ZonationInputError(
            f"the line does not touch crystal {label_id}; draw it across the crystal, from "
            "outside one edge to outside the opposite edge."
        )
    pieces, n = ndi.label(mask & ~cut)  # 4-connectivity
    if n < 2:
        raise ZonationInputError(
            f"the line does not cut crystal {label_id} in two; draw it all the way across, "
            "from outside one edge to outside the opposite edge."
        )
    # the cut's pixels go to the nearest piece
    _, (ir, ic) = ndi.distance_transform_edt(pieces == 0, return_indices=True)
    pieces = np.where(mask, pieces[ir, ic], 0)
    sizes = np.bincount(pieces[mask], minlength=n + 1)
    order = np.argsort(-sizes[1:], kind="stable") + 1  # pieces, biggest first
    new_id = np.zeros(n + 1, dtype=np.int64)
    new_id[order[0]] = label_id
    new_id[order[1:]] = int(lab.max()) + 1 + np.arange(n - 1)
    lab[mask] = new_id[pieces[mask]]
    return lab
