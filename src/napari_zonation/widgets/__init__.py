"""napari dock widgets for napari-zonation (one thin module per widget).

The widgets are registered in ``napari.yaml`` and imported lazily by napari from their own
modules; importing this package loads nothing heavy (no Qt, no napari).

- :mod:`.segment_widget` ``SegmentWidget``: image -> ``<image> crystals`` Labels + QA layers
- :mod:`.profiles_widget` ``ProfilesWidget``: crystal, drawn-shape and CSV profiles, calibration,
  live plot (one ``_profiles_*`` module per tab)
- :mod:`.describe_widget` ``DescribeWidget``: zoning descriptors (offline or LLM)
- :mod:`.cluster_widget` ``ClusterWidget``: clusters, recolouring, per-cluster plots
- :mod:`.diffusion_widget` ``DiffusionWidget``: diffusion timescales
"""
