"""Input checks shared by the core: errors a person can act on."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd


class ZonationInputError(ValueError):
    """Bad input to a napari-zonation function; the message names the problem and the fix."""


class ZonationCancelled(Exception):
    """A long job stopped because the user cancelled it (not a failure)."""


#: most channels a ``(channels, y, x)`` stack of element maps may have
MAX_CHANNELS = 32
#: pixel sizes (micrometres per pixel) of SEM images, from whole-section mosaics (tens of
#: micrometres) to high-magnification images (a few nanometres)
SEM_PIXEL_SIZE_UM = (0.005, 50.0)
#: peak memory of the pipeline per image pixel, bytes (measured about 65-82 B/px on 1024^2 and
#: 2048^2 scenes by ``benchmarks/pipeline_memory.py``; rounded up)
PIPELINE_BYTES_PER_PIXEL = 100


def as_image(image, *, allow_channels: bool = True, name: str = "image") -> np.ndarray:
    """Check and convert an image to a float64 2D array or a (channels, y, x) stack.

    Parameters
    ----------
    image : array-like
        2D greyscale (any integer or float dtype), RGB/RGBA (converted to grey with a
        warning), or a (channels, y, x) stack of element maps.
    allow_channels : bool
        Accept a 3D (channels, y, x) stack.
    name : str
        The argument's name, used in messages.

    Returns
    -------
    numpy.ndarray
        float64, 2D or 3D (channels first). NaNs are kept; callers decide how to handle them.

    Raises
    ------
    ZonationInputError
        For 1D input, empty input, non-numeric dtypes, or shapes that are neither.
    """
    arr = np.asarray(image)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ZonationInputError(
            f"{name} has dtype {arr.dtype}; give a numeric (integer or float) greyscale image."
        )
    if arr.size == 0 or 0 in arr.shape:
        raise ZonationInputError(f"{name} is empty (shape {arr.shape}); give a 2D image.")
    if arr.ndim < 2:
        raise ZonationInputError(
            f"{name} is {arr.ndim}D with shape {arr.shape}; a BSE image must be 2D (rows, cols). "
            "For a 1D profile use read_profiles or a profiles table instead."
        )
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] > 4:
        warnings.warn(
            f"{name} looks like an RGB(A) image (shape {arr.shape}); converting it to grey "
            "with skimage.color.rgb2gray. Save BSE images as single-channel to avoid this.",
            UserWarning,
            stacklevel=3,
        )
        from skimage.color import rgb2gray, rgba2rgb

        rgb = arr[..., :3] if arr.shape[-1] == 4 else arr
        if arr.shape[-1] == 4:
            rgb = rgba2rgb(arr)
        return rgb2gray(rgb).astype(np.float64)
    if arr.ndim == 3:
        if not allow_channels:
            raise ZonationInputError(
                f"{name} is 3D with shape {arr.shape}; this step needs a single 2D image."
            )
        if arr.shape[0] > MAX_CHANNELS:
            raise ZonationInputError(
                f"{name} is 3D with shape {arr.shape}, which is neither (channels, y, x) element "
                f"maps (at most {MAX_CHANNELS} channels) nor RGB (y, x, 3). Pass one 2D slice, or "
                "stack element maps channels first."
            )
        return arr.astype(np.float64)
    if arr.ndim > 3:
        raise ZonationInputError(
            f"{name} has {arr.ndim} dimensions (shape {arr.shape}); expected a 2D image (y, x) "
            "or element maps (channels, y, x)."
        )
    return arr.astype(np.float64)


def check_labels(labels, shape: tuple[int, ...]) -> np.ndarray:
    """Check a labels array against an image shape; return it as int32."""
    lab = np.asarray(labels)
    if lab.shape != tuple(shape):
        raise ZonationInputError(
            f"labels have shape {lab.shape} but the image is {tuple(shape)}; "
            "segment this image (segment_crystals) or pass its own labels."
        )
    if not np.issubdtype(lab.dtype, np.integer):
        if np.issubdtype(lab.dtype, np.floating) and np.all(np.mod(lab[np.isfinite(lab)], 1) == 0):
            lab = np.nan_to_num(lab, nan=0)
        else:
            raise ZonationInputError(
                f"labels have dtype {lab.dtype}; give an integer Labels array (0 = background)."
            )
    if lab.size and lab.min() < 0:
        raise ZonationInputError("labels contain negative ids; use 0 for background, >0 crystals.")
    return lab.astype(np.int32, copy=False)


def check_pixel_size(pixel_size_um) -> float:
    """Return a positive finite pixel size in micrometres, or raise a clear error."""
    if pixel_size_um is None:
        raise ZonationInputError(
            "the pixel size is missing; pass pixel_size_um (micrometres per pixel), read it from "
            "the SEM TIFF metadata (read_sem_tiff), or measure it from the scale bar."
        )
    try:
        px = float(pixel_size_um)
    except (TypeError, ValueError) as exc:
        raise ZonationInputError(
            f"pixel_size_um={pixel_size_um!r} is not a number; give micrometres per pixel."
        ) from exc
    if not np.isfinite(px) or px <= 0:
        raise ZonationInputError(
            f"pixel_size_um={pixel_size_um!r} must be a positive number of micrometres per pixel."
        )
    return px


def _extent(px: float, shape: tuple[int, ...] | None) -> str:
    if not shape:
        return ""
    h, w = (int(n) for n in shape[-2:])
    value, unit = _length(max(h, w) * px)
    scale = value / (max(h, w) * px)
    return f" (the {h} x {w} px image would be {h * px * scale:.3g} x {w * px * scale:.3g} {unit})"


def _length(length_um: float) -> tuple[float, str]:
    """A length in micrometres in the unit that reads best."""
    for factor, unit in ((1e6, "m"), (1e3, "mm"), (1.0, "µm")):
        if length_um >= factor:
            return length_um / factor, unit
    return length_um * 1e3, "nm"


def check_sem_pixel_size(pixel_size_um, shape: tuple[int, ...] | None = None) -> float:
    """Return a pixel size that is plausible for an SEM image, or raise a clear error.

    Parameters
    ----------
    pixel_size_um : float
        Micrometres per pixel.
    shape : tuple of int, optional
        The image's shape; the message then says how wide the image would be.

    Returns
    -------
    float
        The pixel size, within :data:`SEM_PIXEL_SIZE_UM` (0.005-50 µm/px).

    Raises
    ------
    ZonationInputError
        For a missing, non-positive or non-finite value, or one outside that range (most often
        a unit mistake: nanometres or millimetres given as micrometres).
    """
    px = check_pixel_size(pixel_size_um)
    lo, hi = SEM_PIXEL_SIZE_UM
    if not lo <= px <= hi:
        raise ZonationInputError(
            f"pixel size {px:g} µm/px is outside the range of SEM images, {lo:g}-{hi:g} µm/px"
            f"{_extent(px, shape)}; give micrometres per pixel (1 nm = 0.001 µm, "
            "1 mm = 1000 µm), read from the scale bar or the data bar."
        )
    return px


def available_memory_bytes() -> int | None:
    """Memory available to a new allocation (Linux ``MemAvailable``), or None if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MB"


