"""Every stage on the real BSE image and its measured LA-ICP-MS traverse (Lubbers et al.
2022, MIT; see src/napari_zonation/data/README_plagioclase.md)."""

import numpy as np
import pytest

import napari_zonation as nz
from napari_zonation._napari_io import DATA_DIR, PLAGIOCLASE_PIXEL_SIZE_UM, PLAGIOCLASE_TIFF
from napari_zonation.profiles import calibrate

XLSX = DATA_DIR / "plag_diffusion_test_data.xlsx"


@pytest.fixture(scope="module")
def image():
    return nz.read_sem_tiff(PLAGIOCLASE_TIFF)[0]


def test_drawn_traverse_follows_the_measured_an(image):
    """Grey along the traverse's estimated position (column 450, rows 1110 -> 1390) against
    An measured by LA-ICP-MS: Ca-rich plagioclase is brighter, so they must correlate, and a
    linear grey-to-An calibration must fit within a few mol %."""
    an = nz.read_profiles(XLSX, distance=None, spacing_um=5.0, value="An", label="grain")
    prof = nz.line_profiles(image, [np.array([[1110.0, 450.0], [1390.0, 450.0]])],
                            PLAGIOCLASE_PIXEL_SIZE_UM, width_um=10.0)
    grey = np.interp(an["distance_um"], prof["distance_um"], prof["value"])
    r = np.corrcoef(grey, an["value"])[0, 1]
    assert r > 0.8
    cal = calibrate(grey, an["value"], "An (mol%)")
    assert cal.slope > 0  # brighter = An-richer
    assert np.sqrt(np.mean(cal.residuals**2)) < 3.0


def test_measured_traverse_is_described_as_a_reverse_rim_band():
    """The crystal has a bright high-An rim band: in An, a rim above the core (reverse)."""
    an = nz.read_profiles(XLSX, distance=None, spacing_um=5.0, value="An", label="grain",
                          rim="end")
    table = nz.describe_zoning(an, phase="plagioclase", quantity="composition")
    row = table.iloc[0]
    assert row["describe_status"] == "ok"
    assert row["rim_value"] > row["core_value"]
    assert row["interpretation"] == "reverse"
    assert row["n_plateaus"] >= 2
