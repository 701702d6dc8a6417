"""The command line and the pipeline end to end, on small samples.

Every case of bad input or of a run that cannot succeed is run as the user runs it, as a
subprocess, and checked by its exit status (0 done, 1 failed or nothing found, 2 bad usage or
input) and its first line on stderr; the outputs a run leaves are checked too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from napari_zonation import ZonationInputError, make_thin_section, rim_profiles
from napari_zonation.cli import _warnings_once, build_parser, main
from napari_zonation.io import read_sem_tiff
from napari_zonation.metrics import match_instances
from napari_zonation.pipeline import BORDER_STATUS, check_pipeline, run_pipeline
from napari_zonation.segment import crystal_table, segment_crystals

OUTPUTS = ("labels.tif", "profiles.csv", "crystals.csv", "report.png", "truth.csv")


def nz(*args, env: dict | None = None, timeout: float = 300) -> tuple[int, str, str]:
    """Run ``napari-zonation ARGS`` in a new process: (exit status, stdout, stderr)."""
    full_env = {**os.environ, **(env or {})}
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
    done = subprocess.run(
        [sys.executable, "-m", "napari_zonation.cli", *map(str, args)],
        capture_output=True, text=True, env=full_env, timeout=timeout,
    )
    return done.returncode, done.stdout, done.stderr


def first_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[0] if lines else ""


def one_line_error(rc: int, err: str, status: int, *fragments: str) -> str:
    """Check an error: its status, one line starting 'napari-zonation...: error:', no
    traceback, and the fragments in it; return the line."""
    assert rc == status, err
    line = first_line(err)
    assert line.startswith("napari-zonation") and "error:" in line, err
    assert "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


@pytest.fixture(scope="module")
def scene():
    """A small synthetic section saved as an 8-bit grey PNG and TIFF."""
    return make_thin_section((256, 256), n_crystals=5, seed=1)


@pytest.fixture(scope="module")
def files(scene, tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    grey = np.clip(scene.image, 0, 255).astype(np.uint8)
    Image.fromarray(grey).save(d / "grey.png")
    tifffile.imwrite(d / "grey.tif", grey)
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(d / "grey_as_rgb.png")
    colour = np.stack([grey, 255 - grey, grey // 3], axis=-1)
    Image.fromarray(colour).save(d / "colour.png")
    Image.fromarray(np.full((256, 256), 120, np.uint8)).save(d / "constant.png")
    noise = np.random.default_rng(0).normal(120, 6, (256, 256))
    Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8)).save(d / "noise.png")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    (d / "corrupt.tif").write_bytes(b"II*\x00" + b"\x00" * 40)
    tifffile.imwrite(d / "zstack.tif", np.stack([grey] * 5), ome=True, metadata={"axes": "ZYX"})
    tifffile.imwrite(d / "hyperstack.tif", np.zeros((2, 3, 64, 64), np.uint8), imagej=True)
    with tifffile.TiffWriter(d / "two_shapes.tif") as tif:
        tif.write(grey)
        tif.write(grey[:200, :200])
    tifffile.imwrite(d / "maps.tif", element_maps(grey), photometric="minisblack")
    (d / "a_file").write_text("not a folder")
    return d


def element_maps(grey: np.ndarray) -> np.ndarray:
    """Three element maps of one scene, as a (channels, y, x) uint8 stack."""
    rng = np.random.default_rng(2)
    g = grey.astype(float)
    maps = [g, 255 - 0.8 * g + rng.normal(0, 2, g.shape), 0.5 * g + 20]
    return np.clip(np.stack(maps), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# the outputs of a good run


def test_demo_writes_every_output(tmp_path):
    out = tmp_path / "demo"
    rc, text, err = nz("demo", "--out", out, "--size", "384", "--n-crystals", "8")
    assert rc == 0, err
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no staging left
    labels, px, _ = read_sem_tiff(out / "labels.tif")
    crystals = pd.read_csv(out / "crystals.csv")
    truth = pd.read_csv(out / "truth.csv")
    assert px == pytest.approx(1.0)
    assert set(crystals["label"]) == set(np.unique(labels[labels > 0]))
    for col in ("label", "area_um2", "phase", "touches_border", "core_value", "rim_value",
                "n_plateaus", "zoning_type", "cluster"):
        assert col in crystals.columns, col
    # the demo finds the generator's crystals (most of them, 1:1 at IoU >= 0.5)
    s = make_thin_section((384, 384), n_crystals=8, seed=0)
    assert match_instances(s.labels, labels)["tp"] >= 0.75 * len(truth)
    profiles = pd.read_csv(out / "profiles.csv")
    assert set(profiles["label"]) <= set(crystals["label"])
    # progress reaches its last stage though diffusion is skipped; the note names the flags
    assert "[5/5] diffusion skipped" in text
    assert "--diffusivity-um2-s" in text and "diffusivity_um2_s" not in text
    assert "crystals found" in text and "wrote report" in text
    assert ".py:" not in err  # warnings are clean lines


def test_run_on_a_tiff_with_and_without_pixel_size(tmp_path, capsys):
    s = make_thin_section((320, 320), n_crystals=6, seed=4)
    path = tmp_path / "bse.tif"
    tifffile.imwrite(path, s.image)
    # no pixel size anywhere: a clear message and exit code 2, no traceback, no folder made
    assert main(["run", str(path), "--out", str(tmp_path / "a")]) == 2
    assert "--pixel-size-um" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    assert main(["run", str(path), "--pixel-size-um", "1.0", "--out", str(tmp_path / "b"),
                 "--diffusivity-um2-s", "0.001", "--date-border-crystals"]) == 0
    text = capsys.readouterr().out
    crystals = pd.read_csv(tmp_path / "b" / "crystals.csv")
    assert "timescale_days" in crystals.columns
    # the profiles written are rim_profiles of the labels written, with the contacts asked for
    assert main(["run", str(path), "--pixel-size-um", "1.0", "--out", str(tmp_path / "c"),
                 "--contacts", "rim"]) == 0
    sums = {}
    for folder, contacts in (("b", "exclude"), ("c", "rim")):
        labels, _, _ = read_sem_tiff(tmp_path / folder / "labels.tif")
        written = pd.read_csv(tmp_path / folder / "profiles.csv")
        expected = rim_profiles(s.image, labels, 1.0, contacts=contacts)
        assert len(written) == len(expected)
        np.testing.assert_allclose(written["n_pixels"], expected["n_pixels"])
        sums[contacts] = written["n_pixels"].sum()
    assert sums["exclude"] < sums["rim"]  # two crystals of this section touch
    ok = crystals["fit_status"] == "ok"
    assert ok.any()
    # t = (sqrt(Dt))^2 / D, in days: the Monte Carlo median sits beside it (the fit's error
    # may be asymmetric) and the 5-95 % interval holds it; each dated crystal is printed
    best = crystals.loc[ok, "sqrt_dt_um"] ** 2 / 0.001 / 86400
    np.testing.assert_allclose(crystals.loc[ok, "timescale_days"], best, rtol=0.15)
    assert ((crystals.loc[ok, "timescale_days_lo"] <= best)
            & (best <= crystals.loc[ok, "timescale_days_hi"])).all()
    assert f"timescales: {int(ok.sum())} of {len(crystals)} crystals dated" in text
    for row in crystals[ok].itertuples():
        assert f"crystal {row.label}: {row.timescale_days:.3g} days" in text


# --------------------------------------------------------------------------------------------
# every case of bad input: one line, exit 2, before any work


def test_output_folder_that_cannot_be_created_is_refused_first(files):
    if not Path("/proc").is_dir():
        pytest.skip("needs Linux /proc")
    rc, text, err = nz("run", files / "grey.png", "--pixel-size-um", "1", "--out", "/proc/x")
    one_line_error(rc, err, 2, "cannot create the output folder /proc/x")
    assert "[1/5]" not in text


def test_output_folder_that_is_a_file_is_refused_first(files):
    rc, text, err = nz("run", files / "grey.png", "--pixel-size-um", "1",
                       "--out", files / "a_file")
    one_line_error(rc, err, 2, "is a file, not a folder")
    assert (files / "a_file").read_text() == "not a folder"
    assert "[1/5]" not in text


def test_output_folder_that_cannot_be_written_is_refused_first(tmp_path, capsys, monkeypatch):
    from napari_zonation import cli

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cli._helpers.tempfile, "mkstemp", refuse)  # root may write anywhere
    out = tmp_path / "new" / "out"
    assert main(["demo", "--out", str(out)]) == 2
    assert first_line(capsys.readouterr().err) == (
        f"napari-zonation: error: cannot write to the output folder {out} (Permission denied); "
        "give a folder you can write to."
    )
    assert not (tmp_path / "new").exists()  # the folders it made for the check are gone


@pytest.mark.parametrize(
    "name, fragments",
    [
        ("missing.png", ["no such file", "missing.png"]),
        ("missing.tif", ["no such file", "missing.tif"]),
        ("corrupt.png", ["corrupt.png could not be read as an image"]),
        ("corrupt.tif", ["corrupt.tif holds no readable image", "not a TIFF"]),
        ("colour.png", ["colour.png is a colour image", "single channel"]),
        ("constant.png", ["constant.png is constant (every pixel is 120)", "nothing to segment"]),
        ("zstack.tif", ["a z-stack", "(channels, y, x"]),
        ("hyperstack.tif", ["(2, 3, 64, 64)", "(channels, y, x"]),
        ("two_shapes.tif", ["2 images of shapes", "(256, 256)", "(200, 200)"]),
    ],
)
def test_unreadable_or_unsupported_images(files, tmp_path, name, fragments):
    out = tmp_path / "out"
    rc, text, err = nz("run", files / name, "--pixel-size-um", "1", "--out", out)
    line = one_line_error(rc, err, 2, *fragments)
    assert "pixel size" not in line  # the constant image's message does not blame it
    assert "[1/5]" not in text and not out.exists()


@pytest.mark.parametrize(
    "pixel_size, fragments",
    [
        ("1e-6", ["1e-06 µm/px is outside the range of SEM images, 0.005-50 µm/px",
                  "would be 0.256 x 0.256 nm"]),
        ("1e6", ["1e+06 µm/px is outside the range of SEM images", "would be 256 x 256 m"]),
        ("0.01", ["covers 6.55 µm², less than the smallest crystal kept", "--min-area-um2"]),
        ("-1", ["--pixel-size-um: -1 must be above 0"]),
        ("nan", ["--pixel-size-um", "not a finite number"]),
        ("abc", ["--pixel-size-um", "'abc' is not a positive number"]),
    ],
)
def test_implausible_pixel_sizes_are_refused_before_allocating(files, tmp_path, pixel_size,
                                                               fragments):
    out = tmp_path / "out"
    rc, text, err = nz("run", files / "grey.png", "--pixel-size-um", pixel_size, "--out", out)
    one_line_error(rc, err, 2, *fragments)
    assert "[1/5]" not in text and not out.exists()


def test_image_beyond_memory_is_refused_from_its_shape():
    with pytest.raises(ZonationInputError, match="needs about .* of memory, more than"):
        check_pipeline((200_000, 200_000), 1.0)  # 4e10 px: no machine this runs on holds it
    # a tiny pixel size pads the image to whole working blocks of ~3 µm: refused by range
    with pytest.raises(ZonationInputError, match="outside the range of SEM images"):
        check_pipeline((256, 256), 1e-6)


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--size", "0"], ["--size: 0 must be at least 128"]),
        (["--size", "-5"], ["--size: -5 must be at least 128"]),
        (["--size", "12.5"], ["--size: '12.5' is not a whole number of pixels"]),
        (["--n-crystals", "0"], ["--n-crystals: 0 must be at least 1"]),
        (["--seed", "-1"], ["--seed: -1 must be at least 0"]),
        (["--n-clusters", "0"], ["--n-clusters: 0 must be at least 1"]),
        (["--min-area-um2", "-3"], ["--min-area-um2: -3 must be at least 0"]),
        (["--diffusivity-um2-s", "0"], ["--diffusivity-um2-s: 0 must be above 0"]),
        (["--contacts", "all"], ["--contacts: invalid choice"]),
        (["--model", "x"], ["--model is for --backend openai"]),
        (["--reference", "0"], ["--reference: 0 must be at least 1"]),
    ],
)
def test_demo_flags_are_validated(tmp_path, args, fragments):
    out = tmp_path / "out"
    rc, text, err = nz("demo", "--out", out, *args)
    one_line_error(rc, err, 2, *fragments)
    assert not out.exists() and "synthetic thin section" not in text


def test_every_flag_has_help_text():
    parser = build_parser()
    for name, sub in parser.commands.items():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help and len(action.help) > 10, (name, action.dest)


# --------------------------------------------------------------------------------------------
# stacks, RGB, nothing found


def test_element_map_stack_is_read_as_channels_and_says_so(files, tmp_path):
    out = tmp_path / "out"
    rc, text, err = nz("run", files / "maps.tif", "--pixel-size-um", "1", "--out", out)
    assert rc == 0, err
    assert "note: maps.tif: its 3 planes of 256 x 256 px read as element-map channels" in text
    profiles = pd.read_csv(out / "profiles.csv")
    assert set(profiles["channel"]) == {"ch0", "ch1", "ch2"}
    # one warning about the channels described, printed once, without its source line
    warned = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warned) == len(set(warned)) and ".py:" not in err


def test_crystal_table_of_a_stack_is_the_segmentation_s_combination(files, tmp_path):
    """The pipeline measures a stack as the Segment widget does (crystal_table of the stack,
    combined by the segmentation's PCA), not as the channel mean."""
    stack = tifffile.imread(files / "maps.tif")
    result = run_pipeline(stack, 1.0)
    expected = crystal_table(stack, result.labels, 1.0)
    got = result.crystals.set_index("label").loc[expected["label"]]
    np.testing.assert_allclose(got["mean_value"], expected["mean_value"].to_numpy())
    mean_table = crystal_table(stack.mean(axis=0), result.labels, 1.0)
    assert not np.allclose(got["mean_value"], mean_table["mean_value"].to_numpy())


def test_grey_scene_stored_as_rgb_gives_the_grey_image_s_results(files, tmp_path):
    rc, text, err = nz("run", files / "grey_as_rgb.png", "--pixel-size-um", "1",
                       "--out", tmp_path / "rgb")
    assert rc == 0, err
    assert "a grey image stored as RGB" in text
    rgb_labels = tifffile.imread(tmp_path / "rgb" / "labels.tif")
    grey = np.asarray(Image.open(files / "grey.png"))
    np.testing.assert_array_equal(rgb_labels, segment_crystals(grey, 1.0))
    assert rgb_labels.max() > 0


def test_nothing_found_exits_1_and_writes_nothing_unless_allowed(files, tmp_path):
    out = tmp_path / "out"
    rc, text, err = nz("run", files / "noise.png", "--pixel-size-um", "1", "--out", out)
    one_line_error(rc, err, 1, "no crystal found", "--min-area-um2", "--contrast",
                   "Nothing was written")
    assert "[1/5] segment" in text and "[2/5]" not in text
    assert not out.exists() or not any(out.iterdir())
    rc, text, err = nz("run", files / "noise.png", "--pixel-size-um", "1", "--out", out,
                       "--allow-empty")
    assert rc == 0, err
    assert "0 crystals found" in text
    assert pd.read_csv(out / "crystals.csv").empty
    assert (out / "report.png").is_file() and tifffile.imread(out / "labels.tif").max() == 0


# --------------------------------------------------------------------------------------------
# diffusion conditions, failures during the run


def test_olivine_without_xfe_is_refused_before_the_demo_runs(tmp_path):
    out = tmp_path / "out"
    rc, text, err = nz("demo", "--size", "256", "--out", out, "--mineral", "olivine",
                       "--temperature-c", "1150", "--pressure-mpa", "100", "--delta-qfm", "0")
    one_line_error(rc, err, 2, "--mineral olivine needs --xfe", "0.15 for Fo85")
    assert "---" not in err  # a flag in the message is not turned into a flag twice
    assert not out.exists()  # no lone truth.csv
    assert "synthetic thin section" not in text and "[1/5]" not in text


def test_a_failure_during_the_run_exits_1_and_leaves_no_output(tmp_path, capsys, monkeypatch):
    from napari_zonation import pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("the clustering broke")

    monkeypatch.setattr(pipeline, "cluster_crystals", broken)
    out = tmp_path / "out"
    assert main(["demo", "--size", "256", "--n-crystals", "4", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert first_line(err) == (
        "napari-zonation: error: the run failed in cluster: RuntimeError: the clustering broke "
        "(--debug shows the traceback)"
    )
    assert not out.exists()  # no truth.csv without the results
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.txt").write_text("a user's file")
    assert main(["demo", "--size", "256", "--n-crystals", "4", "--out", str(kept)]) == 1
    assert sorted(p.name for p in kept.iterdir()) == ["mine.txt"]
    with pytest.raises(RuntimeError, match="the clustering broke"):
        main(["demo", "--size", "256", "--n-crystals", "4", "--out", str(out), "--debug"])


def test_debug_shows_the_traceback(files, tmp_path):
    rc, _, err = nz("run", files / "corrupt.png", "--pixel-size-um", "1",
                    "--out", tmp_path / "o", "--debug")
    assert rc != 0 and "Traceback" in err and "ZonationInputError" in err


def test_warnings_print_once_as_clean_lines(capsys):
    with _warnings_once():
        for _ in range(3):
            warnings.warn("angles_deg not given: D along [001] is used", UserWarning,
                          stacklevel=1)
        warnings.warn("angles_deg not given: D along [001] is used", UserWarning, stacklevel=2)
        warnings.warn("another\n  warning", UserWarning, stacklevel=1)
    assert capsys.readouterr().err.splitlines() == [
        "warning: angles_deg not given: D along [001] is used",
        "warning: another warning",
    ]


# --------------------------------------------------------------------------------------------
# the LLM backend


def test_openai_backend_without_key_is_refused_before_segmenting(files, tmp_path):
    env = {"OPENAI_API_KEY": None, "OPENAI_BASE_URL": None}
    for command in (["run", files / "grey.png", "--pixel-size-um", "1"], ["demo"]):
        rc, text, err = nz(*command, "--out", tmp_path / "o", "--backend", "openai", env=env)
        one_line_error(rc, err, 2, "OPENAI_API_KEY", "OPENAI_BASE_URL")
        assert "api_key=" not in err and "[1/5]" not in text


def test_openai_backend_with_a_server_that_does_not_answer(files, tmp_path):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"OPENAI_API_KEY": None, "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1"}
    rc, text, err = nz("run", files / "grey.png", "--pixel-size-um", "1", "--out",
                       tmp_path / "o", "--backend", "openai", env=env)
    one_line_error(rc, err, 2, f"http://127.0.0.1:{port}/v1 does not answer")
    assert "[1/5]" not in text


def test_demo_honours_the_openai_backend(tmp_path):
    from llm_server import FakeOpenAIServer

    with FakeOpenAIServer() as server:
        env = {"OPENAI_API_KEY": None, "OPENAI_BASE_URL": server.base_url,
               "NAPARI_ZONATION_CACHE_DIR": str(tmp_path / "cache")}
        rc, text, err = nz("demo", "--size", "256", "--n-crystals", "4", "--out",
                           tmp_path / "o", "--backend", "openai", env=env)
        assert rc == 0, err
        assert server.problems == []
        asked = {r["label"] for r in server.requests}
    crystals = pd.read_csv(tmp_path / "o" / "crystals.csv")
    assert asked == set(crystals["label"])
    assert (crystals["llm_status"] == "ok").all()


def test_run_honours_base_url_for_the_openai_backend(files, tmp_path):
    from llm_server import FakeOpenAIServer

    with FakeOpenAIServer() as server:
        env = {"OPENAI_API_KEY": None, "OPENAI_BASE_URL": None,
               "NAPARI_ZONATION_CACHE_DIR": str(tmp_path / "cache")}
        rc, _, err = nz("run", files / "grey.png", "--pixel-size-um", "1", "--out",
                        tmp_path / "o", "--backend", "openai", "--base-url", server.base_url,
                        "--model", "my-model", env=env)
        assert rc == 0, err
        assert server.problems == [] and server.requests
        assert {r["body"]["model"] for r in server.requests} == {"my-model"}
    assert (pd.read_csv(tmp_path / "o" / "crystals.csv")["llm_status"] == "ok").all()


# --------------------------------------------------------------------------------------------
# the pipeline in Python


def test_pipeline_bad_input():
    with pytest.raises(ZonationInputError, match="1D"):
        run_pipeline(np.arange(100.0), 1.0)
    with pytest.raises(ZonationInputError, match="pixel size is missing"):
        run_pipeline(np.zeros((50, 50)), None)


def test_pipeline_refuses_a_constant_image_without_blaming_the_pixel_size():
    stages = []
    with pytest.raises(ZonationInputError, match=r"constant \(every pixel is 120\)") as info:
        run_pipeline(np.full((100, 100), 120, np.uint8), 1.0,
                     progress=lambda name, i, n: stages.append(name))
    assert "pixel size" not in str(info.value) and stages == []


def test_pipeline_reports_why_nothing_was_found():
    noise = np.random.default_rng(0).normal(120, 6, (200, 200))
    stages = []
    result = run_pipeline(noise, 1.0, progress=lambda name, i, n: stages.append(name))
    assert result.crystals.empty and result.labels.max() == 0 and stages == ["segment"]
    assert "400 µm²" in result.empty_reason and "400 px at 1 µm/px" in result.empty_reason
    assert any(n.startswith("no crystal found") for n in result.notes)


def test_border_crystals_are_kept_out_of_dating_unless_asked():
    s = make_thin_section((320, 320), n_crystals=8, seed=2)
    result = run_pipeline(s.image, 1.0, diffusion_options={"diffusivity_um2_s": 1e-3})
    table = result.crystals
    cut = table["touches_border"].astype(bool)
    assert cut.any() and (~cut).any()
    assert (table.loc[cut, "fit_status"] == BORDER_STATUS).all()
    assert table.loc[cut, "timescale_days"].isna().all()
    assert (table.loc[~cut, "fit_status"] != BORDER_STATUS).all()
    assert any("cut by the image edge not dated" in n for n in result.notes)
    # asked: the border crystals are fitted like the others (the erf quick look dates some of
    # these small cut crystals; the default finite-difference model is stricter about them)
    asked = run_pipeline(s.image, 1.0, diffusion_options={"diffusivity_um2_s": 1e-3,
                                                          "model": "erf"},
                         date_border_crystals=True).crystals
    assert (asked["fit_status"] != BORDER_STATUS).all()
    assert asked.loc[asked["touches_border"].astype(bool), "fit_status"].eq("ok").any()


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(mineral="plagioclase", temperature_c=800), "no built-in diffusivity"),
        (dict(mineral="olivine", temperature_c=1150), "fO2|delta_qfm|log_fo2_pa"),
        (dict(mineral="olivine", temperature_c=1150, pressure_mpa=100, delta_qfm=0),
         "needs xfe"),
        (dict(diffusivity_um2_s=1e-3, windows_um=20), "unknown option"),
    ],
)
def test_pipeline_refuses_bad_diffusion_conditions_before_segmenting(options, message):
    """A diffusion condition that the last stage would refuse stops the run before its first
    stage (no minutes of segmentation lost), with fit_diffusion's own message."""
    stages = []
    with pytest.raises(ZonationInputError, match=message):
        run_pipeline(
            np.zeros((64, 64), np.uint8),
            1.0,
            diffusion_options=options,
            progress=lambda name, i, n: stages.append(name),
        )
    assert stages == []


