"""Reading SEM images and measured profiles; writing results.

- :func:`read_sem_tiff`: a TIFF from an SEM with the pixel size from the instrument's metadata
  (FEI/Thermo, Zeiss, Tescan/others through ImageJ or OME metadata, as parsed by tifffile);
  multi-page TIFFs as element-map channels, other stacks refused with the shapes expected.
- :func:`read_image` / :func:`image_header`: any image the command line and the napari reader
  open (TIFF, PNG, JPEG, BMP, ...), a grey scene stored as RGB read as grey, colour refused;
  the header (shape, dtype, pixel size) without reading the pixels.
- :func:`read_profiles` (from :mod:`napari_zonation.profile_files`): measured 1D profiles
  (EPMA, LA-ICP-MS traverses) from CSV or Excel, one file or a folder.
- :func:`write_results`: labels, profiles and crystal tables to a folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from ._validation import MAX_CHANNELS, ZonationInputError
from .profile_files import read_profiles

__all__ = ["ImageHeader", "image_header", "read_image", "read_profiles", "read_sem_tiff",
           "write_results"]

_UNIT_TO_UM = {
    "m": 1e6, "mm": 1e3, "um": 1.0, "µm": 1.0, "μm": 1.0, "micron": 1.0, "microns": 1.0,
    "micrometer": 1.0, "micrometre": 1.0, "nm": 1e-3, "pm": 1e-6, "\\u00b5m": 1.0,
}


def _pixel_size_from_tiff(tif: tifffile.TiffFile) -> tuple[float | None, str]:
    """Pixel size in um and where it came from, or (None, reason)."""
    fei = tif.fei_metadata
    if fei:
        for section in ("Scan", "EScan", "Image"):
            sec = fei.get(section, {})
            if "PixelWidth" in sec:
                return float(sec["PixelWidth"]) * 1e6, f"FEI/Thermo metadata [{section}]"
    sem = tif.sem_metadata
    if sem:
        for key in ("ap_image_pixel_size", "ap_pixel_size"):
            if key in sem:
                entry = sem[key]
                # tifffile gives ('Image Pixel Size', value, unit)
                value, unit = float(entry[1]), str(entry[2]).strip()
                factor = _UNIT_TO_UM.get(unit.lower() if unit != "µm" else unit)
                if factor is not None:
                    return value * factor, f"Zeiss SEM metadata [{key}]"
    ij = tif.imagej_metadata or {}
    unit = str(ij.get("unit", "")).strip().lower()
    if unit in _UNIT_TO_UM:
        page = tif.pages[0]
        xres = page.tags.get("XResolution")
        if xres is not None:
            num, den = xres.value
            if num > 0:
                return den / num * _UNIT_TO_UM[unit], "ImageJ metadata (unit and XResolution)"
    if tif.is_ome and tif.ome_metadata:
        m = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tif.ome_metadata)
        u = re.search(r'PhysicalSizeXUnit="([^"]+)"', tif.ome_metadata)
        if m:
            factor = _UNIT_TO_UM.get((u.group(1) if u else "um").lower(), 1.0)
            return float(m.group(1)) * factor, "OME-XML PhysicalSizeX"
    page = tif.pages[0]
    unit_tag = page.tags.get("ResolutionUnit")
    xres = page.tags.get("XResolution")
    if unit_tag is not None and xres is not None and int(unit_tag.value) == 3:  # centimetre
        num, den = xres.value
        if num > 0:
            size_um = den / num * 1e4
            if 1e-4 < size_um < 1e3:
                return size_um, "TIFF XResolution (pixels per centimetre)"
    return None, "no pixel size in the TIFF's metadata"


#: file suffixes :func:`read_image` reads (TIFF through tifffile, the others through Pillow)
TIFF_SUFFIXES = (".tif", ".tiff")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
IMAGE_SUFFIXES = TIFF_SUFFIXES + PIL_SUFFIXES

_EXPECTED = (
    "napari-zonation reads a 2D grey image (y, x), element maps as one multi-page TIFF "
    f"(channels, y, x; 2 to {MAX_CHANNELS} pages of one shape) or an RGB image of a grey scene "
    "(y, x, 3)"
)
_AXIS_NAMES = {"Z": "a z-stack (focus series)", "T": "a time series", "R": "tiles or positions"}
#: axes of a stack that may hold element maps: ImageJ / OME channels, plain multi-page files
#: (tifffile's "I" and "Q"), planar samples, and ImageJ's plain stacks (its "slices")
_CHANNEL_AXES = "CIQS"


@dataclass(frozen=True)
class ImageHeader:
    """What :func:`image_header` learns from a file without reading its pixels.

    Attributes
    ----------
    shape : tuple of int
        Shape of the array :func:`read_image` returns: ``(y, x)``, ``(channels, y, x)``, or
        ``(y, x, 3|4)`` for a colour file (reduced to ``(y, x)`` when it holds a grey scene).
    dtype : numpy.dtype
        Its dtype.
    pixel_size_um : float or None
        Micrometres per pixel from the instrument's metadata (TIFF only), else None.
    info : dict
        ``pixel_size_source``, ``instrument``, ``format``, ``layout`` (``"grey"``,
        ``"element maps"`` or ``"colour"``) and ``notes`` (what was done to read the file, each
        a sentence for the user).
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    pixel_size_um: float | None
    info: dict

    @property
    def yx(self) -> tuple[int, int]:
        """The image's (rows, columns)."""
        if self.info.get("layout") == "colour":
            return int(self.shape[0]), int(self.shape[1])
        return int(self.shape[-2]), int(self.shape[-1])


