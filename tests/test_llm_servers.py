"""The LLM path against the servers people run, played by the fake server on 127.0.0.1.

What a text-only local server (llama.cpp's llama-server without a vision projector) does to
pictures, what hosted APIs refuse, bounded answers, bad servers that must give one message
for the batch, and pacing to what the server sustains. The real llama-server is exercised in
``test_llm_real_server.py``.
"""

from __future__ import annotations

import json
import socket

import numpy as np
import pandas as pd
import pytest
from llm_server import (
    FakeOpenAIServer,
    openai_env,
    request_images,
    request_schema,
)

from napari_zonation.llm import (
    LLMCancelled,
    LLMServerError,
    describe_llm,
    estimate_llm_cost,
    known_price,
    max_answer_tokens,
    normalize_criteria,
    response_schema,
    validate_answer,
)
from napari_zonation.llm.dispatch import Pacer
from napari_zonation.llm.schema import max_answer_chars
from napari_zonation.synthetic import make_profiles, make_thin_section

STEP_TYPES = ("unzoned", "rim_brighter", "rim_darker")


@pytest.fixture(scope="module")
def scene():
    """A small thin section and profiles of its crystals from the true zoning."""
    s = make_thin_section((320, 320), n_crystals=5, seed=2)
    labs = [int(x) for x in s.truth["label"]]
    d = np.arange(0.0, 30.0)
    prof = pd.concat(
        [
            pd.DataFrame({"label": lab, "distance_um": d, "value": s.true_profile(lab, d)})
            for lab in labs
        ]
    )
    return s, prof, labs


@pytest.fixture(scope="module")
def profiles():
    return make_profiles(2, zoning_types=STEP_TYPES, noise=0.003, seed=3)


def _run(prof, tmp_path, **kw):
    kw.setdefault("timeout", 5.0)
    kw.setdefault("max_retries", 1)
    return describe_llm(prof, cache_dir=tmp_path / "cache", **kw)


def _walk(node, path="$"):
    """Every sub-schema with its path."""
    yield path, node
    for key, sub in node.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{key}")
    if "items" in node:
        yield from _walk(node["items"], f"{path}[]")


# --------------------------------------------------------------------------------------------
# capabilities and fall-backs
# --------------------------------------------------------------------------------------------


def test_text_only_server_gets_text_once_refused_and_a_rerun_sends_nothing(
    scene, monkeypatch, tmp_path
):
    s, prof, labs = scene
    with FakeOpenAIServer(images=False) as srv:
        openai_env(monkeypatch, srv, api_key=None)
        out = _run(prof, tmp_path, image=s.image, labels=s.labels, max_concurrency=2)
        reqs = list(srv.requests)
        assert srv.problems == []
        # the first crystal was asked with plot and crop, then the plot, then text: the
        # refusal is learnt once for the batch, never per crystal
        assert len(reqs) == len(labs) + 2
        assert [len(request_images(r["body"])) for r in reqs[:3]] == [2, 1, 0]
        assert all(request_images(r["body"]) == [] for r in reqs[2:])
        assert (out["llm_status"] == "ok").all()
        assert (out["llm_inputs"] == "text").all()
        run = out.attrs["llm_run"]
        assert run["requested_inputs"] == "text+plot+crop" and run["inputs"] == "text"
        assert len(run["fallbacks"]) == 2 and "image input is not supported" in run["fallbacks"][0]
        # text-only requests carry the content as one string, as text-only servers expect
        assert all(isinstance(r["body"]["messages"][1]["content"], str) for r in reqs[2:])

        before = srv.n_requests
        again = _run(prof, tmp_path, image=s.image, labels=s.labels)
        assert srv.n_requests == before  # the refusal and the answers are remembered
        assert again["llm_cached"].all() and (again["llm_inputs"] == "text").all()


def test_server_taking_one_picture_gets_the_plot_without_the_crop(scene, monkeypatch, tmp_path):
    s, prof, labs = scene
    with FakeOpenAIServer(max_images=1) as srv:
        openai_env(monkeypatch, srv, api_key=None)
        out = _run(prof, tmp_path, image=s.image, labels=s.labels)
        assert srv.n_requests == len(labs) + 1
        assert all(len(request_images(r["body"])) == 1 for r in srv.requests[1:])
    assert (out["llm_status"] == "ok").all()
    assert (out["llm_inputs"] == "text+plot").all()


