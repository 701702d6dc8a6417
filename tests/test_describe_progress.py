"""The Describe zoning dock: one core call with ``progress=`` (every crystal reported on the
progress bar) and the core's warnings shown to the user, not silenced."""

from __future__ import annotations

import pandas as pd
import pytest
from napari_helpers import PX, dock, make_sample, segmented

from napari_zonation import descriptors
from napari_zonation.profiles import profiles_in_own_geometry, rim_profiles
from napari_zonation.widgets._base import Progress

pytest.importorskip("napari")


@pytest.fixture(scope="module")
def sample():
    return make_sample()


def _drive(gen):
    """Run a ``_work`` generator to its end: the messages it yielded and its result."""
    yielded = []
    try:
        while True:
            yielded.append(next(gen))
    except StopIteration as stop:
        return yielded, stop.value


def _params(viewer, sample):
    _, crystals, _ = segmented(viewer, sample)
    dsw = dock(viewer, "Describe zoning")
    p = dsw._collect()
    prof = rim_profiles(sample.image, crystals.data, PX)
    p["prof"] = prof
    return dsw, p, prof


def test_offline_describe_reports_every_crystal(make_napari_viewer, sample):
    viewer = make_napari_viewer()
    dsw, p, prof = _params(viewer, sample)
    yielded, result = _drive(dsw._work(p))
    n = prof["label"].nunique()
    steps = [m for m in yielded if isinstance(m, Progress)]
    # one report per crystal, in order, against the number of crystals
    assert [(m.done, m.total) for m in steps] == [(i, n) for i in range(1, n + 1)]
    assert steps[-1].text == f"Described {n} of {n} crystals…"
    # the one call describes what describe_zoning describes, each crystal in the geometry
    # its image shows (the shells here are of the dock's own image and labels)
    assert p["own_geometry"]
    table = p["table"]
    cry = None if table is None else table[table["label"].isin(prof["label"])]
    own = profiles_in_own_geometry(prof, p["image"], p["labels"], PX)
    direct = descriptors.describe_zoning(own, crystals=cry, quantity=p["quantity"])
    got = result["table"]
    assert list(got["label"]) == list(direct["label"])
    assert list(got["zoning_type"]) == list(direct["zoning_type"])
    # the progress bar ends full on the crystal count when run through the dock
    dsw._on_yielded(steps[-1])
    assert dsw.progress_bar.maximum() == n and dsw.progress_bar.value() == n


def test_core_warnings_are_shown(make_napari_viewer, sample):
    viewer = make_napari_viewer()
    dsw, p, prof = _params(viewer, sample)
    # two channels: the core describes the first and warns which; the dock must say so
    p["prof"] = pd.concat(
        [prof.assign(channel="Fe"), prof.assign(channel="Mg")], ignore_index=True
    )
    with pytest.warns(UserWarning, match="channels") as direct:
        descriptors.describe_zoning(p["prof"])
    assert direct  # the core does warn
    _, result = _drive(dsw._work(p))
    assert any("channels" in note and "'Fe'" in note for note in result["notes"])
    dsw._apply(p, result)
    assert "channels" in dsw.status.text()
