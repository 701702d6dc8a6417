"""Whole thin-section mosaics out of core: images read lazily, labels written to zarr.

- :func:`open_mosaic`: a ``.zarr`` store (a plain array, or an OME-Zarr multiscale image) or a
  large TIFF (tiled, or a pyramid), as a lazy dask array of its full resolution with its
  lower resolutions and its pixel size; wrong dimensionality or dtype and missing chunks are
  refused with what to do.
- :class:`ZarrWriter`: a 2D zarr store written under a temporary name and renamed only when
  complete, with its multiscale pyramid and OME-Zarr metadata; it is how
  ``segment_crystals(..., out=...)`` writes labels (:meth:`ZarrWriter.canvas` band by band)
  and how :func:`write_mosaic` writes an image (both in :mod:`napari_zonation.mosaic_writer`,
  importable from here).
- :func:`open_labels`: labels written by :class:`ZarrWriter`, refused when incomplete.

Nothing here imports zarr or dask until a function needs them: ``import napari_zonation``
stays light.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._validation import ZonationInputError
from .mosaic_writer import (  # noqa: F401 - importable from here as before
    _KEY,
    LABEL_CHUNK,
    PYRAMID_MIN_SIDE,
    ZarrWriter,
    _check_dtype,
    _pyramid_shapes,
    _squeezed_yx,
    _zarr,
    write_mosaic,
)

__all__ = [
    "LABEL_CHUNK",
    "LAZY_TIFF_PIXELS",
    "Mosaic",
    "ZarrWriter",
    "is_labels_store",
    "is_mosaic",
    "is_zarr_path",
    "open_labels",
    "open_mosaic",
    "write_mosaic",
]

#: A TIFF with more pixels than this is read lazily by the command line (beyond it the
#: in-memory pipeline needs several GB).
LAZY_TIFF_PIXELS = 8192 * 8192
_UNITS_UM = {
    "micrometer": 1.0, "micrometre": 1.0, "micron": 1.0, "um": 1.0, "µm": 1.0,
    "nanometer": 1e-3, "nanometre": 1e-3, "nm": 1e-3,
    "millimeter": 1e3, "millimetre": 1e3, "mm": 1e3,
    "meter": 1e6, "metre": 1e6, "m": 1e6, "centimeter": 1e4, "cm": 1e4,
    "angstrom": 1e-4,
}


def _dask_array():
    try:
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - dask comes with napari
        raise ZonationInputError(
            "mosaics are read as dask arrays: pip install 'dask[array]'"
        ) from exc
    return da


@dataclass
class Mosaic:
    """A lazily read 2D image (or labels) and its lower resolutions.

    Attributes
    ----------
    data : dask.array.Array
        The full resolution, ``(y, x)``, read chunk by chunk.
    levels : list of dask.array.Array
        Every resolution, full first (``[data]`` for a single-resolution store); what napari
        shows as a multiscale layer.
    pixel_size_um : float or None
        Micrometres per pixel of ``data``, from the store's metadata (None when absent).
    path : pathlib.Path
        Where it was read from.
    source : str
        ``"zarr"``, ``"ome-zarr"``, ``"tiff"`` or ``"labels"``.
    info : dict
        ``pixel_size_source``, ``notes`` (what was done to read it), and for labels the
        attributes written with them (``n_crystals``, ...).
    """

    data: object
    levels: list
    pixel_size_um: float | None
    path: Path
    source: str
    info: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """Full-resolution ``(rows, cols)``."""
        return int(self.data.shape[0]), int(self.data.shape[1])


# --------------------------------------------------------------------------------------------
# what is a mosaic


def is_zarr_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a zarr store: a ``.zarr`` folder, or a folder holding zarr
    metadata (``zarr.json``, ``.zarray``, ``.zgroup``)."""
    p = Path(path)
    if p.suffix.lower() == ".zarr":
        return True
    return p.is_dir() and any((p / m).exists() for m in ("zarr.json", ".zarray", ".zgroup"))


def is_mosaic(path: str | os.PathLike, *, lazy_pixels: int = LAZY_TIFF_PIXELS) -> bool:
    """Whether the command line reads ``path`` lazily: a zarr store, or a TIFF of one grey
    image larger than ``lazy_pixels`` pixels."""
    if is_zarr_path(path):
        return True
    p = Path(path)
    if p.suffix.lower() not in (".tif", ".tiff") or not p.is_file():
        return False
    from .io import image_header

    header = image_header(p)
    rows, cols = header.yx
    return header.info.get("layout") == "grey" and rows * cols > lazy_pixels


