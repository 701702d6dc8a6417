"""SEM TIFF pixel sizes, measured-profile import and result export."""

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_zonation import ZonationInputError, read_profiles, read_sem_tiff
from napari_zonation._napari_io import PLAGIOCLASE_TIFF, _read, get_reader
from napari_zonation.io import write_results

IMG = (np.arange(600, dtype=np.uint16).reshape(20, 30) % 251).astype(np.uint8)


def test_fei_pixel_size(tmp_path):
    ini = "[User]\nDate=01/01/2024\n[Scan]\nPixelWidth=2.5e-07\nPixelHeight=2.5e-07\n"
    path = tmp_path / "fei.tif"
    tifffile.imwrite(path, IMG, extratags=[(34682, "s", 0, ini, True)])
    image, px, info = read_sem_tiff(path)
    assert px == pytest.approx(0.25)
    assert "FEI" in info["pixel_size_source"]
    np.testing.assert_array_equal(image, IMG)


def test_zeiss_pixel_size(tmp_path):
    text = "\r\n".join(["0", "AP_IMAGE_PIXEL_SIZE", "Image Pixel Size = 372.1 nm", ""])
    path = tmp_path / "zeiss.tif"
    tifffile.imwrite(path, IMG, extratags=[(34118, "s", 0, text, True)])
    _, px, info = read_sem_tiff(path)
    assert px == pytest.approx(0.3721)
    assert "Zeiss" in info["pixel_size_source"]


def test_imagej_calibration(tmp_path):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, IMG, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "um"})
    assert read_sem_tiff(path)[1] == pytest.approx(0.5)


def test_no_pixel_size_is_none_and_the_reader_asks(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, IMG)
    _, px, info = read_sem_tiff(path)
    assert px is None and "no pixel size" in info["pixel_size_source"]
    # the npe2 reader asks for it, and puts it on the layer scale
    (data, kwargs, kind), = _read(str(path), ask=lambda name: 0.8)
    assert kind == "image" and kwargs["scale"] == (0.8, 0.8)
    assert kwargs["metadata"]["napari_zonation"]["pixel_size_um"] == 0.8
    # cancelled: no scale, a warning naming the fix
    with pytest.warns(UserWarning, match="no pixel size"):
        (_, kwargs, _), = _read(str(path), ask=lambda name: None)
    assert "scale" not in kwargs
    assert get_reader(str(path)) is not None and get_reader("x.png") is None


def test_real_plagioclase_tiff_has_no_pixel_size():
    image, px, _ = read_sem_tiff(PLAGIOCLASE_TIFF)
    assert image.shape == (1448, 838) and image.dtype == np.uint8 and px is None


def test_labels_round_trip_with_pixel_size(tmp_path):
    labels = np.arange(12, dtype=np.int32).reshape(3, 4)
    written = write_results(tmp_path, labels=labels, pixel_size_um=0.37)
    image, px, _ = read_sem_tiff(written["labels"])
    np.testing.assert_array_equal(image, labels)
    assert px == pytest.approx(0.37)


def test_read_profiles_csv(tmp_path):
    df = pd.DataFrame({"SAMPLE": ["a"] * 4 + ["b"] * 3,
                       "Distance (um)": [0, 2, 4, 6, 0, 3, 6],
                       "Fo": [80, 82, 85, 86, 70, 71, 72],
                       "Fo_se": [0.3] * 7})
    df.to_csv(tmp_path / "traverses.csv", index=False)
    prof = read_profiles(tmp_path / "traverses.csv", value="Fo", label="SAMPLE", sigma="auto")
    assert set(prof["label"]) == {"a", "b"}
    a = prof[prof.label == "a"]
    np.testing.assert_allclose(a["distance_um"], [0, 2, 4, 6])
    np.testing.assert_allclose(a["value"], [80, 82, 85, 86])
    assert (prof["sigma"] == 0.3).all() and (prof["source"] == "csv").all()
    flipped = read_profiles(tmp_path / "traverses.csv", value="Fo", label="SAMPLE", rim="end")
    fa = flipped[flipped.label == "a"]
    np.testing.assert_allclose(fa["distance_um"], [0, 2, 4, 6])
    np.testing.assert_allclose(fa["value"], [86, 85, 82, 80])


def test_read_profiles_broken_rows_unsorted_and_duplicates(tmp_path):
    path = tmp_path / "messy.csv"
    path.write_text("d,An\n4,60\n0,50\n2,x\n,55\n6,70\n6,72\n")
    with pytest.warns(UserWarning) as record:
        prof = read_profiles(path, distance="d", value="An")
    messages = " ".join(str(w.message) for w in record)
    assert "2 row(s)" in messages and "duplicated" in messages
    np.testing.assert_allclose(prof["distance_um"], [0, 4, 6])
    np.testing.assert_allclose(prof["value"], [50, 60, 71])
    assert (prof["label"] == "messy").all()


def test_read_profiles_missing_column_names_the_columns(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("dist,FeO\n0,10\n1,11\n")
    with pytest.raises(ZonationInputError, match=r"columns are \['dist', 'FeO'\]"):
        read_profiles(path, distance="Distance (um)", value="FeO")


def test_read_profiles_folder_and_excel(tmp_path):
    for name, vals in (("p1", [1, 2, 3]), ("p2", [3, 2, 1])):
        pd.DataFrame({"x": [0, 1, 2], "MgO": vals}).to_csv(tmp_path / f"{name}.csv", index=False)
    prof = read_profiles(tmp_path, distance="x", value="MgO")
    assert set(prof["label"]) == {"p1", "p2"}


def test_read_the_real_laicpms_traverse():
    """The shipped plagioclase traverse: 67 spots 5 um apart, An with Sr and its errors."""
    from napari_zonation._napari_io import DATA_DIR

    prof = read_profiles(DATA_DIR / "plag_diffusion_test_data.xlsx", distance=None,
                         spacing_um=5.0, value=["An", "Sr"], label="grain", sigma="auto")
    an = prof[prof.channel == "An"]
    assert len(an) == 67 and an["distance_um"].iloc[-1] == pytest.approx(330.0)
    assert an["value"].between(20, 100).all()
    assert prof.loc[prof.channel == "Sr", "sigma"].notna().all()
