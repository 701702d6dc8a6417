"""Feature tables of layers and the long profiles tables the layers carry.

A crystal table in ``Labels.features`` has an ``index`` column holding the label ids, so napari
maps rows to labels by id; the whole DataFrame is reassigned so ``events.features`` fires. The
profiles of a layer are its ``metadata["napari_zonation"]["profiles"]`` (the core's long table).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..channels import select_channel
from ._layers import KEY, zmeta

#: Boolean QA columns of the crystal table that mark a crystal as flagged.
QA_FLAGS = (
    "low_contrast",
    "cracked",
    "touching",
    "touches_border",
    "faint_edge",
    "rim_near_groundmass",
)


def with_index(table: pd.DataFrame, key: str = "label") -> pd.DataFrame:
    """The table with an ``index`` column (first) holding the label ids, as napari wants."""
    t = table.drop(columns=["index"], errors="ignore").reset_index(drop=True).copy()
    if key in t.columns:
        t.insert(0, "index", pd.to_numeric(t[key], errors="coerce").fillna(-1).astype(int))
    return t


def table_of(layer) -> pd.DataFrame:
    """The layer's features without napari's ``index`` column (a copy)."""
    feats = getattr(layer, "features", None)
    if feats is None or len(feats.columns) == 0:
        return pd.DataFrame()
    return feats.drop(columns=["index"], errors="ignore").reset_index(drop=True).copy()


def merge_table(
    old: pd.DataFrame, new: pd.DataFrame, key: str = "label", how: str = "outer"
) -> pd.DataFrame:
    """``new`` joined onto ``old`` by ``key``: columns of ``new`` replace those of ``old``,
    the other columns of ``old`` are kept, and old rows keep their order (``how="left"``
    keeps exactly the rows of ``old``)."""
    old = old.drop(columns=["index"], errors="ignore")
    new = new.drop(columns=["index"], errors="ignore")
    if old.empty or key not in old.columns:
        return new.reset_index(drop=True)
    keep = [c for c in old.columns if c == key or c not in new.columns]
    new = new.drop_duplicates(subset=[key])
    return old[keep].merge(new, on=key, how=how, sort=False).reset_index(drop=True)


def set_table(layer, table: pd.DataFrame, key: str = "label") -> None:
    """Reassign a Labels layer's features (with the ``index`` column)."""
    layer.features = with_index(table, key)


def profiles_of(layer, calibrated: bool = False) -> pd.DataFrame | None:
    """The long profiles table a layer carries in its metadata, or None.

    With ``calibrated``, the calibrated copy (Profiles widget, Calibration tab:
    ``profiles_calibrated``, values in composition) when the layer has one.
    """
    if layer is None:
        return None
    md = zmeta(layer, create=False)
    if calibrated and isinstance(md.get(KEY.profiles_calibrated), pd.DataFrame):
        return md[KEY.profiles_calibrated]
    prof = md.get(KEY.profiles)
    return prof if isinstance(prof, pd.DataFrame) else None


def described_profiles_of(layer) -> pd.DataFrame | None:
    """The profiles Describe read on a layer (each crystal in the geometry its image shows,
    see :func:`~napari_zonation.profiles.profiles_in_own_geometry`), else its profiles.

    Cluster embeds these, so that the widgets cluster what ``run_pipeline`` clusters.
    """
    md = zmeta(layer, create=False) if layer is not None else {}
    described = md.get(KEY.profiles_described)
    if isinstance(described, pd.DataFrame):
        return described
    return profiles_of(layer)


def quantity_of(prof: pd.DataFrame | None) -> str | None:
    """The calibrated quantity of a profiles table (e.g. ``Fo (mol%)``), or None."""
    if prof is None or "quantity" not in prof.columns or not len(prof):
        return None
    return str(prof["quantity"].iloc[0])


def first_channel(prof: pd.DataFrame) -> pd.DataFrame:
    """The rows of the channel every stage describes (:func:`~napari_zonation.channels.
    select_channel`'s rule: the first in the table's order), without a warning."""
    return select_channel(prof, warn=False)[0]


def value_name(prof: pd.DataFrame | None) -> str:
    """Axis label for a profiles table's values."""
    if prof is not None and "channel" in prof.columns and len(prof):
        ch = str(prof["channel"].iloc[0])
        return "grey (BSE)" if ch == "bse" else ch
    return "value"


def profile_arrays(prof: pd.DataFrame, label) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (distance_um, value) of one profile (first channel)."""
    p = first_channel(prof)
    p = p[p["label"] == label].sort_values("distance_um")
    return p["distance_um"].to_numpy(float), p["value"].to_numpy(float)


def concat(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """``pd.concat`` of tables whose ``attrs`` may hold DataFrames (pandas cannot compare
    those); the result has empty ``attrs``."""
    parts = []
    for f in frames:
        if f is None or not len(f):
            continue
        f = f.copy(deep=False)
        f.attrs = {}
        parts.append(f)
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True)
