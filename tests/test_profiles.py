"""Profiles against scikit-image and the synthetic ground truth."""

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi
from skimage.measure import profile_line

from napari_zonation import ZonationInputError, line_profiles, rim_profiles
from napari_zonation import profiles as profiles_module
from napari_zonation.profiles import (
    Calibration,
    _band_neighbours,
    _cluster_windows,
    _clusters,
    _grouped_quartiles,
    _narrow,
    _nearer_a_contact,
    _rim_edt_sq,
    _shelves,
    apply_calibration,
    calibrate,
    place_traverses,
    profile_failures,
    rim_distance,
    spot_values,
    traverse_profiles,
)
from napari_zonation.synthetic import make_thin_section


@pytest.fixture(scope="module")
def sample():
    return make_thin_section((512, 512), n_crystals=12, seed=7, noise=0.02)


@pytest.mark.parametrize("width_um", [1.0, 3.0, 5.0])
def test_straight_line_matches_profile_line(sample, width_um):
    img = sample.image.astype(float)
    start, end = (12.3, 40.0), (300.0, 410.7)
    prof = line_profiles(img, [np.array([start, end])], 0.5, width_um=width_um)
    ref = profile_line(img, start, end, linewidth=int(round(width_um / 0.5)), order=1)
    np.testing.assert_allclose(prof["value"].to_numpy(), ref, rtol=0, atol=1e-9)
    # distances in um: the line's length at 0.5 um per pixel
    length = np.hypot(end[0] - start[0], end[1] - start[1]) * 0.5
    assert prof["distance_um"].iloc[0] == 0
    assert prof["distance_um"].iloc[-1] == pytest.approx(length)
    assert (prof["label"] == 1).all() and (prof["source"] == "shape").all()


def test_path_is_the_segments_joined(sample):
    img = sample.image.astype(float)
    path = np.array([[50.0, 50.0], [50.0, 150.0], [200.0, 150.0]])
    prof = line_profiles(img, [path], 1.0, width_um=1.0)
    a = profile_line(img, path[0], path[1], order=1)
    b = profile_line(img, path[1], path[2], order=1)
    np.testing.assert_allclose(prof["value"], np.concatenate([a, b[1:]]))
    assert prof["distance_um"].iloc[-1] == pytest.approx(250.0)
    assert np.all(np.diff(prof["distance_um"]) > 0)


def test_bad_shapes_are_reported_and_others_kept(sample):
    img = sample.image
    good = np.array([[10.0, 10.0], [60.0, 60.0]])
    outside = np.array([[-500.0, -500.0], [-400.0, -450.0]])
    zero = np.array([[30.0, 30.0], [30.0, 30.0]])
    one_vertex = np.array([[5.0, 5.0]])
    with pytest.warns(UserWarning, match="3 profile"):
        prof = line_profiles(img, [good, outside, zero, one_vertex], 1.0)
    assert set(prof["label"]) == {1}
    reasons = profile_failures(prof).set_index("label")["reason"]
    assert "outside the image" in reasons[2]
    assert "zero length" in reasons[3]
    assert "2 vertices" in reasons[4]
    with pytest.raises(ZonationInputError, match="no lines"):
        line_profiles(img, [], 1.0)


def test_rim_distance_against_edt_for_separate_crystals():
    lab = np.zeros((40, 60), int)
    lab[5:25, 5:30] = 1
    lab[10:35, 40:55] = 2
    d = rim_distance(lab)
    ref = ndi.distance_transform_edt(lab > 0) - 0.5
    np.testing.assert_allclose(d[lab > 0], ref[lab > 0])


def test_rim_distance_separates_touching_crystals():
    lab = np.zeros((40, 60), int)
    lab[5:35, 5:30] = 1
    lab[5:35, 30:55] = 2  # shares the column boundary 29|30
    d = rim_distance(lab)
    # pixels next to the shared boundary are on each crystal's rim
    assert d[20, 29] == pytest.approx(0.5) and d[20, 30] == pytest.approx(0.5)
    assert d[20, 27] == pytest.approx(2.5)


def test_shell_profiles_follow_the_truth(sample):
    """Distance-to-rim profiles vs the generator's noise-free zoning (blur and drift included
    in the image, so a tolerance of half the noise on the median error)."""
    prof = rim_profiles(sample.image, sample.labels, sample.pixel_size_um)
    assert set(prof["label"]) <= set(sample.truth["label"])
    assert {"label", "distance_um", "value", "sigma", "n_pixels", "source"} <= set(prof.columns)
    assert (prof["source"] == "rim").all()
    errors = []
    for _, row in sample.truth.iterrows():
        p = prof[prof["label"] == row.label]
        if p.empty or row.touches_border:
            continue
        # compare beyond 2 um from the rim (probe blur) on the clean image's own shells
        truth_v = sample.true_profile(row.label, p["distance_um"].to_numpy())
        sel = p["distance_um"].to_numpy() > 2.0
        errors.append(np.median(np.abs(p["value"].to_numpy()[sel] - truth_v[sel])))
    assert len(errors) >= 5
    assert np.median(errors) < 0.5 * sample.noise_dn + 0.04 * 110  # + drift (<= 3 %)


def test_shell_profile_step_position_on_a_clean_crystal():
    """A sharp step drawn at a known depth is found within one pixel."""
    yy, xx = np.mgrid[:120, :120]
    lab = ((np.abs(yy - 60) < 50) & (np.abs(xx - 60) < 40)).astype(int)
    depth = rim_distance(lab)
    img = np.where(depth < 12.0, 180.0, 120.0) * (lab > 0) + 60 * (lab == 0)
    prof = rim_profiles(img, lab, 1.0, skip_rim_um=0)
    p = prof.sort_values("distance_um")
    crossing = p["distance_um"][p["value"] < 150].min()
    assert crossing == pytest.approx(12.0, abs=1.0)


def test_shells_ignore_cracks_and_inclusions():
    yy, xx = np.mgrid[:100, :100]
    lab = ((np.abs(yy - 50) < 40) & (np.abs(xx - 50) < 40)).astype(int)
    img = np.full(lab.shape, 150.0)
    img[lab == 0] = 100
    img[:, 48:50] = 10.0  # a crack right across
    img[40:46, 30:36] = 250.0  # an inclusion
    prof = rim_profiles(img, lab, 1.0)
    np.testing.assert_allclose(prof["value"], 150.0)


def test_multichannel_and_channel_names(sample):
    stack = np.stack([sample.image, 255 - sample.image]).astype(float)
    prof = rim_profiles(stack, sample.labels, 1.0, channel_names=["Fe", "Mg"])
    assert set(prof["channel"]) == {"Fe", "Mg"}
    fe = prof[prof.channel == "Fe"].set_index(["label", "distance_um"])["value"]
    mg = prof[prof.channel == "Mg"].set_index(["label", "distance_um"])["value"]
    np.testing.assert_allclose(fe + mg, 255.0)


def test_traverse_is_perpendicular_to_the_long_face_of_a_lath():
    yy, xx = np.mgrid[:200, :200]
    lab = ((np.abs(yy - 100) < 20) & (np.abs(xx - 100) < 80)).astype(int)  # long faces horizontal
    trav = place_traverses(lab, 1.0)
    t = trav.iloc[0]
    assert t.status == "ok"
    # the traverse runs vertically (perpendicular to the long horizontal face), rim to core
    assert abs(t.rim_col - t.core_col) < 2.0
    assert abs(t.rim_row - t.core_row) == pytest.approx(19.5, abs=1.5)


