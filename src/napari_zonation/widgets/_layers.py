"""Layer metadata, ownership and lookup: which layers the plugin made, what they were made
from, their pixel size, and adding or updating a plugin-owned layer.

Plugin metadata lives in ``layer.metadata["napari_zonation"]`` (:data:`META`); its keys are the
fields of :data:`KEY` and the roles of plugin-owned layers the fields of :data:`ROLE`. A layer the
plugin made carries ``owned=True``, its ``role`` and the image layer it was made from
(``image_layer``, ``image_layer_id``). Only owned layers are updated in place; a user's layer is
never overwritten (a new layer is added, and napari appends a number to a clashing name).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

META = "napari_zonation"


@dataclass(frozen=True)
class MetaKeys:
    """The keys of a layer's ``metadata["napari_zonation"]`` dict (each field's value is its
    name: ``md[KEY.profiles]``)."""

    #: True on a layer the plugin made (and may update in place)
    owned: str = "owned"
    #: what a plugin-owned layer is (a field of :data:`ROLE`)
    role: str = "role"
    #: name and unique id of the image layer a layer was made from
    image_layer: str = "image_layer"
    image_layer_id: str = "image_layer_id"
    #: True on a ground-truth layer (the synthetic sample's true crystals): never a target
    ground_truth: str = "ground_truth"
    #: name and unique id of the user's Labels layer a plugin copy was made of
    copy_of: str = "copy_of"
    copy_of_id: str = "copy_of_id"
    #: micrometres per pixel and where the number came from
    pixel_size_um: str = "pixel_size_um"
    pixel_size_source: str = "pixel_size_source"
    #: the long profiles table of the core, its calibrated copy and the options that made it
    profiles: str = "profiles"
    profiles_calibrated: str = "profiles_calibrated"
    profile_options: str = "profile_options"
    #: the profiles Describe read, each crystal in the geometry its image shows (rim-distance
    #: shells or relative radius); Cluster embeds these, as ``run_pipeline`` does
    profiles_described: str = "profiles_described"
    #: the traverse table of the core (traverse profiles)
    traverses: str = "traverses"
    #: a fitted grey -> composition calibration and the spots it was fitted on
    calibration: str = "calibration"
    calibration_spots: str = "calibration_spots"
    #: on a traverses layer: the crystals Labels layer it belongs to
    labels_layer: str = "labels_layer"
    labels_layer_id: str = "labels_layer_id"
    #: band width of drawn-line profiles
    width_um: str = "width_um"
    #: True while the crystals are coloured by cluster
    cluster_colored: str = "cluster_colored"
    #: the groundmass grey of a segmentation and the names of a phase map's classes
    groundmass_level: str = "groundmass_level"
    phase_names: str = "phase_names"
    #: the zarr store a mosaic's labels were written to
    labels_store: str = "labels_store"
    #: the options of the last diffusion fit
    diffusion: str = "diffusion"
    #: on a matches layer: the matched labels and the reference crystal
    labels: str = "labels"
    reference: str = "reference"


@dataclass(frozen=True)
class Roles:
    """The ``role`` of a plugin-owned layer."""

    crystals: str = "crystals"
    boundaries: str = "boundaries"
    phases: str = "phases"
    rim_band: str = "rim band"
    flagged: str = "flagged"
    scribbles: str = "scribbles"
    traverses: str = "traverses"
    calibration_spots: str = "calibration_spots"
    matches: str = "matches"


#: The metadata keys (``md[KEY.profiles]``).
KEY = MetaKeys()
#: The roles of plugin-owned layers (``find_owned(viewer, ROLE.traverses, image)``).
ROLE = Roles()


def key_names() -> tuple[str, ...]:
    """Every metadata key (the values of :data:`KEY`)."""
    return tuple(getattr(KEY, f.name) for f in fields(KEY))


def zmeta(layer, create: bool = True) -> dict:
    """The plugin's metadata dict of a layer (created empty when ``create``)."""
    md = getattr(layer, "metadata", None)
    if md is None:
        return {}
    if META not in md or not isinstance(md.get(META), dict):
        if not create:
            return {}
        md[META] = {}
    return md[META]