# --------------------------------------------------------------------------------------------
# reading


def _missing_chunks(arr) -> list[tuple[int, ...]]:
    """Chunk coordinates of a zarr array whose chunk is not in its store."""
    if arr.nchunks_initialized == arr.nchunks:
        return []
    try:
        from zarr.core.sync import sync

        store, prefix = arr.store_path.store, arr.store_path.path

        async def keys():
            start = f"{prefix}/" if prefix else ""
            return {k[len(start):] async for k in store.list_prefix(start)}

        present = sync(keys())
        grid = itertools.product(*(range(n) for n in arr.cdata_shape))
        return [c for c in grid if arr.metadata.encode_chunk_key(c) not in present]
    except Exception:  # noqa: BLE001 - a store that cannot be listed: count only
        return [()] * (arr.nchunks - arr.nchunks_initialized)


def _refuse_missing(arr, name: str) -> None:
    missing = _missing_chunks(arr)
    if not missing:
        return
    first = missing[0]
    where = ""
    if first:
        ch = arr.chunks
        rows = first[-2] * ch[-2], min((first[-2] + 1) * ch[-2], arr.shape[-2])
        cols = first[-1] * ch[-1], min((first[-1] + 1) * ch[-1], arr.shape[-1])
        where = f" (the first at rows {rows[0]}-{rows[1]}, columns {cols[0]}-{cols[1]})"
    raise ZonationInputError(
        f"{name}: {len(missing)} of {arr.nchunks} chunks are missing from the store{where}; "
        "a copy or conversion that was interrupted? Copy or write the store again. If those "
        f"regions are meant to read as the fill value ({arr.fill_value}), as zarr leaves "
        "empty chunks unwritten, pass allow_missing_chunks=True (--allow-missing-chunks)."
    )


def _scale_um(ms: dict, index: int, axes: list[dict]) -> tuple[float | None, str]:
    """Micrometres per pixel of dataset ``index`` of an OME-Zarr multiscale (y and x)."""
    try:
        ds = ms["datasets"][index]
        scale = None
        for t in ds.get("coordinateTransformations", []):
            if t.get("type") == "scale":
                scale = [float(v) for v in t["scale"]]
        for t in ms.get("coordinateTransformations", []) or []:
            if t.get("type") == "scale" and scale is not None:
                scale = [a * float(b) for a, b in zip(scale, t["scale"], strict=True)]
    except (KeyError, TypeError, ValueError, IndexError):
        return None, "no scale in the OME-Zarr metadata"
    if scale is None or len(scale) < 2:
        return None, "no scale in the OME-Zarr metadata"
    units = [str(a.get("unit", "")).lower() if isinstance(a, dict) else "" for a in axes]
    sy, sx = scale[-2], scale[-1]
    uy = units[-2] if len(units) >= 2 else ""
    factor = _UNITS_UM.get(uy)
    if factor is None:
        return None, (
            f"the OME-Zarr scale has no length unit ({uy or 'none'}); its pixel size is unknown"
        )
    if abs(sy - sx) > 1e-6 * max(abs(sx), 1e-12):
        return None, f"the OME-Zarr pixels are not square ({sy} x {sx} {uy})"
    return sx * factor, "OME-Zarr multiscales scale"