def test_traverse_avoids_a_face_shared_with_a_neighbour():
    lab = np.zeros((200, 200), int)
    lab[80:120, 20:180] = 1
    lab[120:160, 20:180] = 2  # crystal 2 covers crystal 1's lower long face
    trav = place_traverses(lab, 1.0).set_index("label")
    assert trav.loc[1, "rim_row"] < trav.loc[1, "core_row"]  # goes up, to the free face
    assert trav.loc[2, "rim_row"] > trav.loc[2, "core_row"]


def test_traverse_profiles_run_rim_to_core(sample):
    prof, trav = rim_profiles(
        sample.image, sample.labels, 1.0, method="traverse", return_traverses=True
    )
    assert set(trav["label"]) == set(sample.truth["label"])
    assert (prof["source"] == "traverse").all()
    for lab_id, p in prof.groupby("label"):
        t = trav.set_index("label").loc[lab_id]
        assert p["distance_um"].iloc[-1] == pytest.approx(t.length_um, rel=1e-6)


def test_calibration_recovers_a_linear_law():
    grey = np.array([100.0, 120.0, 140.0, 160.0])
    fo = 90 - 0.25 * (grey - 100)
    cal = calibrate(grey, fo, name="Fo (mol%)")
    assert cal.slope == pytest.approx(-0.25) and cal.intercept == pytest.approx(115.0)
    assert cal.r2 == pytest.approx(1.0)
    prof = pd.DataFrame(
        {"label": 1, "distance_um": [0.0, 1.0], "value": [100.0, 140.0], "sigma": [2.0, 2.0]}
    )
    out = apply_calibration(prof, cal)
    np.testing.assert_allclose(out["value"], [90.0, 80.0])
    np.testing.assert_allclose(out["sigma"], [0.5, 0.5])
    assert (out["quantity"] == "Fo (mol%)").all() and "value_grey" in out
    with pytest.raises(ZonationInputError, match="two reference points"):
        calibrate([100.0], [90.0])


def test_bad_inputs_give_clear_errors(sample):
    with pytest.raises(ZonationInputError, match="labels have shape"):
        rim_profiles(sample.image, sample.labels[:10], 1.0)
    with pytest.raises(ZonationInputError, match="pixel size is missing"):
        rim_profiles(sample.image, sample.labels, None)
    with pytest.raises(ZonationInputError, match="1D"):
        rim_profiles(np.arange(10), np.arange(10), 1.0)


def test_tiny_crystal_is_reported_and_others_kept():
    lab = np.zeros((60, 60), int)
    lab[10:40, 10:40] = 1
    lab[50, 50] = 2  # one pixel
    img = np.full(lab.shape, 100.0)
    with pytest.warns(UserWarning, match="skipped"):
        prof = rim_profiles(img, lab, 1.0)
    assert set(prof["label"]) == {1}
    assert 2 in set(profile_failures(prof)["label"])


def test_spot_values_are_the_median_in_a_disk():
    rng = np.random.default_rng(3)
    img = rng.normal(100.0, 10.0, size=(40, 50))
    img[5, 5] = np.nan  # not counted
    pts = np.array([[20.0, 25.0], [10.3, 30.7], [0.0, 0.0], [39.6, 49.2], [5.2, 5.4]])
    px, radius_um = 0.5, 1.6  # 3.2 pixels
    got = spot_values(img, pts, px, radius_um)
    rr, cc = np.mgrid[:40, :50]
    for (r, c), value in zip(pts, got, strict=True):
        inside = (rr - r) ** 2 + (cc - c) ** 2 <= (radius_um / px) ** 2
        vals = img[inside]
        assert value == pytest.approx(np.median(vals[np.isfinite(vals)]))
    # a tiny radius still reads the pixel under the spot; outside the image gives NaN
    tiny = spot_values(img, [[12.2, 7.8], [-30.0, 10.0]], 1.0, 0.1)
    assert tiny[0] == img[12, 8] and np.isnan(tiny[1])
    with pytest.raises(ZonationInputError, match="row, col"):
        spot_values(img, np.array([1.0, 2.0, 3.0]), 1.0)


def test_calibration_from_spots_recovers_the_generator_law():
    """Spots at olivine cores of a drift-free synthetic section against their true Fo give
    the generator's grey model: grey/255 = 1.12 - 0.006 Fo, i.e. Fo = (1.12 - g/255)/0.006."""
    s = make_thin_section(
        (512, 512),
        n_crystals=14,
        seed=5,
        noise=0.01,
        drift=0.0,
        phases=("olivine",),
        zoning_types=("unzoned",),
        crack_fraction=0.0,
        inclusion_fraction=0.0,
    )
    cores = ndi.maximum_position(rim_distance(s.labels), s.labels, s.truth["label"])
    grey = spot_values(s.image, np.array(cores, float), s.pixel_size_um, 4.0)
    cal = calibrate(grey, s.truth["core_composition"], name="Fo (mol%)")
    assert len(grey) >= 5
    assert cal.slope == pytest.approx(-1 / (0.006 * 255), rel=0.03)
    assert cal.intercept == pytest.approx(1.12 / 0.006, rel=0.01)
    assert cal.r2 > 0.99
    back = Calibration.from_dict(cal.as_dict())
    assert back.slope == cal.slope and back.name == "Fo (mol%)"
    np.testing.assert_allclose(back.residuals, cal.residuals)


@pytest.mark.parametrize("statistic", ["mean", "median"])
def test_shell_statistics_drop_groundmass_left_at_the_outline(statistic):
    """Labels grown over the groundmass in bumps (a segmentation's ragged outline) pull the
    plain median of the outer shells by 1-2 DN at 2 % noise (a plain mean by more); the
    clipped median or mean does not."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:260, :260]
    true = (np.abs(yy - 130) < 100) & (np.abs(xx - 130) < 100)
    band = ndi.binary_dilation(true, iterations=4) & ~true
    blobs = ndi.binary_dilation(rng.random(true.shape) < 0.02, iterations=3)
    lab = (true | (band & blobs)).astype(int)
    img = np.round(np.where(true, 170.0, 107.0) + rng.normal(0, 5.1, true.shape)).astype(np.uint8)
    # halo_um=0: the edge-band check would drop the biased outer shells of the plain one
    kw = dict(statistic=statistic, halo_um=0)
    plain = rim_profiles(img, lab, 1.0, clip_sigmas=None, **kw).sort_values("distance_um")
    clipped = rim_profiles(img, lab, 1.0, **kw).sort_values("distance_um")
    assert np.max(np.abs(plain["value"].to_numpy()[:3] - 170.0)) >= 1.0  # the bias is real
    np.testing.assert_allclose(clipped["value"].to_numpy()[:6], 170.0, atol=0.5)
    # deep shells (no groundmass) are the same either way, within a median's jitter
    np.testing.assert_allclose(
        clipped["value"].to_numpy()[10:40], plain["value"].to_numpy()[10:40], atol=1.0
    )


def test_clipped_shell_medians_keep_a_zoned_step():
    """Clipping is relative to each shell's own median: a 15 DN step stays where it is."""
    rng = np.random.default_rng(6)
    yy, xx = np.mgrid[:160, :160]
    lab = ((np.abs(yy - 80) < 70) & (np.abs(xx - 80) < 70)).astype(int)
    depth = rim_distance(lab)
    clean = np.where(depth < 20.0, 185.0, 170.0) * (lab > 0) + 107 * (lab == 0)
    img = clean + rng.normal(0, 5.1, lab.shape)
    p = rim_profiles(img, lab, 1.0).sort_values("distance_um")
    d, v = p["distance_um"].to_numpy(), p["value"].to_numpy()
    np.testing.assert_allclose(v[d < 18], 185.0, atol=1.5)
    np.testing.assert_allclose(v[(d > 22) & (d < 60)], 170.0, atol=1.5)


