"""SEM TIFF pixel sizes, the general image reader, measured-profile import and result export."""

import warnings

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_zonation import ZonationInputError, read_profiles, read_sem_tiff
from napari_zonation._napari_io import PLAGIOCLASE_TIFF, _read, get_reader
from napari_zonation._validation import (
    PIPELINE_BYTES_PER_PIXEL,
    check_image_content,
    check_memory,
    check_sem_pixel_size,
)
from napari_zonation.io import image_header, read_image, write_results

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


# --------------------------------------------------------------------------------------------
# the general image reader: stacks, colour, damaged files


def _grey(shape=(40, 60), seed=0):
    return np.random.default_rng(seed).integers(0, 255, shape).astype(np.uint8)


@pytest.mark.parametrize(
    "write, axes",
    [
        (lambda p, a: tifffile.imwrite(p, a), "plain multi-page"),
        (lambda p, a: tifffile.imwrite(p, a, imagej=True, metadata={"axes": "CYX"}), "ImageJ"),
        (lambda p, a: tifffile.imwrite(p, a, ome=True, metadata={"axes": "CYX"}), "OME"),
    ],
)
def test_channel_stacks_read_as_element_maps(tmp_path, write, axes):
    stack = np.stack([_grey(seed=i) for i in range(5)])
    path = tmp_path / "maps.tif"
    write(path, stack)
    for reader in (read_sem_tiff, read_image):
        image, _, info = reader(path)
        np.testing.assert_array_equal(image, stack)  # every page, not page 0
        assert info["layout"] == "element maps", axes
        assert "5 planes" in info["notes"][0] and "element-map channels" in info["notes"][0]
    assert image_header(path).shape == (5, 40, 60)


def test_three_planes_stored_as_planar_rgb_are_element_maps(tmp_path):
    """tifffile stores a (3, y, x) stack as RGB planes by default: they are maps, not colour."""
    stack = np.stack([_grey(seed=i) for i in range(3)])
    path = tmp_path / "three.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        tifffile.imwrite(path, stack)
    image, _, info = read_image(path)
    np.testing.assert_array_equal(image, stack)
    assert info["layout"] == "element maps"


def test_pages_written_one_by_one_are_channels_and_previews_are_left_out(tmp_path):
    a, b = _grey(seed=1), _grey(seed=2)
    path = tmp_path / "two.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(a, contiguous=False)
        tif.write(b, contiguous=False)
    image, _, info = read_image(path)
    np.testing.assert_array_equal(image, np.stack([a, b]))
    assert "2 images" in info["notes"][0]
    preview = tmp_path / "preview.tif"
    with tifffile.TiffWriter(preview) as tif:
        tif.write(a)
        tif.write(a[::4, ::4])
    image, _, info = read_sem_tiff(preview)
    np.testing.assert_array_equal(image, a)
    assert "look like previews and were left out" in info["notes"][0]


@pytest.mark.parametrize(
    "write, message",
    [
        (lambda p: tifffile.imwrite(p, np.zeros((4, 40, 60), np.uint8), ome=True,
                                    metadata={"axes": "ZYX"}), "a z-stack"),
        (lambda p: tifffile.imwrite(p, np.zeros((4, 40, 60), np.uint8), ome=True,
                                    metadata={"axes": "TYX"}), "a time series"),
        (lambda p: tifffile.imwrite(p, np.zeros((2, 3, 40, 60), np.uint8), imagej=True),
         r"shape \(2, 3, 40, 60\)"),
        (lambda p: tifffile.imwrite(p, np.zeros((40, 40, 60), np.uint8)),
         "40 planes are too many"),
        (lambda p: tifffile.imwrite(p, np.zeros((3, 40, 60, 3), np.uint8)),
         r"shape \(3, 40, 60, 3\)"),
    ],
)
def test_stacks_that_are_not_element_maps_are_refused_with_the_expected_shapes(
    tmp_path, write, message
):
    path = tmp_path / "stack.tif"
    write(path)
    for reader in (read_sem_tiff, read_image, image_header):
        with pytest.raises(ZonationInputError, match=message) as info:
            reader(path)
        assert "(channels, y, x" in str(info.value)


