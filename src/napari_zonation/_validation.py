"""Input checks shared by the core: errors a person can act on."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd


class ZonationInputError(ValueError):
    """Bad input to a napari-zonation function; the message names the problem and the fix."""


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
        if arr.shape[0] > 32:
            raise ZonationInputError(
                f"{name} is 3D with shape {arr.shape}, which is neither (channels, y, x) element "
                "maps (at most 32 channels) nor RGB (y, x, 3). Pass one 2D slice, or stack element "
                "maps channels first."
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


PROFILE_COLUMNS = ("label", "distance_um", "value")


def check_profiles(prof: pd.DataFrame, *, name: str = "profiles") -> pd.DataFrame:
    """Check a long profiles table (DESIGN.md): label, distance_um, value, [sigma, ...]."""
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
