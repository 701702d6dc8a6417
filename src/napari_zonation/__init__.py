"""napari-zonation: crystal zoning in BSE images, from segmentation to diffusion timescales.

The public API is pure: numpy arrays and pandas DataFrames in and out. Importing this
package loads neither Qt nor napari; the dock widgets live in :mod:`napari_zonation.widgets`.
"""

from __future__ import annotations

from ._validation import ZonationInputError
from .cluster import cluster_crystals
from .descriptors import describe_zoning
from .diffusion import fit_diffusion
from .io import read_profiles, read_sem_tiff
from .profiles import line_profiles, rim_profiles
from .segment import crystal_table, segment_crystals
from .synthetic import SyntheticSample, make_thin_section

__version__ = "0.1.0"

__all__ = [
    "SyntheticSample",
    "ZonationInputError",
    "cluster_crystals",
    "crystal_table",
    "describe_zoning",
    "fit_diffusion",
    "line_profiles",
    "make_thin_section",
    "read_profiles",
    "read_sem_tiff",
    "rim_profiles",
    "segment_crystals",
]