def test_tables_with_skipped_items_concatenate_and_merge():
    """Two tables that both skipped items stay plain pandas tables: concat and merge work
    (a DataFrame in ``attrs`` made pandas raise), and the skipped items read as a table."""
    lab = np.zeros((40, 40), int)
    lab[5:25, 5:25] = 1
    lab[30, 30] = 2  # one pixel: no profile
    img = np.full(lab.shape, 100.0)
    with pytest.warns(UserWarning, match="skipped"):
        a = rim_profiles(img, lab, 1.0)
    with pytest.warns(UserWarning, match="skipped"):
        b = rim_profiles(img + 5, lab, 1.0)
    both = pd.concat([a, b], ignore_index=True)
    assert len(both) == len(a) + len(b)
    merged = a.merge(b, on=["label", "distance_um"], suffixes=("", "_b"))
    np.testing.assert_allclose(merged["value_b"] - merged["value"], 5.0)
    fails = profile_failures(a)
    assert list(fails.columns) == ["label", "reason"] and list(fails["label"]) == [2]


@pytest.mark.parametrize(
    "statistic, factor, integer",
    [("median", np.sqrt(np.pi / 2), False), ("mean", 1.0, False), ("mean", 1.0, True)],
)
def test_shell_sigma_is_the_standard_error_of_the_shell_value(statistic, factor, integer):
    """``sigma`` agrees with the scatter of the shell values over noise realisations and with
    the Gaussian law: sqrt(pi / 2) * noise / sqrt(n) for a median, noise / sqrt(n) for a
    (3-sigma clipped) mean, also on 8-bit grey levels as an SEM writes them (there the
    median of whole numbers scatters about 1.19 times its law: one reason the mean is the
    default)."""
    yy, xx = np.mgrid[:120, :120]
    lab = ((np.abs(yy - 60) < 50) & (np.abs(xx - 60) < 50)).astype(int)
    medians, sigmas = [], []
    for seed in range(40):
        img = 150.0 + np.random.default_rng(seed).normal(0, 5.0, lab.shape)
        if integer:
            img = np.round(img).astype(np.uint8)
        p = rim_profiles(img, lab, 1.0, statistic=statistic).sort_values("distance_um")
        medians.append(p["value"].to_numpy()[:30])
        sigmas.append(p["sigma"].to_numpy()[:30])
    n = p["n_pixels"].to_numpy()[:30]
    law = factor * 5.0 / np.sqrt(n)
    reported = np.mean(sigmas, axis=0)
    scatter = np.std(medians, axis=0, ddof=1)
    assert np.median(reported / law) == pytest.approx(1.0, abs=0.08)
    # 40 realisations: the scatter itself is known to about 11 % per shell
    assert np.median(scatter / reported) == pytest.approx(1.0, abs=0.12)


def test_profiles_without_a_skipped_rim_band():
    """skip_rim_um=0 keeps the rim pixels (it used to fail on float images)."""
    yy, xx = np.mgrid[:80, :80]
    lab = np.zeros((80, 80), int)
    lab[10:40, 10:40] = 1
    lab[45:75, 40:75] = 2
    img = np.where(lab == 1, 120.0, 200.0) + np.random.default_rng(1).normal(0, 3, lab.shape)
    for image in (img, np.round(img).astype(np.uint8)):
        p = rim_profiles(image, lab, 1.0, skip_rim_um=0.0)
        assert set(p["label"]) == {1, 2}
        assert p.groupby("label")["distance_um"].min().max() == pytest.approx(0.5)
        q = rim_profiles(image, lab, 1.0)
        assert q.groupby("label")["distance_um"].min().min() > 1.0


def _host_and_newcomer(width_um: float = 4.0):
    """A host crystal (label 1) whose zoning, an erf step 15 px inside its full square outline,
    is partly covered by a newcomer (label 2) that overlaps one of its sides, as the generator
    builds glomerocrysts."""
    from scipy.special import erf

    yy, xx = np.mgrid[:130, :130]
    host = (yy >= 20) & (yy < 100) & (xx >= 20) & (xx < 100)
    depth = np.minimum.reduce([yy - 20, 99 - yy, xx - 20, 99 - xx]) + 0.5  # to the full outline
    newcomer = (yy >= 40) & (yy < 80) & (xx >= 85) & (xx < 125)
    lab = np.zeros(yy.shape, int)
    lab[host] = 1
    lab[newcomer] = 2
    clean = np.where(host, 100 + 50 * 0.5 * (1 + erf((depth - 15) / width_um)), 30.0)
    clean[newcomer] = 220.0
    return lab, clean


def _half_height(p):
    d, v = p["distance_um"].to_numpy(), p["value"].to_numpy()
    k = np.flatnonzero((v[:-1] < 125) & (v[1:] >= 125))[0]
    return d[k] + (125 - v[k]) * (d[k + 1] - d[k]) / (v[k + 1] - v[k])


def test_contacts_excluded_give_unbiased_steps_in_a_glomerocryst():
    """Pixels of the host nearer the newcomer than a free face carry core values at rim
    distances: with noise they pull the step toward the rim (contacts="rim"); leaving them
    out ("exclude", the default) puts it back within a fraction of a pixel of the truth."""
    lab, clean = _host_and_newcomer()
    found = {"rim": [], "exclude": []}
    for seed in range(6):
        noisy = clean + np.random.default_rng(seed).normal(0, 20.0, clean.shape)
        img = np.clip(np.round(noisy), 0, 255).astype(np.uint8)
        for mode in found:
            p = rim_profiles(img, lab, 1.0, contacts=mode)
            found[mode].append(_half_height(p[p["label"] == 1].sort_values("distance_um")))
    assert np.mean(found["rim"]) - 15.0 < -1.0  # the bias is real
    assert abs(np.mean(found["exclude"]) - 15.0) < 0.5
    # the newcomer's outline is whole: it keeps its contact pixels only where they are
    # nearer a free face, and the host loses exactly its pixels nearer the contact
    p = rim_profiles(clean, lab, 1.0, contacts="exclude", clip_sigmas=None)
    q = rim_profiles(clean, lab, 1.0, contacts="rim", clip_sigmas=None)
    n_ex = p.groupby("label")["n_pixels"].sum()
    n_all = q.groupby("label")["n_pixels"].sum()
    free = ndi.distance_transform_edt(lab != 0)
    own = np.where(lab == 1, ndi.distance_transform_edt(lab == 1), 0)
    inner = (lab == 1) & (own >= 1.5)
    assert n_all[1] - n_ex[1] == np.count_nonzero(inner & (free > own))


def test_contacts_exclude_keeps_an_enclosed_crystal():
    """A crystal with no free face (enclosed in another) keeps its contacts as rims."""
    lab = np.zeros((90, 90), int)
    lab[10:80, 10:80] = 1
    lab[30:60, 30:60] = 2
    img = np.where(lab == 2, 200.0, 100.0)
    p = rim_profiles(img, lab, 1.0)
    q = rim_profiles(img, lab, 1.0, contacts="rim")
    a, b = p[p["label"] == 2], q[q["label"] == 2]
    np.testing.assert_array_equal(a["distance_um"], b["distance_um"])
    np.testing.assert_array_equal(a["n_pixels"], b["n_pixels"])
    with pytest.raises(ZonationInputError, match="contacts"):
        rim_profiles(img, lab, 1.0, contacts="ignore")