# --------------------------------------------------------------------------------------------
# the command line and the Segment widget agree on a stack


@pytest.mark.gui
def test_cli_and_segment_widget_tables_agree_for_a_stack(files, tmp_path, qtbot, request):
    pytest.importorskip("napari")
    pytest.importorskip("pytestqt")
    from napari_zonation._napari_io import _read

    make_napari_viewer = request.getfixturevalue("make_napari_viewer")
    viewer = make_napari_viewer()
    with pytest.warns(UserWarning, match="element-map channels"):
        (data, kwargs, _), = _read(str(files / "maps.tif"), ask=lambda name: 1.0)
    layer = viewer.add_image(data, **kwargs)
    assert layer.ndim == 3 and tuple(layer.scale) == (1.0, 1.0, 1.0)
    _, seg = viewer.window.add_plugin_dock_widget("napari-zonation", "Segment crystals")
    assert seg.run(blocking=True) is not None, seg.status.text()
    crystals = viewer.layers[f"{layer.name} crystals"]
    rc, _, err = nz("run", files / "maps.tif", "--pixel-size-um", "1", "--out", tmp_path / "o",
                    "--min-area-um2", seg.min_area.value())
    assert rc == 0, err
    labels = tifffile.imread(tmp_path / "o" / "labels.tif")
    np.testing.assert_array_equal(labels, np.asarray(crystals.data))
    cli = pd.read_csv(tmp_path / "o" / "crystals.csv").set_index("label")
    widget = crystals.features.set_index("label")
    for col in ("area_um2", "mean_value", "median_value", "phase"):
        got = cli.loc[widget.index, col]
        if col == "phase":
            assert got.tolist() == widget[col].tolist()
        else:
            np.testing.assert_allclose(got.to_numpy(float), widget[col].to_numpy(float))