def test_what_was_sent_is_recorded_per_crystal(scene, monkeypatch, tmp_path):
    s, prof, labs = scene
    with FakeOpenAIServer() as srv:
        openai_env(monkeypatch, srv, api_key=None)
        full = _run(prof, tmp_path, image=s.image, labels=s.labels)
        plot = _run(prof, tmp_path / "b")
        text = _run(prof, tmp_path / "c", send_images=False)
    assert (full["llm_inputs"] == "text+plot+crop").all()
    assert (plot["llm_inputs"] == "text+plot").all()
    assert (text["llm_inputs"] == "text").all()


def test_refused_parameters_are_dropped_for_the_batch(profiles, monkeypatch, tmp_path):
    prof, truth = profiles
    with FakeOpenAIServer(reject_bounds=True, reject_max_tokens=True) as srv:
        openai_env(monkeypatch, srv, api_key=None)
        out = _run(prof, tmp_path, send_images=False)
        bodies = [r["body"] for r in srv.requests]
    assert (out["llm_status"] == "ok").all()
    # the bounds refused, then max_tokens: two extra requests for the whole batch
    assert len(bodies) == len(truth) + 2
    assert all("max_tokens" not in b and "max_completion_tokens" in b for b in bodies[2:])
    plain = request_schema(bodies[-1])
    assert not any("maxLength" in sub for _, sub in _walk(plain))
    assert any("structured outputs take no length" in n for n in out.attrs["llm_run"]["notes"])


def test_long_strings_from_a_server_ignoring_bounds_are_clipped(profiles, monkeypatch, tmp_path):
    prof, _ = profiles

    def chatty(body, label):
        from llm_server import default_answer

        ans = default_answer(body, label)
        ans["rationale"] = "very " * 400 + "long"
        return ans

    with FakeOpenAIServer(answer=chatty) as srv:
        openai_env(monkeypatch, srv, api_key=None)
        out = _run(prof, tmp_path, send_images=False)
    # the server broke the bound it was given: the complete answer is kept, its text cut
    assert (out["llm_status"] == "ok").all()
    assert (out["llm_rationale"].str.len() <= 200).all()
    assert out["llm_rationale"].str.startswith("very very").all()
    assert out["llm_rationale"].str.endswith("...").all()


# --------------------------------------------------------------------------------------------
# bounded answers
# --------------------------------------------------------------------------------------------


def test_every_string_number_and_array_of_the_schema_is_bounded():
    crit = normalize_criteria(["two plateaus", "has a dark resorption band"])
    schema = response_schema(crit, reference=True)
    for path, sub in _walk(schema):
        t = sub.get("type")
        if t == "string" and "enum" not in sub:
            assert 0 < sub["maxLength"] <= 200, path
        elif t in ("number", "integer"):
            assert "minimum" in sub and "maximum" in sub, path
        elif t == "array":
            assert sub["maxItems"] <= 8, path
    # the largest answer the schema allows, written out, fits in max_answer_tokens at 2
    # characters a token (an independent count: the answer is built, not computed)
    biggest = {
        "zoning_type": "rim_brighter",
        "n_plateaus": 8,
        "plateau_levels": [-123456.78901234567] * 8,
        "slope": -0.00012345678901234567,
        "oscillatory": False,
        "confidence": 0.123456789012345,
        "rationale": "x" * 200,
        "matches_reference": False,
        "reference_score": 0.123456789012345,
        "criteria": {slug: {"met": False, "rationale": "y" * 120} for slug in crit},
    }
    assert validate_answer(biggest, schema) == []
    text = json.dumps(biggest, separators=(",", ":"))
    assert len(text) <= max_answer_chars(schema)
    assert max_answer_tokens(schema) >= len(text) / 2
    assert max_answer_tokens(schema) < 1000  # far below the ~2,700 tokens of unbounded answers


