"""One grey image from an image or a stack of element maps, the way the segmentation sees it.

The command line, the report, the LLM crops and the Segment widget all need a single grey
image of what was segmented. :func:`combined_grey` gives the one the segmentation and
:func:`~napari_zonation.segment.crystal_table` use: a 2D image as it is, an RGB(A) image
converted to grey, element maps ``(channels, y, x)`` combined into their first principal
component (signed to grow with the first channel).
"""

from __future__ import annotations

import numpy as np


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
    from .segment import _to_grey  # the segmentation's own combination: one definition

    return np.asarray(_to_grey(image)[0], dtype=np.float64)
