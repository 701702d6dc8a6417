"""The synthetic generator is the ground truth of every other test: check it against itself
only through independent routes (the image it renders, skimage measurements)."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.measure import regionprops

from napari_zonation.synthetic import (
    GREY,
    ZONING_TYPES,
    composition_of,
    grey_of,
    make_profiles,
    make_thin_section,
)


@pytest.fixture(scope="module")
def sample():
    return make_thin_section((512, 512), n_crystals=14, seed=3, noise=0.02)


def test_seeded_and_reproducible():
    a = make_thin_section((256, 256), n_crystals=5, seed=11)
    b = make_thin_section((256, 256), n_crystals=5, seed=11)
    c = make_thin_section((256, 256), n_crystals=5, seed=12)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, c.image)


def test_dtypes_and_bit_depth():
    s8 = make_thin_section((200, 200), n_crystals=3, seed=1, bit_depth=8)
    s16 = make_thin_section((200, 200), n_crystals=3, seed=1, bit_depth=16)
    assert s8.image.dtype == np.uint8 and s16.image.dtype == np.uint16
    assert s8.labels.dtype == np.int32
    # same scene, scaled: the 16-bit image is ~257x the 8-bit one
    ratio = np.median(s16.clean[s16.labels > 0] / s8.clean[s8.labels > 0])
    assert ratio == pytest.approx(65535 / 255, rel=1e-6)


def test_truth_matches_labels(sample):
    s = sample
    ids = set(np.unique(s.labels)) - {0}
    assert ids == set(s.truth["label"])
    for r in regionprops(s.labels):
        row = s.truth.set_index("label").loc[r.label]
        assert row["area_um2"] == pytest.approx(r.area * s.pixel_size_um**2)
        on_edge = (r.bbox[0] == 0 or r.bbox[1] == 0 or r.bbox[2] == s.labels.shape[0]
                   or r.bbox[3] == s.labels.shape[1])
        assert bool(row["touches_border"]) == on_edge


def test_grey_physics_in_rendered_image(sample):
    s = sample
    # the rendered core of every unzoned crystal has the grey its composition predicts
    for _, row in s.truth.iterrows():
        comp = composition_of(row["phase"], row["core_value"] / s.full_scale)
        assert grey_of(row["phase"], comp) * s.full_scale == pytest.approx(row["core_value"])
    # olivine brighter than glass, plagioclase darker, vesicles near black
    gm = np.median(s.clean[(s.labels == 0) & ~s.vesicles])
    assert abs(gm - GREY["glass"] * 255) < 0.08 * 255
    for phase, sign in (("olivine", 1), ("plagioclase", -1)):
        labs = s.truth.loc[s.truth.phase == phase, "label"]
        if len(labs):
            med = np.median(s.clean[np.isin(s.labels, labs)])
            assert np.sign(med - gm) == sign
    inner = ndi.binary_erosion(s.vesicles, iterations=4)
    assert np.median(s.clean[inner]) < 0.1 * 255
    assert not (s.labels[s.vesicles] > 0).any()


def test_true_profile_matches_clean_image(sample):
    """The clean image sampled against the distance to each crystal's rim follows
    true_profile (away from cracks, inclusions, blur at the rim)."""
    s = sample
    checked = 0
    for _, row in s.truth.iterrows():
        if row.touches_border or row.touching or row.cracked or row.n_inclusions:
            continue
        mask = s.labels == row.label
        d = ndi.distance_transform_edt(mask) * s.pixel_size_um
        sel = d > 3
        pred = s.true_profile(row.label, d[sel] - 0.5 * s.pixel_size_um)
        err = np.abs(s.clean[sel] - pred)
        assert np.median(err) < 2.5, row.zoning_type
        checked += 1
    assert checked >= 3


def test_profiles_truth_per_type():
    prof, truth = make_profiles(4, noise=0.0, seed=2)
    assert set(truth.zoning_type) == set(ZONING_TYPES)
    expected = {"unzoned": 1, "rim_brighter": 2, "rim_darker": 2, "gradient": 1,
                "oscillatory": 1}
    for _, row in truth.iterrows():
        p = prof[prof.label == row.label].sort_values("distance_um")
        assert p.value.iloc[0] == pytest.approx(row.rim_value, abs=1e-6)
        assert p.value.iloc[-1] == pytest.approx(row.core_value, abs=0.3)
        if row.zoning_type in expected:
            assert row.n_plateaus == expected[row.zoning_type]
        else:
            assert row.n_plateaus in (3, 4)
        if row.zoning_type == "rim_brighter":
            assert row.rim_value > row.core_value
            assert row.interpretation == "normal"  # olivine: Fe-richer, brighter rim
        if row.zoning_type == "rim_darker":
            assert row.rim_value < row.core_value


def test_profile_step_is_an_erf_of_sqrt_dt():
    """Half-height crossing at the step position, 2*sqrt(Dt) -> erf(1)=84 % of the jump."""
    prof, truth = make_profiles(3, zoning_types=("rim_brighter",), noise=0.0, spacing_um=0.05)
    for _, row in truth.iterrows():
        p = prof[prof.label == row.label]
        a, b = row.plateau_values
        pos, s = row.step_positions_um[0], row.sqrt_dt_um
        v = np.interp([pos, pos + 2 * s], p.distance_um, p.value)
        assert (v[0] - a) / (b - a) == pytest.approx(0.5, abs=0.01)
        assert (v[1] - a) / (b - a) == pytest.approx(0.5 * (1 + 0.8427), abs=0.01)


def test_plagioclase_composition_mode():
    prof, truth = make_profiles(3, zoning_types=("rim_darker",), phase="plagioclase",
                                quantity="composition", noise=0.0)
    # a darker plagioclase rim is An-poorer: normal zoning
    assert (truth.rim_value < truth.core_value).all()
    assert (truth.interpretation == "normal").all()
    assert truth.composition_name.eq("An").all()


def test_pixel_size_is_physical():
    a = make_thin_section((300, 300), n_crystals=6, pixel_size_um=1.0, seed=5)
    b = make_thin_section((600, 600), n_crystals=6, pixel_size_um=0.5, seed=5)
    # same physical field: crystal areas in um^2 of the same order, not 4x apart
    assert 0.5 < b.truth.area_um2.median() / a.truth.area_um2.median() < 2.0
