"""Whole sections out of core: mosaics read lazily from zarr, labels written to zarr, every
stage streamed window by window, a dask.distributed cluster, batches of sections.

The references are the in-memory functions on the same image (``segment_crystals`` on a numpy
array, ``crystal_table``, ``rim_profiles``, ``run_pipeline``): the out-of-core results must be
the same, bit for bit, and the same again on a local cluster of two worker processes.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image
from scipy import ndimage as ndi

from napari_zonation import (
    ZonationInputError,
    crystal_table,
    make_thin_section,
    segment_crystals,
)
from napari_zonation.batch import ProgressBar, find_sections
from napari_zonation.mosaic import ZarrWriter, open_labels, open_mosaic, write_mosaic
from napari_zonation.pipeline import run_mosaic_pipeline, run_pipeline
from napari_zonation.streaming import iter_profiles, stream_stages, stream_table
from napari_zonation.tiling import BandCanvas, stitch_tiles, tile_grid

zarr = pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")

TILE = 256  # small tiles: many seams in a small mosaic


@pytest.fixture(scope="module")
def section():
    """A 1024 x 1024 synthetic section with touching crystals (8-bit)."""
    s = make_thin_section((1024, 1024), n_crystals=45, seed=11, touching_fraction=0.5)
    return s, np.clip(s.image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def store(section, tmp_path_factory):
    """The section as an OME-Zarr mosaic (chunks of 256 px) and its in-memory tiled labels."""
    s, img = section
    path = tmp_path_factory.mktemp("mosaic") / "section.zarr"
    write_mosaic(path, img, s.pixel_size_um, chunk=256)
    labels = segment_crystals(img, s.pixel_size_um, tile_size=TILE)
    return path, labels


def _frames_equal(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


# --------------------------------------------------------------------------------------------
# reading and writing mosaics


def test_a_zarr_mosaic_reads_lazily_with_its_pixel_size_and_pyramid(section, store):
    s, img = section
    m = open_mosaic(store[0])
    assert isinstance(m.data, da.Array) and m.data.chunksize == (256, 256)
    assert m.pixel_size_um == pytest.approx(s.pixel_size_um)
    np.testing.assert_array_equal(m.data.compute(), img)
    assert [lv.shape for lv in m.levels] == [(1024, 1024)]  # a single level at <= 1024 px
    big = store[0].parent / "wide.zarr"
    write_mosaic(big, np.tile(img, (1, 3)), 0.5, chunk=512)
    wide = open_mosaic(big)
    assert [lv.shape for lv in wide.levels] == [(1024, 3072), (512, 1536), (256, 768)]
    for k in (1, 2):  # every 2**k-th pixel: the levels overlay exactly
        step = 2**k
        np.testing.assert_array_equal(wide.levels[k].compute(),
                                      np.tile(img, (1, 3))[::step, ::step])
    assert wide.pixel_size_um == pytest.approx(0.5)


def test_a_large_tiff_reads_lazily(section, tmp_path):
    _, img = section
    path = tmp_path / "tiled.tif"
    tifffile.imwrite(path, img, tile=(256, 256), resolution=(1e4, 1e4),
                     resolutionunit="CENTIMETER")
    m = open_mosaic(path)
    assert isinstance(m.data, da.Array) and m.source == "tiff"
    assert m.pixel_size_um == pytest.approx(1.0)
    np.testing.assert_array_equal(m.data[100:300, 700:900].compute(), img[100:300, 700:900])


def test_a_plain_zarr_array_and_singleton_axes(section, tmp_path):
    _, img = section
    arr = zarr.create_array(str(tmp_path / "tczyx.zarr"), shape=(1, 1, 1, *img.shape),
                            chunks=(1, 1, 1, 512, 512), dtype=img.dtype)
    arr[0, 0, 0] = img
    m = open_mosaic(tmp_path / "tczyx.zarr")
    assert m.data.shape == img.shape and m.pixel_size_um is None
    np.testing.assert_array_equal(m.data.compute(), img)


def test_bad_zarr_stores_are_refused_with_what_to_do(section, tmp_path):
    _, img = section
    channels = zarr.create_array(str(tmp_path / "rgbish.zarr"), shape=(3, 64, 64),
                                 chunks=(1, 64, 64), dtype="u1")
    channels[:] = 1
    with pytest.raises(ZonationInputError, match="one 2D grey image"):
        open_mosaic(tmp_path / "rgbish.zarr")
    flat = zarr.create_array(str(tmp_path / "line.zarr"), shape=(64,), chunks=(64,), dtype="u1")
    flat[:] = 1
    with pytest.raises(ZonationInputError, match="1D"):
        open_mosaic(tmp_path / "line.zarr")
    cplx = zarr.create_array(str(tmp_path / "complex.zarr"), shape=(64, 64), chunks=(32, 32),
                             dtype="complex64")
    cplx[:] = 1
    with pytest.raises(ZonationInputError, match="dtype complex64"):
        open_mosaic(tmp_path / "complex.zarr")
    with pytest.raises(ZonationInputError, match="no such zarr store"):
        open_mosaic(tmp_path / "nothing.zarr")


def test_a_missing_chunk_is_refused_unless_allowed(section, tmp_path):
    _, img = section
    path = write_mosaic(tmp_path / "holed.zarr", img, 1.0, chunk=256)
    os.remove(path / "0" / "1.2")  # a chunk lost in a copy
    with pytest.raises(ZonationInputError, match=r"1 of 16 chunks are missing.*rows 256-512, "
                                                 r"columns 512-768"):
        open_mosaic(path)
    m = open_mosaic(path, allow_missing_chunks=True)
    assert not m.data[256:512, 512:768].any()  # read as the fill value
    np.testing.assert_array_equal(m.data[:256].compute(), img[:256])


# --------------------------------------------------------------------------------------------
# labels to zarr


def _components(mask):
    def segment(win):
        r0, r1, c0, c1 = win
        return ndi.label(mask[r0:r1, c0:c1])[0]

    return segment


def test_stitching_into_a_store_band_by_band_equals_stitching_in_memory():
    rng = np.random.default_rng(4)
    mask = ndi.gaussian_filter(rng.random((700, 530)), 6) > 0.52
    mask[150:420, 180:430] = True  # larger than the halo: a second look from the store
    tiles = tile_grid(mask.shape, 128, before=16, after=48)
    ref, stats = stitch_tiles(mask.shape, tiles, _components(mask), margin=4)

    store = np.zeros(mask.shape, np.int32)
    canvas = BandCanvas(store, 64)
    peak = []
    release = canvas.release

    def watch(row):
        release(row)
        peak.append(canvas.band.shape[0])

    canvas.release = watch
    out, stats_b = stitch_tiles(mask.shape, tiles, _components(mask), margin=4, canvas=canvas)
    assert out is store
    np.testing.assert_array_equal(store, ref)
    assert stats_b == stats and stats["n_regrown"] >= 1
    assert max(peak) < mask.shape[0] // 2  # never the whole image in memory
    whole, n = ndi.label(mask)
    assert ref.max() == n


def test_segment_crystals_writes_the_in_memory_labels_to_zarr(section, store, tmp_path):
    s, _ = section
    path, ref = store
    mosaic = open_mosaic(path)
    out = tmp_path / "labels.zarr"
    labels, info = segment_crystals(mosaic.data, s.pixel_size_um, tile_size=TILE, out=out,
                                    return_info=True, threads=2)
    assert isinstance(labels, da.Array)
    got = labels.compute()
    np.testing.assert_array_equal(got, ref)
    assert info["n_tiles"] == 16 and info["n_crystals"] == ref.max() > 20
    stored = open_labels(out)
    assert stored.info["complete"] and stored.info["n_crystals"] == ref.max()
    assert stored.pixel_size_um == pytest.approx(s.pixel_size_um)
    # nothing else left beside it (the temporary name was renamed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.zarr"]


def test_an_existing_store_is_refused_unless_overwrite(section, store, tmp_path):
    s, img = section
    out = tmp_path / "labels.zarr"
    segment_crystals(img[:512, :512], s.pixel_size_um, out=out)
    stamp = (out / ".zattrs").stat().st_mtime_ns
    with pytest.raises(ZonationInputError, match="already exists.*overwrite"):
        segment_crystals(img, s.pixel_size_um, out=out)
    assert (out / ".zattrs").stat().st_mtime_ns == stamp  # untouched
    lab = segment_crystals(img, s.pixel_size_um, tile_size=TILE, out=out, overwrite=True)
    np.testing.assert_array_equal(lab.compute(), store[1])


def test_a_cancelled_run_leaves_no_store_that_looks_complete(section, tmp_path):
    s, img = section
    out = tmp_path / "labels.zarr"

    class Cancel(Exception):
        pass

    def cancel_at_three(done, total):
        if done == 3:
            raise Cancel

    with pytest.raises(Cancel):
        segment_crystals(img, s.pixel_size_um, tile_size=TILE, out=out, progress=cancel_at_three)
    assert list(tmp_path.iterdir()) == []  # neither the store nor its temporary copy
    # a store copied while being written (no completion mark) is refused when read
    writer = ZarrWriter(tmp_path / "half.zarr", (64, 64))
    writer.group.attrs["napari_zonation"] = {"kind": "labels"}
    with pytest.raises(ZonationInputError, match="was not finished"):
        open_labels(writer.tmp)
    writer.abort()


# --------------------------------------------------------------------------------------------
# every stage streamed


def test_streamed_tables_equal_the_in_memory_pipeline(section, store, tmp_path):
    s, img = section
    labels = store[1]
    # each crystal described in the geometry its image shows, read in its batch's window
    ref = run_pipeline(img, s.pixel_size_um, segment_options={"tile_size": TILE})
    np.testing.assert_array_equal(ref.labels, labels)
    mosaic = open_mosaic(store[0])
    res = stream_stages(mosaic.data, da.from_array(labels, chunks=256), s.pixel_size_um,
                        tmp_path / "work", batch_px=300)
    prof = pd.concat(list(iter_profiles(res.profile_files)), ignore_index=True)
    prof = prof.sort_values("label", kind="stable")
    _frames_equal(prof, ref.profiles)
    _frames_equal(res.crystals, ref.crystals)
    assert res.stats["n_batches"] >= 9
    # touching crystals whose free face lay beyond their batch's window were profiled again
    assert res.stats["n_regrown"] >= 1
    assert ref.crystals["touching"].sum() >= 10


def test_the_streamed_crystal_table_equals_the_in_memory_one(section, store):
    s, img = section
    labels = store[1]
    ref = crystal_table(img, labels, s.pixel_size_um)
    seen = set()
    got = stream_table(open_mosaic(store[0]).data, da.from_array(labels, chunks=256),
                       s.pixel_size_um, batch_px=300,
                       progress=lambda stage, done, total: seen.add(stage))
    _frames_equal(got, ref)
    assert len(got) >= 30
    assert {"index", "levels", "measure"} <= seen


def test_diffusion_fits_do_not_depend_on_the_other_profiles_of_the_call():
    from napari_zonation import fit_diffusion
    from napari_zonation.synthetic import make_profiles

    prof, _ = make_profiles(n_per_type=1, seed=3, zoning_types=("rim_brighter", "rim_darker"))
    whole = fit_diffusion(prof, diffusivity_um2_s=1e-3)
    labels = pd.unique(prof["label"])
    parts = pd.concat([fit_diffusion(prof[prof["label"].isin(labels[i::2])],
                                     diffusivity_um2_s=1e-3) for i in (0, 1)])
    parts = parts.sort_values("label").reset_index(drop=True)
    assert whole["timescale_days_lo"].notna().any()
    _frames_equal(parts, whole)


def test_a_cancel_stops_the_streamed_stages(section, store, tmp_path):
    s, _ = section
    mosaic = open_mosaic(store[0])
    seen = []

    class Cancel(Exception):
        pass

    def progress(stage, done, total):
        seen.append((stage, done, total))
        if stage == "measure" and done == 2:
            raise Cancel

    with pytest.raises(Cancel):
        stream_stages(mosaic.data, store[1], s.pixel_size_um, tmp_path, progress=progress,
                      batch_px=300)
    measured = [x for x in seen if x[0] == "measure"]
    assert measured[-1][1] == 2 < measured[-1][2]
    assert not any(x[0] == "describe" for x in seen)


# --------------------------------------------------------------------------------------------
# dask.distributed


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=40) as lc:
        with distributed.Client(lc) as client:
            yield lc, client


def test_a_two_worker_cluster_gives_the_same_labels_and_tables(section, store, cluster,
                                                                tmp_path):
    s, _ = section
    mosaic = open_mosaic(store[0])
    opts = {"segment_options": {"tile_size": TILE}}
    one = run_mosaic_pipeline(mosaic.data, s.pixel_size_um, tmp_path / "one.zarr", threads=1,
                              **opts)
    two = run_mosaic_pipeline(mosaic.data, s.pixel_size_um, tmp_path / "two.zarr",
                              client=cluster[1], **opts)
    assert "dask cluster" in two.stats["where"]
    np.testing.assert_array_equal(two.labels.compute(), one.labels.compute())
    np.testing.assert_array_equal(one.labels.compute(), store[1])
    _frames_equal(two.crystals, one.crystals)
    for a, b in zip(iter_profiles(one.profile_files), iter_profiles(two.profile_files),
                    strict=True):
        _frames_equal(a, b)


def test_a_worker_killed_mid_run_is_replaced_and_the_labels_are_the_same(section, store,
                                                                        tmp_path):
    distributed = pytest.importorskip("distributed")
    s, _ = section
    mosaic = open_mosaic(store[0])
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=50) as lc, \
            distributed.Client(lc) as client:
        pids = list(client.run(os.getpid).values())
        killed = []

        def progress(done, total):
            if done == 2 and not killed:  # tiles are running on both workers
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

        got = segment_crystals(mosaic.data, s.pixel_size_um, tile_size=TILE, client=client,
                               progress=progress)
        assert killed
        np.testing.assert_array_equal(got, store[1])


def test_a_scheduler_that_does_not_answer_is_a_clear_error():
    pytest.importorskip("distributed")
    from napari_zonation._cluster import connect

    with pytest.raises(ZonationInputError, match="does not answer within 1 s"):
        connect("tcp://127.0.0.1:9", timeout_s=1)
    with pytest.raises(ZonationInputError, match="not a dask scheduler address"):
        connect("127.0.0.1:8786")


# --------------------------------------------------------------------------------------------
# the command line: mosaics and batches


def _nz(*args, timeout=600):
    done = subprocess.run([sys.executable, "-m", "napari_zonation.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def batch_inputs(store, tmp_path_factory):
    d = tmp_path_factory.mktemp("batch")
    for seed in (1, 2):
        s = make_thin_section((256, 256), n_crystals=5, seed=seed)
        Image.fromarray(np.clip(s.image, 0, 255).astype(np.uint8)).save(d / f"small{seed}.png")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    small = open_mosaic(store[0]).data[:512, :512].compute()
    write_mosaic(d / "mosaic.zarr", small, 1.0, chunk=256)
    return d


def test_a_batch_writes_one_folder_per_section_and_resumes(batch_inputs, tmp_path):
    out = tmp_path / "out"
    rc, stdout, err = _nz("run", batch_inputs, "--pixel-size-um", "1", "--out", out)
    assert rc == 1, err  # the broken image failed, the others are done
    status = pd.read_csv(out / "sections.csv").set_index("section")["status"].to_dict()
    assert status == {"broken": "failed", "mosaic": "done", "small1": "done", "small2": "done"}
    assert "error: broken: " in err
    reasons = pd.read_csv(out / "sections.csv").set_index("section")["reason"]
    assert "broken.png" in reasons["broken"]
    assert (out / "mosaic" / "labels.zarr").is_dir() and (out / "small1" / "labels.tif").is_file()
    combined = pd.read_csv(out / "crystals.csv")
    counts = combined["section"].value_counts().to_dict()
    for name in ("mosaic", "small1", "small2"):
        own = pd.read_csv(out / name / "crystals.csv")
        assert counts[name] == len(own) > 0
        pd.testing.assert_frame_equal(
            combined[combined["section"] == name].drop(columns="section").reset_index(drop=True),
            own, check_dtype=False)
    stamp = (out / "small1" / "crystals.csv").stat().st_mtime_ns
    rc, stdout, err = _nz("run", batch_inputs / "small1.png", batch_inputs / "small2.png",
                          batch_inputs / "mosaic.zarr", "--pixel-size-um", "1", "--out", out)
    assert rc == 0, err
    assert stdout.count("done by an earlier run, skipped") == 3
    assert (out / "small1" / "crystals.csv").stat().st_mtime_ns == stamp
    assert len(pd.read_csv(out / "crystals.csv")) == len(combined)


def test_a_mosaic_on_the_command_line_and_its_existing_store(batch_inputs, tmp_path):
    out = tmp_path / "one"
    rc, stdout, err = _nz("run", batch_inputs / "mosaic.zarr", "--out", out)
    assert rc == 0, err
    assert "read window by window" in stdout and "pixel size 1 µm/px" in stdout
    assert "measure" in err and "batches" in err  # the progress bar
    for name in ("labels.zarr", "profiles.csv", "crystals.csv", "report.png"):
        assert (out / name).exists(), name
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    table = pd.read_csv(out / "crystals.csv")
    lab = open_labels(out / "labels.zarr").data.compute()
    assert sorted(table["label"]) == list(range(1, lab.max() + 1))
    rc, _, err = _nz("run", batch_inputs / "mosaic.zarr", "--out", out)
    assert rc == 2 and "already exists; pass --overwrite" in err
    rc, _, err = _nz("run", batch_inputs / "mosaic.zarr", "--out", out, "--overwrite")
    assert rc == 0, err


@pytest.mark.parametrize("image", ["mosaic.zarr", "small1.png"])
def test_the_command_line_refuses_a_scheduler_that_does_not_answer(batch_inputs, tmp_path,
                                                                   monkeypatch, image):
    # a mosaic and an image read in memory: both ask the scheduler before any work
    pytest.importorskip("distributed")
    from napari_zonation import _cluster
    from napari_zonation.cli import main

    monkeypatch.setattr(_cluster, "CONNECT_TIMEOUT_S", 1.0)
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    code = main(["run", str(batch_inputs / image), "--pixel-size-um", "1",
                 "--out", str(tmp_path / "x"), "--scheduler", "tcp://127.0.0.1:9"])
    assert code == 2
    assert "the dask scheduler at tcp://127.0.0.1:9 does not answer" in err.getvalue()
    assert not (tmp_path / "x").exists()  # nothing written, the folder it made removed


def test_sections_and_the_progress_bar(tmp_path):
    for name in ("b.png", "a.png", "a.tif", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "c.zarr").mkdir()
    found = find_sections([tmp_path])
    assert [s.name for s in found] == ["a_png", "a_tif", "b", "c"]
    with pytest.raises(ZonationInputError, match="no such file"):
        find_sections([tmp_path / "missing.tif"])
    log = io.StringIO()
    bar = ProgressBar(log)
    for k in range(1, 21):
        bar("segment", k, 20)
    lines = log.getvalue().splitlines()
    assert 10 <= len(lines) <= 11
    assert "1/20 tiles" in lines[0] and "left" in lines[0]
    assert "20/20 tiles done in" in lines[-1]


# --------------------------------------------------------------------------------------------
# napari


@pytest.mark.gui
def test_napari_opens_a_mosaic_and_its_labels_as_multiscale_layers(section, tmp_path, qtbot):
    napari = pytest.importorskip("napari")
    from napari_zonation._napari_io import get_zarr_reader

    s, img = section
    wide = np.tile(img, (2, 2))
    image_path = write_mosaic(tmp_path / "sec.zarr", wide, 0.5, chunk=512)
    lab = np.tile(np.arange(4, dtype=np.int32).reshape(2, 2), (1024, 1024))
    writer = ZarrWriter(tmp_path / "labels.zarr", wide.shape, pixel_size_um=0.5)
    writer.write(lab)
    labels_path = writer.finish({"n_crystals": 3})
    viewer = napari.Viewer(show=False)
    try:
        for path, kind in ((image_path, "image"), (labels_path, "labels")):
            [(data, kwargs, layer_type)] = get_zarr_reader(str(path))(str(path))
            assert layer_type == kind and kwargs["multiscale"]
            layer = getattr(viewer, f"add_{kind}")(data, **kwargs)
            assert layer.multiscale and len(layer.data) == 2
            assert tuple(layer.scale) == (0.5, 0.5)
        assert threading.current_thread() is threading.main_thread()
        np.testing.assert_array_equal(np.asarray(viewer.layers["labels"].data[1]),
                                      lab[::2, ::2])
    finally:
        viewer.close()
    assert get_zarr_reader(str(tmp_path / "a.png")) is None
    assert Path(image_path).exists()
