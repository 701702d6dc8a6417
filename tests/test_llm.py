"""LLM descriptors against a real fake OpenAI-compatible server on 127.0.0.1 (no network)."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from llm_server import (
    FakeOpenAIServer,
    classify_points,
    decode_data_url,
    default_answer,
    openai_env,
    request_images,
    request_schema,
    request_text,
    user_parts,
)
from scipy import ndimage

from napari_zonation._validation import ZonationInputError
from napari_zonation.llm import (
    LLM_ZONING_TYPES,
    MAX_PROFILE_POINTS,
    PROMPT_VERSION,
    default_cache_dir,
    describe_llm,
    estimate_llm_cost,
    normalize_criteria,
    response_schema,
    validate_answer,
)
from napari_zonation.synthetic import make_profiles, make_thin_section

KEY = "sk-test-SECRET-0123456789abcdef"
STEP_TYPES = ("unzoned", "rim_brighter", "rim_darker")


@pytest.fixture(scope="module")
def profiles():
    """Step-zoned and unzoned profiles whose type is readable from rim and core levels."""
    return make_profiles(2, zoning_types=STEP_TYPES, noise=0.003, seed=3)


@pytest.fixture
def server(monkeypatch):
    """A running fake server, with OPENAI_BASE_URL / OPENAI_API_KEY pointing at it."""
    monkeypatch.delenv("NAPARI_ZONATION_CACHE_DIR", raising=False)
    with FakeOpenAIServer(slow_s=5.0) as srv:
        openai_env(monkeypatch, srv, api_key=KEY)
        yield srv


def _run(prof, tmp_path, **kw):
    kw.setdefault("timeout", 2.0)
    kw.setdefault("max_retries", 1)
    return describe_llm(prof, cache_dir=tmp_path / "cache", **kw)


def _png(url: str) -> np.ndarray:
    from matplotlib.image import imread

    return imread(io.BytesIO(decode_data_url(url)), format="png")


# --------------------------------------------------------------------------------------------
# requests and answers
# --------------------------------------------------------------------------------------------


def test_requests_carry_plot_schema_and_answers_land_by_label(profiles, server, tmp_path):
    prof, truth = profiles
    out = _run(prof, tmp_path)

    assert server.problems == []
    assert server.n_requests == len(truth)
    assert sorted(r["label"] for r in server.requests) == sorted(truth["label"])
    for rec in server.requests:
        body = rec["body"]
        assert rec["headers"]["authorization"] == f"Bearer {KEY}"
        rf = body["response_format"]
        assert rf["type"] == "json_schema" and rf["json_schema"]["strict"] is True
        assert set(rf["json_schema"]["schema"]["required"]) >= {"zoning_type", "confidence"}
        assert body["temperature"] == 0 and "seed" in body
        images = request_images(body)
        assert len(images) == 1  # the profile plot; no crop without image and labels
        plot = _png(images[0])
        assert plot.ndim == 3 and min(plot.shape[:2]) > 100

    # The fake reads each crystal's numbers from its prompt: its verdict equals the truth only
    # if every label's own profile was sent and every answer landed in that label's row.
    merged = out.merge(truth[["label", "zoning_type"]], on="label")
    assert (merged["llm_status"] == "ok").all()
    assert (merged["llm_zoning_type"] == merged["zoning_type"]).all()
    assert (
        merged["llm_rationale"] == [f"fake answer for label {x}" for x in merged["label"]]
    ).all()
    assert set(out["llm_zoning_type"]) <= set(LLM_ZONING_TYPES)
    assert (out["llm_prompt_version"] == PROMPT_VERSION).all()
    assert (out["llm_model"] == "gpt-4o-mini").all()
    assert (out["llm_error"] == "").all()
    levels = [json.loads(s) for s in out["llm_plateau_levels"]]
    assert [len(v) for v in levels] == list(out["llm_n_plateaus"])
    # rim_brighter: the first (rim) level is above the core level, in the profile's own units
    for lv, kind in zip(levels, merged["zoning_type"], strict=True):
        if kind == "rim_brighter":
            assert lv[0] > lv[1]
        elif kind == "rim_darker":
            assert lv[0] < lv[1]


def test_long_profiles_are_downsampled_by_averaging(server, tmp_path):
    d = np.arange(0.0, 500.0, 1.0)
    v = np.where(d < 100, 200.0, 150.0)  # bright rim over the first 100 um
    prof = pd.DataFrame({"label": 1, "distance_um": d, "value": v})
    out = _run(prof, tmp_path)
    text = "\n".join(p["text"] for p in user_parts(server.requests[0]["body"]) if "text" in p)
    pts = json.loads(text.split("rim first: ")[1].split("\n")[0])
    pts = np.array(pts)
    assert 32 <= len(pts) <= MAX_PROFILE_POINTS
    assert pts[0, 0] < 10 and pts[-1, 0] > 490
    # bin means of a step stay between the two levels and keep the profile's mean
    assert pts[:, 1].min() >= 150 and pts[:, 1].max() <= 200
    assert abs(pts[:, 1].mean() - v.mean()) < 1.0
    assert out.loc[0, "llm_zoning_type"] == "rim_brighter"


def test_crops_show_the_right_crystal_outlined(server, tmp_path):
    sample = make_thin_section((320, 320), n_crystals=4, seed=2)
    inside = sample.truth[~sample.truth["touches_border"].astype(bool)]
    labs = [int(x) for x in inside["label"]]
    assert len(labs) >= 2
    d = np.arange(0.0, 30.0)
    prof = pd.concat(
        [
            pd.DataFrame({"label": lab, "distance_um": d, "value": sample.true_profile(lab, d)})
            for lab in labs
        ]
    )
    out = _run(prof, tmp_path, image=sample.image, labels=sample.labels)
    assert (out["llm_status"] == "ok").all()
    assert server.problems == []
    for lab in labs:
        (rec,) = server.requests_for(lab)
        images = request_images(rec["body"])
        assert len(images) == 2  # plot, then crop
        crop = _png(images[1])[..., :3]
        red = (crop[..., 0] > 0.99) & (crop[..., 1] < 0.01) & (crop[..., 2] < 0.01)
        assert red.any()
        # the red outline encloses this crystal's area (independent: its pixel count)
        assert 64 <= max(crop.shape[:2]) <= 384  # not resampled: pixels are image pixels
        enclosed = ndimage.binary_fill_holes(red).sum()
        area = int((sample.labels == lab).sum())
        assert 0.9 * area <= enclosed <= 1.1 * area


def test_plots_do_not_depend_on_earlier_plots(profiles):
    from napari_zonation.llm.render import ProfilePlotter as _Plotter

    prof, truth = profiles
    a, b = (int(x) for x in truth["label"].iloc[[0, -1]])
    with_sigma = prof.assign(sigma=2.0)
    first = _Plotter()(prof, a, "t")
    reused = _Plotter()
    reused(with_sigma, b, "other")  # a band, other limits and title
    assert reused(prof, a, "t") == first
    assert reused(prof, b, "t") != first


def test_send_images_false_sends_text_only(profiles, server, tmp_path):
    prof, truth = profiles
    out = _run(prof, tmp_path, send_images=False)
    assert (out["llm_status"] == "ok").all()
    assert all(request_images(r["body"]) == [] for r in server.requests)


def test_table_rows_without_profile_and_descriptors_in_prompt(profiles, server, tmp_path):
    prof, truth = profiles
    table = truth[["label", "phase", "core_value", "rim_value"]].copy()
    table.loc[len(table)] = {"label": 999, "phase": "olivine", "core_value": 1, "rim_value": 2}
    table["llm_zoning_type"] = "stale"  # an earlier run's column is replaced, not duplicated
    out = _run(prof, tmp_path, table=table, send_images=False)
    assert list(out.columns).count("llm_zoning_type") == 1
    assert list(out["label"]) == list(table["label"])
    assert out.set_index("label").loc[999, "llm_status"] == "error"
    assert "no profile" in out.set_index("label").loc[999, "llm_error"]
    assert (out[out["label"] != 999]["llm_status"] == "ok").all()
    assert server.n_requests == len(truth)
    lab = int(truth["label"].iloc[0])
    (rec,) = server.requests_for(lab)
    text = "\n".join(p["text"] for p in user_parts(rec["body"]) if "text" in p)
    core = float(truth.set_index("label").loc[lab, "core_value"])
    assert f"core_value={core:.4g}" in text and "phase=olivine" in text


# --------------------------------------------------------------------------------------------
# cache
# --------------------------------------------------------------------------------------------


def test_cache_second_run_makes_no_request(profiles, server, tmp_path):
    prof, truth = profiles
    first = _run(prof, tmp_path)
    n = server.n_requests
    assert n == len(truth) and not first["llm_cached"].any()
    files = list((tmp_path / "cache").glob("*.json"))
    assert len(files) == len(truth)

    second = _run(prof, tmp_path)
    assert server.n_requests == n  # nothing asked again
    assert second["llm_cached"].all()
    cols = [c for c in first.columns if c.startswith("llm_") and c != "llm_cached"]
    pd.testing.assert_frame_equal(first[cols], second[cols])

    # an unreadable cache file is asked again, the others are not
    files[0].write_text("{not json")
    _run(prof, tmp_path)
    assert server.n_requests == n + 1

    # another model is another cache key
    _run(prof, tmp_path, model="other-model")
    assert server.n_requests == 2 * n + 1


def test_cache_dir_from_environment(profiles, server, tmp_path, monkeypatch):
    assert default_cache_dir().parts[-2:] == ("napari-zonation", "llm")
    prof, _ = profiles
    one = prof[prof["label"] == prof["label"].iloc[0]]
    monkeypatch.setenv("NAPARI_ZONATION_CACHE_DIR", str(tmp_path / "envcache"))
    describe_llm(one, timeout=2.0)
    assert len(list((tmp_path / "envcache").glob("*.json"))) == 1
    describe_llm(one, timeout=2.0)
    assert server.n_requests == 1


# --------------------------------------------------------------------------------------------
# faults
# --------------------------------------------------------------------------------------------


def test_faults_mark_only_their_crystal_and_rerun_retries_only_failures(server, tmp_path):
    prof, truth = make_profiles(4, zoning_types=STEP_TYPES, noise=0.003, seed=5)
    labs = [int(x) for x in truth["label"]]
    l429, l500, ljson, ltrunc, lslow, lref, lschema = labs[:7]
    once_json, once_trunc, once_schema, once_slow = labs[7:11]
    server.slow_s = 30.0  # cut short when the server stops
    server.fault_for_label(l429, "429", times=1)
    server.fault_for_label(l500, "500", times=None)
    server.fault_for_label(ljson, "non_json", times=None)
    server.fault_for_label(ltrunc, "truncated", times=None)
    server.fault_for_label(lslow, "slow", times=None)
    server.fault_for_label(lref, "refusal")
    server.fault_for_label(lschema, "bad_schema", times=None)
    # one-off faults are repaired within the run
    server.fault_for_label(once_json, "non_json")
    server.fault_for_label(once_trunc, "truncated")
    server.fault_for_label(once_schema, "bad_schema")
    server.fault_for_label(once_slow, "slow")

    out = _run(
        prof, tmp_path, timeout=0.5, max_timeout=1.0, max_retries=1, max_concurrency=4
    ).set_index("label")
    status = out["llm_status"]
    assert status[l429] == "ok" and len(server.requests_for(l429)) == 2  # 429 then retried
    assert status[l500] == "error" and "500" in out.loc[l500, "llm_error"]
    assert len(server.requests_for(l500)) == 2  # one retry
    assert status[ljson] == "invalid_json" and len(server.requests_for(ljson)) == 2
    assert status[ltrunc] == "truncated" and len(server.requests_for(ltrunc)) == 2
    assert status[lslow] == "timeout" and len(server.requests_for(lslow)) == 3
    assert status[lref] == "refused" and len(server.requests_for(lref)) == 1
    assert status[lschema] == "schema_error" and "zoning_type" in out.loc[lschema, "llm_error"]
    for lab in (once_json, once_trunc, once_schema, once_slow):
        assert status[lab] == "ok" and len(server.requests_for(lab)) == 2
    # the second try after a cut answer asks for less: a shorter instruction and schema
    first, second = (r["body"] for r in server.requests_for(ltrunc))
    assert "too long" in request_text(second) and "too long" not in request_text(first)
    assert (
        request_schema(second)["properties"]["rationale"]["maxLength"]
        < request_schema(first)["properties"]["rationale"]["maxLength"]
    )
    failed = [l500, ljson, ltrunc, lslow, lref, lschema]
    others = [x for x in labs if x not in failed]
    assert (status[others] == "ok").all()
    assert out.loc[failed, "llm_zoning_type"].isna().all()
    assert out.loc[failed, "llm_confidence"].isna().all()
    assert (out.loc[failed, "llm_error"] != "").all()
    truth_i = truth.set_index("label")
    assert (out.loc[others, "llm_zoning_type"] == truth_i.loc[others, "zoning_type"]).all()

    server.clear_faults()
    before = server.n_requests
    again = _run(prof, tmp_path, timeout=1.5, max_retries=1).set_index("label")
    new = server.requests[before:]
    assert sorted(r["label"] for r in new) == sorted(failed)
    assert (again["llm_status"] == "ok").all()
    assert (again.loc[failed, "llm_cached"] == False).all()  # noqa: E712
    assert again.loc[others, "llm_cached"].all()


def test_concurrency_is_bounded_and_progress_reported(profiles, monkeypatch, tmp_path):
    prof, truth = profiles
    calls = []
    with FakeOpenAIServer(delay_s=0.1) as srv:
        openai_env(monkeypatch, srv, api_key=KEY)
        out = _run(
            prof,
            tmp_path,
            send_images=False,
            max_concurrency=2,
            progress=lambda d, t: calls.append((d, t)),
        )
        assert srv.max_in_flight <= 2
    n = len(truth)
    assert (out["llm_status"] == "ok").all()
    assert calls == [(i, n) for i in range(1, n + 1)]


def test_model_without_temperature_falls_back_to_default(profiles, monkeypatch, tmp_path):
    prof, truth = profiles
    with FakeOpenAIServer(reject_temperature=True) as srv:
        openai_env(monkeypatch, srv, api_key=KEY)
        out = _run(prof, tmp_path, max_concurrency=1, send_images=False)
        bodies = [r["body"] for r in srv.requests]
    assert (out["llm_status"] == "ok").all()
    assert "temperature" in bodies[0]  # asked once with temperature 0, then without
    assert all("temperature" not in b for b in bodies[1:])
    assert len(bodies) == len(truth) + 1


def test_progress_exception_cancels_and_keeps_received(profiles, server, tmp_path):
    prof, truth = profiles

    def stop(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(prof, tmp_path, max_concurrency=1, progress=stop)
    assert server.n_requests < len(truth)
    kept = len(list((tmp_path / "cache").glob("*.json")))
    assert kept >= 2
    before = server.n_requests
    out = _run(prof, tmp_path)
    assert (out["llm_status"] == "ok").all()
    assert server.n_requests - before == len(truth) - kept


# --------------------------------------------------------------------------------------------
# reference and criteria
# --------------------------------------------------------------------------------------------


def _reference_answer(body, label):
    """Match when the target's reading equals the reference's (first points list)."""
    ans = default_answer(body, label)
    text = "\n".join(p["text"] for p in user_parts(body) if "text" in p)
    ref_kind = classify_points(_points(text))["zoning_type"]  # the first list: the reference
    ans["matches_reference"] = ans["zoning_type"] == ref_kind
    ans["reference_score"] = 0.9 if ans["matches_reference"] else 0.1
    return ans


def _points(text: str) -> list:
    return json.loads(text.split("rim first: ")[1].split("\n")[0])


def test_reference_example_comes_first(profiles, monkeypatch, tmp_path):
    prof, truth = profiles
    ref = int(truth.loc[truth["zoning_type"] == "rim_darker", "label"].iloc[0])
    note = "reverse-zoned rim, the kind I want"
    with FakeOpenAIServer(answer=_reference_answer) as srv:
        openai_env(monkeypatch, srv, api_key=KEY)
        out = _run(prof, tmp_path, reference=ref, reference_note=note)
        reqs = list(srv.requests)
        assert srv.problems == []
    assert len(reqs) == len(truth)
    (own,) = [r for r in reqs if r["label"] == ref]
    own_points = _points(user_parts(own["body"])[2]["text"])  # the reference as a target
    ref_plot = user_parts(reqs[0]["body"])[1]["image_url"]["url"]
    for rec in reqs:
        parts = user_parts(rec["body"])
        # 0: the reference's text with the note, 1: its plot, 2: the crystal to describe
        assert parts[0]["type"] == "text"
        assert parts[0]["text"].startswith(f"Reference crystal: label {ref}.")
        assert note in parts[0]["text"]
        assert _points(parts[0]["text"]) == own_points
        assert parts[1]["type"] == "image_url" and parts[1]["image_url"]["url"] == ref_plot
        assert parts[2]["text"].startswith(f"Crystal to describe: label {rec['label']}.")
        assert parts[3]["type"] == "image_url" and parts[3]["image_url"]["url"] != ref_plot
        assert sum("Reference crystal" in p.get("text", "") for p in parts) == 1
        schema = request_schema(rec["body"])
        assert {"matches_reference", "reference_score"} <= set(schema["required"])
    merged = out.merge(truth[["label", "zoning_type"]], on="label")
    expect = merged["zoning_type"] == "rim_darker"
    assert (merged["llm_matches_reference"].astype(bool) == expect).all()
    assert np.allclose(merged["llm_reference_score"], np.where(expect, 0.9, 0.1))


def test_reference_must_have_a_profile(profiles, server, tmp_path):
    prof, _ = profiles
    with pytest.raises(ZonationInputError, match="reference"):
        _run(prof, tmp_path, reference=12345)


def _criteria_answer(body, label):
    ans = default_answer(body, label)
    for slug in ans.get("criteria", {}):
        ans["criteria"][slug] = {"met": label % 2 == 0, "rationale": f"{slug} for {label}"}
    return ans


@pytest.mark.parametrize(
    "criteria, slugs",
    [
        (
            {"Bright rim": "The rim is brighter than the core.", "thick": "Rim wider than 10 um."},
            ["bright_rim", "thick"],
        ),
        (
            ["Rim is brighter than the core", "Rim is brighter than the core"],
            ["rim_is_brighter_than_the_core", "rim_is_brighter_than_the_core_2"],
        ),
    ],
)
def test_criteria_become_columns(profiles, monkeypatch, tmp_path, criteria, slugs):
    prof, truth = profiles
    assert list(normalize_criteria(criteria)) == slugs
    with FakeOpenAIServer(answer=_criteria_answer) as srv:
        openai_env(monkeypatch, srv, api_key=KEY)
        out = _run(prof, tmp_path, criteria=criteria, send_images=False)
        body = srv.requests[0]["body"]
    schema = request_schema(body)
    assert schema["properties"]["criteria"]["required"] == slugs
    texts = criteria.values() if isinstance(criteria, dict) else criteria
    prompt = "\n".join(p["text"] for p in user_parts(body) if "text" in p)
    assert all(t in prompt for t in texts)
    for slug in slugs:
        assert (out[f"llm_criterion_{slug}"].astype(bool) == (out["label"] % 2 == 0)).all()
        assert (
            out[f"llm_criterion_{slug}_rationale"] == [f"{slug} for {x}" for x in out["label"]]
        ).all()


# --------------------------------------------------------------------------------------------
# keys and credentials
# --------------------------------------------------------------------------------------------


def test_key_is_written_nowhere(profiles, server, tmp_path):
    prof, truth = profiles
    bad = int(truth["label"].iloc[-1])  # after answers came: a per-crystal error
    server.fault_for_label(bad, "401_echo")
    out = _run(prof, tmp_path, send_images=False)
    assert out.set_index("label").loc[bad, "llm_status"] == "error"
    assert "401" in out.set_index("label").loc[bad, "llm_error"]
    assert all(r["headers"]["authorization"] == f"Bearer {KEY}" for r in server.requests)
    files = list((tmp_path / "cache").rglob("*"))
    assert len([f for f in files if f.is_file()]) == len(truth) - 1
    for f in files:
        if f.is_file():
            blob = f.read_bytes()
            assert KEY.encode() not in blob and b"SECRET" not in blob
    dump = out.astype(str).to_csv()
    assert KEY not in dump and "SECRET" not in dump and "abcdef" not in dump


def test_missing_key_for_remote_server_is_a_clear_error(profiles, monkeypatch, tmp_path):
    prof, _ = profiles
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ZonationInputError, match="OPENAI_API_KEY"):
        _run(prof, tmp_path, base_url="https://api.example.invalid/v1")
    with pytest.raises(ZonationInputError, match="OPENAI_API_KEY"):
        _run(prof, tmp_path)  # OpenAI's own endpoint


def test_local_server_needs_no_key(profiles, monkeypatch, tmp_path):
    prof, truth = profiles
    with FakeOpenAIServer() as srv:
        openai_env(monkeypatch, srv, api_key=None)  # OPENAI_BASE_URL set, no key
        out = _run(prof, tmp_path, send_images=False)
        auth = {r["headers"]["authorization"] for r in srv.requests}
    assert (out["llm_status"] == "ok").all()
    assert auth == {"Bearer not-needed"}


def test_arguments_override_environment(profiles, monkeypatch, tmp_path):
    prof, truth = profiles
    one = prof[prof["label"] == prof["label"].iloc[0]]
    with FakeOpenAIServer() as used, FakeOpenAIServer() as unused:
        openai_env(monkeypatch, unused, api_key="sk-env-key-000000")
        _run(one, tmp_path, base_url=used.base_url, api_key="sk-arg-key-111111")
        assert unused.n_requests == 0 and used.n_requests == 1
        assert used.requests[0]["headers"]["authorization"] == "Bearer sk-arg-key-111111"


# --------------------------------------------------------------------------------------------
# schema, cost, inputs, imports
# --------------------------------------------------------------------------------------------


def test_validate_answer_rejects_what_the_schema_forbids():
    crit = normalize_criteria(["Bright rim"])
    schema = response_schema(crit, reference=True)
    body = {"response_format": {"json_schema": {"schema": schema}}, "messages": []}
    good = default_answer(body, 1)
    assert validate_answer(good, schema) == []
    cases = [
        {**good, "zoning_type": "stripy"},
        {k: v for k, v in good.items() if k != "confidence"},
        {**good, "extra": 1},
        {**good, "confidence": 1.5},
        {**good, "n_plateaus": "two"},
        {**good, "oscillatory": "yes"},
        {**good, "plateau_levels": [1.0, "x"]},
        {**good, "criteria": {"bright_rim": {"met": True}}},
        {**good, "reference_score": -0.1},
    ]
    for bad in cases:
        assert validate_answer(bad, schema), bad


def test_estimate_llm_cost_counts_requests_and_images():
    a = estimate_llm_cost(10)
    b = estimate_llm_cost(20)
    t = estimate_llm_cost(10, send_images=False)
    r = estimate_llm_cost(10, reference=True, n_criteria=3)
    assert a["requests"] == 10 and b["requests"] == 20
    assert a["images"] == 20 and t["images"] == 0 and r["images"] == 40
    assert b["input_tokens"] == 2 * a["input_tokens"]
    assert t["input_tokens"] < a["input_tokens"] < r["input_tokens"]
    assert r["output_tokens"] > a["output_tokens"]
    assert a["usd"] is None
    priced = estimate_llm_cost(10, input_usd_per_mtok=1.0, output_usd_per_mtok=2.0)
    assert priced["usd"] == pytest.approx((a["input_tokens"] + 2 * a["output_tokens"]) / 1e6)


def test_bad_inputs_raise_clear_errors(profiles, server, tmp_path):
    prof, _ = profiles
    with pytest.raises(ZonationInputError, match="labels"):
        _run(prof, tmp_path, image=np.zeros((10, 10)))
    with pytest.raises(ZonationInputError, match="label"):
        _run(prof, tmp_path, table=pd.DataFrame({"x": [1]}))
    with pytest.raises(ZonationInputError, match="criterion"):
        _run(prof, tmp_path, criteria={"empty": "  "})
    with pytest.raises(ZonationInputError, match="distance_um"):
        _run(prof.drop(columns="distance_um"), tmp_path)
    assert server.n_requests == 0


def test_import_does_not_load_openai():
    code = (
        "import sys, napari_zonation, napari_zonation.llm; "
        "bad = [m for m in ('openai', 'httpx2') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_odd_profiles_do_not_stop_the_others(profiles, server, tmp_path, monkeypatch):
    import napari_zonation.llm.render as llm_render

    prof, truth = profiles
    odd = pd.DataFrame(
        {"label": [900, 900, 901], "distance_um": [0.0, 1.0, np.nan], "value": [np.nan] * 3}
    )
    broken = int(truth["label"].iloc[0])
    real_call = llm_render.ProfilePlotter.__call__

    def flaky(self, prof_, label, title):
        if label == broken:
            raise RuntimeError("plot failed")
        return real_call(self, prof_, label, title)

    monkeypatch.setattr(llm_render.ProfilePlotter, "__call__", flaky)
    out = _run(pd.concat([prof, odd]), tmp_path).set_index("label")
    assert out.loc[broken, "llm_status"] == "error"
    assert "plot failed" in out.loc[broken, "llm_error"]
    assert broken not in [r["label"] for r in server.requests]
    others = [x for x in truth["label"] if x != broken]
    assert (out.loc[others, "llm_status"] == "ok").all()
    # all-NaN profiles are sent (or recorded) without breaking the run
    assert set(out.loc[[900, 901], "llm_status"]) <= {"ok", "error"}


def test_describe_zoning_openai_backend_forwards_here(profiles, server, tmp_path):
    import napari_zonation as nz

    prof, truth = profiles
    out = nz.describe_zoning(prof, backend="openai", cache_dir=tmp_path / "c", timeout=2.0)
    assert {"zoning_type", "llm_zoning_type", "llm_status"} <= set(out.columns)
    assert (out["llm_status"] == "ok").all()
    merged = out.merge(truth[["label", "zoning_type"]], on="label", suffixes=("", "_true"))
    assert (merged["llm_zoning_type"] == merged["zoning_type_true"]).all()
    # the offline descriptors travel in the prompt
    text = "\n".join(p.get("text", "") for p in user_parts(server.requests[0]["body"]))
    assert "Numeric descriptors from the offline analysis" in text
