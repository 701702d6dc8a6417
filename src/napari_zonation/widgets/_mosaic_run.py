"""The Segment dock on a lazily opened mosaic: labels streamed to a zarr store.

An image layer whose data is not a numpy array in memory (a multiscale layer opened from a
``.zarr`` store or a large TIFF, a dask- or zarr-backed layer) is never read whole: the dock
runs ``segment_crystals(..., out=store)`` (labels written chunk by chunk) and
:func:`napari_zonation.streaming.stream_table` (the crystal table, batch by batch), and shows
the store as a multiscale Labels layer whose features are the table. The store is the one
typed in the dock's "Large mosaics" section, or a temporary one (removed when Python exits).

The progress bar counts the tiles, strips and batches of each stage ("Segmenting: tile 3 of
12"); Cancel stops at the next tile or batch (the running ones finish, a few seconds) and the
dock reports "Cancelled." only once the core has stopped and the store is gone: a cancelled or
failed run leaves no store (neither under its name nor half-written beside it). QA layers
(boundaries, phases, rim band, flags) are not drawn for a mosaic: they would be whole-section
arrays; the flags are columns of the table.
"""

from __future__ import annotations

import atexit
import queue
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
from qtpy.QtWidgets import QLineEdit

from .._validation import ZonationInputError, check_pixel_size
from ._base import Cancelled, Progress
from ._canvas import Section
from ._layers import KEY, ROLE, find_owned, upsert_layer, zmeta
from ._tables import with_index

#: Words of the progress bar per stage of the streamed run.
STAGE_TEXT = {
    "segment": "Segmenting: tile",
    "index": "Indexing the crystals: strip",
    "levels": "Reading the levels: strip",
    "fields": "Reading the groundmass: strip",
    "measure": "Measuring the crystals: batch",
}
_TEMP_DIRS: list[Path] = []


def is_lazy_mosaic(layer) -> bool:
    """True for an image layer that must not be read whole: multiscale, or its data is not a
    numpy array (dask, zarr)."""
    if getattr(layer, "multiscale", False):
        return True
    return not isinstance(layer.data, np.ndarray)


def add_mosaic_options(widget) -> None:
    """Add the "Large mosaics" section (the labels store) to the Segment dock's form."""
    box = Section("Large mosaics (out of core)")
    widget.mosaic_store = QLineEdit()
    widget.mosaic_store.setPlaceholderText("temporary store (removed on exit)")
    widget.mosaic_store.setToolTip(
        "Where the labels of a lazily opened mosaic (a .zarr store, a large TIFF) are "
        "written: a new folder ending in .zarr. Empty: a temporary store."
    )
    box.form.addRow("Labels store", widget.mosaic_store)
    widget._form.addRow(box)
    widget.mosaic_section = box


def _image_data(layer):
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    if getattr(layer, "rgb", False) or len(data.shape) != 2:
        raise ZonationInputError(
            f"'{layer.name}' has shape {tuple(data.shape)}: a mosaic is segmented as one 2D "
            "grey image; write its BSE channel alone to a store and open that."
        )
    return data


def _temp_store(name: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="napari-zonation-mosaic-"))
    if not _TEMP_DIRS:
        atexit.register(lambda: [shutil.rmtree(d, ignore_errors=True) for d in _TEMP_DIRS])
    _TEMP_DIRS.append(folder)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "mosaic"
    return folder / f"{safe}-labels.zarr"


def collect(widget, image, job: str) -> dict:
    """The parameters of a mosaic run (main thread): the lazy image, never read here."""
    if job != "segment":
        what = {"scribbles": "training on scribbles", "reference": "a one-shot reference"}
        raise ZonationInputError(
            f"{what.get(job, job)} is not available on a lazily opened mosaic ('{image.name}'):"
            " open a crop of it as an image in memory, or segment the whole mosaic."
        )
    data = _image_data(image)
    text = widget.mosaic_store.text().strip()
    if text:
        store = Path(text).expanduser()
        if store.exists():
            raise ZonationInputError(
                f"{store} already exists; type a new .zarr folder for the labels, or delete "
                "it first (the dock never replaces a store)."
            )
    else:
        store = _temp_store(image.name)
    contrast = widget.contrast.value()
    return {
        "job": "mosaic",
        "layer": image,
        "image": data,
        "rgb": False,
        "pixel_size_um": check_pixel_size(widget.pixel_size.value()),
        "store": store,
        "options": {
            "min_area_um2": widget.min_area.value(),
            "smooth_um": widget.smooth.value(),
            "contrast": None if contrast <= 0 else contrast,
            "close_um": widget.close_um.value(),
            "split_touching": widget.split.isChecked(),
            "background": widget.background.currentText(),
        },
    }