def test_contacts_exclude_leaves_free_crystals_alone(sample):
    """Only crystals touching another lose pixels: the others' profiles are unchanged."""
    a = rim_profiles(sample.image, sample.labels, sample.pixel_size_um)
    b = rim_profiles(sample.image, sample.labels, sample.pixel_size_um, contacts="rim")
    truth = sample.truth.set_index("label")
    touching = set(truth.index[truth["touching"]])
    assert touching, "the sample must hold a glomerocryst"
    for lab_id in truth.index:
        pa, pb = a[a["label"] == lab_id], b[b["label"] == lab_id]
        if lab_id in touching:
            assert pa["n_pixels"].sum() < pb["n_pixels"].sum()
        else:
            pd.testing.assert_frame_equal(pa.reset_index(drop=True), pb.reset_index(drop=True))


def _near_contact_check(lab, monkeypatch, share):
    """``_nearer_a_contact`` against scipy's distance transforms (the array's edge is no
    boundary there, as here): the crystal pixels nearer another crystal than the background."""
    monkeypatch.setattr(profiles_module._rim_distance, "WINDOWS_SHARE", share)
    lab_n = _narrow(lab)
    e2 = _rim_edt_sq(lab_n).ravel()
    band = np.flatnonzero(e2 == 1)
    lab_band = lab_n.ravel()[band]
    _, a, b = _band_neighbours(lab_n.ravel(), band, lab_band, lab.shape)
    assert a.size, "the scene must hold touching crystals"
    near = _nearer_a_contact(lab_n, e2, band, lab_band, a, b)
    free2 = ndi.distance_transform_edt(lab != 0) ** 2
    own2 = np.zeros(lab.shape)
    for lab_id in np.unique(lab[lab > 0]):
        own2 += np.where(lab == lab_id, ndi.distance_transform_edt(lab == lab_id) ** 2, 0)
    expected = np.flatnonzero((lab > 0) & (free2 > own2 + 0.5))
    assert expected.size > 0
    np.testing.assert_array_equal(np.sort(near), expected)


# the whole image, and crops whose edges cut through clusters of touching crystals
@pytest.mark.parametrize("crop", [np.s_[:, :], np.s_[300:, 200:], np.s_[:160, 120:]])
@pytest.mark.parametrize("share", [0.0, 1.0])  # one whole-image transform; cluster windows
def test_pixels_nearer_a_contact_are_those_of_scipy(sample, monkeypatch, crop, share):
    """Whether the distance to the background is transformed over the whole image or in
    windows around the clusters of touching crystals, the pixels nearer a contact are
    scipy's."""
    _near_contact_check(np.ascontiguousarray(sample.labels[crop]), monkeypatch, share)


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_pixels_nearer_a_contact_in_a_crystal_across_the_image(monkeypatch, share):
    """A crystal spanning the image's width has no rim pixel in its first rows: its cluster's
    window still reaches the image edge, and its pixels there nearer the contact than the
    background are found."""
    lab = np.zeros((40, 60), np.int32)
    lab[:20] = 1  # across the whole width
    lab[20:, :30] = 2  # under its left half; groundmass under the right half
    _near_contact_check(lab, monkeypatch, share)


def test_pixels_nearer_a_contact_in_many_packed_windows(monkeypatch):
    """Clusters of touching crystals off the image edge are packed side by side in several
    rows of one canvas; the pixels nearer a contact found there (mapped back from the canvas
    by their window) are scipy's."""
    sample = make_thin_section((256, 384), n_crystals=30, size_um=(30.0, 70.0), seed=5)
    lab = np.pad(sample.labels, 3)  # no cluster's window reaches the image edge
    lab_n = _narrow(lab)
    band = np.flatnonzero(_rim_edt_sq(lab_n).ravel() == 1)
    lab_band = lab_n.ravel()[band]
    _, a, b = _band_neighbours(lab_n.ravel(), band, lab_band, lab.shape)
    r0, r1, c0, c1 = _cluster_windows(_clusters(a, b, int(lab.max()) + 1), lab_n, band, lab_band)
    ys, _, _ = _shelves(r1 - r0, c1 - c0, lab.shape[1])
    assert r0.size >= 5 and np.unique(ys).size >= 2, "several windows in several rows"
    _near_contact_check(lab, monkeypatch, 1.0)


def test_median_profile_reaches_the_median_depth():
    """Three flat profiles 1, 2, 3 reaching 10, 20 and 30 um: the median runs to 20 um, is 2
    where all three have data and the median of the two others (2.5) beyond 10 um."""
    from napari_zonation.profiles import median_profile

    curves = [(np.linspace(0, L, 50), np.full(50, v)) for L, v in ((10, 1.0), (20, 2.0), (30, 3.0))]
    grid, med = median_profile(curves, n=201)
    assert grid[0] == 0 and grid[-1] == pytest.approx(20.0)
    np.testing.assert_allclose(med[grid <= 10], 2.0)
    np.testing.assert_allclose(med[grid > 10], 2.5)
    assert median_profile([(np.array([0.0]), np.array([1.0]))])[0].size == 0


def test_traverse_profiles_skip_the_blurred_rim_pixel():
    """The automatic traverse drops its first pixel, blurred with what lies outside the
    crystal (as the shells do): on a noise-free section every traverse's first sample lies
    within 2 DN of the generator's true profile (the rim sample itself is ~9 DN off)."""
    s = make_thin_section(seed=0, noise=0.0)
    prof = rim_profiles(s.image, s.labels, 1.0, method="traverse")
    first = prof.sort_values("distance_um").groupby("label").head(1)
    assert (first["distance_um"] >= 1.0 - 1e-9).all() and (first["distance_um"] < 2.0).all()
    err = [
        r.value - s.true_profile(r.label, np.array([r.distance_um + 0.5]))[0]
        for r in first.itertuples()
    ]
    assert np.median(np.abs(err)) < 2.0
    # with the rim kept (skip_rim_um=0) the first sample is the blurred edge
    raw = rim_profiles(s.image, s.labels, 1.0, method="traverse", skip_rim_um=0)
    assert raw["distance_um"].min() == 0.0
    # a traverse shorter than the skipped band is reported, the others kept
    short = pd.DataFrame(
        {"label": [1, 2], "rim_row": 5.0, "rim_col": 5.0, "core_row": 5.0, "core_col": [5.6, 15.0]}
    )
    with pytest.warns(UserWarning, match="skipped rim band"):
        got = traverse_profiles(np.full((20, 20), 5.0), short, 1.0)
    assert set(got["label"]) == {2}
    assert [lab for lab, _ in got.attrs["failures"]] == [1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, "float32 in float64"])
def test_grouped_quartiles_of_floats_match_numpy(dtype):
    """Per-group quartiles from the one packed sort (float32 bits made sortable; also for
    float64 values that float32 holds exactly) or from lexsort (other float64) equal
    numpy's quantiles group by group, signs and zeros included."""
    rng = np.random.default_rng(3)
    key = rng.integers(0, 50, 4000)
    v = rng.normal(0, 100, key.size) * rng.choice([1e-3, 1.0, 1e3], key.size)
    v = v.astype(np.float32).astype(np.float64) if isinstance(dtype, str) else v.astype(dtype)
    v[::97] = 0.0
    v[1::89] = -0.0
    counts = np.bincount(key, minlength=60)
    q1, med, q3 = _grouped_quartiles(key, v, counts)
    for i, k in enumerate(np.flatnonzero(counts)):
        ref = np.quantile(v[key == k].astype(np.float64), [0.25, 0.5, 0.75])
        np.testing.assert_allclose([q1[i], med[i], q3[i]], ref, rtol=1e-12, atol=0)