def test_requests_carry_the_token_limit_temperature_and_seed(profiles, monkeypatch, tmp_path):
    prof, _ = profiles
    with FakeOpenAIServer() as srv:
        openai_env(monkeypatch, srv, api_key=None)
        _run(prof, tmp_path, send_images=False, criteria=["two plateaus"])
        body = srv.requests[0]["body"]
    assert body["max_tokens"] == max_answer_tokens(request_schema(body))
    assert body["temperature"] == 0 and body["seed"] == 0
    assert "n" not in body  # several choices are refused by local servers


# --------------------------------------------------------------------------------------------
# bad servers: one message for the batch
# --------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_server_is_one_clear_message(profiles, tmp_path):
    prof, _ = profiles
    url = f"http://127.0.0.1:{_free_port()}/v1"
    with pytest.raises(LLMServerError, match="cannot reach the LLM server") as err:
        _run(prof, tmp_path, base_url=url, send_images=False)
    assert url in str(err.value)


def test_wrong_model_name_lists_the_server_models(profiles, monkeypatch, tmp_path):
    prof, _ = profiles
    with FakeOpenAIServer(models=["smollm2-135m"]) as srv:
        openai_env(monkeypatch, srv, api_key=None)
        with pytest.raises(LLMServerError, match="smollm2-135m") as err:
            _run(prof, tmp_path, model="gpt-4o-mini", send_images=False)
        assert srv.n_requests == 1  # one request, not one per crystal
    assert "model" in str(err.value)


@pytest.mark.parametrize("kind", ["html_page", "html_200", "empty_body"])
def test_a_server_that_is_not_the_api_is_one_clear_message(profiles, monkeypatch, tmp_path, kind):
    prof, _ = profiles
    with FakeOpenAIServer(html_only=kind == "html_page") as srv:
        openai_env(monkeypatch, srv, api_key=None)
        if kind != "html_page":
            srv.fault_for_call(0, "html" if kind == "html_200" else "empty")
        with pytest.raises(LLMServerError, match="base URL") as err:
            _run(prof, tmp_path, send_images=False)
        assert srv.n_requests == (0 if kind == "html_page" else 1)  # a page is no request
    if kind.startswith("html"):
        assert "web page" in str(err.value)


def test_a_model_refusing_everything_stops_after_three(profiles, monkeypatch, tmp_path):
    prof, truth = profiles
    with FakeOpenAIServer() as srv:
        openai_env(monkeypatch, srv, api_key=None)
        for lab in truth["label"]:
            srv.fault_for_label(int(lab), "refusal", times=None)
        with pytest.raises(LLMServerError, match="refused"):
            _run(prof, tmp_path, send_images=False)
        assert srv.n_requests == 3


def test_key_refused_on_the_first_request_is_one_message_without_the_key(
    profiles, monkeypatch, tmp_path
):
    prof, truth = profiles
    key = "sk-test-SECRET-0123456789abcdef"
    with FakeOpenAIServer() as srv:
        openai_env(monkeypatch, srv, api_key=key)
        srv.fault_for_call(0, "401_echo")
        with pytest.raises(LLMServerError, match="refused the API key") as err:
            _run(prof, tmp_path, send_images=False)
        assert srv.n_requests == 1
    assert key not in str(err.value) and "SECRET" not in str(err.value)


def test_cached_answers_survive_a_server_that_went_away(profiles, monkeypatch, tmp_path):
    prof, truth = profiles
    labs = [int(x) for x in truth["label"]]
    some = prof[prof["label"].isin(labs[:3])]
    with FakeOpenAIServer() as srv:
        openai_env(monkeypatch, srv, api_key=None)
        _run(some, tmp_path, send_images=False)
        url = srv.base_url
    # the server is gone: the cached crystals still come back, the others say why
    out = _run(prof, tmp_path, send_images=False, base_url=url).set_index("label")
    assert (out.loc[labs[:3], "llm_status"] == "ok").all()
    rest = out.loc[labs[3:]]
    assert (rest["llm_status"] == "error").all()
    assert rest["llm_error"].str.contains("cannot reach").all()
    assert "cannot reach" in out.attrs["llm_run"]["stopped"]


def test_missing_key_for_a_hosted_server_is_an_input_error(profiles, monkeypatch, tmp_path):
    prof, _ = profiles
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(Exception, match="OPENAI_API_KEY") as err:
        _run(prof, tmp_path, base_url="https://llm.example.invalid/v1")
    assert "llm.example.invalid" in str(err.value)


