"""napari-zonation: crystal zoning in BSE images, from segmentation to diffusion timescales.

The public API is pure: numpy arrays and pandas DataFrames in and out. Importing this
package loads neither Qt nor napari; the dock widgets live in :mod:`napari_zonation.widgets`.
"""

from __future__ import annotations

from ._validation import ZonationInputError
from .cluster import cluster_colors, cluster_crystals, cluster_summary, embed_crystals
from .descriptors import describe_zoning
from .diffusion import fit_diffusion, olivine_diffusivity
from .edit import delete_labels, merge_labels, split_label
from .io import read_image, read_profiles, read_sem_tiff
from .metrics import match_instances
from .pipeline import run_pipeline
from .profiles import apply_calibration, calibrate, line_profiles, profile_failures, rim_profiles
from .scribble import train_scribbles
from .segment import crystal_table, segment_crystals
from .synthetic import SyntheticSample, make_thin_section

__version__ = "0.1.0"

__all__ = [
    "SyntheticSample",
    "ZonationInputError",
    "apply_calibration",
    "calibrate",
    "profile_failures",
    "cluster_colors",
    "cluster_crystals",
    "cluster_summary",
    "crystal_table",
    "delete_labels",
    "describe_zoning",
    "embed_crystals",
    "fit_diffusion",
    "line_profiles",
    "make_thin_section",
    "match_instances",
    "merge_labels",
    "olivine_diffusivity",
    "read_image",
    "read_profiles",
    "read_sem_tiff",
    "rim_profiles",
    "run_pipeline",
    "segment_crystals",
    "split_label",
    "train_scribbles",
]
