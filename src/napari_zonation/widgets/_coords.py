"""Coordinates between layers: shape vertices to image pixels and back, through napari's
world coordinates (scale, translate, rotation, affine)."""

from __future__ import annotations

import numpy as np


def shape_to_image_px(shapes_layer, image_layer, vertices: np.ndarray) -> np.ndarray:
    """Shape vertices (the Shapes layer's data coordinates) -> (row, col) pixel coordinates
    of the image, through world coordinates (scale, translate, rotation, affine)."""
    v = np.asarray(vertices, dtype=float)
    if image_layer is None:
        return v[:, -2:]
    if shapes_layer.ndim == image_layer.ndim:
        out = [image_layer.world_to_data(shapes_layer.data_to_world(p)) for p in v]
        return np.asarray(out, dtype=float)[:, -2:]
    s_scale = np.asarray(shapes_layer.scale[-2:], float)
    s_trans = np.asarray(shapes_layer.translate[-2:], float)
    i_scale = np.asarray(image_layer.scale[-2:], float)
    i_trans = np.asarray(image_layer.translate[-2:], float)
    return (v[:, -2:] * s_scale + s_trans - i_trans) / i_scale


def image_px_to_layer(layer, image_layer, rc: np.ndarray) -> np.ndarray:
    """(row, col) image pixel coordinates -> data coordinates of another 2D layer."""
    rc = np.asarray(rc, dtype=float)
    if image_layer is None or layer.ndim != image_layer.ndim:
        return rc
    return np.asarray([layer.world_to_data(image_layer.data_to_world(p)) for p in rc])
