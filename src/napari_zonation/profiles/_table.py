"""The long profiles table: column order, channels of an image, skipped items."""

from __future__ import annotations

import warnings

import pandas as pd

from .._validation import (
    ZonationInputError,
    as_image,
)

PROFILE_ORDER = [
    "label",
    "channel",
    "distance_um",
    "value",
    "sigma",
    "n_pixels",
    "rim_skipped_um",
    "source",
]


def _channels(image, channel_names):
    img = as_image(image)
    stack = img[None] if img.ndim == 2 else img
    if channel_names is None:
        names = ["bse"] if img.ndim == 2 else [f"ch{i}" for i in range(stack.shape[0])]
    else:
        names = [str(n) for n in channel_names]
        if len(names) != stack.shape[0]:
            raise ZonationInputError(
                f"{len(names)} channel names for {stack.shape[0]} channels; give one name per "
                "channel of the (channels, y, x) stack."
            )
    return stack, names


def profile_failures(prof: pd.DataFrame) -> pd.DataFrame:
    """The items a profiles call skipped, as a DataFrame of ``label, reason``.

    Parameters
    ----------
    prof : pandas.DataFrame
        A table from :func:`rim_profiles`, :func:`line_profiles` or :func:`traverse_profiles`.

    Returns
    -------
    pandas.DataFrame
        One row per skipped item (empty when none was skipped).
    """
    return pd.DataFrame(list(prof.attrs.get("failures", ())), columns=["label", "reason"])


def _finish(frames, failures, source):
    if frames:
        out = pd.concat(frames, ignore_index=True)
    else:
        out = pd.DataFrame({c: [] for c in PROFILE_ORDER})
    out["source"] = source
    out = out[[c for c in PROFILE_ORDER if c in out.columns]]
    out.attrs["failures"] = tuple((lab, str(why)) for lab, why in failures)
    if failures:
        shown = "; ".join(f"{lab}: {why}" for lab, why in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        warnings.warn(
            f"{len(failures)} profile(s) skipped: {shown}{more}", UserWarning, stacklevel=3
        )
    return out


