"""Which channel of a multi-channel profiles table a stage works on: one rule for all.

Profiles of a ``(channels, y, x)`` stack of element maps carry a ``channel`` column. The
numeric descriptors, the LLM's prompt, plot and crop, and the offline similarity must all
describe the same channel: :func:`select_channel` decides it (the one asked for, else the
first in the table's order), :func:`image_plane` finds that channel's plane in the stack.
"""

from __future__ import annotations

import re
import warnings

import pandas as pd

from ._validation import ZonationInputError

__all__ = ["select_channel", "image_plane"]


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
