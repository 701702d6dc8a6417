"""The randomised shape families: their truth is what their shapes are."""

from __future__ import annotations

import numpy as np
import pytest

from napari_zonation.synthetic_profiles import (
    FAMILIES,
    HELD_OUT_FAMILIES,
    PHYSICAL_FAMILIES,
    TRAIN_FAMILIES,
    make_random_profiles,
    random_shape,
)


def test_training_and_held_out_families_are_disjoint():
    assert set(TRAIN_FAMILIES).isdisjoint(HELD_OUT_FAMILIES)
    assert set(PHYSICAL_FAMILIES).isdisjoint(set(TRAIN_FAMILIES) | set(HELD_OUT_FAMILIES))
    assert set(TRAIN_FAMILIES) | set(HELD_OUT_FAMILIES) | set(PHYSICAL_FAMILIES) == set(FAMILIES)
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


def test_olivine_step_is_relaxed_with_a_composition_dependent_d():
    """A one-step Fo profile relaxed with D ~ 10^(3 XFe): its rim stays at the rim level,
    the core level is kept, it is monotonic, and it spreads farther on the Fe-rich (low Fo,
    fast) side of the step than on the Mg-rich side, as a constant D would not."""
    rng = np.random.default_rng(4)
    t = np.linspace(0.0, 1.0, 4001)
    wider_on_fast_side = 0
    for _ in range(6):
        s = random_shape("ol_step", rng, 200.0, 1.0)
        v = s.fn(t)
        lv = np.array([v[0], v[-1]])
        assert s.extra["quantity"] == "Fo" and s.n_plateaus == 2
        assert 65.0 <= lv.min() and lv.max() <= 91.0 and abs(lv[1] - lv[0]) >= 3.0
        direction = np.sign(lv[1] - lv[0])
        assert np.all(direction * np.diff(v) >= -1e-9)
        u = (v - lv[0]) / (lv[1] - lv[0])  # 0 at the rim level, 1 at the core level
        mid = t[np.argmin(np.abs(u - 0.5))]
        rim_side = mid - t[np.argmin(np.abs(u - 0.1))]
        core_side = t[np.argmin(np.abs(u - 0.9))] - mid
        fast_is_rim = lv[0] < lv[1]  # the lower Fo (higher XFe) diffuses faster
        if s.extra["w_fast"] > 0.01:  # resolved on this grid
            wider_on_fast_side += (rim_side > core_side) == fast_is_rim
            assert s.extra["d_ratio"] == pytest.approx(10 ** (0.03 * abs(lv[1] - lv[0])), rel=1e-6)
    assert wider_on_fast_side >= 3


def test_physical_bands_alternate():
    rng = np.random.default_rng(2)
    for fam in ("bands_square", "bands_sawtooth"):
        for _ in range(4):
            s = random_shape(fam, rng, 150.0, 1.0)
            assert s.zoning_type == "oscillatory" and s.extra["quantity"] == "An"
            t = np.linspace(0.0, 1.0, 3001)
            v = s.fn(t)
            zone = t <= 1.0 - 1e-9
            # at least 2.5 periods: at least four crossings of the bands' middle level
            mid = 0.5 * (v[zone].max() + v[zone].min())
            crossings = np.count_nonzero(np.diff(np.sign(v[zone] - mid)) != 0)
            assert crossings >= 4
