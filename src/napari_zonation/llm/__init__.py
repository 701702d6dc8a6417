"""LLM zoning descriptors through any OpenAI-compatible server (hosted or local).

Each crystal becomes one chat-completions request: its core-to-rim profile as numbers and
the numeric descriptors of the offline table, with a plot of the profile and a crop of the
image when the server accepts pictures. The model answers in a bounded JSON schema,
validated before it lands in ``llm_`` columns. A one-shot reference crystal can lead every
prompt, and plain-text criteria become ``llm_criterion_<slug>`` columns. Answers are cached
on disk, so re-running asks only for crystals that failed or changed; the API key is never
written anywhere.

The package is split by concern:

- :mod:`.schema`: the bounded answer schema, its validation and its size in tokens;
- :mod:`.prompt`: the system prompt and each crystal's text;
- :mod:`.render`: profile plots and image crops (PNG);
- :mod:`.client`: credentials, one request and what its failure means;
- :mod:`.cache`: the answer cache and what a server refused;
- :mod:`.dispatch`: the batch (fall-backs, retries, concurrency and timeouts);
- :mod:`.cost`: requests, tokens and cost before a run;
- :mod:`.describe`: :func:`describe_llm`.

``openai`` and ``matplotlib`` are imported when first needed: importing this package is cheap.
"""

from .cache import default_cache_dir
from .client import DEFAULT_MODEL, is_local
from .cost import KNOWN_PRICES, cost_summary, estimate_llm_cost, known_price
from .describe import LLM_STATUSES, describe_llm
from .dispatch import INPUT_LEVELS, LLMCancelled, LLMServerError
from .prompt import MAX_PROFILE_POINTS, PROMPT_VERSION, SYSTEM_PROMPT
from .schema import (
    LLM_ZONING_TYPES,
    max_answer_tokens,
    normalize_criteria,
    response_schema,
    slugify,
    validate_answer,
)

__all__ = [
    "DEFAULT_MODEL",
    "describe_llm",
    "estimate_llm_cost",
    "cost_summary",
    "known_price",
    "KNOWN_PRICES",
    "default_cache_dir",
    "is_local",
    "normalize_criteria",
    "response_schema",
    "validate_answer",
    "max_answer_tokens",
    "slugify",
    "LLMServerError",
    "LLMCancelled",
    "LLM_STATUSES",
    "LLM_ZONING_TYPES",
    "INPUT_LEVELS",
    "MAX_PROFILE_POINTS",
    "PROMPT_VERSION",
    "SYSTEM_PROMPT",
]