def test_traverse_band_avoids_a_dark_inclusion_beside_its_centre_line():
    """A lath with two equal long faces: the traverse to the upper face (the one chosen on a
    clean lath) would pass a dark inclusion one pixel beside its centre line, inside the band
    that the profile averages; the traverse goes to the clean lower face instead, and its
    profile stays on the crystal's grey (the inclusion is 120 DN darker). Checking the centre
    line alone (``width_um=1``) keeps the upper face."""
    shape = (120, 200)
    lab = np.zeros(shape, np.int32)
    lab[20:100, 20:180] = 1
    core = place_traverses(lab, 1.0).iloc[0]
    r0, c0 = int(core.core_row), int(core.core_col)
    image = np.where(lab > 0, 150.0, 100.0)
    image[25:28, c0 + 1] = 30.0  # a dark inclusion near the upper rim, beside the centre line
    assert place_traverses(lab, 1.0, image=image, width_um=1.0).iloc[0].rim_row < r0
    trav = place_traverses(lab, 1.0, image=image, width_um=3.0).iloc[0]
    assert trav.rim_row > r0  # the lower face
    assert abs(trav.rim_col - c0) < 2
    prof = rim_profiles(image, lab, 1.0, method="traverse", width_um=3.0)
    assert prof["value"].min() > 140.0


def test_automatic_traverses_cross_no_crack_of_the_generator():
    """On synthetic sections the traverse bands stay off cracks and dark inclusions (pixels of
    the noise-free image far darker than the crystal's own zoning): only crystals without a
    clean face may cross one."""
    crossing = []
    for seed in (1, 2):
        s = make_thin_section(seed=seed, noise=0.02)
        prof, trav = rim_profiles(s.image, s.labels, 1.0, method="traverse", return_traverses=True)
        for t in trav.itertuples():
            m = s.labels == t.label
            depth = ndi.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
            zoning = s.true_profile(t.label, depth[m])
            crack = np.zeros(m.shape, bool)
            crack[m] = (s.clean[m] < 0.75 * zoning.min()) & (depth[m] > 1.5)
            # the 3 px band: the centre line and the lines one pixel to either side
            u = np.linspace(0.0, 1.0, 200)[:, None]
            dr, dc = t.core_row - t.rim_row, t.core_col - t.rim_col
            side = np.array([-1.0, 0.0, 1.0])[None, :] / max(np.hypot(dr, dc), 1e-9)
            rr = np.round(t.rim_row + u * dr + side * dc).astype(int)
            cc = np.round(t.rim_col + u * dc - side * dr).astype(int)
            inside = (rr >= 0) & (rr < m.shape[0]) & (cc >= 0) & (cc < m.shape[1])
            if crack[rr[inside], cc[inside]].any():
                crossing.append((seed, t.label))
    # seed 2 crystals 16 and 18 crossed cracks at the rim end before the band was checked
    assert (2, 16) not in crossing and (2, 18) not in crossing
    assert len(crossing) <= 2, crossing


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shells_of_a_float_image_match_its_integer_twin_and_the_float_path(dtype):
    """A float image of whole numbers is read as it is (no float64 copy) and takes the
    integer statistics; the result equals that of the integer image, and that of the same
    image shifted by half a grey level (not whole: the float statistics, another sort and
    clip), shifted back. NaN pixels are left out of their shell."""
    s = make_thin_section((256, 256), n_crystals=8, size_um=(40.0, 90.0), noise=0.03, seed=4)
    ref = rim_profiles(s.image, s.labels, s.pixel_size_um)
    img = s.image.astype(dtype)
    as_float = rim_profiles(img, s.labels, s.pixel_size_um)
    pd.testing.assert_frame_equal(
        as_float.drop(columns="value"), ref.drop(columns="value"), check_dtype=False
    )
    np.testing.assert_allclose(as_float["value"], ref["value"])
    shifted = rim_profiles(img + dtype(0.5), s.labels, s.pixel_size_um)
    pd.testing.assert_frame_equal(
        shifted.drop(columns=["value", "sigma"]),
        ref.drop(columns=["value", "sigma"]),
        check_dtype=False,
    )
    np.testing.assert_allclose(shifted["value"] - 0.5, ref["value"], atol=1e-9)
    np.testing.assert_allclose(shifted["sigma"], ref["sigma"], rtol=1e-9)
    with_nan = img.copy()
    lab = int(ref["label"].iloc[0])
    rr, cc = np.nonzero(s.labels == lab)
    with_nan[rr[::2], cc[::2]] = np.nan
    holed = rim_profiles(with_nan, s.labels, s.pixel_size_um)
    kept = holed.set_index(["label", "distance_um"])["n_pixels"]
    full = ref.set_index(["label", "distance_um"])["n_pixels"]
    one = ref["label"] == lab
    assert holed.loc[holed["label"] != lab, "n_pixels"].sum() == ref.loc[~one, "n_pixels"].sum()
    assert kept.xs(lab).sum() < 0.6 * full.xs(lab).sum()


def _clipped_reference(key, v, crystal, clip, min_dropped=0.01, statistic="median"):
    """Per key: median (or mean) and IQR / 1.349 of ``v`` after the clip of
    ``_sorted_shell_stats``, one numpy call per key (the crystal's noise is the median of its
    keys' first spreads)."""
    keys = np.unique(key)
    first = {k: np.quantile(v[key == k].astype(float), [0.25, 0.5, 0.75]) for k in keys}
    spread = {k: (q[2] - q[0]) / profiles_module.IQR_SIGMA for k, q in first.items()}
    noise = {c: np.median([spread[k] for k in keys if crystal[k] == c]) for c in set(crystal)}
    med, spr, n = [], [], []
    for k in keys:
        x = v[key == k].astype(float)
        w = clip * noise[crystal[k]]
        kept = x[np.abs(x - first[k][1]) <= w]
        least = 1 if statistic == "mean" else max(1, min_dropped * x.size)
        if noise[crystal[k]] > 0 and kept.size and x.size - kept.size >= least:
            q = np.quantile(kept, [0.25, 0.5, 0.75])
            value = np.mean(kept) if statistic == "mean" else q[1]
            (
                med.append(value),
                spr.append((q[2] - q[0]) / profiles_module.IQR_SIGMA),
                n.append(kept.size),
            )
        else:
            # a mean of every pixel; a crystal without noise keeps its medians
            value = np.mean(x) if statistic == "mean" and noise[crystal[k]] > 0 else first[k][1]
            med.append(value), spr.append(spread[k]), n.append(x.size)
    return keys, np.array(med), np.array(spr), np.array(n)


@pytest.mark.parametrize("statistic", ["median", "mean"])
@pytest.mark.parametrize("as_float", [False, True])
def test_clipped_shell_statistics_match_numpy_at_the_ends_of_the_value_range(as_float, statistic):
    """The clip window of a shell whose values sit at the darkest grey level, next to a shell
    with outliers at the brightest one (and the reverse), takes no pixel of the neighbouring
    shell in the sorted array: medians (or means), spreads and counts equal numpy's per
    shell."""
    rng = np.random.default_rng(3)
    n_keys, per = 12, 60
    key = np.repeat(np.arange(n_keys), per)
    v = rng.integers(0, 3, key.size)  # dark: at the image minimum
    v[key >= 6] = rng.integers(253, 256, int((key >= 6).sum()))  # bright: at the maximum
    for k, val in ((2, 255), (3, 255), (7, 0), (8, 0)):  # outliers at the other end
        v[np.flatnonzero(key == k)[:8]] = val
    v = v.astype(np.float32 if as_float else np.uint8)
    order = rng.permutation(key.size)
    key, v = key[order], v[order]
    dsum = np.bincount(key, weights=key.astype(float), minlength=n_keys)
    crystal = np.where(np.arange(n_keys) < 6, 0, 1)
    if as_float:
        v = v + np.float32(0.25)  # not whole numbers: the float32 codes
    st = profiles_module._sorted_shell_stats(
        key, dsum, v, n_keys, lambda k: crystal[k], 3.0, statistic=statistic
    )
    keys, med, spr, n = _clipped_reference(key, v, crystal, 3.0, statistic=statistic)
    np.testing.assert_array_equal(st["key"], keys)
    np.testing.assert_allclose(st["value"], med, atol=1e-6)
    np.testing.assert_allclose(st["spread"], spr, atol=1e-6)
    np.testing.assert_array_equal(st["n_pixels"], n)