def _checked_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise ZonationInputError(f"no such file: {p}")
    if p.is_dir():
        raise ZonationInputError(
            f"{p} is a folder; give an image file ({', '.join(IMAGE_SUFFIXES)})."
        )
    if p.suffix.lower() not in IMAGE_SUFFIXES:
        raise ZonationInputError(
            f"{p.name}: unsupported file type {p.suffix or '(no suffix)'!r}; napari-zonation reads "
            f"{', '.join(IMAGE_SUFFIXES)}."
        )
    if not os.access(p, os.R_OK):
        raise ZonationInputError(f"{p} is not readable (permission denied).")
    return p


def _instrument(tif: tifffile.TiffFile) -> str:
    if tif.fei_metadata:
        return "fei"
    if tif.sem_metadata:
        return "zeiss"
    if tif.imagej_metadata:
        return "imagej"
    return "ome" if tif.is_ome else "tiff"


@dataclass(frozen=True)
class _TiffLayout:
    """Which series of a TIFF make the image, and how their axes map to (channels, y, x)."""

    series: tuple[int, ...]  # indices into tif.series, stacked as channels when several
    shape: tuple[int, ...]  # shape read_sem_tiff returns
    dtype: np.dtype
    layout: str  # "grey", "element maps", "colour"
    notes: tuple[str, ...]
    squeeze: tuple[int, ...] = ()  # singleton axes of the series removed
    channels_last: bool = False  # (y, x, c) samples moved to the front


