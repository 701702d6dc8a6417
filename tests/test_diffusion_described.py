"""fit_as_described: each crystal's described step is what is fitted (generator's truth)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_zonation import describe_zoning
from napari_zonation.diffusion.described import (
    NOT_FITTED,
    fit_as_described,
    plan_from_description,
)
from napari_zonation.synthetic import make_profiles


def test_plan_follows_the_description():
    prof, truth = make_profiles(n_per_type=1, noise=0.01, seed=4)
    zoning = pd.DataFrame({
        "label": truth["label"],
        "zoning_type": ["unzoned", "rim_brighter", "rim_darker", "gradient", "oscillatory",
                        "multi_step"],
        "step_positions_um": [(), (33.0,), (23.0,), (), (), (18.0, 39.0, 58.0)],
        "plateau_levels": [(1.0,), (2.0, 1.0), (1.0, 2.0), (), (), (1.0, 2.0, 3.0, 4.0)],
    })
    plan = plan_from_description(prof, zoning).set_index("label")
    assert list(plan["plan"]) == ["none", "one", "one", "none", "none", "outer"]
    outer = plan.iloc[5]
    assert outer["described_step_um"] == 18.0 and outer["cut_um"] == 0.5 * (18.0 + 39.0)
    assert outer["seed_levels"] == (1.0, 2.0)
    assert plan.iloc[0]["describe_status"] == "Describe found no step: not fitted"
    assert plan.iloc[1]["describe_status"] == "fitted the step Describe found at 33 µm"


def test_fits_the_described_steps_of_synthetic_profiles():
    prof, truth = make_profiles(n_per_type=2, noise=0.01, seed=7)
    zoning = describe_zoning(prof)
    fit = fit_as_described(prof, zoning, diffusivity_um2_s=1e-3, n_samples=50)
    fit = fit.merge(zoning[["label", "zoning_type"]], on="label").set_index("label")
    tr = truth.set_index("label")
    assert len(fit) == len(truth)
    unzoned = fit[fit["zoning_type"] == "unzoned"]
    assert len(unzoned) and (unzoned["fit_status"] == NOT_FITTED).all()
    assert unzoned["sqrt_dt_um"].isna().all()
    one = fit[fit["zoning_type"].isin(["rim_brighter", "rim_darker"])
              & tr.loc[fit.index, "zoning_type"].isin(["rim_brighter", "rim_darker"])]
    assert len(one) >= 4
    for label, row in one.iterrows():
        true_step = tr.loc[label, "step_positions_um"][0]
        assert row["fit_status"] == "ok"
        assert abs(row["step_position_um"] - true_step) < 2.0
        # the relaxation width is the true one within the fit's resolution
        assert abs(row["sqrt_dt_um"] - tr.loc[label, "sqrt_dt_um"]) < 1.0
    assert np.all(fit["describe_status"].str.len() > 0)


def test_crystals_without_a_described_step_keep_their_label_type():
    """When no crystal has a step to fit, the table is the not-fitted rows alone, and its
    labels keep the profiles' integer type (they are merged into a layer's features)."""
    prof, truth = make_profiles(n_per_type=1, noise=0.01, seed=4)
    zoning = pd.DataFrame({"label": truth["label"], "zoning_type": "gradient",
                           "step_positions_um": [()] * len(truth)})
    fit = fit_as_described(prof, zoning, diffusivity_um2_s=1e-3)
    assert (fit["fit_status"] == NOT_FITTED).all() and len(fit) == len(truth)
    assert fit["label"].dtype == prof["label"].dtype
    assert fit["describe_status"].eq("Describe: gradient, no step: not fitted").all()


def test_a_crystal_described_in_the_scaled_geometry_is_not_seeded_from_its_positions():
    """Positions read on the relative radius are not distances from the rim: the step is
    then fitted from the rim-distance profile itself, and its true position is found."""
    prof, truth = make_profiles(n_per_type=1, noise=0.01, seed=4)
    step = truth.index[truth["zoning_type"] == "rim_darker"][0]
    label = truth.loc[step, "label"]
    true_step = truth.loc[step, "step_positions_um"][0]
    zoning = pd.DataFrame({
        "label": [label], "zoning_type": ["rim_darker"],
        # a scaled-depth position far from the rim-distance one
        "step_positions_um": [(true_step + 15.0,)], "plateau_levels": [(1.0, 2.0)],
        "depth_geometry": ["scaled"],
    })
    plan = plan_from_description(prof[prof["label"] == label], zoning).set_index("label")
    assert plan.loc[label, "plan"] == "undescribed"
    assert "scaled" in plan.loc[label, "describe_status"]
    assert not np.isfinite(plan.loc[label, "described_step_um"])
    fit = fit_as_described(prof[prof["label"] == label], zoning, diffusivity_um2_s=1e-3,
                           n_samples=50).set_index("label")
    assert fit.loc[label, "fit_status"] == "ok"
    assert abs(fit.loc[label, "step_position_um"] - true_step) < 2.0
    zoning["depth_geometry"] = "distance"  # the same row in the distance geometry is seeded
    assert plan_from_description(prof, zoning).set_index("label").loc[label, "plan"] == "one"
