"""The command line and the pipeline end to end, on small samples."""

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_zonation import ZonationInputError, make_thin_section, rim_profiles
from napari_zonation.cli import main
from napari_zonation.io import read_sem_tiff
from napari_zonation.metrics import match_instances
from napari_zonation.pipeline import run_pipeline


def _iou_matches(pred, truth):
    """Crystals of the truth matched 1:1 at IoU >= 0.5."""
    return match_instances(truth, pred)["tp"]


def test_demo_writes_every_output(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--size", "384", "--n-crystals", "8"]) == 0
    for name in ("labels.tif", "profiles.csv", "crystals.csv", "report.png", "truth.csv"):
        assert (out / name).is_file(), name
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
    assert _iou_matches(labels, s.labels) >= 0.75 * len(truth)
    profiles = pd.read_csv(out / "profiles.csv")
    assert set(profiles["label"]) <= set(crystals["label"])
    text = capsys.readouterr().out
    assert "crystals found" in text and "wrote report" in text


def test_run_on_a_tiff_with_and_without_pixel_size(tmp_path, capsys):
    s = make_thin_section((320, 320), n_crystals=6, seed=4)
    path = tmp_path / "bse.tif"
    tifffile.imwrite(path, s.image)
    # no pixel size anywhere: a clear message and exit code 2, no traceback
    assert main(["run", str(path), "--out", str(tmp_path / "a")]) == 2
    assert "--pixel-size-um" in capsys.readouterr().err
    assert main(["run", str(path), "--pixel-size-um", "1.0", "--out",
                 str(tmp_path / "b"), "--diffusivity-um2-s", "0.001"]) == 0
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
    # t = (sqrt(Dt))^2 / D, in days: the Monte Carlo median sits beside it (the fit's error
    # may be asymmetric) and the 5-95 % interval holds it
    best = crystals.loc[ok, "sqrt_dt_um"] ** 2 / 0.001 / 86400
    np.testing.assert_allclose(crystals.loc[ok, "timescale_days"], best, rtol=0.15)
    assert ((crystals.loc[ok, "timescale_days_lo"] <= best)
            & (best <= crystals.loc[ok, "timescale_days_hi"])).all()


def test_pipeline_bad_input():
    with pytest.raises(ZonationInputError, match="1D"):
        run_pipeline(np.arange(100.0), 1.0)
    with pytest.raises(ZonationInputError, match="pixel size is missing"):
        run_pipeline(np.zeros((50, 50)), None)


def test_pipeline_constant_image_finds_nothing():
    with pytest.warns(UserWarning):
        result = run_pipeline(np.full((100, 100), 120, np.uint8), 1.0)
    assert result.crystals.empty and result.labels.max() == 0
    assert any("no crystal" in n for n in result.notes)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(mineral="plagioclase", temperature_c=800), "no built-in diffusivity"),
        (dict(mineral="olivine", temperature_c=1150), "fO2|delta_qfm|log_fo2_pa"),
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
