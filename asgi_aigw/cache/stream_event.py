"""The JSON object an answer's SSE event carries, as every dialect's stream assembler reads it."""

from __future__ import annotations

from typing import Any

import orjson

from ..kernel.sse import parse_event


def stream_event(raw: bytes, *, skip: bytes = b"") -> tuple[dict[str, Any] | None, bool]:
    """The object the event ``raw`` carries, and whether the stream is not one to cache (an ``error``
    event, data that is not a JSON object). ``(None, False)``: an event without data (or with ``skip``
    as its data, chat's ``[DONE]``), nothing to read."""
    event = parse_event(raw)
    if event.event == "error":
        return None, True
    if not event.data or event.data == skip:
        return None, False
    try:
        data = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return None, True
    if not isinstance(data, dict):
        return None, True
    return data, False
