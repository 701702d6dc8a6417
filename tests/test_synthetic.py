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


# ---------------------------------------------------------------------------------------
# what real BSE images carry: the realism options


from napari_zonation._synthetic_features import halo_rings, jpeg_like  # noqa: E402
from napari_zonation.synthetic import SCENE_KINDS  # noqa: E402

SHAPE = (384, 384)


def _scene(**kw):
    return make_thin_section(SHAPE, n_crystals=10, seed=kw.pop("seed", 4), **kw)


def test_options_off_by_default_and_same_crystals_with_them():
    """Every option at its off value gives the default image; turning one on keeps the crystals
    (same labels wherever the option covers nothing)."""
    base = _scene()
    off = _scene(groundmass="microlite", vesicle_style="auto", epoxy_fraction=0.0,
                 edge_halo=0.0, faint_rims=0.0, scan_lines=0, data_bar=False)
    assert np.array_equal(base.image, off.image) and np.array_equal(base.labels, off.labels)
    for opts in ({"edge_halo": 0.3}, {"scan_lines": 5, "jpeg_quality": 70},
                 {"groundmass": "glass"}, {"epoxy_fraction": 0.1}, {"needles": 0.05}):
        s = _scene(**opts)
        covered = s.epoxy if s.epoxy is not None else np.zeros(SHAPE, bool)
        assert not (s.labels > 0)[base.labels == 0].any(), opts
        # what the option covers, and the remnants too small to count, are the only losses
        lost = (base.labels > 0) & (s.labels == 0) & ~covered
        assert lost.sum() < 0.01 * (base.labels > 0).sum(), opts
        assert len(s.truth) >= len(base.truth) - 2


@pytest.mark.parametrize("kind", sorted(SCENE_KINDS))
def test_truth_never_covers_glass_vesicles_epoxy_needles_or_bar(kind):
    s = _scene(**SCENE_KINDS[kind])
    lab = s.labels > 0
    assert set(np.unique(s.labels)) - {0} == set(s.truth["label"])
    assert not lab[s.vesicles].any()
    if s.needles is not None:
        assert not lab[s.needles].any()
    if s.data_bar_rows:
        assert not lab[-s.data_bar_rows:].any()
    if s.epoxy is not None and s.epoxy.any():
        # epoxy regions and holes in the groundmass are never crystal; a hole inside a
        # crystal is wholly inside it (its label surrounds it, as an inclusion's does)
        ep_lab, n = ndi.label(s.epoxy)
        for i, sl in enumerate(ndi.find_objects(ep_lab), start=1):
            part = ep_lab[sl] == i
            under = s.labels[sl][part]
            if under.any():
                assert (under == under[0]).all() and under[0] > 0
                ring = ndi.binary_dilation(ep_lab == i, iterations=2) & ~(ep_lab == i)
                assert (s.labels[ring] == under[0]).all()
    # the true labels are crystal interiors: their clean grey is never epoxy-black in bulk
    inner = ndi.binary_erosion(lab, iterations=3) & ~(s.epoxy if s.epoxy is not None else 0)
    assert np.median(s.clean[inner]) > 0.2 * s.full_scale


def test_edge_halo_is_inside_the_outline_and_bright():
    s = _scene(edge_halo=0.4, seed=6)
    assert s.halo is not None and s.halo.any()
    assert (s.labels[s.halo] > 0).all()  # inside the true mask
    d = ndi.distance_transform_edt(s.labels > 0)
    assert d[s.halo].max() < 2.5  # the outermost one or two pixels
    first, _ = halo_rings(s.labels)
    assert (first & (s.labels > 0) <= s.halo).all()  # every free face has one
    # contacts between crystals carry none: a halo pixel always has groundmass within 2 px
    # rendered: the first ring is brighter than the crystal's own rim grey by about the
    # halo's amplitude (blur spreads it); truth gives width and amplitude per crystal
    rows = s.truth.set_index("label")
    for lab_id, row in rows.iterrows():
        ring = first & (s.labels == lab_id)
        if ring.sum() < 30:
            continue
        rim = s.true_profile(lab_id, [0.0])[0]
        excess = np.median(s.clean[ring]) - rim
        assert 0.25 * row.halo_dn < excess < 1.05 * row.halo_dn + 3
        assert row.halo_px in (1, 2)
    # without halos the same ring sits at the rim grey
    plain = _scene(seed=6)
    ring = first & (plain.labels > 0)
    assert np.median(s.clean[ring] - plain.clean[ring]) > 0.3 * 0.4 * 255 * 0.5