def _zarr_levels(node, name: str) -> tuple[list, list[str] | None, float | None, str, str]:
    """The arrays of a zarr node, full resolution first, their axis names, the pixel size,
    where it came from and the kind of store."""
    zarr = _zarr()
    attrs = dict(node.attrs)
    own = attrs.get(_KEY, {}) if isinstance(attrs.get(_KEY), dict) else {}
    px = own.get("pixel_size_um")
    px_source = "napari-zonation metadata" if px is not None else "none"
    if isinstance(node, zarr.Array):
        return [node], None, px, px_source, "zarr"
    ome = attrs.get("ome") if isinstance(attrs.get("ome"), dict) else attrs
    multiscales = ome.get("multiscales")
    if multiscales:
        ms = multiscales[0]
        axes = ms.get("axes") or []
        names = [a.get("name") if isinstance(a, dict) else str(a) for a in axes] or None
        try:
            arrays = [node[d["path"]] for d in ms["datasets"]]
        except (KeyError, TypeError) as exc:
            raise ZonationInputError(
                f"{name}: its OME-Zarr multiscales metadata names a dataset the store does "
                f"not hold ({exc}); the store is incomplete or damaged."
            ) from exc
        if px is None:
            px, px_source = _scale_um(ms, 0, axes)
            if px is None:
                px_source = px_source or "none"
        return arrays, names, px, px_source, "ome-zarr"
    arrays = sorted(node.array_keys())
    if len(arrays) == 1:
        return [node[arrays[0]]], None, px, px_source, "zarr"
    if not arrays:
        raise ZonationInputError(
            f"{name} is a zarr group without an array; give the path of the image array "
            "inside it (or an OME-Zarr image)."
        )
    raise ZonationInputError(
        f"{name} is a zarr group of {len(arrays)} arrays ({', '.join(arrays[:6])}) without "
        "multiscales metadata; give the path of the image array, e.g. "
        f"{name}/{arrays[0]}."
    )


def _open_zarr_node(path: Path):
    zarr = _zarr()
    if not path.exists():
        raise ZonationInputError(f"no such zarr store: {path}")
    try:
        return zarr.open(str(path), mode="r")
    except Exception as exc:  # noqa: BLE001 - anything the store raises, named for the user
        raise ZonationInputError(
            f"{path} is not a readable zarr store ({type(exc).__name__}: {exc})."
        ) from exc


def _as_dask(arr, index: tuple) -> object:
    da = _dask_array()
    lazy = da.from_zarr(arr) if hasattr(arr, "store_path") else da.from_array(arr)
    return lazy[index]


def open_mosaic(
    path: str | os.PathLike, *, allow_missing_chunks: bool = False
) -> Mosaic:
    """Open a whole-section mosaic lazily: a zarr store or a large TIFF.

    Parameters
    ----------
    path : str or path-like
        A zarr store (a plain 2D array, a group holding one array, or an OME-Zarr multiscale
        image, zarr format 2 or 3; singleton axes such as ``t``, ``c``, ``z`` of size 1 are
        dropped) or a TIFF of one grey image (tiled or in strips; the levels of a pyramid
        TIFF become the lower resolutions).
    allow_missing_chunks : bool
        Read chunks missing from a zarr store as its fill value. By default a store with
        missing chunks is refused: a copy that was interrupted would otherwise read as black
        squares.

    Returns
    -------
    Mosaic
        The lazy image, its levels and its pixel size (None when the store does not carry
        one).

    Raises
    ------
    ZonationInputError
        A path that does not exist or is not a zarr store or TIFF; an array that is not one 2D
        grey image (a channel axis, a z-stack, 1D) or not numeric; missing chunks; a TIFF
        that is not a single grey image.
    """
    p = Path(path)
    if is_zarr_path(p):
        node = _open_zarr_node(p)
        arrays, axes, px, px_source, kind = _zarr_levels(node, p.name)
        _squeezed_yx(arrays[0].shape, axes, p.name)
        _check_dtype(arrays[0].dtype, p.name)
        if not allow_missing_chunks:
            _refuse_missing(arrays[0], p.name)
        levels = [_as_dask(a, _squeezed_yx(a.shape, axes, p.name)) for a in arrays]
        levels = [lv for lv in levels if lv.ndim == 2]
        return Mosaic(levels[0], levels, px, p, kind, {"pixel_size_source": px_source,
                                                       "notes": []})
    if p.suffix.lower() in (".tif", ".tiff"):
        return _open_tiff_lazily(p)
    if not p.exists():
        raise ZonationInputError(f"no such file or store: {p}")
    raise ZonationInputError(
        f"{p.name} is neither a zarr store nor a TIFF; a mosaic is read from a .zarr store "
        "(OME-Zarr included) or a large TIFF."
    )


