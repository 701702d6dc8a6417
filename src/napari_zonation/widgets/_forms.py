"""Form fields of the docks: spin boxes, layer pickers, and defaults read from the core's
signatures so a default lives once (in the core function)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QHBoxLayout,
    QWidget,
)

from ._layers import is_ground_truth


def spin_box(
    value: float,
    lo: float,
    hi: float,
    step: float,
    decimals: int = 2,
    suffix: str = "",
    special: str | None = None,
) -> QDoubleSpinBox:
    """A QDoubleSpinBox with range, step, decimals, unit suffix and an optional text shown at
    its minimum (``special``, e.g. "auto" or "none")."""
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setDecimals(decimals)
    box.setSingleStep(step)
    box.setValue(value)
    if suffix:
        box.setSuffix(suffix)
    if special:
        box.setSpecialValueText(special)
    return box


def layer_combo(viewer, kinds: tuple, label: str, predicate: Callable | None = None):
    """A magicgui ComboBox of the viewer's layers of the given types (kept up to date by
    :meth:`ZonationWidget.reset_choices`)."""
    from magicgui.widgets import ComboBox

    def choices(_widget=None):
        return [
            (lay.name, lay)
            for lay in viewer.layers
            if isinstance(lay, kinds)
            and not is_ground_truth(lay)
            and (predicate is None or predicate(lay))
        ]

    return ComboBox(label=label, choices=choices, nullable=False)


def core_default(fn: Callable, name: str) -> Any:
    """The default of parameter ``name`` of the core function ``fn`` (read from its signature,
    so a form field's default lives once, in the core)."""
    default = inspect.signature(fn).parameters[name].default
    if default is inspect.Parameter.empty:
        raise TypeError(f"{fn.__name__}() has no default for {name!r}")
    return default


def form_row(*items) -> QWidget:
    """Widgets (and plain strings) side by side in one form row."""
    from qtpy.QtWidgets import QLabel

    box = QWidget()
    lay = QHBoxLayout(box)
    lay.setContentsMargins(0, 0, 0, 0)
    for it in items:
        lay.addWidget(QLabel(it) if isinstance(it, str) else it)
    return box