def test_faint_rims_have_the_glass_grey_over_a_darker_core():
    s = _scene(**SCENE_KINDS["faint_rims"], seed=2)
    glass = s.glass_grey * s.full_scale
    faint = s.truth[s.truth.rim_at_glass]
    assert len(faint) >= 5
    assert set(faint.phase) <= {"olivine", "clinopyroxene"}
    assert (np.abs(faint.rim_value - glass) <= 4.0 + 1e-9).all()
    assert (faint.core_value < faint.rim_value - 0.03 * 255).all()
    assert (faint.interpretation == "normal").all()  # Fe-richer (brighter) olivine rim
    assert set(faint.rim_cue) <= {"step", "dark_line", "bright_line"}
    # rendered: just inside the outline the crystal has the glass's grey within a few DN
    gm = np.median(s.clean[(s.labels == 0) & ~s.vesicles & ~s.epoxy])
    assert abs(gm - glass) < 2.0
    d = ndi.distance_transform_edt(s.labels > 0)
    for _, row in faint.iterrows():
        z = s.zonings[row.label]
        if z.zoning_type != "rim_brighter" or z.steps_um[0] < 9:
            continue
        band = (s.labels == row.label) & (d >= 3) & (d <= 4)
        assert abs(np.median(s.clean[band]) - glass) < 6.0


def test_glass_zoned_laths_cross_the_glass_grey():
    s = _scene(glass_zoned_laths=1.0, phases=("plagioclase",), seed=3)
    glass = s.glass_grey * s.full_scale
    laths = s.truth[s.truth.rim_at_glass]
    assert len(laths) >= 4
    for _, row in laths.iterrows():
        levels = np.array(row.plateau_values)
        crosses = levels.min() < glass < levels.max()
        outer_at_glass = abs(levels[0] - glass) <= 3.0 + 1e-9 and levels[-1] < glass
        assert crosses or outer_at_glass
        if not outer_at_glass:
            assert levels[0] < glass < levels[-1]  # rim darker, core brighter than the glass


def test_real_vesicles_span_the_grey_levels_with_bright_halos():
    s = _scene(groundmass="glass", n_vesicles=10, seed=1)
    fs = s.full_scale
    v = s.clean[s.vesicles]
    assert np.percentile(v, 2) < 0.1 * fs and np.percentile(v, 99.5) > 0.65 * fs
    assert s.truth.empty or not (s.labels[s.vesicles] > 0).any()
    outside = ndi.binary_dilation(s.vesicles, iterations=1) & ~s.vesicles & (s.labels == 0)
    glass = np.median(s.clean[(s.labels == 0) & ~ndi.binary_dilation(s.vesicles, iterations=6)])
    assert np.median(s.clean[outside]) > glass + 0.03 * fs
    # smooth glass: no microlite mat
    far = (s.labels == 0) & ~ndi.binary_dilation(s.vesicles, iterations=6)
    assert np.percentile(s.clean[far], 99) - np.percentile(s.clean[far], 1) < 0.06 * fs


def test_vesicles_against_crystals_and_epoxy_cuts():
    s = _scene(vesicle_contact=1.0, n_vesicles=6, seed=2)
    assert s.truth.vesicle_contact.sum() >= 3
    near = ndi.binary_dilation(s.vesicles, iterations=2)
    for lab_id in s.truth.loc[s.truth.vesicle_contact, "label"]:
        assert (near & (s.labels == lab_id)).any()
    e = _scene(epoxy_fraction=0.15, seed=2)
    assert 0.08 < e.epoxy.mean() < 0.22
    assert np.median(e.image[ndi.binary_erosion(e.epoxy, iterations=3)]) < 0.05 * 255
    assert e.truth.cut_by_epoxy.any()


