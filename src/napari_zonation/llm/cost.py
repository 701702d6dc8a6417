"""What a run will send and cost, said before anything is sent.

:func:`estimate_llm_cost` counts requests, images and tokens from the same prompt and schema
the run builds; hosted models whose list price is known (:data:`KNOWN_PRICES`) also get a
cost in US dollars. A server on this machine costs nothing; an unknown hosted model gets no
price (give yours).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from .._validation import ZonationInputError
from .client import OPENAI_URL, is_local
from .prompt import SYSTEM_PROMPT, instruction_text, profile_text
from .schema import max_answer_tokens, response_schema

#: OpenAI list prices in US dollars per million (input, output) tokens, as published in
#: 2025; model names match by their longest known prefix (``gpt-4o-mini-2024-07-18``).
#: Check your provider's current prices: these only size a budget.
KNOWN_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5": (1.25, 10.00),
    "o4-mini": (1.10, 4.40),
}
#: input tokens a low-detail image is billed as, where it differs from 85 (gpt-4o-mini bills
#: images as many tokens, at its lower price)
IMAGE_TOKENS: dict[str, int] = {"gpt-4o-mini": 2833}
DEFAULT_IMAGE_TOKENS = 85
#: characters per token of the prompts (numbers and JSON tokenise short; measured against
#: llama.cpp's tokenizer on the synthetic profiles)
CHARS_PER_TOKEN = 3.0


def _prefix_match(model: str, table: dict[str, Any]) -> Any:
    keys = sorted((k for k in table if model.lower().startswith(k)), key=len, reverse=True)
    return table[keys[0]] if keys else None


def known_price(model: str, base_url: str | None = None) -> tuple[float, float] | None:
    """``(input, output)`` US dollars per million tokens of ``model`` at ``base_url``:
    0 for a server on this machine, the list price of a known OpenAI model at OpenAI's URL,
    None otherwise."""
    if is_local(base_url):
        return (0.0, 0.0)
    if base_url and base_url.rstrip("/") != OPENAI_URL:
        return None
    return _prefix_match(model, KNOWN_PRICES)


def estimate_llm_cost(
    n_crystals: int,
    send_images: bool = True,
    *,
    crops: bool = True,
    reference: bool = False,
    n_criteria: int = 0,
    model: str | None = None,
    base_url: str | None = None,
    input_usd_per_mtok: float | None = None,
    output_usd_per_mtok: float | None = None,
    profile_points: int = 64,
) -> dict[str, Any]:
    """Estimate the requests, tokens and cost of a run before sending anything.

    Parameters
    ----------
    n_crystals : int
        Number of crystals (one request each; cached answers cost nothing).
    send_images : bool
        Send the profile plot (and crops) as images.
    crops : bool
        Count a crop per crystal (when an image and labels will be given).
    reference : bool
        A one-shot reference crystal leads every prompt.
    n_criteria : int
        Number of plain-text criteria.
    model, base_url : str, optional
        For the price (:func:`known_price`) and the image tokens of known models.
    input_usd_per_mtok, output_usd_per_mtok : float, optional
        Your model's prices in US dollars per million tokens (override the known ones).
    profile_points : int
        Points of a profile as sent (at most 64 after averaging).

    Returns
    -------
    dict
        ``requests``, ``images``, ``input_tokens``, ``output_tokens`` (typical answers),
        ``max_output_tokens`` (the token limit of every request), per-request figures,
        ``usd`` (None when no price is known), ``usd_max`` (every answer at its limit),
        ``price`` and a ``note`` on the assumptions.
    """
    n = int(n_crystals)
    if n < 0:
        raise ZonationInputError(f"n_crystals={n_crystals!r} must be >= 0.")
    d = np.linspace(0.0, 100.0, max(2, int(profile_points)))
    dummy = pd.DataFrame({"label": 1, "distance_um": d, "value": 100.0 + 0.123456 * d})
    text = profile_text(dummy, 1, None, role="target")
    crit = {f"criterion_{i}": "x" * 60 for i in range(int(n_criteria))}
    schema = response_schema(crit, reference=reference)
    chars = len(SYSTEM_PROMPT) + len(text) * (2 if reference else 1)
    chars += len(instruction_text(crit, reference, "")) + len(json.dumps(schema))
    images_per_crystal = (1 + int(crops)) if send_images else 0
    images = images_per_crystal * (2 if reference else 1)
    per_image = DEFAULT_IMAGE_TOKENS
    if model:
        per_image = _prefix_match(model, IMAGE_TOKENS) or DEFAULT_IMAGE_TOKENS
    in_tok = int(math.ceil(chars / CHARS_PER_TOKEN)) + per_image * images
    out_tok = 90 + 35 * int(n_criteria) + (15 if reference else 0)
    out_max = max_answer_tokens(schema)
    price = None
    if input_usd_per_mtok is not None and output_usd_per_mtok is not None:
        price = (float(input_usd_per_mtok), float(output_usd_per_mtok))
    elif model:
        price = known_price(model, base_url)
    usd = usd_max = None
    if price is not None:
        usd = n * (in_tok * price[0] + out_tok * price[1]) / 1e6
        usd_max = n * (in_tok * price[0] + out_max * price[1]) / 1e6
    return {
        "requests": n,
        "images": n * images,
        "input_tokens_per_request": in_tok,
        "output_tokens_per_request": out_tok,
        "input_tokens": n * in_tok,
        "output_tokens": n * out_tok,
        "max_output_tokens": out_max,
        "usd": usd,
        "usd_max": usd_max,
        "price": price,
        "note": (
            f"Rough figures: text at ~{CHARS_PER_TOKEN:g} characters a token, images at "
            f"{per_image} tokens each (detail='low'), answers of typical length (usd_max: "
            "every answer at its token limit); cached answers cost nothing; a server that "
            "refuses pictures gets text only (fewer tokens)."
        ),
    }


def cost_summary(est: dict[str, Any]) -> str:
    """One line for a person: requests, tokens and cost of an estimate."""
    line = (
        f"{est['requests']} request(s), ~{est['input_tokens']:,} input and "
        f"~{est['output_tokens']:,} output tokens"
    )
    if est["images"]:
        line += f", {est['images']} image(s)"
    if est["price"] is None:
        return line + "; no price known for this model (give yours to get a cost)"
    if est["price"] == (0.0, 0.0):
        return line + "; local server: no charge"
    return line + f"; about {est['usd']:.4f} USD (at most {est['usd_max']:.4f} USD)"
