"""Reading measured 1D profiles (EPMA, LA-ICP-MS traverses) from CSV or Excel files.

:func:`read_profiles` turns one file or a folder of them into the long profiles table the rest
of the package works on (``label``, ``channel``, ``distance_um``, ``value``, ``sigma``,
``source="csv"``). It is re-exported by :mod:`napari_zonation.io` and the package.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ._validation import ZonationInputError
from .vocabulary import quantity_name

__all__ = ["read_profiles"]

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
    keep: str | None = None,
    flag: str | None = None,
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
    keep : str, optional
        Rows to keep, as a pandas query on the file's columns (e.g. ``"zone == 1"``, the
        points an EPMA analyst accepted); the others are left out.
    flag : str, optional
        Column marking bad points (true, 1, "yes", "x"): those rows are left out.

    Returns
    -------
    pandas.DataFrame
        Long table ``label, channel, distance_um, value, sigma, quantity, source="csv"``,
        sorted by distance; ``quantity`` is the value column's name in the zoning vocabulary
        (``"fo"`` -> ``"Fo"``, ``"An (mol%)"`` -> ``"An"``; a name it does not know is kept
        as it is), which :func:`describe_zoning` reads for the interpretation. Rows with
        missing or non-numeric values are dropped with a warning naming them; duplicated
        distances are averaged with a warning.

    Examples
    --------
    Profiles measured on a synthetic section, saved as a spreadsheet would hold them and read
    back:

    >>> import tempfile
    >>> from pathlib import Path
    >>> from napari_zonation import make_thin_section, read_profiles, rim_profiles
    >>> s = make_thin_section((160, 160), n_crystals=3, size_um=(40.0, 70.0), seed=1)
    >>> prof = rim_profiles(s.image, s.labels, pixel_size_um=s.pixel_size_um)
    >>> sheet = prof.rename(columns={"label": "grain", "distance_um": "Distance (um)",
    ...                              "value": "BSE", "sigma": "BSE_err"})
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder) / "traverses.csv"
    ...     sheet.to_csv(path, index=False)
    ...     back = read_profiles(path, value="BSE", label="grain", sigma="auto")
    >>> back.columns.tolist()
    ['label', 'channel', 'distance_um', 'value', 'sigma', 'quantity', 'source']
    >>> back["quantity"].unique().tolist()  # a BSE column is grey in the zoning vocabulary
    ['grey']
    >>> sorted(back["label"].unique().tolist()) == sorted(prof["label"].unique().tolist())
    True
    >>> len(back) == len(prof)
    True
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
        df = _honour_flags(df, f.name, keep, flag)
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


def _honour_flags(df: pd.DataFrame, name: str, keep: str | None, flag: str | None):
    """The rows ``keep`` (a pandas query) selects and ``flag`` does not mark as bad."""
    if keep is not None:
        try:
            df = df.query(keep)
        except Exception as exc:  # pandas raises many kinds for a bad query
            raise ZonationInputError(
                f"{name}: keep={keep!r} is not a query on its columns ({list(df.columns)}): "
                f"{exc}. Example: keep='zone == 1'."
            ) from exc
    if flag is not None:
        if flag not in df.columns:
            raise ZonationInputError(f"{name} has no flag column {flag!r}; its columns are "
                                     f"{list(df.columns)}.")
        marks = df[flag].map(lambda v: str(v).strip().lower() in ("true", "1", "1.0", "yes",
                                                                   "y", "x", "bad"))
        df = df[~marks.to_numpy()]
    return df


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