def _shells_reference(image, lab, px, skip, shell, statistic="median"):
    """Per crystal (scipy's distance transform of the crystal alone: the distance to any other
    label, the array's edge no boundary) and per shell: mean distance, median (or mean),
    pixel count; ``numpy.median`` (``numpy.mean``) on the pixels (no clip)."""
    stat = np.mean if statistic == "mean" else np.median
    rows = []
    for lab_id in np.unique(lab[lab > 0]):
        mine = lab == lab_id
        d_um = (ndi.distance_transform_edt(mine)[mine] - 0.5) * px
        v = image[mine].astype(float)
        ok = d_um >= skip
        bins = np.floor((d_um[ok] - skip) / shell).astype(int)
        for b in np.unique(bins):
            at = bins == b
            rows.append((lab_id, d_um[ok][at].mean(), stat(v[ok][at]), int(at.sum())))
    return pd.DataFrame(rows, columns=["label", "distance_um", "value", "n_pixels"])


@pytest.mark.parametrize("statistic", ["median", "mean"])
@pytest.mark.parametrize("numbering", ["dense", "sparse"])
def test_shell_statistics_match_a_per_crystal_loop_across_strips_and_threads(
    monkeypatch, numbering, statistic
):
    """The shells are read in strips (here of 997 pixels, which cut rows and crystals) by
    three threads, each into its own part of the outputs: every shell's distance, median and
    pixel count equal a per-crystal loop of scipy distance transforms and ``numpy.median``
    (``numpy.mean``), also when the label numbers are sparse (distances kept per pixel, keys
    renumbered)."""
    s = make_thin_section((200, 240), n_crystals=10, size_um=(30.0, 70.0), noise=0.03, seed=8)
    lab = s.labels.astype(np.int64)
    if numbering == "sparse":
        lab = np.where(lab > 0, lab * 100_003 + 11, 0)
    monkeypatch.setattr(profiles_module._rim_distance, "STRIP_PIXELS", 997)
    px, skip, shell = 0.8, 0.8, 1.1
    got = rim_profiles(
        s.image, lab, px, shell_um=shell, skip_rim_um=skip, contacts="rim", clip_sigmas=None,
        min_pixels=1, threads=3, statistic=statistic,
    )
    ref = _shells_reference(s.image, lab, px, skip, shell, statistic)
    # rim_profiles drops crystals with fewer than 3 shells; there are none here
    assert got["label"].nunique() == ref["label"].nunique() >= 8
    got = got.sort_values(["label", "distance_um"]).reset_index(drop=True)
    ref = ref.sort_values(["label", "distance_um"]).reset_index(drop=True)
    np.testing.assert_array_equal(got["label"], ref["label"])
    np.testing.assert_array_equal(got["n_pixels"], ref["n_pixels"])
    np.testing.assert_allclose(got["distance_um"], ref["distance_um"], rtol=1e-12)
    np.testing.assert_allclose(got["value"], ref["value"])


# ---------------------------------------------------------------------------------------
# the edge band: profiles start at the crystal, not at its halo

from napari_zonation._napari_io import (  # noqa: E402
    DATA_DIR,
    PLAGIOCLASE_PIXEL_SIZE_UM,
    PLAGIOCLASE_TIFF,
)
from napari_zonation.profiles import grey_range, skip_edge_band  # noqa: E402


def _profile(values, step=1.0, label=1, start=0.5, sigma=0.2):
    v = np.asarray(values, float)
    d = start + step * np.arange(v.size)
    return pd.DataFrame({"label": label, "channel": "bse", "distance_um": d, "value": v,
                         "sigma": sigma})


def test_skip_edge_band_by_hand():
    """A bright two-point band over a flat profile is dropped (rim_skipped_um = the lead
    plus the distance to the first kept point); a departure below the floor, or a profile
    with no band, keeps every point; the always-dropped band goes whatever the check says."""
    flat = [100, 101, 99, 100, 100, 101, 99, 100, 100, 101]
    prof = _profile([160, 130, *flat])
    out = skip_edge_band(prof, 3.0, {"bse": 25.0}, lead_um=0.0)
    assert out["value"].iloc[0] == 100 and len(out) == len(flat)
    assert (out["rim_skipped_um"] == 2.0).all()
    # 20 grey levels above the trend is below a 25 floor: nothing dropped
    kept = skip_edge_band(_profile([120, *flat]), 3.0, {"bse": 25.0})
    assert len(kept) == len(flat) + 1 and (kept["rim_skipped_um"] == 0).all()
    # band 0: only the always-dropped band goes
    out = skip_edge_band(prof, 0.0, {"bse": 25.0}, always_um=1.0, lead_um=0.0)
    assert out["value"].iloc[0] == 130 and (out["rim_skipped_um"] == 1.0).all()
    # a line started in dark epoxy crosses the bright halo and its tail: all go
    line = _profile([2, 2, 170, 140, *flat], start=0.0)
    out = skip_edge_band(line, 4.0, {"bse": 25.0})
    assert out["value"].iloc[0] == 100 and out["rim_skipped_um"].iloc[0] == 4.0
    # a band too short to hold them all: a second pass takes the rest
    assert skip_edge_band(line, 3.0, {"bse": 25.0})["value"].iloc[0] == 140
    out = skip_edge_band(line, 3.0, {"bse": 25.0}, passes=2)
    assert out["value"].iloc[0] == 100 and out["rim_skipped_um"].iloc[0] == 4.0
    # profiles are handled each on its own
    both = pd.concat([prof, _profile(flat, label=2)], ignore_index=True)
    out = skip_edge_band(both, 3.0, {"bse": 25.0})
    assert out.groupby("label")["value"].first().to_dict() == {1: 100, 2: 100}
    assert out.groupby("label")["rim_skipped_um"].first().to_dict() == {1: 2.0, 2: 0.0}


def test_rim_pixel_counts_only_as_a_peak_no_blend_can_make():
    """A bright dropped rim pixel between the crystal's grey and a brighter outside is a
    blend (a real thin zone next to bright glass): the next point, bright too, stays. The
    same rim pixel brighter than both sides is a halo: its tail goes."""
    flat = [100, 101, 99, 100, 100, 101, 99, 100, 100, 101]
    prof = _profile([160, 118, *flat])

    def outside(grey):
        return lambda ids, channel: np.full(len(ids), grey)

    blend = skip_edge_band(prof, 3.0, {"bse": 25.0}, always_um=1.0, outside=outside(200.0))
    assert blend["value"].iloc[0] == 118
    halo = skip_edge_band(prof, 3.0, {"bse": 25.0}, always_um=1.0, outside=outside(20.0))
    assert halo["value"].iloc[0] == 100
    nothing = skip_edge_band(prof, 3.0, {"bse": 25.0}, always_um=1.0)
    assert nothing["value"].iloc[0] == 118