def _tiff_layout(tif: tifffile.TiffFile, name: str) -> _TiffLayout:
    """Decide how a TIFF's series become one image, or refuse with the expected shapes."""
    series = list(tif.series)
    if not series:
        raise ZonationInputError(
            f"{name} holds no readable image; the file may be truncated or not a TIFF."
        )
    notes: list[str] = []
    first = series[0]
    used = [0]
    if len(series) > 1:
        shapes = [tuple(s.shape) for s in series]
        same = all(
            sh == shapes[0] and s.dtype == first.dtype
            for sh, s in zip(shapes, series, strict=True)
        )
        small = all(
            all(a * 2 <= b for a, b in zip(sh[-2:], shapes[0][-2:], strict=True))
            for sh in shapes[1:]
        )
        if same and len(shapes[0]) == 2:
            used = list(range(len(series)))
        elif small:
            notes.append(
                f"{name}: read its first image {shapes[0]}; the {len(series) - 1} smaller "
                "image(s) after it look like previews and were left out."
            )
        else:
            raise ZonationInputError(
                f"{name} holds {len(series)} images of shapes {', '.join(map(str, shapes))}; "
                f"{_EXPECTED}. Save the BSE image alone, or the element maps as pages of one shape."
            )
    axes, shape = str(first.axes), tuple(int(n) for n in first.shape)
    squeeze = tuple(i for i, (a, n) in enumerate(zip(axes, shape, strict=True))
                    if n == 1 and a not in "YX")
    axes = "".join(a for i, a in enumerate(axes) if i not in squeeze)
    shape = tuple(n for i, n in enumerate(shape) if i not in squeeze)
    dtype = np.dtype(first.dtype)
    stored = tuple(int(n) for n in first.shape)
    described = f"{name} holds an array of shape {stored} (axes {first.axes})"
    if len(used) > 1:
        if len(used) > MAX_CHANNELS:
            raise ZonationInputError(f"{described} in {len(used)} images; {_EXPECTED}.")
        notes.append(
            f"{name}: its {len(used)} images of shape {shape} read as element-map channels "
            "(the first one leads the grey combination: put the BSE image or the map that is "
            "bright where BSE is bright first)."
        )
        return _TiffLayout(tuple(used), (len(used), *shape), dtype, "element maps", tuple(notes))
    if axes == "YX":
        return _TiffLayout((0,), shape, dtype, "grey", tuple(notes), squeeze)
    if axes == "YXS" and shape[-1] in (3, 4):
        return _TiffLayout((0,), shape, dtype, "colour", tuple(notes), squeeze)
    channels_last = axes == "YXS"
    lead = axes[-1] if channels_last else axes[0]
    n = shape[-1] if channels_last else shape[0]
    if len(axes) != 3 or axes.replace(lead, "", 1) != "YX":
        raise ZonationInputError(f"{described}; {_EXPECTED}.")
    is_imagej_stack = lead == "Z" and first.kind == "imagej"
    if lead not in _CHANNEL_AXES and not is_imagej_stack:
        what = _AXIS_NAMES.get(lead, f"a stack along axis {lead!r}")
        raise ZonationInputError(
            f"{described}: {what}, not element maps; {_EXPECTED}. Save one plane, or the "
            "element maps as channels."
        )
    if n > MAX_CHANNELS:
        raise ZonationInputError(
            f"{described}: {n} planes are too many for element maps; {_EXPECTED}. If these are "
            "element maps stored channels last, save them channels first."
        )
    out_shape = (n, *shape[:2]) if channels_last else shape
    notes.append(
        f"{name}: its {n} planes of {out_shape[1]} x {out_shape[2]} px read as element-map "
        "channels (the first one leads the grey combination: put the BSE image or the map "
        "that is bright where BSE is bright first)."
    )
    return _TiffLayout((0,), out_shape, dtype, "element maps", tuple(notes), squeeze,
                       channels_last)