class _TiffLevel:
    """One level of a TIFF's first series read window by window (opened once per process,
    so that a dask graph holding it can be sent to other processes)."""

    def __init__(self, path: Path, level: int, shape, dtype) -> None:
        self.path, self.level = Path(path), int(level)
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)
        self._z = None

    def __getstate__(self):
        return {"path": self.path, "level": self.level, "shape": self.shape, "dtype": self.dtype}

    def __setstate__(self, state) -> None:
        self.__init__(state["path"], state["level"], state["shape"], state["dtype"])

    def _array(self):
        if self._z is None:
            import tifffile

            zarr = _zarr()
            store = tifffile.imread(self.path, aszarr=True, series=0, level=self.level)
            self._z = zarr.open(store, mode="r")
        return self._z

    def __getitem__(self, key) -> np.ndarray:
        return np.asarray(self._array()[key])


def _open_tiff_lazily(p: Path) -> Mosaic:
    import tifffile

    from .io import _tiff_header

    header, layout = _tiff_header(p)
    if header.info["layout"] != "grey" or layout.series != (0,):
        raise ZonationInputError(
            f"{p.name} holds {header.info['layout']} of shape {header.shape}; a mosaic is read "
            "lazily only as one 2D grey image. Save the BSE image alone (or read the file "
            "in memory: it is small enough)."
        )
    _check_dtype(header.dtype, p.name)
    with tifffile.TiffFile(p) as tif:
        series = tif.series[0]
        shapes = [tuple(int(n) for n in lv.shape) for lv in series.levels]
        dtypes = [lv.dtype for lv in series.levels]
        page = series.levels[0].keyframe
        tile = (int(page.tilelength), int(page.tilewidth)) if page.is_tiled else None
    da = _dask_array()
    levels = []
    for k, (shape, dtype) in enumerate(zip(shapes, dtypes, strict=True)):
        index = tuple(0 if (n == 1 and i < len(shape) - 2) else slice(None)
                      for i, n in enumerate(shape))
        chunks = tile if tile and k == 0 else (min(shape[-2], 2048), min(shape[-1], 2048))
        chunks = (1,) * (len(shape) - 2) + tuple(max(c, 512) for c in chunks)
        lazy = da.from_array(_TiffLevel(p, k, shape, dtype), chunks=chunks, asarray=True)
        levels.append(lazy[index])
    notes = list(header.info["notes"])
    return Mosaic(levels[0], levels, header.pixel_size_um, p, "tiff",
                  {"pixel_size_source": header.info["pixel_size_source"], "notes": notes})


def is_labels_store(path: str | os.PathLike) -> bool:
    """Whether a zarr store holds labels: written as labels by napari-zonation, or an
    OME-Zarr ``image-label``."""
    try:
        attrs = dict(_open_zarr_node(Path(path)).attrs)
    except ZonationInputError:
        return False
    own = attrs.get(_KEY) if isinstance(attrs.get(_KEY), dict) else {}
    ome = attrs.get("ome") if isinstance(attrs.get("ome"), dict) else attrs
    return own.get("kind") == "labels" or "image-label" in ome


def open_labels(path: str | os.PathLike) -> Mosaic:
    """Open labels written by ``segment_crystals(..., out=path)`` (or :class:`ZarrWriter`).

    Raises
    ------
    ZonationInputError
        The store does not exist, holds no labels, or was not finished (a run that was
        interrupted leaves no store under the final name; one copied while being written
        lacks the completion mark).
    """
    p = Path(path)
    node = _open_zarr_node(p)
    attrs = dict(node.attrs)
    own = attrs.get(_KEY) if isinstance(attrs.get(_KEY), dict) else None
    if own is None or own.get("kind") != "labels":
        arrays, axes, px, px_source, kind = _zarr_levels(node, p.name)
        if not np.issubdtype(np.dtype(arrays[0].dtype), np.integer):
            raise ZonationInputError(
                f"{p.name} holds {arrays[0].dtype} values; labels are integers (0 = not a "
                "crystal)."
            )
        levels = [_as_dask(a, _squeezed_yx(a.shape, axes, p.name)) for a in arrays]
        return Mosaic(levels[0], levels, px, p, kind, {"pixel_size_source": px_source,
                                                       "notes": []})
    if not own.get("complete"):
        raise ZonationInputError(
            f"{p} was not finished (no completion mark): the run that wrote it was "
            "interrupted. Segment the section again (with --overwrite)."
        )
    arrays, axes, px, px_source, _ = _zarr_levels(node, p.name)
    levels = [_as_dask(a, _squeezed_yx(a.shape, axes, p.name)) for a in arrays]
    return Mosaic(levels[0], levels, px, p, "labels",
                  {"pixel_size_source": px_source, "notes": [], **own})