def check_memory(
    shape: tuple[int, ...],
    pixel_size_um: float,
    *,
    itemsize: int = 8,
    block_um: float = 3.0,
    available: int | None = None,
) -> int:
    """Refuse an image the pipeline could not hold in memory, before anything is allocated.

    The estimate is :data:`PIPELINE_BYTES_PER_PIXEL` per pixel of the image padded to whole
    coarse blocks of about ``block_um`` (the segmentation's working blocks: at a tiny pixel
    size one block holds millions of pixels), plus the image itself.

    Parameters
    ----------
    shape : tuple of int
        ``(y, x)`` or ``(channels, y, x)``.
    pixel_size_um : float
        Micrometres per pixel.
    itemsize : int
        Bytes per value of the image as read.
    block_um : float
        Size of the segmentation's coarse blocks in micrometres.
    available : int, optional
        Bytes available (default: :func:`available_memory_bytes`; unknown: no check).

    Returns
    -------
    int
        The estimated peak in bytes.

    Raises
    ------
    ZonationInputError
        When the estimate exceeds the memory available.
    """
    h, w = (int(n) for n in shape[-2:])
    n_channels = int(shape[0]) if len(shape) == 3 else 1
    f = max(1, int(round(block_um / float(pixel_size_um))))
    hp, wp = math.ceil(h / f) * f, math.ceil(w / f) * f
    need = hp * wp * PIPELINE_BYTES_PER_PIXEL + h * w * n_channels * (itemsize + 8)
    free = available_memory_bytes() if available is None else available
    if free is not None and need > free:
        padded = "" if hp * wp <= 1.1 * h * w else (
            f", padded to {hp} x {wp} px (at {pixel_size_um:g} µm/px one {block_um:g} µm "
            f"working block is {f} x {f} px),"
        )
        raise ZonationInputError(
            f"the {h} x {w} px image{padded} needs about {_gb(need)} of memory, more than the "
            f"{_gb(free)} available; check the pixel size, or crop or bin the image (binning "
            "by 2 doubles the pixel size)."
        )
    return need


def check_image_content(image: np.ndarray, *, name: str = "the image") -> None:
    """Refuse an image with nothing to segment: every pixel NaN, or one grey level.

    A stack of element maps is refused when every channel is.

    Raises
    ------
    ZonationInputError
        Naming the constant value, so that a wrong channel or an empty export is recognised.
    """
    arr = np.asarray(image)
    planes = arr.reshape(-1, *arr.shape[-2:]) if arr.ndim == 3 else arr[None]
    levels = []
    for plane in planes:
        finite = plane[np.isfinite(plane)] if np.issubdtype(plane.dtype, np.floating) else plane
        if finite.size == 0:
            levels.append(None)
            continue
        lo, hi = finite.min(), finite.max()
        if lo != hi:
            return
        levels.append(lo)
    if all(level is None for level in levels):
        raise ZonationInputError(
            f"{name} has no finite pixel (all NaN or infinite): there is nothing to segment."
        )
    values = ", ".join(f"{v:g}" for v in levels if v is not None)
    every = "every pixel is" if len(planes) == 1 else "every channel is constant:"
    raise ZonationInputError(
        f"{name} is constant ({every} {values}): there is nothing to segment; check that the "
        "right image or channel was exported."
    )


PROFILE_COLUMNS = ("label", "distance_um", "value")


def check_profiles(prof: pd.DataFrame, *, name: str = "profiles") -> pd.DataFrame:
    """Check a long profiles table: label, distance_um, value, [sigma, ...]."""
    if not isinstance(prof, pd.DataFrame):
        raise ZonationInputError(
            f"{name} must be a pandas DataFrame in long format with columns "
            f"{', '.join(PROFILE_COLUMNS)}; got {type(prof).__name__}."
        )
    missing = [c for c in PROFILE_COLUMNS if c not in prof.columns]
    if missing:
        raise ZonationInputError(
            f"{name} lack the column(s) {missing}; a profiles table has one row per point with "
            f"{', '.join(PROFILE_COLUMNS)} (see rim_profiles, line_profiles, read_profiles)."
        )
    return prof