@contextlib.contextmanager
def _quiet_tifffile():
    """tifffile logs what it skips in a damaged file; the error raised here says it once."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _open_tiff(p: Path):
    try:
        with _quiet_tifffile():
            return tifffile.TiffFile(p)
    except (tifffile.TiffFileError, OSError, ValueError, struct.error) as exc:
        raise ZonationInputError(
            f"{p.name} is not a readable TIFF ({exc}); the file may be truncated or not a TIFF."
        ) from exc


def _tiff_header(p: Path) -> tuple[ImageHeader, _TiffLayout]:
    with _open_tiff(p) as tif, _quiet_tifffile():
        try:
            layout = _tiff_layout(tif, p.name)
            px, source = _pixel_size_from_tiff(tif)
            kind = _instrument(tif)
        except ZonationInputError:
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged file, named for the user
            raise ZonationInputError(
                f"{p.name}: its TIFF structure could not be read ({type(exc).__name__}: {exc})."
            ) from exc
    info = {"pixel_size_source": source, "instrument": kind, "format": "tiff",
            "layout": layout.layout, "notes": list(layout.notes)}
    return ImageHeader(layout.shape, layout.dtype, px, info), layout


def _read_tiff(p: Path) -> tuple[np.ndarray, ImageHeader]:
    header, layout = _tiff_header(p)
    try:
        with _open_tiff(p) as tif, _quiet_tifffile():
            arrays = [tif.series[i].asarray() for i in layout.series]
    except ZonationInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt strips, bad compression, ...
        raise ZonationInputError(
            f"{p.name}: its pixels could not be read ({type(exc).__name__}: {exc}); the file "
            "may be truncated or damaged."
        ) from exc
    if len(arrays) > 1:
        image = np.stack(arrays)
    else:
        image = arrays[0]
        if layout.squeeze:
            image = np.squeeze(image, axis=layout.squeeze)
        if layout.channels_last:
            image = np.moveaxis(image, -1, 0)
    return np.ascontiguousarray(image), header


_PIL_MODES = {"1": "grey", "L": "grey", "I": "grey", "F": "grey", "I;16": "grey",
              "I;16B": "grey", "I;16L": "grey", "I;16N": "grey", "LA": "colour",
              "La": "colour", "RGB": "colour", "RGBA": "colour", "RGBa": "colour",
              "P": "colour", "PA": "colour", "CMYK": "colour", "YCbCr": "colour",
              "LAB": "colour", "HSV": "colour"}


def _pil_open(p: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(p)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ZonationInputError(
            f"{p.name} could not be read as an image ({exc}); the file may be truncated or not "
            f"a {p.suffix.lstrip('.').upper()} image."
        ) from exc


def _pil_header(p: Path) -> ImageHeader:
    with _pil_open(p) as im:
        frames = int(getattr(im, "n_frames", 1))
        mode, (w, h), fmt = im.mode, im.size, (im.format or p.suffix.lstrip(".")).lower()
    if frames > 1:
        raise ZonationInputError(
            f"{p.name} holds {frames} frames (an animation); {_EXPECTED}. Save one frame, or "
            "element maps as a multi-page TIFF."
        )
    layout = _PIL_MODES.get(mode)
    if layout is None:
        raise ZonationInputError(f"{p.name}: pixel mode {mode!r} is not supported; {_EXPECTED}.")
    if layout == "grey":
        dtype = {"1": np.uint8, "L": np.uint8, "I": np.int32, "F": np.float32}.get(mode, np.uint16)
        shape: tuple[int, ...] = (h, w)
    else:
        dtype, shape = np.uint8, (h, w, 4 if mode in ("LA", "La", "RGBA", "RGBa", "PA") else 3)
    info = {"pixel_size_source": f"a {fmt.upper()} file carries no SEM pixel size",
            "instrument": fmt, "format": fmt, "layout": layout, "notes": []}
    return ImageHeader(shape, np.dtype(dtype), None, info)


def _read_pil(p: Path) -> tuple[np.ndarray, ImageHeader]:
    header = _pil_header(p)
    try:
        with _pil_open(p) as im:
            mode = im.mode
            if mode == "1":
                im = im.convert("L")
            elif mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB")
            elif mode in ("LA", "La", "RGBa"):
                im = im.convert("RGBA")
            im.load()
            image = np.array(im)
    except ZonationInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for damaged files
        raise ZonationInputError(
            f"{p.name} could not be read as an image ({type(exc).__name__}: {exc}); the file "
            "may be truncated or damaged."
        ) from exc
    if image.ndim == 3 and header.shape[-1] != image.shape[-1]:
        header = ImageHeader(image.shape, image.dtype, None, header.info)
    return image, header


def image_header(path: str | os.PathLike) -> ImageHeader:
    """Shape, dtype and pixel size of an image file, from its header (no pixels read).

    Lets a caller refuse a file that is too large or of an unsupported layout before reading
    it. Raises the same :class:`ZonationInputError` as :func:`read_image` for a missing,
    unreadable or unsupported file; a colour image's check (grey scene or not) needs its
    pixels and is left to :func:`read_image`.
    """
    p = _checked_path(path)
    if p.suffix.lower() in TIFF_SUFFIXES:
        return _tiff_header(p)[0]
    return _pil_header(p)


def _grey_scene(rgb: np.ndarray) -> bool:
    """True when an (y, x, 3) image shows a grey scene: its channels agree within 3 % of the
    value range on 99 % of the pixels (JPEG noise and a coloured annotation allowed)."""
    sample = rgb.reshape(-1, 3)[:: max(1, rgb.shape[0] * rgb.shape[1] // 1_000_000)]
    sample = sample.astype(np.float64)
    spread = sample.max(axis=1) - sample.min(axis=1)
    if np.issubdtype(rgb.dtype, np.integer):
        full = float(np.iinfo(rgb.dtype).max)
    else:
        full = float(np.nanmax(sample) - np.nanmin(sample)) or 1.0
    return bool(np.nanpercentile(spread, 99) <= 0.03 * full)


def _reduce_colour(image: np.ndarray, name: str, colour: str) -> tuple[np.ndarray, str | None]:
    """A colour (y, x, 3|4) array as grey when it shows a grey scene; else kept or refused."""
    rgb, alpha = image[..., :3], (image[..., 3] if image.shape[-1] == 4 else None)
    if alpha is not None and np.ptp(alpha) > 0:
        if colour == "keep":
            return image, None
        raise ZonationInputError(
            f"{name} has transparent pixels (an alpha channel that varies); export the BSE "
            "image without transparency, as a single-channel grey image."
        )
    if _grey_scene(rgb):
        grey = rgb.astype(np.float64).mean(axis=-1)
        if np.issubdtype(image.dtype, np.integer):
            grey = np.round(grey).astype(image.dtype)
        return grey, (
            f"{name}: a grey image stored as RGB; its three channels (equal within 3 % of the "
            "range) were averaged into one grey image."
        )
    if colour == "keep":
        return image, None
    raise ZonationInputError(
        f"{name} is a colour image (its RGB channels differ: a false-colour map, an annotated "
        "screenshot or a phase map?), not a grey BSE image. Export the detector's grey image "
        "as a single channel, or element maps as pages of one multi-page TIFF."
    )


def read_image(
    path: str | os.PathLike, *, colour: str = "refuse"
) -> tuple[np.ndarray, float | None, dict]:
    """Read a BSE image or element maps, with the pixel size when the file carries it.

    Parameters
    ----------
    path : str or path-like
        A TIFF (SEM TIFFs with their pixel size, see :func:`read_sem_tiff`; multi-page TIFFs as
        element maps), PNG, JPEG, BMP, GIF or WebP file.
    colour : {"refuse", "keep"}
        What to do with a colour image whose channels differ (a grey scene stored as RGB is
        always read as grey): ``"refuse"`` raises, ``"keep"`` returns it as ``(y, x, 3|4)``
        (for display).

    Returns
    -------
    image : numpy.ndarray
        ``(y, x)`` grey, ``(channels, y, x)`` element maps, or with ``colour="keep"`` a colour
        ``(y, x, 3|4)`` array; in the file's dtype.
    pixel_size_um : float or None
        Micrometres per pixel from the instrument's metadata, or None when absent.
    info : dict
        As :attr:`ImageHeader.info`, with ``shape`` and ``dtype`` of the returned array.
        ``notes`` says in words what was done to read the file (pages read as channels,
        previews left out, RGB channels averaged); nothing is done silently.

    Raises
    ------
    ZonationInputError
        For a missing, unreadable, truncated or unsupported file; a stack that is not element
        maps (a z-stack, a time series, more than 32 planes, images of several shapes), with
        the shapes expected; an animation; a colour image with ``colour="refuse"``.
    """
    if colour not in ("refuse", "keep"):
        raise ZonationInputError(f"colour={colour!r}: use 'refuse' or 'keep'.")
    p = _checked_path(path)
    if p.suffix.lower() in TIFF_SUFFIXES:
        image, header = _read_tiff(p)
    else:
        image, header = _read_pil(p)
    info = dict(header.info)
    info["notes"] = list(info["notes"])
    if header.info["layout"] == "colour":
        image, note = _reduce_colour(image, p.name, colour)
        if note:
            info["notes"].append(note)
            info["layout"] = "grey"
    info.update(shape=image.shape, dtype=str(image.dtype))
    return image, header.pixel_size_um, info


def read_sem_tiff(path: str | os.PathLike) -> tuple[np.ndarray, float | None, dict]:
    """Read an SEM TIFF and its pixel size.

    Parameters
    ----------
    path : str or path-like
        A TIFF written by an SEM (FEI/Thermo, Zeiss, ...), or any TIFF.

    Returns
    -------
    image : numpy.ndarray
        A 2D BSE image; a multi-page TIFF of 2 to 32 pages of one shape (or an ImageJ/OME
        channel stack) as ``(channels, y, x)`` element maps; an RGB(A) file as stored
        (``(y, x, 3|4)``). Any other layout (a z-stack, a time series, pages of several shapes)
        is refused, never reduced to its first page.
    pixel_size_um : float or None
        Micrometres per pixel from the instrument's metadata, or None when absent: then ask the
        user (napari's reader does) and pass it explicitly to the pipeline.
    info : dict
        ``pixel_size_source`` (where the pixel size came from, or why it is missing),
        ``instrument`` metadata kind, ``layout``, ``notes`` (what was done to read the file),
        and ``shape``/``dtype``. No file path is included.

    Raises
    ------
    ZonationInputError
        For a missing, unreadable or truncated file, or an unsupported layout.
    """
    p = Path(path)
    if not p.exists():
        raise ZonationInputError(f"no such file: {p}")
    image, header = _read_tiff(p)
    info = dict(header.info)
    info.update(shape=image.shape, dtype=str(image.dtype))
    return image, header.pixel_size_um, info


# ----------------------------------------------------------------------------------------
# export


def write_results(
    out_dir: str | os.PathLike,
    *,
    labels: np.ndarray | None = None,
    profiles: pd.DataFrame | None = None,
    crystals: pd.DataFrame | None = None,
    pixel_size_um: float | None = None,
) -> dict[str, Path]:
    """Write ``labels.tif``, ``profiles.csv`` and ``crystals.csv`` to a folder.

    The labels TIFF (int32, zlib) carries the pixel size in its resolution tags (pixels per
    centimetre), which :func:`read_sem_tiff`, ImageJ/Fiji and most readers understand.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if labels is not None:
        kw = {}
        if pixel_size_um:
            per_cm = 1e4 / float(pixel_size_um)
            kw = {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}
        path = out / "labels.tif"
        tifffile.imwrite(path, np.asarray(labels, dtype=np.int32), compression="zlib", **kw)
        written["labels"] = path
    if profiles is not None:
        path = out / "profiles.csv"
        profiles.to_csv(path, index=False)
        written["profiles"] = path
    if crystals is not None:
        path = out / "crystals.csv"
        table = crystals.copy()
        for col in table.columns:  # tuples -> readable strings
            if table[col].map(lambda x: isinstance(x, (tuple, list))).any():
                table[col] = table[col].map(
                    lambda x: ";".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in x)
                    if isinstance(x, (tuple, list)) else x
                )
        table.to_csv(path, index=False)
        written["crystals"] = path
    return written