def is_owned(layer) -> bool:
    """True for layers the plugin made (and may update in place)."""
    return bool(zmeta(layer, create=False).get(KEY.owned) is True)


def is_crystals(layer) -> bool:
    """True for a Labels layer a picker may offer as crystals: a user's layer or the plugin's
    crystals (not a ground-truth layer, not another plugin-owned role such as phases)."""
    md = zmeta(layer, create=False)
    if md.get(KEY.ground_truth) is True:
        return False
    return not (md.get(KEY.owned) and md.get(KEY.role) not in (None, ROLE.crystals))


def is_ground_truth(layer) -> bool:
    """True for a layer marked as ground truth (the synthetic sample's true crystals): data to
    compare with, never a target the widgets pick or write into."""
    return bool(zmeta(layer, create=False).get(KEY.ground_truth) is True)


def writable_crystals(viewer, layer):
    """The crystals layer results may be written into: ``layer`` itself when the plugin owns
    it, otherwise the plugin's copy of it (made on first use, then reused).

    A user's Labels layer is data: its pixels, features and metadata are never changed. The
    copy (``"<name> (zonation)"``) carries the same labels, scale and features and becomes
    the layer every picker follows.
    """
    if is_owned(layer):
        return layer
    uid = layer_uid(layer)
    for lay in viewer.layers:
        md = zmeta(lay, create=False)
        if (
            md.get(KEY.owned) is True
            and md.get(KEY.role) == ROLE.crystals
            and (md.get(KEY.copy_of_id) == uid if uid else md.get(KEY.copy_of) == layer.name)
        ):
            return lay
    md = {k: v for k, v in zmeta(layer, create=False).items() if k != KEY.ground_truth}
    md.update(
        {KEY.owned: True, KEY.role: ROLE.crystals, KEY.copy_of: layer.name, KEY.copy_of_id: uid}
    )
    kwargs = {"scale": layer.scale, "translate": layer.translate}
    units = getattr(layer, "units", None)
    if units is not None:
        kwargs["units"] = units
    feats = getattr(layer, "features", None)
    if feats is not None and len(feats.columns):
        kwargs["features"] = feats.copy()
    return viewer.add_labels(
        np.array(layer.data, copy=True),
        name=f"{layer.name} (zonation)",
        metadata={META: md},
        **kwargs,
    )


def pixel_size_of(layer) -> tuple[float | None, str]:
    """Micrometres per pixel of a layer and where it came from.

    ``metadata["napari_zonation"]["pixel_size_um"]`` first, then an isotropic, non-unit
    ``scale`` of the last two axes; ``(None, "missing")`` when neither says anything.
    """
    if layer is None:
        return None, "missing"
    px = zmeta(layer, create=False).get(KEY.pixel_size_um)
    if px is not None:
        try:
            px = float(px)
            if np.isfinite(px) and px > 0:
                return px, "metadata"
        except (TypeError, ValueError):
            pass
    sy, sx = (float(s) for s in layer.scale[-2:])
    if np.isclose(sy, sx) and sy > 0 and not np.isclose(sy, 1.0):
        return sy, "scale"
    if np.isclose(sy, sx) and np.isclose(sy, 1.0):
        units = getattr(layer, "units", None)
        if units is not None and any(
            "um" in str(u) or "µm" in str(u) or "micro" in str(u) for u in units[-2:]
        ):
            return 1.0, "scale"
    return None, "missing"


def image_pixel_size(image) -> tuple[float, str]:
    """Micrometres per pixel of an image layer, or 1 with a note saying distances are then in
    pixels (``(pixel_size, note)``; the note is empty when the image has a pixel size)."""
    px, _ = pixel_size_of(image)
    if px is None:
        return 1.0, "no pixel size on the image: distances are in pixels"
    return px, ""