def test_pages_of_several_shapes_are_refused(tmp_path):
    path = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(_grey((40, 60)))
        tif.write(_grey((30, 50)))
    with pytest.raises(ZonationInputError, match=r"2 images of shapes \(40, 60\), \(30, 50\)"):
        read_image(path)


def test_png_jpeg_and_bmp_grey_images(tmp_path):
    from PIL import Image

    grey = _grey()
    for name in ("a.png", "a.bmp"):
        Image.fromarray(grey).save(tmp_path / name)
        image, px, info = read_image(tmp_path / name)
        np.testing.assert_array_equal(image, grey)
        assert px is None and info["layout"] == "grey"
    deep = (grey.astype(np.uint16) * 257)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    image, _, _ = read_image(tmp_path / "deep.png")
    assert image.dtype == np.uint16
    np.testing.assert_array_equal(image, deep)
    smooth = np.tile(np.linspace(0, 250, 60), (40, 1)).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "a.jpg", quality=95)
    image, _, _ = read_image(tmp_path / "a.jpg")
    assert image.shape == (40, 60) and np.abs(image.astype(int) - smooth).max() <= 4


def test_rgb_of_a_grey_scene_is_grey_colour_is_refused_or_kept(tmp_path):
    from PIL import Image

    grey = _grey()
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "rgb.png")
    image, _, info = read_image(tmp_path / "rgb.png")
    np.testing.assert_array_equal(image, grey)
    assert "a grey image stored as RGB" in info["notes"][0]
    rgba = np.dstack([grey] * 3 + [np.full_like(grey, 255)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png")[0], grey)
    # a grey palette image is read through its palette, not as palette indices
    Image.fromarray(grey).convert("P").save(tmp_path / "pal.png")
    image = read_image(tmp_path / "pal.png")[0]
    assert image.ndim == 2 and np.abs(image.astype(int) - grey).max() <= 8
    colour = np.stack([grey, 255 - grey, grey // 2], -1)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(ZonationInputError, match="colour.png is a colour image"):
        read_image(tmp_path / "colour.png")
    kept, _, info = read_image(tmp_path / "colour.png", colour="keep")
    np.testing.assert_array_equal(kept, colour)
    assert info["layout"] == "colour"
    see_through = rgba.copy()
    see_through[:5, :5, 3] = 0
    Image.fromarray(see_through).save(tmp_path / "alpha.png")
    with pytest.raises(ZonationInputError, match="transparent pixels"):
        read_image(tmp_path / "alpha.png")
    tifffile.imwrite(tmp_path / "rgb.tif", np.stack([grey] * 3, -1), photometric="rgb")
    assert read_sem_tiff(tmp_path / "rgb.tif")[0].shape == (40, 60, 3)  # as stored
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.tif")[0], grey)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad.png", b"\x89PNG\r\n\x1a\n" + b"x" * 30, "bad.png could not be read as an image"),
        ("bad.jpg", b"\xff\xd8\xff\xe0" + b"x" * 30, "bad.jpg could not be read as an image"),
        ("bad.tif", b"II*\x00" + b"\xff" * 40, "bad.tif"),
        ("empty.tif", b"", "empty.tif"),
        ("text.png", b"just text", "text.png could not be read as an image"),
    ],
)
def test_damaged_files_raise_a_clear_error(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ZonationInputError, match=message):
        read_image(path)


def test_truncated_pixels_raise_a_clear_error(tmp_path):
    from PIL import Image

    Image.fromarray(_grey((200, 300))).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ZonationInputError, match="cut.png could not be read as an image"):
        read_image(tmp_path / "cut.png")
    tifffile.imwrite(tmp_path / "full.tif", _grey((200, 300)), compression="zlib")
    data = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    with pytest.raises(ZonationInputError, match="cut.tif"):
        read_image(tmp_path / "cut.tif")


