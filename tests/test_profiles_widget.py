"""The Profiles dock against the core (run under Xvfb, as tests/test_widgets.py).

Ground truth is the core: a re-profiled traverse must be the row ``profiles.traverse_table``
makes and the profile ``profiles.traverse_profiles`` samples for the same ends; the dock's
form defaults must be the core functions' defaults; a warning the core raises must reach the
status line and napari's notifications.
"""

from __future__ import annotations

import inspect
from dataclasses import fields

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.gui
napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_helpers import PX, dock, make_sample, segmented  # noqa: E402

from napari_zonation import profiles  # noqa: E402


@pytest.fixture(scope="module")
def sample():
    return make_sample()


def _traverse_dock(viewer, sample, width_um=3.0):
    _, crystals, _ = segmented(viewer, sample)
    prw = dock(viewer, "Profiles")
    prw.method.setCurrentText("traverse")
    prw.width_um.setValue(width_um)
    assert prw.run(blocking=True) is not None, prw.status.text()
    return prw, crystals, viewer.layers["bse traverses"]


def _move(trav_layer, i, rim, core):
    data = list(trav_layer.data)
    data[i] = np.array([rim, core], float)
    trav_layer.data = data
    return (np.asarray(v, float) for v in trav_layer.data[i])  # as napari stores them


def test_retraversed_rows_are_the_cores(make_napari_viewer, sample):
    width_um = 4.5
    prw, crystals, trav_layer = _traverse_dock(make_napari_viewer(), sample, width_um)
    md = crystals.metadata["napari_zonation"]
    before = md["traverses"].copy()
    label = int(before["label"].iloc[0])
    rim = before[["rim_row", "rim_col"]].to_numpy(float)[0]
    core = before[["core_row", "core_col"]].to_numpy(float)[0]
    rim, new_core = _move(trav_layer, 0, rim, rim + 0.7 * (core - rim) + np.array([1.5, -1.0]))
    assert prw.retraverse(trav_layer) == [label]

    md = crystals.metadata["napari_zonation"]
    trav = md["traverses"]
    expected = profiles.traverse_table([label], [rim], [new_core], PX)
    got = trav[trav["label"] == label].reset_index(drop=True)
    pd.testing.assert_frame_equal(got[expected.columns], expected, check_dtype=False)
    assert got["length_um"].iloc[0] == pytest.approx(np.hypot(*(new_core - rim)) * PX)
    # the other traverses are the rows placed by the core, unchanged and in their order
    pd.testing.assert_frame_equal(
        trav[trav["label"] != label].reset_index(drop=True),
        before[before["label"] != label].reset_index(drop=True),
        check_dtype=False,
    )
    assert list(trav["label"]) == list(before["label"])

    prof = md["profiles"]
    want = profiles.traverse_profiles(
        sample.image, expected, PX, width_um=width_um, labels=np.asarray(crystals.data)
    )
    have = prof[prof["label"] == label].reset_index(drop=True)
    assert len(have) == len(want) > 5
    for col in ("distance_um", "value"):
        np.testing.assert_allclose(have[col], want[col], rtol=1e-12)


def test_a_core_warning_reaches_the_status_line(make_napari_viewer, sample):
    from napari.utils.notifications import notification_manager

    prw, crystals, trav_layer = _traverse_dock(make_napari_viewer(), sample)
    trav = crystals.metadata["napari_zonation"]["traverses"]
    label = int(trav["label"].iloc[0])
    rim = trav[["rim_row", "rim_col"]].to_numpy(float)[0]
    core = trav[["core_row", "core_col"]].to_numpy(float)[0]
    # the core end dragged far past the image edge: the core drops those samples and warns
    past = rim + 40.0 * (core - rim) / np.hypot(*(core - rim)) * max(sample.image.shape)
    rim, past = _move(trav_layer, 0, rim, past)
    with pytest.warns(UserWarning, match="outside the image"):  # what the core says ...
        profiles.traverse_profiles(
            sample.image, profiles.traverse_table([label], [rim], [past], PX), PX
        )
    n_before = len(notification_manager.records)
    assert prw.retraverse(trav_layer) == [label]
    text = prw.status.text()  # ... the dock shows
    assert f"Re-profiled crystal(s) {label}" in text
    assert "Warning:" in text and "outside the image dropped" in text
    new = [str(n.message) for n in notification_manager.records[n_before:]]
    assert any("outside the image dropped" in m for m in new), new


def test_form_defaults_are_the_core_defaults(make_napari_viewer):
    prw = dock(make_napari_viewer(), "Profiles")

    def default(fn, name):
        return inspect.signature(fn).parameters[name].default

    assert prw.width_um.value() == default(profiles.rim_profiles, "width_um")
    assert prw.method.currentText() == default(profiles.rim_profiles, "method")
    assert prw.contacts.currentText() == default(profiles.rim_profiles, "contacts")
    assert prw.line_width.value() == default(profiles.line_profiles, "width_um")
    # the spot size is a diameter; the core takes the median in a disk of radius_um
    assert prw.spot_um.value() == 2 * default(profiles.spot_values, "radius_um")


def test_metadata_keys_are_their_names():
    from napari_zonation.widgets._layers import KEY, ROLE, key_names

    assert all(getattr(KEY, f.name) == f.name for f in fields(KEY))
    assert len(set(key_names())) == len(fields(KEY))
    assert ROLE.rim_band == "rim band"
    assert all(getattr(ROLE, f.name) == f.name for f in fields(ROLE) if f.name != "rim_band")