def segment_mosaic(image, px: float, store: Path, options: dict, progress) -> dict:
    """The core of a mosaic run (a worker thread): labels to ``store``, then the streamed
    crystal table; ``progress(stage, done, total)``. On any error (a cancel) the store is
    removed."""
    from ..segment import segment_crystals
    from ..streaming import stream_table

    labels, info = segment_crystals(
        image, px, out=store, return_info=True,
        progress=lambda done, total: progress("segment", done, total), **options,
    )
    try:
        table = stream_table(image, labels, px, progress=progress)
    except BaseException:
        shutil.rmtree(store, ignore_errors=True)
        raise
    level = info.get("reference") if info.get("background") == "groundmass" else None
    return {"store": store, "table": table, "groundmass_level": level}


def _message(stage: str, done: int, total: int) -> Progress:
    words = STAGE_TEXT.get(stage, stage)
    return Progress(done, max(1, total), f"{words} {done} of {total}…")


def work(widget, p: dict):
    """The thread worker's generator: yields :class:`Progress` per tile, strip or batch and
    returns :func:`segment_mosaic`'s result; after Cancel it waits until the core has
    stopped, removes the store if the core finished meanwhile, and raises ``Cancelled``."""
    updates: queue.Queue = queue.Queue()
    cancel = widget._cancel_event
    outcome: dict = {}

    def progress(stage: str, done: int, total: int) -> None:
        if cancel.is_set():
            raise Cancelled()
        updates.put((stage, done, total))

    def target() -> None:
        try:
            outcome["result"] = segment_mosaic(
                p["image"], p["pixel_size_um"], p["store"], p["options"], progress
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the generator
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="napari-zonation-mosaic", daemon=True)
    thread.start()
    while thread.is_alive() or not updates.empty():
        if cancel.is_set():
            thread.join()  # the core stops at its next tile or batch and cleans up
            shutil.rmtree(p["store"], ignore_errors=True)  # it had just finished
            raise Cancelled()
        try:
            yield _message(*updates.get(timeout=0.1))
        except queue.Empty:
            pass
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    if cancel.is_set():
        shutil.rmtree(p["store"], ignore_errors=True)
        raise Cancelled()
    yield Progress(1, 1, "Done.")
    return outcome["result"]


def apply(widget, p: dict, r: dict) -> None:
    """Show the store as the plugin's multiscale ``<image> crystals`` Labels layer."""
    from ..mosaic import open_labels

    image, px = p["layer"], p["pixel_size_um"]
    viewer = widget.viewer
    if image not in viewer.layers:
        raise ZonationInputError(f"the image layer '{image.name}' was removed meanwhile.")
    md = zmeta(image)
    if md.get(KEY.pixel_size_um) != px:
        md[KEY.pixel_size_um] = px
        md.setdefault(KEY.pixel_size_source, "entered in Segment crystals")
    mosaic = open_labels(r["store"])
    for role in (ROLE.crystals, ROLE.boundaries, ROLE.phases, ROLE.rim_band, ROLE.flagged,
                 ROLE.traverses):
        old = find_owned(viewer, role, image)  # ours: made from the previous labels
        if old is not None:
            viewer.layers.remove(old)
    scale = tuple(float(s) for s in image.scale[-2:])
    if not np.allclose(scale, px):  # the image carries the pixel size, as for any run
        image.scale = (px, px)
        scale = (px, px)
    table = r["table"]
    layer = upsert_layer(
        viewer,
        "labels",
        mosaic.levels,
        role=ROLE.crystals,
        source=image,
        name=f"{image.name} crystals",
        meta={KEY.pixel_size_um: px, KEY.groundmass_level: r.get("groundmass_level"),
              KEY.labels_store: str(r["store"])},
        features=with_index(table),
        multiscale=True,
        scale=scale,
        translate=tuple(float(t) for t in image.translate[-2:]),
    )
    viewer.layers.selection.active = layer
    widget.set_status(
        f"{len(table)} crystals in '{layer.name}', labels in {r['store']} ({px:g} µm/px; "
        "a mosaic: QA flags are columns of the table, no QA layers)."
    )
