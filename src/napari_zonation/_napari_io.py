"""npe2 reader and sample-data contributions (see napari.yaml).

These functions return napari LayerData tuples; they import nothing from napari at module
level, so the core stays importable without Qt.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from .io import TIFF_SUFFIXES, read_image, read_sem_tiff

DATA_DIR = Path(__file__).parent / "data"
PLAGIOCLASE_TIFF = DATA_DIR / "CGI_ns8_1-1.tif"
#: estimated, not measured (+-5 %): see data/README_plagioclase.md
PLAGIOCLASE_PIXEL_SIZE_UM = 1.18


def parse_pixel_size(text: str) -> float | None:
    """Micrometres per pixel typed by a user (``"0.85"``, ``"0,85"``, ``"0.85 um"``); None
    for an empty, unreadable, zero or negative entry."""
    text = text.strip().lower().replace(",", ".")
    for unit in ("µm/px", "um/px", "µm", "um"):
        text = text.removesuffix(unit).strip()
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 < value < float("inf") else None


def ask_pixel_size(name: str) -> float | None:
    """Ask the user for a pixel size; None if cancelled, left empty or there is no GUI.

    The field starts empty: pressing Enter without typing records no pixel size (the layer
    stays in pixels) rather than a made-up 1.0 "entered by the user".
    """
    try:
        from qtpy.QtWidgets import QApplication, QInputDialog, QLineEdit
    except Exception:  # pragma: no cover - no Qt
        return None
    if QApplication.instance() is None:
        return None
    text, ok = QInputDialog.getText(
        None,
        "Pixel size",
        f"{name} carries no pixel size in its metadata.\n"
        "Micrometres per pixel (from the SEM's scale bar or data bar);\n"
        "leave empty to keep the image in pixels:",
        QLineEdit.EchoMode.Normal,
        "",
    )
    return parse_pixel_size(text) if ok else None


def _read(path: str, ask=ask_pixel_size):
    """Layer data of an image file: the pixel size on the layer scale (asked for when the
    metadata has none), element maps as one ``(channels, y, x)`` layer, a colour image as an
    RGB layer; a stack that is not element maps is refused with the shapes expected."""
    image, px, info = read_image(path, colour="keep")
    name = Path(path).stem
    meta = {"napari_zonation": {"pixel_size_source": info["pixel_size_source"]}}
    for note in info["notes"]:
        warnings.warn(note, UserWarning, stacklevel=2)
    if px is None:
        px = ask(Path(path).name)
        if px is None:
            warnings.warn(
                f"{Path(path).name}: no pixel size in the metadata; the layer's scale is 1 "
                "(pixels). Set it in the Segment crystals widget before measuring in µm.",
                UserWarning,
                stacklevel=2,
            )
            meta["napari_zonation"]["pixel_size_source"] = "missing"
        else:
            meta["napari_zonation"]["pixel_size_source"] = "entered by the user"
    if px is not None:
        meta["napari_zonation"]["pixel_size_um"] = px
    kwargs = {"name": name, "metadata": meta, "colormap": "gray"}
    rgb = info["layout"] == "colour"
    channels = info["layout"] == "element maps"
    if channels:
        meta["napari_zonation"]["element_maps"] = True
    if px is not None:
        kwargs["scale"] = (1.0, px, px) if channels else (px, px)
        kwargs["units"] = ("pixel", "um", "um") if channels else ("um", "um")
    if rgb:
        kwargs.pop("colormap")
        kwargs["rgb"] = True
    return [(image, kwargs, "image")]


def get_reader(path):
    """npe2 reader: SEM TIFFs with their pixel size (asked for when absent); multi-page TIFFs
    as element maps; a TIFF of a whole-section mosaic (one grey image of more than 8192 x 8192
    pixels) lazily, as a multiscale layer when it holds a pyramid."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if not str(path).lower().endswith(TIFF_SUFFIXES):
        return None

    def read(p):
        p = p[0] if isinstance(p, list) else p
        from .mosaic import is_mosaic

        return _read_mosaic(p) if is_mosaic(p) else _read(p)

    return read


