"""Whether a request may spend output tokens its stream never shows: a model's thinking.

OpenAI's reasoning models stream no reasoning at all, Gemini streams thought summaries and Claude 4
summarised thinking, yet each bills every thinking token. When a client leaves such a stream before its
usage arrives, the text it was sent says nothing of what was spent, so the settlement keeps the output
tokens reserved (the most the cap let the provider spend) rather than the few it can count.
"""

from __future__ import annotations

import re
from typing import Any

from ..kernel.caps import is_reasoning_model

#: Models that think unless told not to: Gemini 2.5 and later (dynamic thinking by default).
_THINKS_BY_DEFAULT = re.compile(r"(?:.*/)?gemini-(?:2\.5|[3-9])")


def thinks_unseen(data: Any, *models: str | None) -> bool:
    """Whether the request body ``data`` asks for thinking (``reasoning_effort``, the Responses API's
    ``reasoning``, the Messages API's ``thinking``), or one of ``models`` (the name asked for, the
    upstream's) reasons by default."""
    if isinstance(data, dict):
        reasoning = data.get("reasoning")
        effort = data.get("reasoning_effort")
        if effort is None and isinstance(reasoning, dict):
            effort = reasoning.get("effort")
        if effort is not None and effort != "none":
            return True
        thinking = data.get("thinking")
        if isinstance(thinking, dict) and thinking.get("type") not in (None, "disabled"):
            return True
    return any(
        isinstance(model, str) and (is_reasoning_model(model) or _THINKS_BY_DEFAULT.match(model) is not None)
        for model in models
    )
