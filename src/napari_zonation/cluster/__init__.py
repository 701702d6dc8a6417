"""Clustering crystals by their zoning: crystal table -> ``cluster`` column, label colours.

Crystals are grouped by what their profiles look like, so that a gradient crystal of one
mineral sits with the gradient crystals of another whatever their brightness or amplitude.

Features
--------
By default each crystal is described by :data:`DEFAULT_FEATURES`, standardised (zero mean,
unit variance; columns that do not vary are dropped):

- ``zoning_span``: the span of the zoning in the profile's units (highest minus lowest level
  for step models, peak-to-peak for bands, ``|rim - core|`` otherwise), its strength
  whatever its sign and shape (``rel_range``, the span over ``|core|``, and
  ``abs_rel_contrast`` are derived too and can be asked for),
- ``n_plateaus``, ``n_steps``, ``max_slope_per_um``,
- ``n_oscillations``, ``osc_amplitude``,
- ``first_step_frac`` and ``core_start_frac``: the first step's position and the depth where
  the core plateau starts, divided by the profile length (0 at the rim, 1 at the core; a
  profile without a step gets 1 = "no step before the core"),
- ``zoning_type``: the offline verdict, one-hot encoded, each category ``category_weight``
  (:data:`CATEGORY_WEIGHT`, 10) standard deviations from the others, so that crystals of one
  type stay together unless their numbers differ by more than that.

The sign of the zoning enters only through ``zoning_type`` (``rim_brighter`` /
``rim_darker``): a gradient, a multi-step or an oscillatory profile is the same pattern with
either sign. Signed features (``rel_contrast``, ``contrast``, ``mean_slope_per_um``,
``monotonicity``, ``interpretation``) part normal from reverse zoning; pass ``features=`` to
use them.

With ``profiles``, two profile-shape blocks are appended: each profile mean-binned into
``shape_points`` bins on its relative depth (0 at the rim, 1 at the deepest point) and on
micrometres from the rim (up to the 90th percentile of the profiles' lengths), minus its
core value, flipped so that the rim's departure from the core is positive, and divided by
its own zoning span (or three noise sigmas when that is larger): the shape is free of the
amplitude, the mineral and its brightness, and an unzoned profile stays flat. Each block is
weighted so that its total variance is ``shape_weight`` (:data:`SHAPE_WEIGHT`, 0.1) times
that of the descriptor block (or is used alone when ``features=[]``): the shapes separate
crystals the descriptors leave together.

Automatic k (silhouette over 2..``max_clusters``) can split one type into clusters whose
numbers differ by a few standard deviations; two clusters of one category whose centres, in
the other features, are closer than ``min_separation`` (default ``category_weight``) are
therefore merged: a type is split only when its crystals differ in their numbers as much as
two types differ.

Rows whose ``describe_status`` is not ``"ok"`` get ``cluster = -1`` (unclustered). Missing
(NaN) feature values of the other rows are replaced by the column median. Every clustered
row gets ``cluster_features``, the few features that set its cluster apart
(:func:`cluster_summary`).

The clusters inherit the errors of ``zoning_type``: their adjusted Rand index against the
true type equals or exceeds the type's own on the zoning benchmark (``benchmarks/zoning.py``;
``docs/zoning.md`` has the figures), where a plain recipe (profiles resampled on relative
depth, standardised, k-means with the true number of classes) scores near 0.

The package's modules: :mod:`~napari_zonation.cluster.api` (the public functions),
:mod:`~napari_zonation.cluster.features` (the feature matrix),
``_clustering`` (the clustering itself) and :mod:`~napari_zonation.cluster.colours`
(label colours by cluster).
"""

from .api import SUMMARY_FEATURES, cluster_crystals, cluster_summary, embed_crystals
from .colours import cluster_colors
from .features import (
    CATEGORICAL,
    CATEGORY_WEIGHT,
    DEFAULT_FEATURES,
    METHODS,
    SHAPE_WEIGHT,
    UNCLUSTERED_RGBA,
)

__all__ = [
    "CATEGORICAL",
    "CATEGORY_WEIGHT",
    "DEFAULT_FEATURES",
    "METHODS",
    "SHAPE_WEIGHT",
    "SUMMARY_FEATURES",
    "UNCLUSTERED_RGBA",
    "cluster_colors",
    "cluster_crystals",
    "cluster_summary",
    "embed_crystals",
]
