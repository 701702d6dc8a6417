"""Real data shipped with the package, read in one place.

The Kilauea olivine pack (``data/olivine_kilauea``, CC0; its ``README.md`` gives the source
and what to cite): six electron-microprobe core-to-rim traverses of olivine with the
conditions and the timescales their authors published. :func:`kilauea_olivine` reads the
traverses, the per-traverse metadata and the conditions in the form
:func:`~napari_zonation.fit_diffusion` takes.

Examples
--------
>>> from napari_zonation.datasets import kilauea_olivine
>>> pack = kilauea_olivine()
>>> len(pack.profiles), pack.profiles["label"].nunique()
(224, 6)
>>> list(pack.conditions.columns[:3])
['label', 'temperature_c', 'temperature_c_err']
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import pandas as pd

#: folder of the shipped Kilauea olivine pack
KILAUEA_DIR = Path(__file__).parent / "data" / "olivine_kilauea"
#: its traverses (one row an analysis) and one row of metadata per traverse
KILAUEA_TRAVERSES = KILAUEA_DIR / "olivine_traverses.csv"
KILAUEA_METADATA = KILAUEA_DIR / "olivine_profiles_metadata.csv"

__all__ = [
    "KILAUEA_DIR",
    "KILAUEA_METADATA",
    "KILAUEA_TRAVERSES",
    "KilaueaOlivine",
    "kilauea_conditions",
    "kilauea_olivine",
]


class KilaueaOlivine(NamedTuple):
    """The Kilauea olivine pack as tables.

    Attributes
    ----------
    profiles : pandas.DataFrame
        Long profiles table (``label`` = traverse, ``distance_um`` from the rim, ``value`` =
        Fo mol %, ``sigma`` its 1-sigma), as :func:`~napari_zonation.read_profiles` reads it.
    metadata : pandas.DataFrame
        One row per traverse (column ``profile``): angles, priors, the authors' model and
        their published timescales.
    conditions : pandas.DataFrame
        :func:`kilauea_conditions` of the metadata.
    """

    profiles: pd.DataFrame
    metadata: pd.DataFrame
    conditions: pd.DataFrame


def kilauea_conditions(meta: pd.DataFrame) -> pd.DataFrame:
    """Per-traverse conditions for :func:`~napari_zonation.fit_diffusion` from the metadata.

    The pack gives the oxygen fugacity as the natural log of fO2 in bar; the conditions
    take log10 of fO2 in pascals (``log10 fO2[Pa] = ln fO2[bar] / ln 10 + 5``).

    Parameters
    ----------
    meta : pandas.DataFrame
        The pack's ``olivine_profiles_metadata.csv``.

    Returns
    -------
    pandas.DataFrame
        ``label``, temperatures (second stage too), pressure, ``log_fo2_pa``, their 1-sigma
        ``*_err`` and the traverse's angles to [100], [010], [001].
    """
    ln10 = math.log(10.0)
    return pd.DataFrame({
        "label": meta["profile"],
        "temperature_c": meta["temperature_c"],
        "temperature_c_err": meta["temperature_err_c"],
        "temperature2_c": meta["temperature2_c"],
        "temperature2_c_err": meta["temperature2_err_c"],
        "pressure_mpa": meta["pressure_mpa"],
        "pressure_mpa_err": meta["pressure_err_mpa"],
        "log_fo2_pa": meta["fo2_ln_bar"] / ln10 + 5.0,
        "log_fo2_pa_err": meta["fo2_ln_bar_err"] / ln10,
        "angle_100_deg": meta["angle_100_deg"],
        "angle_010_deg": meta["angle_010_deg"],
        "angle_001_deg": meta["angle_001_deg"],
    })  # fmt: skip


def kilauea_olivine() -> KilaueaOlivine:
    """Read the shipped Kilauea olivine traverses, their metadata and conditions.

    Returns
    -------
    KilaueaOlivine
        ``(profiles, metadata, conditions)``; the metadata keep the ``profile`` column (no
        index set).
    """
    from .profile_files import read_profiles

    prof = read_profiles(KILAUEA_TRAVERSES, distance="distance_um", value="fo",
                         label="profile", sigma="fo_err")
    meta = pd.read_csv(KILAUEA_METADATA)
    return KilaueaOlivine(prof, meta, kilauea_conditions(meta))