# --------------------------------------------------------------------------------------------
# pacing
# --------------------------------------------------------------------------------------------


def test_one_slot_server_is_served_without_failures(monkeypatch, tmp_path):
    """A server that answers one request at a time (llama-server with one slot): every crystal
    comes back, nothing times out, one request per crystal. Whether two in flight helps
    depends on the client's own overhead and the machine's load; the decision itself is
    checked without timing in ``test_pacer_*``."""
    prof, truth = make_profiles(3, zoning_types=STEP_TYPES, noise=0.003, seed=7)
    with FakeOpenAIServer(serial=True, delay_s=0.15) as srv:
        openai_env(monkeypatch, srv, api_key=None)
        out = _run(prof, tmp_path, send_images=False, max_concurrency=4)
    assert (out["llm_status"] == "ok").all()
    run = out.attrs["llm_run"]
    assert run["timeouts"] == 0 and run["requests"] == prof["label"].nunique()


def _pacer_decisions(latency_of) -> Pacer:
    """Feed a Pacer the latencies ``latency_of(limit)`` of a server, as the batch would."""
    pacer = Pacer(timeout=60.0, max_timeout=600.0, max_concurrency=4)
    for _ in range(12):
        limit = pacer.limit
        for _ in range(max(2, limit)):
            pacer.on_success(latency_of(limit), limit)
    return pacer


def test_pacer_keeps_one_request_in_flight_for_a_serial_server():
    # a serial server: with k requests queued each one waits for the k - 1 before it
    pacer = _pacer_decisions(lambda k: 0.15 * k)
    assert pacer.limit == 1 and pacer.phase == "steady"
    assert max(k for k, _ in pacer.history) == 2  # one trial with two in flight


def test_pacer_ignores_a_slow_first_answer():
    # the first answer carries a warm-up of 1 s; the server itself is serial
    answers = iter([1.15] + [None] * 100)

    def latency(k):
        first = next(answers)
        return first if first is not None else 0.15 * k

    pacer = _pacer_decisions(latency)
    assert pacer.limit == 1 and max(k for k, _ in pacer.history) == 2


def test_pacer_raises_concurrency_for_a_parallel_server():
    pacer = _pacer_decisions(lambda k: 0.15)  # k requests served at once
    assert pacer.limit == 4 and pacer.phase == "steady"


def test_parallel_server_gets_more_requests_in_flight(monkeypatch, tmp_path):
    # two requests alone (the first carries the warm-up), two in flight, then four
    prof, truth = make_profiles(5, zoning_types=STEP_TYPES, noise=0.003, seed=7)
    with FakeOpenAIServer(delay_s=0.15) as srv:
        openai_env(monkeypatch, srv, api_key=None)
        out = _run(prof, tmp_path, send_images=False, max_concurrency=4)
        assert srv.max_in_flight == 4
    assert (out["llm_status"] == "ok").all()
    assert out.attrs["llm_run"]["concurrency"] == 4


def test_slow_server_is_waited_for_not_failed(monkeypatch, tmp_path):
    prof, truth = make_profiles(1, zoning_types=STEP_TYPES, noise=0.003, seed=7)
    with FakeOpenAIServer(serial=True, delay_s=0.5) as srv:
        openai_env(monkeypatch, srv, api_key=None)
        # every request takes longer than the first timeout: the first is asked again with
        # more time, then the timeouts follow the measured time per request
        out = _run(prof, tmp_path, send_images=False, timeout=0.3, max_timeout=30)
    assert (out["llm_status"] == "ok").all()
    run = out.attrs["llm_run"]
    assert run["timeouts"] >= 1 and run["requests"] == len(truth) + run["timeouts"]


def test_cancel_stops_the_batch_and_keeps_answers(monkeypatch, tmp_path):
    prof, truth = make_profiles(3, zoning_types=STEP_TYPES, noise=0.003, seed=7)
    done = []
    with FakeOpenAIServer(serial=True, delay_s=0.1) as srv:
        openai_env(monkeypatch, srv, api_key=None)
        with pytest.raises(LLMCancelled):
            _run(
                prof,
                tmp_path,
                send_images=False,
                progress=lambda d, t: done.append(d),
                cancel=lambda: len(done) >= 3,
            )
        assert srv.n_requests < len(truth)
    assert len(list((tmp_path / "cache").glob("*.json"))) >= 3


