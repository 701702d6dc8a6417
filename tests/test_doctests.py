"""Run the Examples sections of the public API's docstrings as doctests.

Each example builds its input with ``make_thin_section`` at a small size, so the whole set
takes seconds; a module listed here whose examples stop matching the code fails the suite.
"""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "napari_zonation._stats",
    "napari_zonation.edit",
    "napari_zonation.metrics",
    "napari_zonation.profile_files",
    "napari_zonation.diffusion.api",
    "napari_zonation.datasets",
    "napari_zonation.profiles.rim",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples to run"
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed (above)"
