"""The randomised shape families: their truth is what their shapes are."""

from __future__ import annotations

import numpy as np
import pytest

from napari_zonation.synthetic_profiles import (
    FAMILIES,
    HELD_OUT_FAMILIES,
    TRAIN_FAMILIES,
    make_random_profiles,
    random_shape,
)


def test_training_and_held_out_families_are_disjoint():
    assert set(TRAIN_FAMILIES).isdisjoint(HELD_OUT_FAMILIES)
    assert set(TRAIN_FAMILIES) | set(HELD_OUT_FAMILIES) == set(FAMILIES)
    with pytest.raises(ValueError, match="family"):
        random_shape("nope", np.random.default_rng(0), 50.0, 1.0)


def test_profiles_and_truth_agree():
    prof, truth = make_random_profiles(6, families=tuple(FAMILIES), seed=3)
    assert len(truth) == 6 * len(FAMILIES)
    assert truth["noise"].between(0.005, 0.05).all()
    for _, t in truth.iterrows():
        g = prof[prof["label"] == t["label"]]
        assert len(g) == t["n_points"]
        assert np.all(np.diff(g["distance_um"]) > 0)
        # the noise is white with the drawn sigma: the scatter of first differences
        if t["n_points"] >= 30 and t["zoning_type"] in ("unzoned",):
            est = np.std(np.diff(g["value"])) / np.sqrt(2)
            assert est == pytest.approx(t["sigma_true"], rel=0.5)
        assert bool(g["sigma"].notna().all()) == t["has_sigma"]
    steps = truth[truth["zoning_type"].isin(["rim_brighter", "rim_darker"])]
    assert (steps["n_plateaus"] == 2).all()
    assert (
        np.sign(steps["rim_value"] - steps["core_value"])
        == np.where(steps["zoning_type"] == "rim_brighter", 1, -1)
    ).all()
    multi = truth[truth["zoning_type"] == "multi_step"]
    assert multi["n_plateaus"].between(3, 5).all()
    osc = truth[truth["zoning_type"] == "oscillatory"]
    # at least 2.5 bands over the zone and 4.5 points per band
    assert (osc["period_um"] >= 4.5 * osc["spacing_um"] - 1e-9).all()


def test_a_shape_is_its_family():
    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 1.0, 2001)
    flat = random_shape("flat", rng, 100.0, 1.0)
    assert np.ptp(flat.fn(t)) == 0
    grad = random_shape("gradient_full", rng, 100.0, 1.0)
    assert np.all(np.diff(grad.fn(t)) > 0)  # monotonic all the way to the deepest point
    hinge = random_shape("gradient_hinge", rng, 100.0, 1.0)
    v = hinge.fn(t)
    assert np.ptp(v[-200:]) == 0 and np.ptp(v[:200]) > 0  # a core plateau, a rim slope
    held = random_shape("step_rim_held", rng, 100.0, 1.0)
    assert held.fn(np.array([0.0]))[0] == pytest.approx(0.0, abs=1e-12)  # the held rim
    assert held.fn(np.array([1.0]))[0] == pytest.approx(1.0, abs=1e-3)
