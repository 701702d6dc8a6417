"""The widgets read each crystal in the geometry its image shows, as ``run_pipeline`` does.

The usual route through the docks is Segment -> Profiles -> Describe -> Cluster: Describe
then finds the rim-distance shells on the layer instead of computing them. Those shells
must be read in the crystal's own geometry all the same (a lath zoned with its scaled
outline is a gradient, not the rim step its shells alone suggest), and Cluster must embed
the profiles Describe read. Ground truth: the painted zoning of the laths.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

# the painted laths of the geometry tests: a gradient from the rim over 30 % of the
# relative radius to a core plateau, zoned with the outline scaled about its centre
from test_zoning_geometry import _ellipse, _hinge_scaled, _image

from napari_zonation.profiles import profiles_in_own_geometry, rim_profiles


def _two_laths(seed: int = 0):
    lab, rho = _ellipse((220, 220), 90, 24)
    labels = np.concatenate([lab, 2 * lab], axis=1).astype(np.int32)
    zone = np.concatenate([_hinge_scaled(lab, rho, 0.3)] * 2, axis=1)
    return labels, _image(labels, zone, seed)


def test_calibrated_shells_are_not_read_in_the_scaled_geometry():
    """The relative-radius profile is the image's grey: a table calibrated to a composition
    keeps its own values on the distance shells, and says why."""
    labels, img = _two_laths()
    prof = rim_profiles(img, labels, 1.0)
    grey = profiles_in_own_geometry(prof, img, labels, 1.0)
    assert set(grey["depth_geometry"]) == {"scaled"}  # the painted geometry
    fo = prof.assign(quantity="Fo (mol%)", value=prof["value"] / 2.0)
    out = profiles_in_own_geometry(fo, img, labels, 1.0)
    assert set(out["depth_geometry"]) == {"distance"}
    assert set(out["geometry_note"]) == {"not tested: calibrated profiles"}
    np.testing.assert_array_equal(out["value"].to_numpy(), fo["value"].to_numpy())



@pytest.mark.gui
def test_profiles_then_describe_reads_the_laths_scaled_and_cluster_embeds_that(
    make_napari_viewer, qtbot, monkeypatch
):
    pytest.importorskip("napari")
    pytest.importorskip("pytestqt")
    from napari_helpers import dock, run_and_wait

    from napari_zonation import cluster as zcluster

    labels, img = _two_laths()
    viewer = make_napari_viewer()
    image = viewer.add_image(img, name="bse", scale=(1.5, 1.5))
    viewer.add_labels(labels, name="my crystals", scale=(1.5, 1.5))

    prw = dock(viewer, "Profiles")
    prw.labels_combo.value = viewer.layers["my crystals"]
    prw.image_combo.value = image
    assert prw.method.currentText() == "shells"  # the default
    assert prw.run(blocking=True) is not None, prw.status.text()
    crystals = prw.labels_combo.value
    md = crystals.metadata["napari_zonation"]
    assert md["profile_options"]["method"] == "shells"
    record = md["profiles"].copy()

    dsw = dock(viewer, "Describe zoning")
    dsw.labels_combo.value = crystals
    dsw.image_combo.value = image
    run_and_wait(qtbot, dsw)
    out = crystals.features.set_index("label")
    assert list(out["depth_geometry"]) == ["scaled", "scaled"], dsw.status.text()
    assert list(out["zoning_type"]) == ["gradient", "gradient"]  # as painted
    md = crystals.metadata["napari_zonation"]
    # the profiles of record are the Profiles dock's shells, unchanged
    np.testing.assert_array_equal(md["profiles"]["value"], record["value"])
    described = md["profiles_described"]
    assert set(described["depth_geometry"]) == {"scaled"}

    seen = {}
    real = zcluster.cluster_crystals

    def spy(table, **kwargs):
        seen["profiles"] = kwargs.get("profiles")
        return real(table, **kwargs)

    monkeypatch.setattr(zcluster, "cluster_crystals", spy)
    clw = dock(viewer, "Cluster")
    clw.labels_combo.value = crystals
    run_and_wait(qtbot, clw)
    assert seen["profiles"] is not None
    assert set(seen["profiles"]["depth_geometry"]) == {"scaled"}

    # new profiles make the described ones stale: Cluster then embeds the new record
    assert prw.run(blocking=True) is not None, prw.status.text()
    assert "profiles_described" not in crystals.metadata["napari_zonation"]


def test_streamed_stages_read_each_lath_in_its_own_geometry_as_in_memory(tmp_path):
    """The whole-section stages read the geometry in each batch's window: four laths in four
    batches are described as the in-memory description of the same profiles describes them,
    and as painted (gradients in the scaled geometry)."""
    from napari_zonation.descriptors import describe_zoning
    from napari_zonation.profiles.geometry import NOT_TESTED
    from napari_zonation.streaming import iter_profiles, stream_stages

    lab, rho = _ellipse((220, 220), 90, 24)
    zone = _hinge_scaled(lab, rho, 0.3)
    labels = np.block([[lab, 2 * lab], [3 * lab, 4 * lab]]).astype(np.int32)
    img = _image(labels, np.block([[zone, zone], [zone, zone]]), 3)

    res = stream_stages(img, labels, 1.0, tmp_path / "auto", batch_px=200)
    assert res.stats["n_batches"] == 4
    got = res.crystals.set_index("label")
    assert list(got["depth_geometry"]) == ["scaled"] * 4
    assert list(got["zoning_type"]) == ["gradient"] * 4  # as painted
    # the same as the in-memory description of the same profiles
    prof = rim_profiles(img, labels, 1.0)
    ref = describe_zoning(profiles_in_own_geometry(prof, img, labels, 1.0)).set_index("label")
    assert list(got["zoning_type"]) == list(ref["zoning_type"])
    np.testing.assert_allclose(got["contrast"], ref["contrast"], rtol=1e-9)
    # the profiles of record stay the rim-distance shells
    record = pd.concat(list(iter_profiles(res.profile_files)), ignore_index=True)
    np.testing.assert_array_equal(record["value"], prof["value"])

    plain = stream_stages(img, labels, 1.0, tmp_path / "distance", batch_px=200,
                          depth_geometry="distance").crystals
    assert set(plain["geometry_note"]) == {NOT_TESTED}
    assert "gradient" not in set(plain["zoning_type"])  # the shells alone misread them
