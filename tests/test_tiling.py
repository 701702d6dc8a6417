"""Tiled segmentation of large images: tiles, ownership, stitching, and segment_crystals.

The generic stitching is checked against an independent reference (connected components of
the whole mask, scipy); the tiled segmenter against the same image segmented whole and against
the synthetic ground truth.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_zonation import ZonationInputError, make_thin_section, segment_crystals
from napari_zonation.metrics import match_instances
from napari_zonation.tiling import Tile, owned_labels, stitch_tiles, tile_grid


# ---------------------------------------------------------------------------------------------
# the generic tiling
# ---------------------------------------------------------------------------------------------
def test_tile_grid_cores_partition_the_image_and_windows_hold_their_halo():
    shape = (1000, 770)
    tiles = tile_grid(shape, 300, before=40, after=100, align=3)
    cover = np.zeros(shape, int)
    for t in tiles:
        r0, r1, c0, c1 = t.core
        cover[r0:r1, c0:c1] += 1
        w0, w1, v0, v1 = t.window
        assert w0 % 3 == 0 and v0 % 3 == 0 and r0 % 3 == 0 and c0 % 3 == 0
        assert w0 == 0 or w0 <= r0 - 40
        assert v0 == 0 or v0 <= c0 - 40
        assert w1 == shape[0] or w1 >= r1 + 100
        assert v1 == shape[1] or v1 >= c1 + 100
        assert 0 <= w0 and w1 <= shape[0] and 0 <= v0 and v1 <= shape[1]
    assert (cover == 1).all()
    assert len(tiles) == 4 * 3  # cores of 300 (a multiple of 3) over 1000 x 770


def test_owned_labels_by_top_left_corner_and_distance_to_the_cut_sides():
    shape = (100, 100)
    tile = Tile(core=(0, 50, 0, 50), window=(0, 70, 0, 70))
    lab = np.zeros((70, 70), int)
    lab[5:20, 5:20] = 1  # corner in the core, far from the cut sides: kept
    lab[40:69, 10:20] = 2  # corner in the core, reaches the bottom cut side: cut
    lab[55:60, 5:10] = 3  # corner in the halo: another tile's
    lab[0:10, 30:45] = 4  # on the image's own top side: kept
    kept, cut = owned_labels(lab, tile, shape, margin=5)
    assert kept == [1, 4] and cut == [2]


def _components(mask):
    def segment(win):
        r0, r1, c0, c1 = win
        return ndi.label(mask[r0:r1, c0:c1])[0]

    return segment


def test_stitched_components_equal_the_whole_image_components():
    rng = np.random.default_rng(0)
    mask = ndi.gaussian_filter(rng.random((600, 500)), 6) > 0.52
    # one blob far larger than the halo: found again in a grown window
    mask[150:420, 180:430] = True
    whole, n = ndi.label(mask)
    tiles = tile_grid(mask.shape, 128, before=16, after=48)
    out, stats = stitch_tiles(mask.shape, tiles, _components(mask), margin=4)
    assert out.max() == n
    m = match_instances(whole, out, iou_min=0.999)
    assert m["tp"] == n  # every component, exactly, once
    assert stats["n_regrown"] >= 1 and stats["n_truncated"] == 0
    assert stats["n_tiles"] == len(tiles)


def test_stitching_in_threads_equals_the_serial_stitching():
    rng = np.random.default_rng(1)
    mask = ndi.gaussian_filter(rng.random((600, 500)), 6) > 0.52
    mask[150:420, 180:430] = True  # a second look too
    whole, n = ndi.label(mask)
    tiles = tile_grid(mask.shape, 128, before=16, after=48)
    serial, stats_1 = stitch_tiles(mask.shape, tiles, _components(mask), margin=4)
    calls, threads = [], set()

    def segment(win):
        threads.add(threading.get_ident())
        return _components(mask)(win)

    out, stats_3 = stitch_tiles(
        mask.shape,
        tiles,
        segment,
        margin=4,
        threads=3,
        progress=lambda *a: calls.append(a),
    )
    np.testing.assert_array_equal(out, serial)
    assert stats_3 == stats_1
    assert out.max() == n and match_instances(whole, out, iou_min=0.999)["tp"] == n
    assert calls == [(k, len(tiles)) for k in range(1, len(tiles) + 1)]  # in tile order
    assert len(threads - {threading.get_ident()}) >= 2  # the tiles ran in worker threads


def test_a_raising_progress_stops_the_threaded_stitching():
    mask = np.zeros((600, 600), bool)
    mask[::40, ::40] = True
    tiles = tile_grid(mask.shape, 100, before=8, after=8)
    started = []

    def segment(win):
        started.append(win)
        return ndi.label(mask[win[0] : win[1], win[2] : win[3]])[0]

    class Stop(Exception):
        pass

    def stop_at_two(done, total):
        if done == 2:
            raise Stop

    with pytest.raises(Stop):
        stitch_tiles(mask.shape, tiles, segment, margin=2, threads=2, progress=stop_at_two)
    # two consumed, at most threads + 1 more submitted ahead; none after the stop
    assert 2 <= len(started) <= 2 + 3 < len(tiles)


# ---------------------------------------------------------------------------------------------
# segment_crystals on tiles
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big_scene():
    s = make_thin_section((1536, 1536), n_crystals=90, pixel_size_um=1.0, noise=0.02, seed=3)
    whole, info_w = segment_crystals(s.image, 1.0, return_info=True)
    tiled, info_t = segment_crystals(s.image, 1.0, tile_size=512, return_info=True)
    return s, whole, info_w, tiled, info_t


def test_tiled_labels_match_the_whole_image_labels(big_scene):
    s, whole, info_w, tiled, info_t = big_scene
    assert info_w["n_tiles"] == 1 and info_t["n_tiles"] == 9
    assert tiled.dtype == np.int32 and tiled.shape == s.image.shape
    assert sorted(np.unique(tiled))[1:] == list(range(1, tiled.max() + 1))  # consecutive
    m = match_instances(whole, tiled)
    assert m["f1"] >= 0.98, m
    assert m["mean_iou"] >= 0.98, m
    # the levels are set once, from the whole image, the same way
    for key in ("reference", "contrast", "noise", "texture_threshold"):
        assert info_t[key] == pytest.approx(info_w[key], rel=1e-6), key


def test_tiled_labels_match_the_truth_as_well_as_the_whole_image(big_scene):
    s, whole, _, tiled, _ = big_scene
    mw, mt = match_instances(s.labels, whole), match_instances(s.labels, tiled)
    assert mw["f1"] >= 0.9  # the scene is segmented well at all
    assert mt["f1"] >= mw["f1"] - 0.01
    assert mt["mean_iou"] >= mw["mean_iou"] - 0.01


def test_no_crystal_is_cut_or_doubled_at_a_seam(big_scene):
    s, _, _, tiled, info = big_scene
    step = info["tile_core_px"]
    seams = np.arange(step, s.image.shape[0], step)
    m = match_instances(s.labels, tiled)
    straddling, whole_ones = 0, 0
    for sl, t in zip(ndi.find_objects(s.labels), range(1, s.labels.max() + 1), strict=False):
        if sl is None:
            continue
        crosses = any(sl[0].start < k <= sl[0].stop - 1 for k in seams) or any(
            sl[1].start < k <= sl[1].stop - 1 for k in seams
        )
        if not crosses:
            continue
        straddling += 1
        inside = tiled[s.labels == t]
        pieces = np.bincount(inside[inside > 0])
        # matched, and no second predicted label holding more than 10 % of the crystal
        whole_ones += int(t in m["pairs"] and np.count_nonzero(pieces > 0.1 * inside.size) == 1)
    assert straddling >= 15
    assert whole_ones / straddling >= 0.9

    # no predicted crystal is made of two tiles' copies: no more disconnected labels than in
    # the whole-image run (a crystal whose crack stays open is two parts in both)
    def parts(lab):
        return sum(ndi.label(lab[sl] == i)[1] for i, sl in enumerate(ndi.find_objects(lab), 1))

    assert parts(tiled) <= parts(big_scene[1])


def test_dask_input_gives_the_numpy_result(big_scene):
    da = pytest.importorskip("dask.array")
    s, _, _, tiled, _ = big_scene
    lazy = da.from_array(s.image, chunks=(400, 400))
    out = segment_crystals(lazy, 1.0, tile_size=512)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, tiled)


def test_crystals_larger_than_the_halo_get_a_second_look(big_scene):
    s = big_scene[0]
    img = s.image[:768, :768]
    whole = segment_crystals(img, 1.0)
    # a halo of 40 um is far below the crystals' 90-260 um: many are cut and segmented again
    out, info = segment_crystals(img, 1.0, tile_size=256, return_info=True, tile_halo_um=40)
    assert info["n_regrown"] >= 3 and info["n_truncated"] == 0
    m = match_instances(whole, out)
    assert m["f1"] >= 0.97, m


def test_threads_give_the_same_tiled_labels(big_scene):
    s, _, _, tiled, info_t = big_scene
    one, info_1 = segment_crystals(s.image, 1.0, tile_size=512, threads=1, return_info=True)
    three = segment_crystals(s.image, 1.0, tile_size=512, threads=3)
    assert info_1["threads"] == 1
    np.testing.assert_array_equal(one, three)
    np.testing.assert_array_equal(one, tiled)  # automatic threads
    assert match_instances(s.labels, three)["f1"] >= 0.9  # and the crystals are found


def test_bad_tile_size_raises_a_clear_error():
    img = np.zeros((100, 100), np.uint8)
    for bad in (0, 10, 512.5, "big"):
        with pytest.raises(ZonationInputError, match="tile_size"):
            segment_crystals(img, 1.0, tile_size=bad)


def test_progress_reports_every_tile_and_can_stop_the_run(big_scene):
    s, whole, _, tiled, info_t = big_scene
    calls = []
    out = segment_crystals(s.image, 1.0, tile_size=512, progress=lambda *a: calls.append(a))
    np.testing.assert_array_equal(out, tiled)  # reporting changes nothing
    n = info_t["n_tiles"]
    assert calls == [(k, n) for k in range(1, n + 1)]
    calls = []
    np.testing.assert_array_equal(
        segment_crystals(s.image, 1.0, progress=lambda *a: calls.append(a)), whole
    )
    assert calls == [(1, 1)]  # segmented whole: one step

    class Stop(Exception):
        pass

    def stop_at_two(done, total):
        calls.append(done)
        if done == 2:
            raise Stop

    calls = []
    with pytest.raises(Stop):
        segment_crystals(s.image, 1.0, tile_size=512, progress=stop_at_two)
    assert calls == [1, 2]  # no tile after the callback raised