def test_grey_range_against_numpy():
    rng = np.random.default_rng(0)
    img = rng.normal(100, 20, size=(300, 400))
    lo, hi = np.percentile(img, [0.1, 99.9])
    assert grey_range(img) == pytest.approx(hi - lo)


def _first_point_errors(s, prof, which):
    """First point of each crystal's profile minus the generator's noise-free truth there,
    over crystals clear of the frame and of other crystals (``which``: truth column or
    None)."""
    t = s.truth.set_index("label")
    err, skipped = [], []
    for lab, g in prof.groupby("label"):
        row = t.loc[lab]
        if row.touching or row.touches_border or (which and not row[which]):
            continue
        first = g.iloc[0]
        err.append(first.value - s.true_profile(lab, [first.distance_um])[0])
        skipped.append(first.rim_skipped_um)
    return np.abs(np.array(err)), np.array(skipped)


@pytest.mark.parametrize("px", [1.0, 2.0])
def test_rim_profiles_start_inside_the_halo_against_the_truth(px):
    """Synthetic scenes with bright edge halos (1-2 px, +45-90 DN): the first point of the
    automatic profile lies as close to the true rim grey as on the same scene without halos;
    without the check it is the halo (tens of grey levels off)."""
    shape = (768, 768) if px == 1.0 else (384, 384)
    errs, errs_plain, errs_raw, skips = [], [], [], []
    for seed in (0, 1, 2):
        halo = make_thin_section(shape, n_crystals=23, pixel_size_um=px, seed=seed, noise=0.02,
                                 edge_halo=0.35)
        plain = make_thin_section(shape, n_crystals=23, pixel_size_um=px, seed=seed,
                                  noise=0.02)
        e, sk = _first_point_errors(halo, rim_profiles(halo.image, halo.labels, px), None)
        errs.append(e)
        skips.append(sk)
        errs_plain.append(_first_point_errors(
            plain, rim_profiles(plain.image, plain.labels, px), None)[0])
        errs_raw.append(_first_point_errors(
            halo, rim_profiles(halo.image, halo.labels, px, halo_um=0), None)[0])
    errs, errs_plain, errs_raw = map(np.concatenate, (errs, errs_plain, errs_raw))
    skips = np.concatenate(skips)
    assert len(errs) >= 15
    assert np.median(errs) <= np.median(errs_plain) + 1.0
    assert np.percentile(errs, 90) < 8.0
    # the check matters: without it some first points are the halo, tens of
    # grey levels off (halos two pixels wide; one pixel wide ones lie in the rim pixel)
    assert (errs_raw > 10).sum() >= 3 and (errs > 10).mean() <= 0.05
    assert (skips > px + 1e-9).sum() >= 3  # and it says so (1-px halos lie in the rim pixel)
    assert (skips <= px * (1 + 3) + 1e-9).all()  # the rim pixel and a band of three pixels


@pytest.mark.parametrize("px", [1.0, 2.0])
def test_real_thin_rim_zones_are_kept(px):
    """A real rim zone one to two pixels wide (0.03-0.07 of full scale, a sharp step) without
    halo is never skipped: every profile starts right after the blurred rim pixel."""
    shape = (768, 768) if px == 1.0 else (384, 384)
    for seed in (0, 1):
        for groundmass in ("microlite", "glass"):
            s = make_thin_section(shape, n_crystals=23, pixel_size_um=px, seed=seed,
                                  noise=0.01, thin_rims=1.0, groundmass=groundmass)
            prof = rim_profiles(s.image, s.labels, px)
            err, skipped = _first_point_errors(s, prof, "thin_rim")
            assert len(err) >= 5
            np.testing.assert_allclose(skipped, px)
            # (so the first point is the one the profile without the check starts with)
            raw = rim_profiles(s.image, s.labels, px, halo_um=0)
            np.testing.assert_array_equal(prof.groupby("label")["distance_um"].first(),
                                          raw.groupby("label")["distance_um"].first())


def test_default_scenes_skip_nothing_more():
    """Scenes without halos: no profile drops more than the blurred rim pixel."""
    for seed in (0, 2):
        s = make_thin_section(seed=seed, noise=0.03)
        prof = rim_profiles(s.image, s.labels, 1.0)
        assert np.allclose(prof["rim_skipped_um"], 1.0)
        raw = rim_profiles(s.image, s.labels, 1.0, halo_um=0)
        # the same shells; the medians within half a grey level (the clip's noise estimate
        # also sees the rim pixel's shell)
        np.testing.assert_array_equal(prof["label"], raw["label"])
        np.testing.assert_allclose(prof["distance_um"], raw["distance_um"])
        assert np.percentile(np.abs(prof["value"].to_numpy() - raw["value"].to_numpy()),
                             99) <= 0.5


def test_traverses_and_lines_start_inside_the_halo():
    s = make_thin_section(n_crystals=20, seed=1, noise=0.02, edge_halo=0.35)
    plain = make_thin_section(n_crystals=20, seed=1, noise=0.02)
    e = _first_point_errors(s, rim_profiles(s.image, s.labels, 1.0, method="traverse"), None)[0]
    e_raw = _first_point_errors(s, rim_profiles(s.image, s.labels, 1.0, method="traverse",
                                                halo_um=0), None)[0]
    e0 = _first_point_errors(plain, rim_profiles(plain.image, plain.labels, 1.0,
                                                 method="traverse"), None)[0]
    # the halo's tail, one sample of a 3 um wide traverse, is not always above its noise:
    # no first point is the halo itself (tens of grey levels off), as without the check
    assert e.max() < 10.0 and (e_raw > 10).sum() >= 2
    assert np.median(e) <= np.median(e0) + 4.0
    # a drawn line from a crystal's free edge to its core starts at the rim composition
    trav = place_traverses(s.labels, 1.0, image=s.image)
    t = s.truth.set_index("label")
    trav = trav[[not (t.loc[lab].touching or t.loc[lab].touches_border) for lab in trav.label]]
    lines = [np.array([[r.rim_row, r.rim_col], [r.core_row, r.core_col]])
             for r in trav.itertuples()]
    prof = line_profiles(s.image, lines, 1.0, width_um=1.0)
    raw = line_profiles(s.image, lines, 1.0, width_um=1.0, halo_um=0)
    errs, errs_raw = [], []
    for i, r in enumerate(trav.itertuples(), start=1):
        g, g0 = prof[prof.label == i], raw[raw.label == i]
        truth = s.true_profile(r.label, [g.distance_um.iloc[0]])[0]
        errs.append(abs(g.value.iloc[0] - truth))
        errs_raw.append(abs(g0.value.iloc[0] - s.true_profile(r.label, [0.0])[0]))
        assert g.rim_skipped_um.iloc[0] == pytest.approx(g.distance_um.iloc[0])
    assert np.median(errs) < 6.0 and np.median(errs_raw) > 10.0
    # a line that does not start at an edge keeps every sample: profile_line exactly
    inner = [np.array([[r.core_row, r.core_col], [r.core_row + 5, r.core_col + 5]])
             for r in trav.itertuples()][:3]
    got = line_profiles(s.image.astype(float), inner, 1.0, width_um=1.0)
    for i, ln in enumerate(inner, start=1):
        ref = profile_line(s.image.astype(float), ln[0], ln[1], order=1)
        np.testing.assert_allclose(got[got.label == i]["value"], ref)
        assert (got[got.label == i]["rim_skipped_um"] == 0).all()


