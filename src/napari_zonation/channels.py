"""Which channel a stage works on: one rule for every stage.

- :func:`select_channel`: the rows of a multi-channel profiles table that a stage describes
  (the one asked for, else the first in the table's order). The numeric descriptors, the
  offline similarity and the LLM's prompt, plot and crop all describe that channel;
  :func:`image_plane` finds its plane in a ``(channels, y, x)`` stack of element maps.
- :func:`combined_grey`: one grey image from an image or a stack of element maps, the way
  the segmentation sees it (the command line, the report and the Segment widget use it): a
  2D image as it is, an RGB(A) image converted to grey, element maps combined into their
  first principal component (signed to grow with the first channel).
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd

from ._validation import ZonationInputError

__all__ = ["select_channel", "image_plane", "combined_grey"]


def select_channel(
    prof: pd.DataFrame, channel: str | None = None, *, warn: bool = True
) -> tuple[pd.DataFrame, object]:
    """The rows of one channel and its name.

    Parameters
    ----------
    prof : pandas.DataFrame
        Long profiles table, with or without a ``channel`` column.
    channel : str, optional
        The channel to keep. None: the first channel in the table's order (with a
        ``UserWarning`` naming it when there are several and ``warn`` is true).
    warn : bool
        Warn when a channel is chosen among several.

    Returns
    -------
    (pandas.DataFrame, object)
        The rows of the channel and its name (None when the table has no channels).

    Raises
    ------
    ZonationInputError
        A channel that is not in the table.
    """
    if "channel" not in prof.columns:
        if channel is not None:
            raise ZonationInputError(
                f"channel={channel!r} was asked for, but the profiles have no 'channel' column."
            )
        return prof, None
    chans = list(pd.unique(prof["channel"].dropna()))
    if not chans:
        return prof, None
    if channel is None:
        channel = chans[0]
        if len(chans) > 1 and warn:
            warnings.warn(
                f"profiles have {len(chans)} channels {chans}; describing the first, "
                f"{channel!r}. Pass channel= to choose another.",
                UserWarning,
                stacklevel=3,
            )
    elif channel not in chans:
        raise ZonationInputError(
            f"channel={channel!r} is not in the profiles; available channels: {chans}."
        )
    return prof[prof["channel"] == channel], channel


def image_plane(prof: pd.DataFrame, channel: object, n_planes: int) -> int:
    """The plane of a ``(channels, y, x)`` stack that holds ``channel``'s profiles.

    Profiles of a stack list its channels in the stack's order, so the channel's place
    among the table's channels is its plane; a default name ``ch<k>`` is plane ``k``.

    Raises
    ------
    ZonationInputError
        When the plane cannot be told (give the image of that channel alone).
    """
    if channel is None:
        return 0
    chans = list(pd.unique(prof["channel"].dropna())) if "channel" in prof.columns else []
    if len(chans) == n_planes and channel in chans:
        return chans.index(channel)
    m = re.fullmatch(r"ch(\d+)", str(channel))
    if m and int(m.group(1)) < n_planes:
        return int(m.group(1))
    if n_planes == 1:
        return 0
    raise ZonationInputError(
        f"cannot tell which of the image's {n_planes} channels is {channel!r} (the profiles "
        f"list {len(chans)}: {chans}); pass the image of that channel alone."
    )


def combined_grey(image) -> np.ndarray:
    """The grey image the segmentation works on.

    Parameters
    ----------
    image : array-like
        2D grey image, RGB(A) ``(y, x, 3|4)``, or ``(channels, y, x)`` element maps.

    Returns
    -------
    numpy.ndarray
        2D float64 (a 2D image keeps its values; element maps become robust z-scores of
        their first principal component, NaN where a channel is NaN).
    """
    from .segment.source import to_grey  # the segmentation's own combination: one definition

    return np.asarray(to_grey(image)[0], dtype=np.float64)