def test_crack_contacts_are_dark_and_keep_both_crystals():
    s = _scene(touching_fraction=0.7, crack_contacts=1.0, seed=5)
    assert s.truth.crack_contact.sum() >= 2
    contact = np.zeros(SHAPE, bool)
    for axis in (0, 1):
        a, b = s.labels, np.roll(s.labels, 1, axis=axis)
        contact |= (a != b) & (a > 0) & (b > 0)
    contact[0], contact[:, 0] = False, False
    # the contact is an epoxy-filled crack: far darker than either crystal
    assert np.median(s.clean[contact]) < 0.2 * s.full_scale


def test_instrument_artefacts_scan_lines_data_bar_jpeg():
    plain = _scene(seed=7)
    s = _scene(scan_lines=8, data_bar=True, jpeg_quality=60, seed=7)
    rows = s.data_bar_rows
    assert rows >= 16
    bar = s.image[-rows:]
    assert (bar[1:] < 40).mean() > 0.5 and (bar > 200).any()  # black, bright glyphs
    assert not (s.labels[-rows:] > 0).any()
    # scan lines: some rows much brighter than the rows two above and below them
    body = s.image[: -rows].astype(float) - plain.image[: -rows].astype(float)
    excess = np.median(body, axis=1)
    assert (excess > 6).sum() >= 3
    # crystals cut by the bar count as touching the border
    cut = set(np.unique(s.labels[-rows - 1])) - {0}
    assert all(s.truth.set_index("label").loc[list(cut), "touches_border"])


def test_jpeg_like_quantises_block_dct_coefficients():
    """Against scipy's DCT: every 8 x 8 block of the output has DCT coefficients on the
    quantisation grid, and a flat block survives unchanged."""
    from scipy.fft import dctn

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(24, 32))
    out = jpeg_like(x, 50, 255.0)
    blocks = (out - 128.0).reshape(3, 8, 4, 8).transpose(0, 2, 1, 3)
    coef = dctn(blocks, axes=(2, 3), norm="ortho")
    assert coef[..., 0, 0] / 16 == pytest.approx(np.round(coef[..., 0, 0] / 16), abs=1e-6)
    assert coef[..., 7, 7] / 99 == pytest.approx(np.round(coef[..., 7, 7] / 99), abs=1e-6)
    assert np.abs(out - x).mean() > 1.0
    flat = np.full((8, 8), 128.0 + 16.0 * 3 / 8)  # DC = 16 * 3: on the grid
    assert jpeg_like(flat, 50, 255.0) == pytest.approx(flat)


def test_needles_are_groundmass():
    s = _scene(needles=0.08, seed=8)
    assert 0.03 < s.needles.mean() < 0.15
    assert not (s.labels[s.needles] > 0).any()
    # clusters bigger than the smallest crystal a segmentation keeps (400 um^2) exist
    parts, n = ndi.label(ndi.binary_closing(s.needles, iterations=2))
    assert (np.bincount(parts.ravel())[1:] > 400).any()


def test_conflicting_glass_options_name_the_fix():
    with pytest.raises(ValueError, match="glass_grey"):
        make_thin_section((64, 64), n_crystals=1, faint_rims=0.5, glass_zoned_laths=0.5)
    with pytest.raises(ValueError, match="groundmass"):
        make_thin_section((64, 64), n_crystals=1, groundmass="sand")


@pytest.mark.parametrize("seed", [0, 2])
def test_crystals_erased_by_epoxy_leave_a_consistent_truth(seed):
    """Epoxy covering the last crystals placed (their labels gone from the image) with the
    options that keep per-label tables (faint-rim lines, halos): the truth lists exactly the
    crystals left, halos and rim cues included (this crashed once)."""
    s = make_thin_section((256, 256), n_crystals=8, seed=seed, epoxy_fraction=0.5,
                          edge_halo=0.3, faint_rims=1.0, groundmass="glass")
    assert set(np.unique(s.labels)) - {0} == set(s.truth["label"])
    assert s.truth.cut_by_epoxy.any()
    assert (s.truth.halo_px.isin([1, 2])).all()