# --------------------------------------------------------------------------------------------
# a large batch with faults
# --------------------------------------------------------------------------------------------


def test_a_thousand_crystals_with_faults_lose_none_and_a_rerun_sends_nothing(monkeypatch, tmp_path):
    rng = np.random.default_rng(0)
    d = np.arange(0.0, 24.0)
    n = 1000
    labs = np.repeat(np.arange(1, n + 1), d.size)
    level = np.where(np.tile(d, n) < 6, 120.0, 100.0) + rng.normal(0, 0.3, labs.size)
    prof = pd.DataFrame({"label": labs, "distance_um": np.tile(d, n), "value": level})
    faults = ("429", "500", "truncated", "non_json", "bad_schema", "slow", "html", "empty")
    with FakeOpenAIServer(slow_s=3.0) as srv:
        openai_env(monkeypatch, srv, api_key=None)
        for i, lab in enumerate(range(5, n + 1, 7)):  # one crystal in 7, each fault in turn
            srv.fault_for_label(lab, faults[i % len(faults)])
        out = _run(prof, tmp_path, send_images=False, timeout=1.0, max_retries=2)
        assert srv.problems == []
        first = srv.n_requests
        assert len(out) == n and (out["llm_status"] == "ok").all(), out["llm_error"].unique()
        assert (out["llm_zoning_type"] == "rim_brighter").all()
        again = _run(prof, tmp_path, send_images=False, timeout=1.0)
        assert srv.n_requests == first  # a second run sends no request
    assert again["llm_cached"].all()
    run = out.attrs["llm_run"]
    assert run["answered"] == n and run["requests"] == first


# --------------------------------------------------------------------------------------------
# cost
# --------------------------------------------------------------------------------------------


def test_cost_is_known_for_hosted_models_and_nil_for_local_servers():
    assert known_price("gpt-4o-mini-2024-07-18") == known_price("gpt-4o-mini")
    assert known_price("gpt-4o") != known_price("gpt-4o-mini")
    assert known_price("any-model", "http://127.0.0.1:8080/v1") == (0.0, 0.0)
    assert known_price("gpt-4o-mini", "https://other-host.example/v1") is None
    est = estimate_llm_cost(100, model="gpt-4o-mini")
    per = est["input_tokens_per_request"] * 0.15 + est["output_tokens_per_request"] * 0.60
    assert est["usd"] == pytest.approx(100 * per / 1e6)
    assert est["usd_max"] > est["usd"]
    local = estimate_llm_cost(100, model="smollm2", base_url="http://localhost:8080/v1")
    assert local["usd"] == 0.0
    assert estimate_llm_cost(100, model="mystery", base_url="https://x.example/v1")["usd"] is None


# --------------------------------------------------------------------------------------------
# the command line: estimate first, ask over the budget


def test_command_line_shows_the_estimate_and_refuses_over_budget_without_a_terminal(capsys):
    from napari_zonation.cli import _confirm_cost

    est = estimate_llm_cost(2000, model="gpt-4o", base_url=None)
    assert est["usd"] > 1.0
    assert _confirm_cost(est, budget_usd=1.0, yes=False) is False  # pytest's stdin: no tty
    out = capsys.readouterr()
    assert "2000 request(s)" in out.out and "USD" in out.out
    assert "--yes" in out.err
    assert _confirm_cost(est, budget_usd=1.0, yes=True) is True
    assert _confirm_cost(est, budget_usd=0.0, yes=False) is True  # no budget


def test_a_refused_confirmation_sends_nothing(profiles, monkeypatch, tmp_path):
    prof, truth = profiles
    seen = []
    with FakeOpenAIServer() as srv:
        openai_env(monkeypatch, srv, api_key=None)
        with pytest.raises(LLMCancelled):
            _run(prof, tmp_path, confirm=lambda est: seen.append(est) or False)
        assert srv.n_requests == 0
    assert seen[0]["requests"] == len(truth) and seen[0]["usd"] == 0.0  # local: free
