"""Colours of the docks: phase colours, the tab10 cycle, legends, a label's colour and the
viewer theme's colours for matplotlib."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

TRANSPARENT = np.array([0.0, 0.0, 0.0, 0.0], dtype=np.float32)


PHASE_COLORS = {
    "olivine": (0.40, 0.78, 0.30, 1.0),
    "clinopyroxene": (0.10, 0.55, 0.50, 1.0),
    "orthopyroxene": (0.70, 0.50, 0.20, 1.0),
    "plagioclase": (0.55, 0.75, 1.00, 1.0),
    "oxide": (0.55, 0.55, 0.60, 1.0),
}


UNKNOWN_COLOR = (0.6, 0.6, 0.6, 1.0)


TAB10 = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip


def to_hex(rgba) -> str:
    c = np.clip(np.asarray(rgba, dtype=float).ravel()[:3], 0, 1)
    return "#{:02x}{:02x}{:02x}".format(*(int(round(x * 255)) for x in c))


def phase_color(phase) -> tuple[float, float, float, float]:
    if not isinstance(phase, str):
        return UNKNOWN_COLOR
    return PHASE_COLORS.get(phase.lower(), UNKNOWN_COLOR)


def legend_html(items: Iterable[tuple[Any, str]]) -> str:
    """Rich text legend: one coloured square and its text per line."""
    rows = [
        f'<span style="color:{to_hex(c)}; font-size:14pt">&#9632;</span>&nbsp;{text}'
        for c, text in items
    ]
    return "<br>".join(rows)


def label_color(layer, label: int):
    """The RGBA a Labels layer shows for a label (None when unavailable)."""
    try:
        return np.asarray(layer.colormap.map(np.array([label]))[0], dtype=float)
    except Exception:  # pragma: no cover - colormap API differences
        try:
            return np.asarray(layer.get_color(label), dtype=float)
        except Exception:
            return None


def theme_colors(viewer) -> dict[str, str]:
    """Background, text and grid colours of the viewer's theme, for matplotlib."""
    out = {"bg": "#262930", "fg": "#f0f1f2", "grid": "#5a626c"}
    try:
        from napari.utils.theme import get_theme

        theme = get_theme(viewer.theme)
        out = {
            "bg": theme.background.as_hex(),
            "fg": theme.text.as_hex(),
            "grid": theme.highlight.as_hex(),
        }
    except Exception:  # pragma: no cover - theme API differences
        pass
    return out
