"""Seeded synthetic BSE thin sections and 1D profiles with ground truth.

The physics is documented in ``docs/synthetic.md``. In short: BSE grey grows with mean atomic
number; each phenocryst phase maps its composition linearly to grey (:data:`GREY_MODEL`);
zoning is concentric, a function of the Euclidean distance to the crystal's own boundary; growth
makes plateaus joined by steps that diffusion relaxes into error functions of half-width
``2 * sqrt(D t)``; the groundmass is glass with plagioclase, pyroxene and oxide microlites;
vesicles are near-black discs with a bright polished crescent; olivines are cracked; the probe
blurs the scene (Gaussian), the detector adds Gaussian noise, the beam current drifts slowly
across the field, and the result is quantised to 8 or 16 bits.

Options of :func:`make_thin_section`, all off by default, add what real BSE images carry
(drawn by ``_synthetic_features``): a glassy groundmass with real vesicles, black epoxy and
plucked holes, rims at the glass's grey, plagioclase zoned across it, thin real rim zones,
edge halos, crack contacts, needles and microlite clusters, scan lines, a data bar and JPEG
compression; :data:`SCENE_KINDS` holds one set per kind.

The package's modules, by concern: :mod:`~napari_zonation.synthetic.zoning` (the grey model,
zoning patterns, 1D profiles), :mod:`~napari_zonation.synthetic.geometry` (outlines, laths,
vesicles), :mod:`~napari_zonation.synthetic.scene` (the thin section),
:mod:`~napari_zonation.synthetic.kinds` (its ready-made option sets),
:mod:`~napari_zonation.synthetic.truth` (the sample, its truth table, scribbles drawn from it).
"""

from .kinds import SCENE_KINDS
from .scene import make_thin_section
from .truth import SyntheticSample, strokes_from_truth
from .zoning import (
    GREY,
    GREY_MODEL,
    PHASES,
    ZONING_TYPES,
    Zoning,
    composition_of,
    grey_of,
    interpretation_of,
    make_profiles,
    random_zoning,
    rim_at_glass_zoning,
)

__all__ = [
    "GREY",
    "GREY_MODEL",
    "PHASES",
    "SCENE_KINDS",
    "ZONING_TYPES",
    "SyntheticSample",
    "Zoning",
    "composition_of",
    "grey_of",
    "interpretation_of",
    "make_profiles",
    "make_thin_section",
    "random_zoning",
    "rim_at_glass_zoning",
    "strokes_from_truth",
]
