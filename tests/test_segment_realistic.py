"""Segmentation of what real BSE images carry, against the synthetic truth: glass with
vesicles and their halos, bright edge halos, black epoxy and plucked holes, scan lines and a
data bar, rims at the glass's grey; and the stages behind it (edges from profiles across the
outline, vesicle discs), on hand-made images with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import disk, polygon

from napari_zonation import crystal_table, make_thin_section, segment_crystals
from napari_zonation.metrics import match_instances
from napari_zonation.segment.background import vesicle_cores, vesicle_discs
from napari_zonation.segment.outline import snap_outlines
from napari_zonation.synthetic import SCENE_KINDS


def _scene(kind: str, seed: int, size: int = 512):
    n = int(20 * (size / 768) ** 2) + 3
    return make_thin_section(
        (size, size), n_crystals=n, pixel_size_um=1.0, noise=0.03, seed=seed, **SCENE_KINDS[kind]
    )


@pytest.fixture(scope="module", params=[0, 2])
def glassy(request):
    s = _scene("glassy", request.param, 640)
    return s, segment_crystals(s.image, 1.0)


def test_glass_and_vesicles_are_not_crystals(glassy):
    s, lab = glassy
    m = match_instances(s.labels, lab)
    assert m["recall"] >= 0.9 and m["f1"] >= 0.85, m
    glass = (s.labels == 0) & ~ndi.binary_dilation(s.labels > 0, iterations=3)
    assert np.mean(lab[glass & ~s.vesicles] > 0) < 0.01
    # most of every vesicle (its dark inside, its bright floor, its wall) is not crystal
    assert np.mean(lab[s.vesicles] > 0) < 0.1


def test_crystals_against_vesicles_keep_their_outline(glassy):
    s, lab = glassy
    m = match_instances(s.labels, lab)
    against = s.truth.loc[s.truth["vesicle_contact"], "label"]
    ious = []
    for t in against:
        if t in m["pairs"]:
            a, b = s.labels == t, lab == m["pairs"][t]
            ious.append((a & b).sum() / (a | b).sum())
    assert ious and np.median(ious) >= 0.9, ious


@pytest.mark.parametrize("seed", [0, 2])
def test_edge_halos_stay_inside_their_crystal(seed):
    """The bright halo on a crystal's outermost pixels lies inside the true outline: most of
    it must belong to its crystal, dark crystals (brighter halo than glass) included."""
    s = _scene("halo", seed)
    lab = segment_crystals(s.image, 1.0)
    m = match_instances(s.labels, lab)
    assert m["f1"] >= 0.9 and m["mean_iou"] >= 0.93, m
    inside = total = 0
    for t, p in m["pairs"].items():
        halo = s.halo & (s.labels == t)
        inside += int((lab[halo] == p).sum())
        total += int(halo.sum())
    assert inside / total >= 0.8, inside / total


def _dark_lath_scene(seed: int, lath_factor: float):
    """Glass at 0.6 with black epoxy along the left edge, a dark lath 12 um beside it (its
    grey ``lath_factor`` x the glass's), a bright crystal and a black vesicle; blurred and
    noisy, 8 bits at 1 um/px. Returns the image, the true labels (1 lath, 2 crystal) and the
    epoxy and vesicle masks."""
    h = w = 400
    glass = 0.6
    img = np.full((h, w), glass)
    truth = np.zeros((h, w), np.int32)
    epoxy = np.zeros((h, w), bool)
    rr, cc = polygon([0, 0, 400, 400, 300, 220, 120], [0, 70, 90, 0, 50, 85, 60], (h, w))
    epoxy[rr, cc] = True
    img[epoxy] = 0.02
    rr, cc = polygon([60, 60, 340, 340], [102, 137, 137, 102], (h, w))
    img[rr, cc] = lath_factor * glass
    truth[rr, cc] = 1
    rr, cc = polygon([80, 60, 120, 200, 220, 160], [250, 320, 370, 350, 280, 230], (h, w))
    img[rr, cc] = 0.85
    truth[rr, cc] = 2
    vesicle = np.zeros((h, w), bool)
    vesicle[disk((300, 300), 25, shape=(h, w))] = True
    img[vesicle] = 0.02
    rng = np.random.default_rng(seed)
    img = ndi.gaussian_filter(img, 1.0) + rng.normal(0.0, 0.02, (h, w))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), truth, epoxy, vesicle


@pytest.mark.parametrize("seed,lath_factor", [(0, 0.4), (1, 0.35), (2, 0.45)])
def test_a_dark_lath_beside_epoxy_is_a_crystal_the_epoxy_and_vesicle_are_not(seed, lath_factor):
    # the lath is below the near-black level (0.45 x the glass's grey) but far above the
    # image's own black: it is a crystal, the epoxy and the vesicle are not
    img, truth, epoxy, vesicle = _dark_lath_scene(seed, lath_factor)
    lab = segment_crystals(img, 1.0)
    m = match_instances(truth, lab)
    assert 1 in m["pairs"] and 2 in m["pairs"], m
    for t in (1, 2):
        a, b = truth == t, lab == m["pairs"][t]
        assert (a & b).sum() / (a | b).sum() > 0.9
    assert np.mean(lab[epoxy] > 0) < 0.01
    assert np.mean(lab[vesicle] > 0) < 0.01
    assert int(lab.max()) == 2


@pytest.mark.parametrize("seed", [0, 1])
def test_epoxy_and_plucked_holes_are_not_crystals(seed):
    s = _scene("epoxy", seed)
    lab = segment_crystals(s.image, 1.0)
    m = match_instances(s.labels, lab)
    assert m["f1"] >= 0.9 and m["mean_iou"] >= 0.93, m
    black = s.epoxy & (s.labels == 0)
    assert np.mean(lab[black] > 0) < 0.01
    # crystals cut by the epoxy end where it starts
    cut = s.truth.loc[s.truth["cut_by_epoxy"], "label"]
    for t in cut:
        if t in m["pairs"]:
            a, b = s.labels == t, lab == m["pairs"][t]
            assert (a & b).sum() / (a | b).sum() >= 0.85


def test_scan_lines_data_bar_and_jpeg_make_no_crystals():
    s = _scene("instrument", 0)
    lab = segment_crystals(s.image, 1.0)
    m = match_instances(s.labels, lab)
    assert m["precision"] >= 0.95 and m["recall"] >= 0.9, m
    assert not (lab[s.image.shape[0] - s.data_bar_rows :] > 0).any()


def test_rims_at_the_glass_grey_are_flagged_not_clipped():
    s = _scene("faint_rims", 0)
    lab, info = segment_crystals(s.image, 1.0, return_info=True)
    table = crystal_table(s.image, lab, 1.0, groundmass_level=info["reference"])
    table = table.set_index("label")
    m = match_instances(s.labels, lab)
    truth = s.truth.set_index("label")
    faint = [p for t, p in m["pairs"].items() if truth.loc[t, "rim_at_glass"]]
    assert len(faint) >= 3
    flagged = table.loc[faint, "faint_edge"] | table.loc[faint, "rim_near_groundmass"]
    assert flagged.mean() >= 0.8


def test_clear_rims_are_not_flagged():
    s = make_thin_section((512, 512), n_crystals=12, pixel_size_um=1.0, noise=0.02, seed=1)
    lab, info = segment_crystals(s.image, 1.0, return_info=True)
    table = crystal_table(s.image, lab, 1.0, groundmass_level=info["reference"])
    m = match_instances(s.labels, lab, 0.9)
    good = table.set_index("label").loc[list(m["pairs"].values())]
    assert len(good) >= 6
    assert good["faint_edge"].mean() <= 0.1
    assert (good["edge_contrast"] > 2.0).mean() >= 0.9


def test_the_phase_follows_the_groundmass_level_measured_not_a_fixed_grey():
    """A glass brighter than the synthetic model's default: the crystal table compares each
    crystal with the level the segmentation measured (info['reference'])."""
    s = make_thin_section(
        (512, 512), n_crystals=12, pixel_size_um=1.0, noise=0.02, seed=2, glass_grey=0.5
    )
    lab, info = segment_crystals(s.image, 1.0, return_info=True)
    assert info["reference"] == pytest.approx(0.5 * 255, abs=8)
    table = crystal_table(s.image, lab, 1.0, groundmass_level=info["reference"])
    table = table.set_index("label")
    m = match_instances(s.labels, lab)
    truth = s.truth.set_index("label")
    for t, p in m["pairs"].items():
        darker = truth.loc[t, "core_value"] < 0.5 * 255
        assert (table.loc[p, "phase"] == "plagioclase") == darker
    # with the glass's level said to be above every crystal, every crystal is darker
    bright = crystal_table(s.image, lab, 1.0, groundmass_level=250.0)
    assert (bright["phase"].isin(["plagioclase", "oxide"])).all()


# ---------------------------------------------------------------------------------------------
# the stages on hand-made images
# ---------------------------------------------------------------------------------------------
def _square_scene(halo: float, shift: int, noise: float = 0.01, seed: int = 0):
    """A dark square (0.3) in glass (0.5), a halo on its outermost 2 pixels, blurred a little;
    the labels start ``shift`` pixels inside the true square."""
    rng = np.random.default_rng(seed)
    img = np.full((160, 160), 0.5)
    truth = np.zeros((160, 160), np.int32)
    truth[40:120, 40:120] = 1
    img[truth > 0] = 0.3
    ring = (truth > 0) & ~ndi.binary_erosion(truth > 0, iterations=2)
    img[ring] += halo
    img = ndi.gaussian_filter(img, 0.5) + rng.normal(0, noise, img.shape)
    start = np.zeros_like(truth)
    start[40 + shift : 120 - shift, 40 + shift : 120 - shift] = 1
    return img.astype(np.float32), truth, start


@pytest.mark.parametrize("halo, shift", [(0.0, 2), (0.0, -2), (0.3, 2), (0.3, 0)])
def test_snapped_outlines_land_on_the_true_edge(halo, shift):
    img, truth, start = _square_scene(halo, shift)
    out = snap_outlines(start, img, 0.01, band_px=6, tile_px=12, max_move_px=6)
    wrong = np.count_nonzero((out > 0) != (truth > 0))
    # the whole outline is 320 pixels long: at most a few pixels off
    assert wrong <= 12, wrong


def test_an_outline_without_edge_stays_where_it_is():
    rng = np.random.default_rng(1)
    img = (0.5 + rng.normal(0, 0.02, (120, 120))).astype(np.float32)
    start = np.zeros((120, 120), np.int32)
    start[30:90, 30:90] = 1
    out = snap_outlines(start, img, 0.02, band_px=6, tile_px=12, max_move_px=6)
    np.testing.assert_array_equal(out, start)


def test_vesicle_discs_fill_crescents_and_leave_irregular_black_alone():
    # a closed crescent, an open one (the floor reaches the wall) and an epoxy patch
    dark = np.zeros((200, 200), bool)
    rr, cc = disk((60, 60), 30)
    dark[rr, cc] = True
    rr, cc = disk((68, 60), 21)  # the bright floor leaves a crescent
    dark[rr, cc] = False
    rr, cc = disk((60, 150), 25)
    dark[rr, cc] = True
    rr, cc = disk((70, 150), 20)  # open at the bottom
    dark[rr, cc] = False
    blob = np.array([[120, 120], [125, 190], [190, 195], [150, 160], [185, 125]])
    rr, cc = polygon(blob[:, 0], blob[:, 1])
    dark[rr, cc] = True
    discs = vesicle_discs(dark, 20)
    rr, cc = disk((60, 60), 28)
    assert discs[rr, cc].mean() > 0.97  # the crescent's disc, floor included
    rr, cc = disk((60, 150), 23)
    assert discs[rr, cc].mean() > 0.95
    assert not discs[150:190, 130:190].any()  # the irregular epoxy patch is no vesicle


def test_a_bright_floor_hugged_by_a_crescent_is_a_vesicle_not_a_crystal():
    dark = np.zeros((120, 200), bool)
    cores = np.zeros((120, 200), np.int32)
    rr, cc = disk((60, 50), 30)
    dark[rr, cc] = True
    rr, cc = disk((66, 50), 22)
    dark[rr, cc] = False
    cores[rr, cc] = 1  # the floor
    hexagon = np.array([[40, 120], [30, 150], [50, 180], [80, 180], [90, 150], [70, 120]])
    rr, cc = polygon(hexagon[:, 0], hexagon[:, 1])
    cores[rr, cc] = 2  # a crystal beside the vesicle
    out = vesicle_cores(cores, dark)
    assert out[1] and not out[2]


def test_a_data_bar_is_found_at_the_bottom_and_nowhere_else():
    from napari_zonation.segment.background import data_bar_rows

    rng = np.random.default_rng(0)
    img = 0.5 + rng.normal(0, 0.02, (300, 200))
    img[-20:] = 0.0  # a black bar with bright text
    img[-14:-6, 20:120:3] = 1.0
    assert data_bar_rows(img, img.shape, 0.0, 1.0, 0.2) == 22  # with its top line
    img[-20:] = 0.5 + rng.normal(0, 0.02, (20, 200))
    assert data_bar_rows(img, img.shape, 0.0, 1.0, 0.2) == 0
    img[-4:] = 0.0  # a few black rows are no data bar
    assert data_bar_rows(img, img.shape, 0.0, 1.0, 0.2) == 0
