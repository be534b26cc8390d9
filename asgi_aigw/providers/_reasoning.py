"""OpenAI's ``reasoning_effort`` in each provider's own terms: Anthropic's extended thinking budget,
Gemini's ``thinkingConfig`` and Ollama's ``think``.

The budgets follow the common mapping of OpenAI-compatible gateways (LiteLLM's), so a client moving to
this gateway keeps the same thinking sizes. The tables are documented in docs/providers.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, cast

from ..kernel.errors import InvalidRequest, clip

Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]
EFFORTS: tuple[Effort, ...] = ("none", "minimal", "low", "medium", "high", "xhigh")

#: Anthropic's ``thinking.budget_tokens`` per effort (1024 is the least Anthropic accepts).
ANTHROPIC_BUDGET: dict[Effort, int] = {
    "minimal": 1024,
    "low": 1024,
    "medium": 2048,
    "high": 4096,
    "xhigh": 8192,
}
#: The least ``thinking.budget_tokens`` Anthropic accepts.
ANTHROPIC_MIN_BUDGET = 1024

#: Gemini 2.5's ``thinkingBudget`` per effort (0 turns thinking off where the model allows it).
GEMINI_BUDGET: dict[Effort, int] = {
    "none": 0,
    "minimal": 128,
    "low": 1024,
    "medium": 2048,
    "high": 4096,
    "xhigh": 8192,
}
#: Gemini 3's ``thinkingLevel`` per effort (Gemini 3 cannot turn thinking off: ``none`` is the least).
GEMINI_LEVEL: dict[Effort, str] = {
    "none": "minimal",
    "minimal": "minimal",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
}
#: Ollama's ``think`` per effort.
OLLAMA_THINK: dict[Effort, bool | str] = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
}


def effort(fields: Mapping[str, Any] | None) -> Effort | None:
    """The ``reasoning_effort`` among the request's ``fields`` (its body, or a request model's extra
    fields), ``None`` when the client set none; a 400 for a value OpenAI does not define."""
    value = fields.get("reasoning_effort") if fields else None
    if value is None:
        return None
    if value not in EFFORTS:
        raise InvalidRequest(
            f"reasoning_effort {clip(repr(value))} is not one of {', '.join(EFFORTS)}.",
            param="reasoning_effort",
        )
    return cast(Effort, value)
