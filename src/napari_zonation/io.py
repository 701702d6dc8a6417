"""Reading SEM images and measured profiles; writing results.

- :func:`read_sem_tiff`: a TIFF from an SEM with the pixel size from the instrument's metadata
  (FEI/Thermo, Zeiss, Tescan/others through ImageJ or OME metadata, as parsed by tifffile).
- :func:`read_profiles`: measured 1D profiles (EPMA, LA-ICP-MS traverses) from CSV or Excel,
  one file or a folder.
- :func:`write_results`: labels, profiles and crystal tables to a folder.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from ._validation import ZonationInputError
from .vocabulary import quantity_name

_UNIT_TO_UM = {
    "m": 1e6, "mm": 1e3, "um": 1.0, "µm": 1.0, "μm": 1.0, "micron": 1.0, "microns": 1.0,
    "micrometer": 1.0, "micrometre": 1.0, "nm": 1e-3, "pm": 1e-6, "\\u00b5m": 1.0,
}


def _pixel_size_from_tiff(tif: tifffile.TiffFile) -> tuple[float | None, str]:
    """Pixel size in um and where it came from, or (None, reason)."""
    fei = tif.fei_metadata
    if fei:
        for section in ("Scan", "EScan", "Image"):
            sec = fei.get(section, {})
            if "PixelWidth" in sec:
                return float(sec["PixelWidth"]) * 1e6, f"FEI/Thermo metadata [{section}]"
    sem = tif.sem_metadata
    if sem:
        for key in ("ap_image_pixel_size", "ap_pixel_size"):
            if key in sem:
                entry = sem[key]
                # tifffile gives ('Image Pixel Size', value, unit)
                value, unit = float(entry[1]), str(entry[2]).strip()
                factor = _UNIT_TO_UM.get(unit.lower() if unit != "µm" else unit)
                if factor is not None:
                    return value * factor, f"Zeiss SEM metadata [{key}]"
    ij = tif.imagej_metadata or {}
    unit = str(ij.get("unit", "")).strip().lower()
    if unit in _UNIT_TO_UM:
        page = tif.pages[0]
        xres = page.tags.get("XResolution")
        if xres is not None:
            num, den = xres.value
            if num > 0:
                return den / num * _UNIT_TO_UM[unit], "ImageJ metadata (unit and XResolution)"
    if tif.is_ome and tif.ome_metadata:
        m = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tif.ome_metadata)
        u = re.search(r'PhysicalSizeXUnit="([^"]+)"', tif.ome_metadata)
        if m:
            factor = _UNIT_TO_UM.get((u.group(1) if u else "um").lower(), 1.0)
            return float(m.group(1)) * factor, "OME-XML PhysicalSizeX"
    page = tif.pages[0]
    unit_tag = page.tags.get("ResolutionUnit")
    xres = page.tags.get("XResolution")
    if unit_tag is not None and xres is not None and int(unit_tag.value) == 3:  # centimetre
        num, den = xres.value
        if num > 0:
            size_um = den / num * 1e4
            if 1e-4 < size_um < 1e3:
                return size_um, "TIFF XResolution (pixels per centimetre)"
    return None, "no pixel size in the TIFF's metadata"


def read_sem_tiff(path: str | os.PathLike) -> tuple[np.ndarray, float | None, dict]:
    """Read an SEM TIFF and its pixel size.

    Parameters
    ----------
    path : str or path-like
        A TIFF written by an SEM (FEI/Thermo, Zeiss, ...), or any TIFF.

    Returns
    -------
    image : numpy.ndarray
        The first image (a 2D BSE image; RGB and multi-page files are returned as stored).
    pixel_size_um : float or None
        Micrometres per pixel from the instrument's metadata, or None when absent: then ask the
        user (napari's reader does) and pass it explicitly to the pipeline.
    info : dict
        ``source`` (where the pixel size came from, or why it is missing), ``instrument``
        metadata kind, and ``shape``/``dtype``. No file path is included.
    """
    p = Path(path)
    if not p.exists():
        raise ZonationInputError(f"no such file: {p}")
    try:
        with tifffile.TiffFile(p) as tif:
            image = tif.pages[0].asarray()
            px, source = _pixel_size_from_tiff(tif)
            kind = "fei" if tif.fei_metadata else "zeiss" if tif.sem_metadata else (
                "imagej" if tif.imagej_metadata else "ome" if tif.is_ome else "tiff"
            )
    except tifffile.TiffFileError as exc:
        raise ZonationInputError(f"{p.name} is not a readable TIFF ({exc}).") from exc
    # SEM TIFFs often carry the data bar as extra rows below the image; FEI records the height
    return image, px, {"pixel_size_source": source, "instrument": kind,
                       "shape": image.shape, "dtype": str(image.dtype)}


# ----------------------------------------------------------------------------------------
# measured profiles


def _read_table(path: Path, sheet) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix in (".xlsx", ".xlsm", ".xls"):
            return pd.read_excel(path, sheet_name=sheet if sheet is not None else 0)
        if suffix in (".tsv", ".tab"):
            return pd.read_csv(path, sep="\t")
        return pd.read_csv(path, sep=None, engine="python")
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise ZonationInputError(
            f"{path.name} could not be read as a table ({exc}); save it as CSV with one header "
            "row and one column per quantity."
        ) from exc


def read_profiles(
    path: str | os.PathLike,
    distance: str | None = "Distance (um)",
    value: str | list[str] = "value",
    label: str | None = None,
    *,
    sigma: str | dict | None = None,
    spacing_um: float | None = None,
    rim: str | None = None,
    sheet: str | int | None = None,
) -> pd.DataFrame:
    """Read measured 1D profiles (CSV or Excel; one file or a folder of them).

    Parameters
    ----------
    path : str or path-like
        A ``.csv``/``.tsv``/``.txt``/``.xlsx`` file, or a folder: every such file in it.
    distance : str or None
        Column of the distance along the traverse in micrometres. None: points are
        ``spacing_um`` apart in file order.
    value : str or list of str
        Column(s) of the measured quantity (e.g. ``"Fo"``, ``["An", "Sr"]``). Several columns
        become several ``channel``s.
    label : str, optional
        Column naming the profile (e.g. grain or traverse id). Absent: one profile per file,
        named by the file's stem.
    sigma : str or dict, optional
        Column of the 1-sigma uncertainty (one value column), or ``{value: sigma_column}``.
        ``"auto"`` looks for ``<value>_se``, ``<value>_sigma``, ``<value>_err``, ``<value>_1s``.
    spacing_um : float, optional
        Point spacing when there is no distance column.
    rim : {None, "start", "end"}
        Where the rim is. ``"end"`` flips distances so 0 is the rim (the convention of crystal
        profiles); ``"start"`` keeps them, as does None (a plain traverse).
    sheet : str or int, optional
        Excel sheet.

    Returns
    -------
    pandas.DataFrame
        Long table ``label, channel, distance_um, value, sigma, quantity, source="csv"``,
        sorted by distance; ``quantity`` is the value column's name in the zoning vocabulary
        (``"fo"`` -> ``"Fo"``, ``"An (mol%)"`` -> ``"An"``; a name it does not know is kept
        as it is), which :func:`describe_zoning` reads for the interpretation. Rows with
        missing or non-numeric values are dropped with a warning naming them; duplicated
        distances are averaged with a warning.
    """
    p = Path(path)
    if not p.exists():
        raise ZonationInputError(f"no such file or folder: {p}")
    files = (
        sorted(f for f in p.iterdir() if f.suffix.lower() in (".csv", ".tsv", ".txt", ".xlsx"))
        if p.is_dir()
        else [p]
    )
    if not files:
        raise ZonationInputError(f"{p} holds no .csv, .tsv, .txt or .xlsx file.")
    values = [value] if isinstance(value, str) else list(value)
    frames = []
    for f in files:
        df = _read_table(f, sheet)
        df.columns = [str(c).strip() for c in df.columns]
        needed = values + ([distance] if distance else []) + ([label] if label else [])
        missing = [c for c in needed if c not in df.columns]
        if missing:
            raise ZonationInputError(
                f"{f.name} has no column(s) {missing}; its columns are {list(df.columns)}. "
                "Name the right ones with distance=, value= and label=."
            )
        if distance is None:
            if spacing_um is None:
                raise ZonationInputError(
                    f"{f.name}: no distance column given; pass distance='<column>' or the point "
                    "spacing as spacing_um."
                )
        groups = df.groupby(label, sort=False) if label else [(f.stem, df)]
        for lab, g in groups:
            if distance:
                d = pd.to_numeric(g[distance], errors="coerce")
            else:
                d = pd.Series(np.arange(len(g)) * float(spacing_um), index=g.index)
            for v in values:
                val = pd.to_numeric(g[v], errors="coerce")
                sig_col = _sigma_column(g, v, sigma)
                sig = pd.to_numeric(g[sig_col], errors="coerce") if sig_col else np.nan
                one = pd.DataFrame({"distance_um": d, "value": val, "sigma": sig})
                bad = one[["distance_um", "value"]].isna().any(axis=1)
                if bad.any():
                    rows = (np.nonzero(bad.to_numpy())[0] + 2).tolist()[:10]
                    warnings.warn(
                        f"{f.name}, profile {lab}, {v}: {int(bad.sum())} row(s) with a missing "
                        f"or non-numeric distance or value dropped (file rows {rows}...)",
                        UserWarning,
                        stacklevel=2,
                    )
                    one = one[~bad]
                if one.empty:
                    warnings.warn(f"{f.name}, profile {lab}, {v}: no numeric rows; skipped",
                                  UserWarning, stacklevel=2)
                    continue
                if not one["distance_um"].is_monotonic_increasing:
                    one = one.sort_values("distance_um", kind="stable")
                if one["distance_um"].duplicated().any():
                    n_dup = int(one["distance_um"].duplicated().sum())
                    warnings.warn(
                        f"{f.name}, profile {lab}, {v}: {n_dup} duplicated distance(s) averaged",
                        UserWarning,
                        stacklevel=2,
                    )
                    one = one.groupby("distance_um", as_index=False).mean()
                if rim == "end":
                    one["distance_um"] = one["distance_um"].max() - one["distance_um"]
                    one = one.sort_values("distance_um", kind="stable")
                elif rim not in (None, "start"):
                    raise ZonationInputError("rim must be None, 'start' or 'end'.")
                one.insert(0, "channel", v)
                one.insert(0, "label", lab)
                one["quantity"] = quantity_name(v)  # what value is: Fo, An, ... (vocabulary)
                frames.append(one)
    if not frames:
        raise ZonationInputError(f"no numeric profile could be read from {p}.")
    out = pd.concat(frames, ignore_index=True)
    out["source"] = "csv"
    return out


def _sigma_column(df: pd.DataFrame, value: str, sigma) -> str | None:
    if sigma is None:
        return None
    if isinstance(sigma, dict):
        col = sigma.get(value)
    elif sigma == "auto":
        col = next(
            (f"{value}{s}" for s in ("_se", "_sigma", "_err", "_1s", " 1s", " err")
             if f"{value}{s}" in df.columns),
            None,
        )
    else:
        col = sigma
    if col is not None and col not in df.columns:
        raise ZonationInputError(f"sigma column {col!r} is not in the file ({list(df.columns)}).")
    return col


# ----------------------------------------------------------------------------------------
# export


def write_results(
    out_dir: str | os.PathLike,
    *,
    labels: np.ndarray | None = None,
    profiles: pd.DataFrame | None = None,
    crystals: pd.DataFrame | None = None,
    pixel_size_um: float | None = None,
) -> dict[str, Path]:
    """Write ``labels.tif``, ``profiles.csv`` and ``crystals.csv`` to a folder.

    The labels TIFF (int32, zlib) carries the pixel size in its resolution tags (pixels per
    centimetre), which :func:`read_sem_tiff`, ImageJ/Fiji and most readers understand.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if labels is not None:
        kw = {}
        if pixel_size_um:
            per_cm = 1e4 / float(pixel_size_um)
            kw = {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}
        path = out / "labels.tif"
        tifffile.imwrite(path, np.asarray(labels, dtype=np.int32), compression="zlib", **kw)
        written["labels"] = path
    if profiles is not None:
        path = out / "profiles.csv"
        profiles.to_csv(path, index=False)
        written["profiles"] = path
    if crystals is not None:
        path = out / "crystals.csv"
        table = crystals.copy()
        for col in table.columns:  # tuples -> readable strings
            if table[col].map(lambda x: isinstance(x, (tuple, list))).any():
                table[col] = table[col].map(
                    lambda x: ";".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in x)
                    if isinstance(x, (tuple, list)) else x
                )
        table.to_csv(path, index=False)
        written["crystals"] = path
    return written
