"""The output cap of a chat request, and the field each OpenAI model family takes it in."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: OpenAI's reasoning models (o1, o3, o4-mini, gpt-5 and their dated versions, with or without a
#: ``provider/`` prefix): they refuse ``max_tokens`` and take the cap as ``max_completion_tokens`` only.
_REASONING_MODEL = re.compile(r"(?:.*/)?(?:o\d|gpt-5)(?:[-.]|$)")
CAP_FIELDS = ("max_completion_tokens", "max_tokens")


def is_reasoning_model(model: str) -> bool:
    """Whether ``model`` takes its output cap as ``max_completion_tokens`` only."""
    return _REASONING_MODEL.match(model) is not None


def cap_field(model: str | None) -> str:
    """The field a cap is written in when the client set none: ``max_tokens`` is understood by every
    OpenAI-compatible server, reasoning models take only ``max_completion_tokens``."""
    return "max_completion_tokens" if model and is_reasoning_model(model) else "max_tokens"


def client_cap(data: Mapping[str, Any]) -> int | None:
    """The cap the client set (``max_completion_tokens`` wins, as at OpenAI), ``None`` if none.

    Raises ``ValueError`` naming the field when a cap is present but not a positive integer.
    """
    found: int | None = None
    for name in CAP_FIELDS:
        value = positive_cap(data, name)
        if found is None:
            found = value
    return found


def positive_cap(data: Mapping[str, Any], name: str) -> int | None:
    """The output cap in the field ``name``, ``None`` if absent; ``ValueError(name)`` when it is not a
    positive integer."""
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(name)
    return value


def output_cap_fields(payload: dict[str, Any], model: str) -> dict[str, Any]:
    """``payload`` with its output cap in the field ``model`` takes.

    A reasoning model refuses ``max_tokens``: its value moves to ``max_completion_tokens`` (the smaller
    of the two when both are set), so a cap reaches the model instead of a 400. Other models take
    either field, as sent; when both are set, each is the smaller of the two: which one a server reads
    differs (OpenAI-compatible servers often read only ``max_tokens``), and the budget reserved for
    ``max_completion_tokens``, the one OpenAI's own API reads.
    """
    if "max_tokens" not in payload:
        return payload
    if not is_reasoning_model(model):
        legacy, current = payload["max_tokens"], payload.get("max_completion_tokens")
        if isinstance(legacy, int) and isinstance(current, int) and legacy != current:
            smaller = min(legacy, current)
            return {**payload, "max_tokens": smaller, "max_completion_tokens": smaller}
        return payload
    payload = dict(payload)
    legacy = payload.pop("max_tokens")
    current = payload.get("max_completion_tokens")
    if current is None:
        if legacy is not None:
            payload["max_completion_tokens"] = legacy
    elif isinstance(legacy, int) and isinstance(current, int):
        payload["max_completion_tokens"] = min(legacy, current)
    return payload
