"""Shared steps of the GUI tests: the test image, docking a widget, running it to the end."""

from __future__ import annotations

from napari_zonation.synthetic import make_thin_section

PX = 1.5  # um per pixel of the test image: not 1, so a lost scale shows
TIMEOUT_MS = 60_000


def make_sample():
    """The small synthetic section the GUI tests share (8 crystals, ``PX`` um/px)."""
    return make_thin_section((384, 384), n_crystals=8, seed=1, pixel_size_um=PX)


def dock(viewer, name):
    """Dock the plugin's widget ``name`` and return it."""
    _, widget = viewer.window.add_plugin_dock_widget("napari-zonation", name)
    return widget


def run_and_wait(qtbot, widget):
    """Start the widget's thread worker and wait until it has finished and applied."""
    worker = widget.run()
    assert worker is not None, widget.status.text()
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT_MS)
    return worker


def add_image(viewer, sample, **kwargs):
    """The sample as an image layer "bse", its pixel size only in the layer's scale (no plugin
    metadata): the widgets must read it from there."""
    return viewer.add_image(sample.image, name="bse", scale=(PX, PX), **kwargs)


def segmented(viewer, sample):
    """Image + crystals (segmented through the widget, blocking)."""
    image = add_image(viewer, sample)
    seg = dock(viewer, "Segment crystals")
    assert seg.run(blocking=True) is not None, seg.status.text()
    return image, viewer.layers["bse crystals"], seg
