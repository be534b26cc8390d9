"""Reading what an answer cost off the wire, for when no router filled ``ctx.usage``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from ..kernel.context import Usage
from ..kernel.sse import DONE_DATA, parse_event


def _loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def answer_text(payload: Any) -> str:
    """The generated text of a chat completion or a chunk: content, refusals, tool-call arguments."""
    if not isinstance(payload, dict):
        return ""
    parts: list[str] = []
    for choice in payload.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        message = choice.get("message") or choice.get("delta")
        if not isinstance(message, dict):
            continue
        for field in ("content", "refusal", "reasoning_content"):
            value = message.get(field)
            if isinstance(value, str):
                parts.append(value)
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                for field in ("name", "arguments"):
                    value = function.get(field)
                    if isinstance(value, str):
                        parts.append(value)
    return "".join(parts)


def json_answer(body: bytes) -> tuple[Usage | None, str | None, Any]:
    """A JSON answer's ``usage``, ``model`` and the parsed payload (``None`` when unreadable)."""
    payload = _loads(body)
    if not isinstance(payload, dict):
        return None, None, None
    model = payload.get("model")
    return Usage.from_openai(payload.get("usage")), model if isinstance(model, str) else None, payload


def event_usage(raw: bytes) -> tuple[Usage | None, str | None]:
    """The ``usage`` (and ``model``) of an SSE event that carries one."""
    payload = _loads(parse_event(raw).data)
    if not isinstance(payload, dict):
        return None, None
    model = payload.get("model")
    return Usage.from_openai(payload.get("usage")), model if isinstance(model, str) else None


def streamed_text(events: Iterable[bytes]) -> str:
    """The text generated in the given SSE events (used only when a stream ended early)."""
    parts: list[str] = []
    for raw in events:
        data = parse_event(raw).data
        if not data or data == DONE_DATA:
            continue
        parts.append(answer_text(_loads(data)))
    return "".join(parts)
