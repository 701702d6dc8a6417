"""Pictures of a crystal for multimodal models: its profile plot and a crop of the image.

Both are PNG bytes whose content depends only on the crystal (not on what was drawn
before), so that the cache keys of a re-run are the same. matplotlib (Agg) is imported
when the first picture is made.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np
import pandas as pd

from .._validation import ZonationInputError, as_image, check_labels
from .prompt import profile_arrays

CROP_MAX_SIDE = 384
IMAGE_DETAIL = "low"


def png_data_url(png: bytes) -> str:
    """``data:image/png;base64,...`` of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def image_part(png: bytes) -> dict[str, Any]:
    """A chat-completions image content part holding ``png``."""
    return {"type": "image_url", "image_url": {"url": png_data_url(png), "detail": IMAGE_DETAIL}}


class ProfilePlotter:
    """Profile plots as PNG bytes; one figure reused (about twice as fast as a new one).

    Every artist that depends on the data is reset for each plot and the limits are set from
    the data alone, so a plot's bytes do not depend on the plots made before it.
    """

    def __init__(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.fig = Figure(figsize=(4.0, 2.8), dpi=80)
        FigureCanvasAgg(self.fig)
        self.ax = self.fig.add_subplot(1, 1, 1)
        (self.line,) = self.ax.plot([], [], "-", color="k", linewidth=1.0, marker=".", ms=3)
        self.ax.set_ylabel("value")
        self.title = self.ax.set_title("", fontsize=9)
        self.band = None
        self.fig.subplots_adjust(left=0.2, right=0.96, bottom=0.19, top=0.9)

    def __call__(self, prof: pd.DataFrame, label: int, title: str) -> bytes:
        d, v, s, src = profile_arrays(prof, label)
        ax = self.ax
        if self.band is not None:
            self.band.remove()
            self.band = None
        if s is not None and np.isfinite(s).any():
            self.band = ax.fill_between(d, v - s, v + s, color="0.8", linewidth=0, zorder=1)
        self.line.set_data(d, v)
        self.line.set_zorder(2)
        ax.set_xlabel(
            "distance along line (µm)" if src in ("shape", "traverse") else "distance from rim (µm)"
        )
        self.title.set_text(title)
        dmax = float(np.nanmax(d)) if d.size else 1.0
        ax.set_xlim(min(0.0, float(np.nanmin(d)) if d.size else 0.0), dmax if dmax > 0 else 1.0)
        lo_hi = v if s is None else np.concatenate([v - s, v + s])
        lo_hi = lo_hi[np.isfinite(lo_hi)]
        lo, hi = (float(lo_hi.min()), float(lo_hi.max())) if lo_hi.size else (0.0, 1.0)
        pad = 0.05 * (hi - lo) if hi > lo else max(1.0, abs(hi) * 0.01)
        ax.set_ylim(lo - pad, hi + pad)
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", metadata={"Software": None})
        return buf.getvalue()


class CropMaker:
    """PNG crops of the image around each crystal, with its outline in red.

    Parameters
    ----------
    image : numpy.ndarray
        2D image, or a ``(channels, y, x)`` stack of which plane ``plane`` is shown.
    labels : numpy.ndarray
        Crystal labels of the image's ``(y, x)`` shape.
    plane : int
        The plane of a stack to show: the channel whose profiles are described.
    """

    def __init__(self, image: np.ndarray | None, labels: np.ndarray | None, plane: int = 0):
        if image is None or labels is None:
            raise ZonationInputError(
                "give both image and labels to send crystal crops, or neither (profiles only)."
            )
        img = as_image(image, allow_channels=True)
        if img.ndim == 3:
            if not 0 <= plane < img.shape[0]:
                raise ZonationInputError(
                    f"the image has {img.shape[0]} channels; channel index {plane} is not one."
                )
            img = img[plane]
        self.labels = check_labels(labels, img.shape)
        finite = img[np.isfinite(img)]
        lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
        if not hi > lo:
            hi = lo + 1.0
        self.grey = np.clip((np.nan_to_num(img, nan=lo) - lo) / (hi - lo), 0, 1)
        from scipy import ndimage

        self.slices = ndimage.find_objects(self.labels)

    def png(self, label: int) -> bytes | None:
        """The crop of ``label`` as PNG bytes (None when the label is not in the image)."""
        from matplotlib.image import imsave
        from skimage.segmentation import find_boundaries
        from skimage.transform import downscale_local_mean

        if label < 1 or label > len(self.slices) or self.slices[label - 1] is None:
            return None
        sl = self.slices[label - 1]
        h, w = self.labels.shape
        r0, r1, c0, c1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        pad = max(8, int(0.15 * max(r1 - r0, c1 - c0)))
        r0, r1, c0, c1 = max(0, r0 - pad), min(h, r1 + pad), max(0, c0 - pad), min(w, c1 + pad)
        grey = self.grey[r0:r1, c0:c1]
        mask = self.labels[r0:r1, c0:c1] == label
        side = max(grey.shape)
        if side > CROP_MAX_SIDE:
            f = int(math.ceil(side / CROP_MAX_SIDE))
            grey = downscale_local_mean(grey, (f, f))
            mask = mask[::f, ::f][: grey.shape[0], : grey.shape[1]]
        elif side < 64:
            f = min(8, int(math.ceil(64 / side)))
            grey = np.kron(grey, np.ones((f, f)))
            mask = np.kron(mask, np.ones((f, f), dtype=bool))
        rgb = np.repeat((grey * 255).round().astype(np.uint8)[..., None], 3, axis=2)
        edge = find_boundaries(mask, mode="inner")
        rgb[edge] = (255, 0, 0)
        buf = io.BytesIO()
        imsave(buf, rgb, format="png", metadata={"Software": None})
        return buf.getvalue()