def get_zarr_reader(path):
    """npe2 reader of zarr stores: an image (OME-Zarr multiscale or a plain 2D array) as a
    multiscale Image layer, labels (written by napari-zonation, or OME-Zarr ``image-label``)
    as a multiscale Labels layer; both read lazily, chunk by chunk."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    from .mosaic import is_zarr_path

    if not is_zarr_path(path):
        return None
    return lambda p: _read_mosaic(p[0] if isinstance(p, list) else p)


def _read_mosaic(path, ask=ask_pixel_size):
    """Layer data of a mosaic (zarr store or large TIFF) or of labels in a zarr store."""
    from ._validation import ZonationInputError
    from .mosaic import is_labels_store, open_labels, open_mosaic

    p = Path(path)
    labels = is_labels_store(p)
    if labels:
        m = open_labels(p)
    else:
        try:
            m = open_mosaic(p)
        except ZonationInputError as exc:
            if "chunks are missing" not in str(exc):
                raise
            warnings.warn(f"{exc} Shown with the missing chunks as the fill value.",
                          UserWarning, stacklevel=2)
            m = open_mosaic(p, allow_missing_chunks=True)
    px = m.pixel_size_um
    meta = {"napari_zonation": {"pixel_size_source": m.info.get("pixel_size_source"),
                                "mosaic": str(p)}}
    if px is None and not labels:
        px = ask(p.name)
        meta["napari_zonation"]["pixel_size_source"] = (
            "missing" if px is None else "entered by the user"
        )
    if px is not None:
        meta["napari_zonation"]["pixel_size_um"] = px
    data = m.levels if len(m.levels) > 1 else m.levels[0]
    kwargs = {"name": p.stem if p.suffix else p.name, "metadata": meta,
              "multiscale": len(m.levels) > 1}
    if px is not None:
        kwargs["scale"] = (px, px)
        kwargs["units"] = ("um", "um")
    if labels:
        return [(data, kwargs, "labels")]
    kwargs["colormap"] = "gray"
    return [(data, kwargs, "image")]


def synthetic_sample(seed: int = 0):
    """Sample data: a synthetic BSE thin section and, hidden, its ground-truth labels."""
    import pandas as pd

    from .synthetic import make_thin_section

    s = make_thin_section((768, 768), n_crystals=20, seed=seed)
    px = s.pixel_size_um
    meta = {"napari_zonation": {"pixel_size_um": px, "pixel_size_source": "synthetic"}}
    truth = s.truth.copy()
    for col in truth.columns:
        if truth[col].map(lambda x: isinstance(x, tuple)).any():
            truth[col] = truth[col].map(lambda x: ", ".join(f"{v:.1f}" for v in x))
    truth.insert(0, "index", truth["label"])
    return [
        (s.image, {"name": "synthetic BSE", "scale": (px, px), "units": ("um", "um"),
                   "colormap": "gray", "metadata": meta}, "image"),
        (s.labels, {"name": "synthetic BSE ground truth", "scale": (px, px),
                    "units": ("um", "um"), "visible": False,
                    "features": pd.DataFrame(truth),
                    "metadata": {"napari_zonation": {"ground_truth": True}}}, "labels"),
    ]


def plagioclase_sample():
    """Sample data: the real plagioclase BSE image (Lubbers et al. 2022, MIT)."""
    image, _, _ = read_sem_tiff(PLAGIOCLASE_TIFF)
    px = PLAGIOCLASE_PIXEL_SIZE_UM
    meta = {"napari_zonation": {"pixel_size_um": px,
                                "pixel_size_source": "estimated (+-5 %), see data README"}}
    return [(image, {"name": "CGI_ns8_1-1 plagioclase", "scale": (px, px),
                     "units": ("um", "um"), "colormap": "gray", "metadata": meta}, "image")]
