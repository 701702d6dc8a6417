"""Writing 2D zarr stores safely: :class:`ZarrWriter` and :func:`write_mosaic`.

A store is written under a hidden temporary name beside its final path, with its multiscale
pyramid (every other pixel per level) and OME-Zarr 0.4 metadata, and renamed to its final
name only when complete (a completion mark in its attributes): an interrupted run leaves no
store that looks complete. :func:`napari_zonation.mosaic.open_labels` refuses a store
without the mark.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ._validation import ZonationInputError

__all__ = ["LABEL_CHUNK", "PYRAMID_MIN_SIDE", "ZarrWriter", "write_mosaic"]

#: Chunk side (pixels) of the labels and images this module writes.
LABEL_CHUNK = 1024
#: The smallest level of a written pyramid is at most this many pixels on its longer side.
PYRAMID_MIN_SIDE = 1024
#: Marker in the attributes of a store this module finished writing.
_KEY = "napari_zonation"


def _zarr():
    try:
        import zarr
    except ImportError as exc:  # pragma: no cover - zarr is a dependency
        raise ZonationInputError(
            "reading or writing .zarr stores needs the zarr package: pip install zarr"
        ) from exc
    return zarr



def _check_dtype(dtype, name: str) -> np.dtype:
    dtype = np.dtype(dtype)
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise ZonationInputError(
            f"{name} holds values of dtype {dtype}; a BSE mosaic must be a numeric grey image "
            "(integer or float). Convert it, e.g. with numpy's astype, and write it again."
        )
    return dtype


def _squeezed_yx(shape: tuple[int, ...], axes: list[str] | None, name: str) -> tuple:
    """The index that takes the (y, x) plane of an array of ``shape``: singleton axes other
    than the last two are dropped; anything else is refused with what was found."""
    shape = tuple(int(n) for n in shape)
    names = axes or [f"axis {i}" for i in range(len(shape))]
    if len(shape) < 2:
        raise ZonationInputError(
            f"{name} is {len(shape)}D (shape {shape}); a mosaic must be a 2D grey image (y, x)."
        )
    extra = [(a, n) for a, n in zip(names[:-2], shape[:-2], strict=True) if n != 1]
    if extra:
        what = ", ".join(f"{a} of {n}" for a, n in extra)
        raise ZonationInputError(
            f"{name} has shape {shape} (axes {', '.join(map(str, names))}): besides y and x it "
            f"holds {what}. napari-zonation segments one 2D grey image (y, x); write the BSE "
            "channel alone (or one plane) to its own store."
        )
    if 0 in shape:
        raise ZonationInputError(f"{name} is empty (shape {shape}).")
    return (0,) * (len(shape) - 2) + (slice(None), slice(None))


def _pyramid_shapes(shape: tuple[int, int], min_side: int) -> list[tuple[int, int]]:
    shapes = [tuple(int(n) for n in shape)]
    while max(shapes[-1]) > min_side:
        h, w = shapes[-1]
        shapes.append((-(-h // 2), -(-w // 2)))
    return shapes


class ZarrWriter:
    """A 2D zarr store (OME-Zarr 0.4 multiscale image, zarr format 2) written safely.

    The store is written under a hidden temporary name beside ``path`` and renamed to
    ``path`` by :meth:`finish`, after its pyramid and metadata (with a completion mark): an
    interrupted run leaves no store that looks complete. :meth:`abort` removes it.

    Parameters
    ----------
    path : str or path-like
        The final store (a folder, by convention ending in ``.zarr``).
    shape : (int, int)
        Full-resolution shape.
    dtype : numpy dtype
        int32 for labels.
    kind : {"labels", "image"}
        Labels get OME-Zarr ``image-label`` metadata; both are subsampled (every other pixel)
        for the lower levels, so that they overlay exactly.
    pixel_size_um : float, optional
        Written into the multiscale scale (micrometres).
    chunk : int
        Chunk side in pixels.
    overwrite : bool
        Replace an existing ``path`` when finished (refused otherwise, before anything is
        written).

    Raises
    ------
    ZonationInputError
        ``path`` exists and ``overwrite`` is False, or its folder cannot be written.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        shape: tuple[int, int],
        dtype=np.int32,
        *,
        kind: str = "labels",
        pixel_size_um: float | None = None,
        chunk: int = LABEL_CHUNK,
        overwrite: bool = False,
    ) -> None:
        zarr = _zarr()
        self.path = Path(path)
        if kind not in ("labels", "image"):
            raise ZonationInputError(f"kind={kind!r}: use 'labels' or 'image'.")
        if self.path.exists() and not overwrite:
            raise ZonationInputError(
                f"{self.path} already exists; choose another output, delete it, or pass "
                "overwrite=True (--overwrite) to replace it."
            )
        if self.path.exists() and not self.path.is_dir():
            raise ZonationInputError(f"{self.path} is a file; a zarr store is a folder.")
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ZonationInputError(
                f"cannot create {parent} ({exc.strerror or exc}); give a folder you can write to."
            ) from exc
        if not os.access(parent, os.W_OK):
            raise ZonationInputError(
                f"cannot write to {parent}; give an output folder you can write to."
            )
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self.kind, self.px, self.chunk = kind, pixel_size_um, int(chunk)
        self.tmp = parent / f".{self.path.name}.partial-{uuid.uuid4().hex[:8]}"
        self.group = zarr.open_group(str(self.tmp), mode="w", zarr_format=2)
        self.array = self.group.create_array(
            "0",
            shape=self.shape,
            chunks=(min(self.chunk, self.shape[0]), min(self.chunk, self.shape[1])),
            dtype=self.dtype,
            fill_value=0,
        )
        self.done = False

    def canvas(self):
        """A :class:`~napari_zonation.tiling.BandCanvas` writing to the full resolution."""
        from .tiling import BandCanvas

        return BandCanvas(self.array, self.array.chunks[0])

    def write(self, array, rows: int = 4 * LABEL_CHUNK) -> None:
        """Write a whole (numpy or dask) array, in bands of ``rows`` rows."""
        for r in range(0, self.shape[0], rows):
            self.array[r : r + rows] = np.asarray(array[r : r + rows], dtype=self.dtype)

    def _pyramid(self, progress: Callable[[], None] | None = None) -> list[tuple[int, int]]:
        shapes = _pyramid_shapes(self.shape, PYRAMID_MIN_SIDE)
        prev = self.array
        for k, shape in enumerate(shapes[1:], start=1):
            arr = self.group.create_array(
                str(k),
                shape=shape,
                chunks=(min(self.chunk, shape[0]), min(self.chunk, shape[1])),
                dtype=self.dtype,
                fill_value=0,
            )
            band = 2 * self.chunk  # rows of the finer level per step: whole chunks of this one
            for r in range(0, prev.shape[0], band):
                arr[r // 2 : (r + band) // 2] = np.asarray(prev[r : r + band])[::2, ::2]
            prev = arr
            if progress is not None:
                progress()
        return shapes

    def finish(self, attrs: dict | None = None) -> Path:
        """Write the pyramid and metadata, then rename the store to its final name."""
        shapes = self._pyramid()
        px = 1.0 if self.px is None else float(self.px)
        unit = {"unit": "micrometer"} if self.px is not None else {}
        axes = [{"name": "y", "type": "space", **unit}, {"name": "x", "type": "space", **unit}]
        datasets = [
            {
                "path": str(k),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [px * 2**k, px * 2**k]}
                ],
            }
            for k in range(len(shapes))
        ]
        meta = {
            "multiscales": [
                {"version": "0.4", "name": self.path.stem, "axes": axes, "datasets": datasets}
            ]
        }
        if self.kind == "labels":
            meta["image-label"] = {"version": "0.4"}
        own = {"kind": self.kind, "complete": True, **(attrs or {})}
        if self.px is not None:
            own["pixel_size_um"] = float(self.px)
        self.group.attrs.update({**meta, _KEY: own})
        old = None
        if self.path.exists():
            old = self.path.parent / f".{self.path.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.path, old)
        os.replace(self.tmp, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self.done = True
        return self.path

    def abort(self) -> None:
        """Remove the temporary store (a run that failed or was cancelled)."""
        if not self.done:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> ZarrWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def write_mosaic(
    path: str | os.PathLike,
    image,
    pixel_size_um: float | None = None,
    *,
    chunk: int = LABEL_CHUNK,
    overwrite: bool = False,
) -> Path:
    """Write a 2D image (numpy, dask or any array read by slicing) as an OME-Zarr mosaic.

    The image is copied in bands of whole chunk rows (a lazy one is never read whole), with
    a multiscale pyramid, under a temporary name renamed when complete.

    Parameters
    ----------
    path : str or path-like
        The store to write (a ``.zarr`` folder).
    image : array-like
        2D numeric image.
    pixel_size_um : float, optional
        Micrometres per pixel, written into the metadata.
    chunk : int
        Chunk side in pixels.
    overwrite : bool
        Replace an existing store.

    Returns
    -------
    pathlib.Path
        The store written.
    """
    shape = tuple(int(n) for n in image.shape)
    _squeezed_yx(shape, None, Path(path).name)
    if len(shape) != 2:
        raise ZonationInputError(f"write_mosaic writes a 2D image; got shape {shape}.")
    dtype = _check_dtype(image.dtype, "the image")
    writer = ZarrWriter(path, shape, dtype, kind="image", pixel_size_um=pixel_size_um,
                        chunk=chunk, overwrite=overwrite)
    with writer:
        writer.write(image)
        return writer.finish()