@pytest.fixture(scope="module")
def plagioclase():
    import napari_zonation as nz

    return nz.read_sem_tiff(PLAGIOCLASE_TIFF)[0]


def test_real_plagioclase_profiles_start_at_the_rim_band(plagioclase):
    """The real plagioclase (Lubbers et al. 2022, MIT): its edge carries a bright halo one to
    three pixels wide (~164 grey in the shell profile against ~100 in the rim band). The
    automatic profile's first point must continue the rim band's trend within its noise
    (not the halo), on the segmentation's labels and on the author's own mask."""
    import napari_zonation as nz

    img, px = plagioclase, PLAGIOCLASE_PIXEL_SIZE_UM
    author = ndi.binary_fill_holes(img > 1)
    parts, _ = ndi.label(author)
    area = np.bincount(parts.ravel())
    area[0] = 0
    big = np.where(parts == np.argmax(area), 1, 0)
    for lab in (big, nz.segment_crystals(img, px)):
        prof = rim_profiles(img, lab, px)
        raw = rim_profiles(img, lab, px, halo_um=0)
        main = np.bincount(lab.ravel())[1:].argmax() + 1
        g, g0 = prof[prof.label == main], raw[raw.label == main]
        # the rim band: the next 2-12 um of the profile, its linear trend and its scatter
        d0 = g.distance_um.iloc[0]
        band = g[(g.distance_um > d0 + 1.5) & (g.distance_um < d0 + 12)]
        slope, icpt = np.polyfit(band.distance_um, band.value, 1)
        scatter = np.std(band.value - (icpt + slope * band.distance_um), ddof=2)
        noise = max(scatter, 2.0)
        assert abs(g.value.iloc[0] - (icpt + slope * d0)) < 3 * noise
        # without the check the first point is the halo, far above the band's trend
        assert g0.value.iloc[0] - (icpt + slope * g0.distance_um.iloc[0]) > 20
        skipped = g.rim_skipped_um.iloc[0]
        assert px < skipped <= px + 3 * px + 1e-9


def test_real_plagioclase_traverse_starts_at_the_measured_rim_band(plagioclase):
    """A line drawn from the crystal's edge along the LA-ICP-MS traverse (column 450, from the
    last non-black row inward): calibrated to An on the traverse, its first point reads the
    measured rim band's An within 3 sigma of the calibration, where the halo read as a
    'reverse rim' about 8-16 mol % An-richer."""
    import napari_zonation as nz

    img, px = plagioclase, PLAGIOCLASE_PIXEL_SIZE_UM
    an = nz.read_profiles(DATA_DIR / "plag_diffusion_test_data.xlsx", distance=None,
                          spacing_um=5.0, value="An", label="grain")
    along = line_profiles(img, [np.array([[1110.0, 450.0], [1390.0, 450.0]])], px,
                          width_um=10.0)
    cal = calibrate(np.interp(an["distance_um"], along["distance_um"], along["value"]),
                    an["value"], "An")
    sigma_an = np.sqrt(np.mean(cal.residuals**2))
    rim_an = an["value"].to_numpy()[-6:].mean()  # the bright high-An rim band (30 um)
    edge = int(np.flatnonzero(img[:, 450] > 1).max())
    line = [np.array([[edge, 450.0], [1110.0, 450.0]])]
    first = line_profiles(img, line, px, width_um=10.0).iloc[0]
    assert abs(cal(first["value"]) - rim_an) < 3 * sigma_an
    assert first["rim_skipped_um"] > 0
    raw = line_profiles(img, line, px, width_um=10.0, halo_um=0)
    assert (cal(raw["value"].iloc[:3]) - rim_an).max() > 3 * sigma_an


# ---------------------------------------------------------------------------------------
# progress and worker threads


@pytest.mark.parametrize(
    ("method", "channels"), [("shells", 1), ("shells", 3), ("traverse", 1)]
)
def test_rim_profiles_reports_progress_up_to_the_crystal_count(sample, method, channels):
    """``progress(done, total)``: ``total`` is the number of crystals (traverses), ``done``
    starts at 0, never decreases and ends at ``total``; the profiles are those of a call
    without a callback."""
    img = sample.image if channels == 1 else np.stack([sample.image] * channels)
    calls = []
    got = rim_profiles(img, sample.labels, sample.pixel_size_um, method=method,
                       progress=lambda d, t: calls.append((d, t)))
    n_crystals = len(np.unique(sample.labels[sample.labels > 0]))
    totals = {t for _, t in calls}
    assert len(totals) == 1
    total = totals.pop()
    if method == "shells":
        assert total == n_crystals
    else:
        assert 0 < total <= n_crystals
    done = [d for d, _ in calls]
    assert done[0] == 0 and done[-1] == total
    assert all(b >= a for a, b in zip(done, done[1:], strict=False))
    assert len(calls) >= 2 + (channels - 1 if method == "shells" else total - 1)
    plain = rim_profiles(img, sample.labels, sample.pixel_size_um, method=method)
    pd.testing.assert_frame_equal(got, plain)


def test_rim_profiles_progress_exception_stops_the_call(sample):
    """A Cancel button raises from the callback: the call stops with that exception."""

    class Cancelled(Exception):
        pass

    def cancel(done, total):
        raise Cancelled

    with pytest.raises(Cancelled):
        rim_profiles(sample.image, sample.labels, sample.pixel_size_um, progress=cancel)


def test_rim_profiles_threads_give_identical_profiles(sample, monkeypatch):
    """Two worker threads (strips small enough that each reads several) give the same table,
    to the bit, as one; bad thread counts are refused with a clear message."""
    monkeypatch.setattr(profiles_module._rim_distance, "STRIP_PIXELS", 4099)
    one = rim_profiles(sample.image, sample.labels, sample.pixel_size_um, threads=1)
    two = rim_profiles(sample.image, sample.labels, sample.pixel_size_um, threads=2)
    assert one["label"].nunique() >= 8
    pd.testing.assert_frame_equal(one, two, check_exact=True)
    with pytest.raises(ZonationInputError, match="threads"):
        rim_profiles(sample.image, sample.labels, sample.pixel_size_um, threads=0)


def test_traverse_table_from_ends_matches_the_placed_traverses():
    """A traverse table made from ends (as the Profiles dock makes for a moved traverse) has
    the placed table's columns, and for the placed ends the same labels, ends and lengths."""
    s = make_thin_section(shape=(160, 160), n_crystals=4, seed=5)
    px = 1.5
    placed = profiles_module.place_traverses(s.labels, px, image=s.image)
    rims = placed[["rim_row", "rim_col"]].to_numpy()
    cores = placed[["core_row", "core_col"]].to_numpy()
    made = profiles_module.traverse_table(placed["label"], rims, cores, px)
    assert list(made.columns) == list(placed.columns)
    cols = ["label", "rim_row", "rim_col", "core_row", "core_col", "length_um"]
    pd.testing.assert_frame_equal(made[cols], placed[cols], check_dtype=False, rtol=1e-9)
    assert (made["status"] == "edited").all()
    assert made[["face_length_um", "angle_deg"]].isna().all().all()
    # it feeds traverse_profiles as the placed table does
    a = profiles_module.traverse_profiles(s.image, made, px)
    b = profiles_module.traverse_profiles(s.image, placed, px)
    np.testing.assert_array_equal(a["value"].to_numpy(), b["value"].to_numpy())
    empty = profiles_module.traverse_table([], np.zeros((0, 2)), np.zeros((0, 2)), px)
    assert list(empty.columns) == list(profiles_module.TRAVERSE_COLUMNS) and len(empty) == 0
