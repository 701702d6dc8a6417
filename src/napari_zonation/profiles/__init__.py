"""Zoning profiles: drawn lines and paths, automatic core-to-rim profiles, calibration.

Every function returns a long profiles table, one row a point: ``label``, ``distance_um``,
``value`` and, where they apply, ``sigma``, ``n_pixels``, ``channel``, ``source``. Items that
cannot be profiled are skipped with a warning and listed in ``table.attrs["failures"]``
(a tuple of ``(label, reason)`` pairs, a plain value so that tables can be concatenated and
merged; :func:`profile_failures` gives it as a DataFrame); the others are returned.

The package's modules, by concern:

- :mod:`~napari_zonation.profiles.rim`: :func:`rim_profiles`, every crystal's core-to-rim
  profile from shells of equal distance to its outline (or a traverse);
- :mod:`~napari_zonation.profiles._rim_distance` and
  :mod:`~napari_zonation.profiles._shell_stats`: the distance to the rim, contacts between
  touching crystals, and the per-shell medians behind it;
- :mod:`~napari_zonation.profiles.geometry`: whether a crystal's zoning follows the distance
  to its outline or its outline scaled about the centroid, read from the image, and the
  profiles to describe in that geometry;
- :mod:`~napari_zonation.profiles.halo`: the edge halo skipped at a profile's start;
- :mod:`~napari_zonation.profiles.traverses`: traverses placed as an analyst would, and
  their profiles;
- :mod:`~napari_zonation.profiles.lines`: profiles along drawn lines and paths;
- :mod:`~napari_zonation.profiles.calibration`: spot values and grey-to-composition
  calibration;
- :mod:`~napari_zonation.profiles._table`: the table's columns and its skipped items.
"""

from .._stats import median_profile  # noqa: F401 - importable from here too
from ._rim_distance import (  # noqa: F401 - tested directly
    STRIP_PIXELS,
    WINDOWS_SHARE,
    _band_neighbours,
    _cluster_windows,
    _clusters,
    _narrow,
    _nearer_a_contact,
    _rim_edt_sq,
    _shelves,
    rim_distance,
)
from ._shell_stats import IQR_SIGMA, _grouped_quartiles, _sorted_shell_stats  # noqa: F401
from ._table import PROFILE_ORDER, profile_failures
from .calibration import Calibration, apply_calibration, calibrate, spot_values
from .geometry import profiles_in_own_geometry, zoning_geometry
from .halo import HALO_CONTRAST, HALO_PX, grey_range, skip_edge_band
from .lines import line_profiles
from .rim import rim_profiles
from .traverses import TRAVERSE_COLUMNS, place_traverses, traverse_profiles, traverse_table

__all__ = [
    "HALO_CONTRAST",
    "HALO_PX",
    "PROFILE_ORDER",
    "Calibration",
    "apply_calibration",
    "calibrate",
    "grey_range",
    "line_profiles",
    "place_traverses",
    "profile_failures",
    "profiles_in_own_geometry",
    "rim_distance",
    "rim_profiles",
    "skip_edge_band",
    "spot_values",
    "zoning_geometry",
    "traverse_profiles",
    "traverse_table",
    "TRAVERSE_COLUMNS",
]
