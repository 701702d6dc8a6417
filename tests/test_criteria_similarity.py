"""Offline one-shot reference similarity and plain-text criteria (``describe_zoning``).

Expected values come from the generator's ground truth (types, rim and core levels) and from
profiles built here with known slopes and steps, not from the code's own output.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from llm_server import FakeOpenAIServer, openai_env, request_text

from napari_zonation import describe_zoning
from napari_zonation._validation import ZonationInputError
from napari_zonation.criteria import NEEDS_LLM, apply_criteria, parse_criterion
from napari_zonation.similarity import reference_similarity
from napari_zonation.synthetic import make_profiles


@pytest.fixture(scope="module")
def clean():
    """Low-noise profiles of the six classes (the offline type is right for nearly all)."""
    prof, truth = make_profiles(4, noise=0.004, seed=11, phase="mixed")
    return prof, truth, describe_zoning(prof, crystals=truth[["label", "phase"]])


# --------------------------------------------------------------------------------------------
# criteria


@pytest.mark.parametrize(
    "text, rule",
    [
        ("two plateaus", "n_plateaus == 2"),
        ("At least 3 plateaus.", "n_plateaus >= 3"),
        ("no steps", "n_steps == 0"),
        ("rim at least 10 % brighter than the core", "100 (rim - core) / |core| (%) >= 10"),
        ("slope steeper than 0.5 per µm", "max_slope_per_um > 0.5"),
        ("oscillatory", "zoning_type == oscillatory"),
        ("not oscillatory", "zoning_type != oscillatory"),
        ("has a dark rim", "zoning_type == rim_darker"),
        ("rim zone narrower than 10 um", "first step depth (um) < 10"),
        ("reverse zoning", "interpretation == reverse"),
        ("has a dark resorption band", None),
        ("core is patchy", None),
    ],
)
def test_vocabulary_parses_to_rules(text, rule):
    assert parse_criterion(text).rule == rule


def test_type_and_count_criteria_follow_the_truth(clean):
    prof, truth, table = clean
    out = apply_criteria(table, ["two plateaus", "oscillatory", "not oscillatory"])
    merged = out.merge(
        truth[["label", "zoning_type", "n_plateaus"]], on="label", suffixes=("", "_t")
    )
    right = merged["zoning_type"] == merged["zoning_type_t"]
    assert right.mean() > 0.9  # the premise: the offline type is right on clean profiles
    m = merged[right]
    assert (m["criterion_oscillatory"] == (m["zoning_type_t"] == "oscillatory")).all()
    assert (m["criterion_not_oscillatory"] == (m["zoning_type_t"] != "oscillatory")).all()
    two = m["n_plateaus"].astype(int) == m["n_plateaus_t"]
    assert (m.loc[two, "criterion_two_plateaus"] == (m.loc[two, "n_plateaus_t"] == 2)).all()
    assert out.attrs["criteria"]["two_plateaus"]["needs_llm"] is False


def test_relative_contrast_criterion_against_true_levels(clean):
    prof, truth, table = clean
    out = apply_criteria(table, {"bright": "rim at least 5 % brighter than the core"})
    t = truth.set_index("label")
    rel = 100 * (t["rim_value"] - t["core_value"]) / t["core_value"].abs()
    far = rel[(rel - 5).abs() > 2].index  # away from the threshold the measured levels agree
    got = out.set_index("label").loc[far, "criterion_bright"].astype(bool)
    assert (got == (rel[far] >= 5)).mean() >= 0.95
    assert out["criterion_bright_rationale"].str.contains(">= 5").all()


def test_slope_and_step_criteria_on_profiles_of_known_shape():
    d = np.arange(0.0, 60.0, 0.5)
    rows = []
    # label 1: a ramp of 1.0 per um over the first 20 um; 2: 0.2 per um; 3: a sharp step
    # at 8 um; 4: flat
    shapes = {
        1: 100 + np.clip(20 - d, 0, None) * 1.0,
        2: 100 + np.clip(30 - d, 0, None) * 0.2,
        3: np.where(d < 8, 130.0, 100.0),
        4: np.full_like(d, 100.0),
    }
    rng = np.random.default_rng(0)
    for lab, v in shapes.items():
        rows.append(
            pd.DataFrame({"label": lab, "distance_um": d, "value": v + rng.normal(0, 0.2, d.size)})
        )
    table = describe_zoning(
        pd.concat(rows),
        criteria=["slope steeper than 0.5 per um", "rim zone narrower than 12 um", "unzoned"],
    ).set_index("label")
    steep = table["criterion_slope_steeper_than_0_5_per_um"].astype(bool)
    assert steep[1] and not steep[2] and not steep[4]
    narrow = table["criterion_rim_zone_narrower_than_12_um"]
    assert bool(narrow[3]) and not bool(narrow[4])
    assert list(table["criterion_unzoned"].astype(bool)) == [False, False, False, True]


def test_a_criterion_outside_the_vocabulary_is_not_guessed(clean):
    _, _, table = clean
    with pytest.warns(UserWarning, match="offline vocabulary"):
        out = apply_criteria(table, ["has a dark resorption band"])
    assert out["criterion_has_a_dark_resorption_band"].isna().all()
    assert (out["criterion_has_a_dark_resorption_band_rationale"] == NEEDS_LLM).all()
    assert out.attrs["criteria"]["has_a_dark_resorption_band"]["needs_llm"] is True


# --------------------------------------------------------------------------------------------
# reference similarity


def test_same_class_ranks_above_the_others(clean):
    prof, truth, table = clean
    true = table.merge(truth[["label", "zoning_type"]], on="label", suffixes=("", "_t"))
    aps = []
    for i, lab in enumerate(true["label"]):
        sim = reference_similarity(table, int(lab), prof).to_numpy()
        assert sim[i] == pytest.approx(1.0)
        assert np.nanmin(sim) >= 0 and np.nanmax(sim) <= 1
        others = np.arange(len(true)) != i
        rel = (true["zoning_type_t"] == true["zoning_type_t"].iloc[i]).to_numpy()[others]
        order = np.argsort(-sim[others], kind="stable")
        hits = np.cumsum(rel[order])
        aps.append(np.mean(hits[rel[order]] / (np.flatnonzero(rel[order]) + 1)))
    assert np.mean(aps) >= 0.9


def test_similarity_is_nan_without_a_description_and_the_reference_must_exist(clean):
    prof, truth, table = clean
    t = table.copy()
    t.loc[0, "describe_status"] = "too_few_points"
    sim = reference_similarity(t, int(t["label"].iloc[1]), prof)
    assert np.isnan(sim.iloc[0]) and sim.iloc[1] == 1.0
    with pytest.raises(ZonationInputError, match="reference"):
        reference_similarity(t, int(t["label"].iloc[0]), prof)
    with pytest.raises(ZonationInputError, match="reference"):
        reference_similarity(t, 99999, prof)


def test_describe_zoning_offline_gives_similarity_and_criteria(clean):
    prof, truth, _ = clean
    ref = int(truth.loc[truth["zoning_type"] == "rim_darker", "label"].iloc[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = describe_zoning(prof, reference=ref, criteria=["two plateaus", "core is patchy"])
    assert {"reference_similarity", "criterion_two_plateaus", "criterion_core_is_patchy"} <= set(
        out.columns
    )
    best = out.sort_values("reference_similarity", ascending=False)["label"].iloc[1:4]
    kinds = truth.set_index("label").loc[best, "zoning_type"]
    assert (kinds == "rim_darker").all()


# --------------------------------------------------------------------------------------------
# with the LLM: both, side by side; one channel


def test_openai_backend_gives_offline_and_llm_verdicts_side_by_side(clean, monkeypatch, tmp_path):
    prof, truth, _ = clean
    ref = int(truth["label"].iloc[5])
    with FakeOpenAIServer() as srv:
        openai_env(monkeypatch, srv, api_key=None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out = describe_zoning(
                prof,
                backend="openai",
                reference=ref,
                criteria=["two plateaus", "core is patchy"],
                send_images=False,
                cache_dir=tmp_path,
            )
    for col in (
        "reference_similarity",
        "llm_matches_reference",
        "llm_reference_score",
        "criterion_two_plateaus",
        "llm_criterion_two_plateaus",
        "criterion_core_is_patchy",
        "llm_criterion_core_is_patchy",
    ):
        assert col in out.columns, col
    assert out["criterion_core_is_patchy"].isna().all()  # offline: needs the LLM
    assert out["llm_criterion_core_is_patchy"].notna().all()  # the LLM judged it
    assert (out["llm_status"] == "ok").all()


def test_the_llm_sees_the_channel_the_numbers_describe(monkeypatch, tmp_path):
    d = np.arange(0.0, 30.0)
    bse = pd.DataFrame(
        {"label": 1, "channel": "bse", "distance_um": d, "value": 100.0 + (d < 5) * 20}
    )
    fe = pd.DataFrame({"label": 1, "channel": "Fe", "distance_um": d, "value": 5000.0 + d})
    prof = pd.concat([bse, fe])
    with FakeOpenAIServer() as srv:
        openai_env(monkeypatch, srv, api_key=None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out = describe_zoning(prof, backend="openai", send_images=False, cache_dir=tmp_path)
            text = request_text(srv.requests[0]["body"])
    assert out["channel"].iloc[0] == "bse"
    pts = text.split("rim first: ")[1].split("\n")[0]
    assert "120" in pts and "5000" not in pts and "5029" not in pts
    assert out.attrs["llm_run"]["channel"] == "bse"