def layer_image(layer) -> np.ndarray:
    """The layer's data as a numpy array (level 0 of a multiscale image)."""
    data = layer.data
    if getattr(layer, "multiscale", False):
        data = data[0]
    return np.asarray(data)


def unwrap(obj):
    """The object behind napari's public-only proxy (plugins get proxied viewers and
    layers; identity, ``id`` and weak references must use the real object)."""
    return getattr(obj, "__wrapped__", obj)


def same(a, b) -> bool:
    """True when two (possibly proxied) objects are the same object."""
    return unwrap(a) is unwrap(b)


def layer_uid(layer) -> str | None:
    return str(getattr(layer, "unique_id", "")) or None


def find_layer(viewer, name: str | None = None, uid: str | None = None):
    """A layer of the viewer by unique id (preferred) or name; None when absent."""
    if uid:
        for lay in viewer.layers:
            if layer_uid(lay) == uid:
                return lay
    if name is not None and name in viewer.layers:
        return viewer.layers[name]
    return None


def source_image(viewer, layer):
    """The image layer a plugin-owned layer was made from (None when it is gone)."""
    md = zmeta(layer, create=False)
    return find_layer(viewer, md.get(KEY.image_layer), md.get(KEY.image_layer_id))


def find_owned(viewer, role: str, source) -> Any:
    """The plugin-owned layer with this role made from ``source`` (a layer), or None."""
    uid = layer_uid(source)
    for lay in viewer.layers:
        md = zmeta(lay, create=False)
        if md.get(KEY.owned) is not True or md.get(KEY.role) != role:
            continue
        if (uid and md.get(KEY.image_layer_id) == uid) or (
            not md.get(KEY.image_layer_id) and md.get(KEY.image_layer) == source.name
        ):
            return lay
    return None


def upsert_layer(
    viewer,
    layer_type: str,
    data,
    *,
    role: str,
    source,
    name: str,
    meta: dict | None = None,
    features: pd.DataFrame | None = None,
    **kwargs,
):
    """Update the plugin-owned ``role`` layer of ``source`` in place, or add a new one.

    A user's layer with the same name is left alone: napari gives the new layer a numbered
    name. ``kwargs`` are layer attributes (``scale``, ``colormap``, ...).
    """
    layer = find_owned(viewer, role, source)
    md = {
        KEY.owned: True,
        KEY.role: role,
        KEY.image_layer: source.name,
        KEY.image_layer_id: layer_uid(source),
        **(meta or {}),
    }
    if layer is not None and layer.__class__.__name__.lower() == layer_type:
        if layer_type == "shapes":
            shape_type = kwargs.pop("shape_type", "line")
            edge_color = kwargs.pop("edge_color", None)
            edge_width = kwargs.pop("edge_width", 1)
            layer.selected_data = set()
            layer.data = []
            if len(data):
                layer.add(
                    data,
                    shape_type=shape_type,
                    edge_color="yellow" if edge_color is None else edge_color,
                    edge_width=edge_width,
                )
        else:
            layer.data = data
        for key, value in kwargs.items():
            if key in ("text", "size", "edge_width") and layer_type != "points":
                continue
            setattr(layer, key, value)
        if features is not None:
            layer.features = features
        zmeta(layer).update(md)
        return layer
    kwargs["metadata"] = {META: md}
    if features is not None:
        kwargs["features"] = features
    adder = getattr(viewer, f"add_{layer_type}")
    return adder(data, name=name, **kwargs)


def label_at(layer, event) -> int | None:
    """The crystal (label > 0) under a mouse event on a Labels layer, else None."""
    try:
        value = layer.get_value(
            event.position,
            view_direction=event.view_direction,
            dims_displayed=event.dims_displayed,
            world=True,
        )
    except Exception:  # noqa: BLE001 - a click outside the data
        return None
    if value is None or int(value) <= 0:
        return None
    return int(value)
