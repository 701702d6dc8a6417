"""The zoning's geometry read from the image: distance from the rim or scaled outline."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.special import erf

from napari_zonation.descriptors import describe_zoning
from napari_zonation.profiles import profiles_in_own_geometry, rim_profiles, zoning_geometry
from napari_zonation.profiles.geometry import NOT_TESTED

RIM, CORE = 120.0, 150.0


def _ellipse(shape, a, b, angle_deg=20.0):
    """Labels of one elliptical crystal (semi-axes ``a`` > ``b`` px) and its exact relative
    radius (0 at the centre, 1 on the outline: the outline scaled about its centre)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    t = np.deg2rad(angle_deg)
    u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
    w = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
    rho = np.hypot(u / a, w / b)
    return (rho <= 1.0).astype(np.int32), rho


def _image(labels, zone, seed, noise=2.0, background=60.0):
    """``zone`` (the painted values inside the crystal) blurred by a probe, noisy, 8-bit."""
    rng = np.random.default_rng(seed)
    canvas = np.where(labels > 0, zone, background)
    img = ndi.gaussian_filter(canvas, 0.6) + rng.normal(0.0, noise, labels.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _hinge_scaled(labels, rho, knee=0.6):
    """A gradient from the rim over ``knee`` of the relative radius to a core plateau."""
    t = 1.0 - np.clip(rho, 0.0, 1.0)
    return RIM + (CORE - RIM) * np.clip(t / knee, 0.0, 1.0)


def _rim_held_distance(labels, width_px=9.0):
    """Diffusion from a rim held at RIM into a core at CORE: erf of the distance to the
    outline (the distance geometry)."""
    dist = ndi.distance_transform_edt(np.pad(labels > 0, 1))[1:-1, 1:-1]
    return RIM + (CORE - RIM) * erf(dist / width_px)


def _rectangle(shape, a, b, angle_deg=20.0):
    """Labels of one rectangular lath (half-sides ``a`` > ``b`` px) and its relative radius
    (the rectangle scaled about its centre)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    t = np.deg2rad(angle_deg)
    u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
    w = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
    rho = np.maximum(np.abs(u) / a, np.abs(w) / b)
    return (rho <= 1.0).astype(np.int32), rho


# on the rim-distance shells alone these laths read as a rim step or as several steps: the
# shells reach the core plateau at different depths along the lath (the pooled profile
# flattens gradually into the core, as diffusion from a rim held at a fixed value does)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "outline, axes, knee",
    [(_ellipse, (90, 24), 0.3), (_rectangle, (90, 24), 0.5), (_ellipse, (70, 35), 0.5)],
)
def test_scaled_hinge_gradient_in_a_lath_is_a_gradient(seed, outline, axes, knee):
    labels, rho = outline((220, 220), *axes)
    img = _image(labels, _hinge_scaled(labels, rho, knee), seed)
    geo, scaled = zoning_geometry(img, labels, 1.0)
    assert geo["depth_geometry"].tolist() == ["scaled"]
    prof = rim_profiles(img, labels, 1.0, threads=1)
    own = profiles_in_own_geometry(prof, img, labels, 1.0)
    assert set(own["depth_geometry"]) == {"scaled"}
    row = describe_zoning(own).iloc[0]
    assert row["zoning_type"] == "gradient", row["model_detail"]
    assert row["depth_geometry"] == "scaled"
    # the core plateau starts where it was painted: at ``knee`` of the relative depth
    depth = float(ndi.distance_transform_edt(labels).max())
    assert row["core_start_um"] == pytest.approx(knee * depth, abs=0.1 * depth)


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("axes", [(40, 12), (30, 18)])
def test_small_lath_of_fewer_than_20_shells(seed, axes):
    # 12-18 shells deep: read as one rim step on the rim-distance shells
    labels, rho = _ellipse((120, 120), *axes)
    img = _image(labels, _hinge_scaled(labels, rho, 0.4), seed)
    prof = rim_profiles(img, labels, 1.0, threads=1)
    own = profiles_in_own_geometry(prof, img, labels, 1.0)
    row = describe_zoning(own).iloc[0]
    assert row["depth_geometry"] == "scaled"
    assert row["zoning_type"] == "gradient", row["model_detail"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rim_held_step_in_distance_geometry_stays_a_step(seed):
    labels, _ = _ellipse((200, 200), 90, 26)
    img = _image(labels, _rim_held_distance(labels), seed)
    geo, _ = zoning_geometry(img, labels, 1.0)
    assert geo["depth_geometry"].tolist() == ["distance"]
    prof = rim_profiles(img, labels, 1.0, threads=1)
    own = profiles_in_own_geometry(prof, img, labels, 1.0)
    # the rim-distance profile itself, unchanged
    np.testing.assert_array_equal(own["value"].to_numpy(), prof["value"].to_numpy())
    row = describe_zoning(own).iloc[0]
    assert row["zoning_type"] == "rim_darker"  # the rim (120) below the core (150)


def test_unzoned_small_and_cut_crystals_keep_the_distance():
    labels = np.zeros((160, 160), np.int32)
    lab_a, _ = _ellipse((160, 160), 50, 20)
    labels[lab_a > 0] = 1  # unzoned lath
    labels[2:10, 2:12] = 2  # small: depth < 8 px
    labels[120:160, 100:150] = 3  # cut by the frame
    img = _image(labels, np.full(labels.shape, 130.0), 0)
    geo = zoning_geometry(img, labels, 1.0)[0].set_index("label")
    assert (geo["depth_geometry"] == "distance").all()
    assert geo.loc[1, "geometry_note"] == ""
    assert "too small" in geo.loc[2, "geometry_note"]
    assert "frame" in geo.loc[3, "geometry_note"]


def test_tables_that_are_not_single_channel_shells_are_left_alone():
    labels, rho = _ellipse((120, 120), 50, 20)
    img = _image(labels, _hinge_scaled(labels, rho), 0)
    prof = rim_profiles(img, labels, 1.0, threads=1, method="traverse")
    own = profiles_in_own_geometry(prof, img, labels, 1.0)
    assert (own["depth_geometry"] == "distance").all()
    np.testing.assert_array_equal(own["value"].to_numpy(), prof["value"].to_numpy())


def test_run_pipeline_describes_in_the_geometry_the_image_shows():
    from napari_zonation import run_pipeline

    labels, rho = _ellipse((220, 220), 90, 24)
    img = _image(labels, _hinge_scaled(labels, rho, 0.3), 0)
    res = run_pipeline(img, 1.0)
    auto = res.crystals.set_index("label")
    assert len(auto) == 1
    assert auto["depth_geometry"].iloc[0] == "scaled"
    assert auto["zoning_type"].iloc[0] == "gradient"
    # the profiles of record stay the rim-distance shells
    assert "depth_geometry" not in res.profiles.columns
    plain = run_pipeline(img, 1.0, depth_geometry="distance").crystals
    # the same columns, so that tables of several sections (some streamed) concatenate
    assert plain["depth_geometry"].iloc[0] == "distance"
    assert plain["geometry_note"].iloc[0] == NOT_TESTED
    assert plain["zoning_type"].iloc[0] != "gradient"  # the shells alone misread it
    with pytest.raises(Exception, match="depth_geometry"):
        run_pipeline(img, 1.0, depth_geometry="radius")


def _off_outline(labels, seed):
    """The outline a pixel off, as a segmentation draws it: stretches of the boundary a
    pixel inside, others a pixel outside, the rest exact."""
    rng = np.random.default_rng(seed)
    m = labels > 0
    field = ndi.gaussian_filter(rng.normal(size=m.shape), 3.0)
    field /= field.std()
    out = np.where(
        field > 0.6, ndi.binary_dilation(m), np.where(field < -0.6, ndi.binary_erosion(m), m)
    )
    return out.astype(np.int32)


# steps profiled on an outline a pixel off (as a segmentation draws it) stay steps
@pytest.mark.parametrize("seed", [0, 1])
def test_steps_on_an_outline_a_pixel_off_stay_steps(seed):
    # diffusion from a rim held at RIM, and an erf step inside a rim plateau
    labels, _ = _rectangle((200, 200), 80, 22)
    dist = ndi.distance_transform_edt(np.pad(labels > 0, 1))[1:-1, 1:-1]
    own = _off_outline(labels, seed)
    for zone in (
        _rim_held_distance(labels, 6.0),
        RIM + (CORE - RIM) * 0.5 * (1.0 + erf((dist - 9.0) / 3.0)),
    ):
        img = _image(labels, zone, seed, noise=8.0)
        prof = rim_profiles(img, own, 1.0, threads=1)
        row = describe_zoning(profiles_in_own_geometry(prof, img, own, 1.0)).iloc[0]
        assert row["zoning_type"] == "rim_darker", row["model_detail"]