def test_missing_folder_unknown_suffix_and_animation(tmp_path):
    from PIL import Image

    with pytest.raises(ZonationInputError, match="no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ZonationInputError, match="is a folder"):
        read_image(tmp_path)
    (tmp_path / "a.xyz").write_text("x")
    with pytest.raises(ZonationInputError, match="unsupported file type '.xyz'"):
        read_image(tmp_path / "a.xyz")
    frames = [Image.fromarray(_grey(seed=i)) for i in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(ZonationInputError, match="3 frames"):
        read_image(tmp_path / "anim.gif")


def test_header_matches_the_image_and_carries_the_pixel_size(tmp_path):
    ini = "[User]\nDate=01/01/2024\n[Scan]\nPixelWidth=2.5e-07\nPixelHeight=2.5e-07\n"
    path = tmp_path / "fei.tif"
    tifffile.imwrite(path, IMG, extratags=[(34682, "s", 0, ini, True)])
    header = image_header(path)
    image, px, _ = read_image(path)
    assert header.shape == image.shape and header.dtype == image.dtype
    assert header.pixel_size_um == pytest.approx(0.25) == px


def test_napari_reader_opens_element_maps_as_one_layer_and_refuses_z_stacks(tmp_path):
    stack = np.stack([_grey(seed=i) for i in range(4)])
    tifffile.imwrite(tmp_path / "maps.tif", stack, photometric="minisblack")
    with pytest.warns(UserWarning, match="element-map channels"):
        (data, kwargs, kind), = _read(str(tmp_path / "maps.tif"), ask=lambda name: 0.5)
    np.testing.assert_array_equal(data, stack)
    assert kind == "image" and kwargs["scale"] == (1.0, 0.5, 0.5)
    assert kwargs["metadata"]["napari_zonation"]["element_maps"] is True
    tifffile.imwrite(tmp_path / "z.tif", stack, ome=True, metadata={"axes": "ZYX"})
    with pytest.raises(ZonationInputError, match="z-stack"):
        _read(str(tmp_path / "z.tif"), ask=lambda name: 0.5)
    colour = np.stack([_grey(), 255 - _grey(), _grey() // 2], -1)
    tifffile.imwrite(tmp_path / "colour.tif", colour, photometric="rgb")
    (data, kwargs, _), = _read(str(tmp_path / "colour.tif"), ask=lambda name: 0.5)
    assert kwargs["rgb"] is True and data.shape == (40, 60, 3)


# --------------------------------------------------------------------------------------------
# plausibility checks of what a run needs


def test_sem_pixel_size_range_and_unit_hint():
    assert check_sem_pixel_size(0.3) == 0.3
    for bad in (1e-6, 1e-3, 60.0, 1e6):
        with pytest.raises(ZonationInputError, match="outside the range of SEM images"):
            check_sem_pixel_size(bad, (256, 256))
    with pytest.raises(ZonationInputError, match=r"256 x 256 px image would be 0.256 x 0.256 nm"):
        check_sem_pixel_size(1e-6, (256, 256))
    for bad in (0, -1, float("nan"), None, "x"):
        with pytest.raises(ZonationInputError):
            check_sem_pixel_size(bad)


def test_memory_estimate_counts_padding_to_working_blocks():
    need = check_memory((1000, 1000), 1.0, itemsize=1, available=10**12)
    assert need == 1002 * 1002 * PIPELINE_BYTES_PER_PIXEL + 1000 * 1000 * 9
    with pytest.raises(ZonationInputError, match="1000 x 1000 px image needs about"):
        check_memory((1000, 1000), 1.0, itemsize=1, available=need - 1)
    # at 0.01 µm/px a 3 µm working block is 300 px: a 10 x 10 image is padded to 300 x 300
    tiny = check_memory((10, 10), 0.01, itemsize=1, available=10**12)
    assert tiny == 300 * 300 * PIPELINE_BYTES_PER_PIXEL + 100 * 9
    with pytest.raises(ZonationInputError, match="padded to 300 x 300 px"):
        check_memory((10, 10), 0.01, itemsize=1, available=tiny - 1)


def test_image_content_constant_or_nan():
    with pytest.raises(ZonationInputError, match=r"constant \(every pixel is 7\)"):
        check_image_content(np.full((5, 5), 7, np.uint8))
    with pytest.raises(ZonationInputError, match="no finite pixel"):
        check_image_content(np.full((5, 5), np.nan))
    with pytest.raises(ZonationInputError, match="every channel is constant: 1, 2"):
        check_image_content(np.stack([np.ones((5, 5)), np.full((5, 5), 2.0)]))
    check_image_content(np.stack([np.ones((5, 5)), np.eye(5)]))  # one channel varies
    check_image_content(np.where(np.eye(5) > 0, np.nan, np.arange(25.0).reshape(5, 5)))
