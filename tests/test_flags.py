"""The crystal table's QA flags mark crystals that have the problem (generator's truth)."""

from __future__ import annotations

import numpy as np

from napari_zonation import crystal_table, segment_crystals
from napari_zonation.metrics import match_instances
from napari_zonation.synthetic import SCENE_KINDS, make_thin_section


def test_cracked_means_a_deep_crack_not_a_thin_zoning_band():
    """A crack shows epoxy or void (near black); a thin dark zoning band or resorption
    surface differs from its host by a few grey levels: only the crack flags the crystal."""
    rng = np.random.default_rng(3)
    img = np.full((120, 240), 30.0)
    lab = np.zeros((120, 240), np.int32)
    lab[20:100, 20:100] = 1  # a crack through it
    lab[20:100, 140:220] = 2  # concentric thin dark bands, 12 grey levels below the host
    img[lab > 0] = 150.0
    d = np.arange(25, 95)
    img[d, d] = 20.0
    for r in (10, 20, 30):
        img[60 - r, 180 - r : 180 + r] = img[60 + r, 180 - r : 180 + r] = 138.0
        img[60 - r : 60 + r, 180 - r] = img[60 - r : 60 + r, 180 + r] = 138.0
    img += rng.normal(0, 2.0, img.shape)
    flags = crystal_table(img, lab, 1.0).set_index("label")["cracked"]
    assert flags.tolist() == [True, False]


def test_cracked_flag_against_the_generator_truth():
    """On a glomerocryst scene (many cracks, cracks along contacts) the flag finds the truly
    cracked crystals and few others."""
    s = make_thin_section((512, 512), n_crystals=12, seed=5,
                          **SCENE_KINDS["glomerocrysts"])
    lab = segment_crystals(s.image, s.pixel_size_um)
    table = crystal_table(s.image, lab, s.pixel_size_um).set_index("label")
    truth = s.truth.set_index("label")["cracked"]
    pairs = match_instances(s.labels, lab)["pairs"]
    said = np.array([bool(table.loc[p, "cracked"]) for p in pairs.values()])
    has = np.array([bool(truth[t]) for t in pairs])
    assert has.sum() >= 3 and (~has).sum() >= 3
    assert (said & has).sum() / max(said.sum(), 1) >= 0.8  # precision
    assert (said & has).sum() / has.sum() >= 0.8  # recall
