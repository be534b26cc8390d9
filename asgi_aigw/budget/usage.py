"""Reading what an answer cost off the wire, for when no router filled ``ctx.usage``.

Where usage and generated text sit depends on the client's dialect (chat completions, Anthropic
Messages, OpenAI Responses); each reading goes through :class:`~asgi_aigw.kernel.dialects.Dialect`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from ..kernel.context import Usage
from ..kernel.dialects import Dialect
from ..kernel.sse import DONE_DATA, parse_event


def _loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def json_answer(body: bytes, dialect: Dialect) -> tuple[Usage | None, str | None, Any]:
    """A JSON answer's usage, ``model`` and the parsed payload (``None`` when unreadable)."""
    payload = _loads(body)
    if not isinstance(payload, dict):
        return None, None, None
    model = payload.get("model")
    return dialect.usage(payload), model if isinstance(model, str) else None, payload


def decode_event(raw: bytes) -> tuple[str | None, Any]:
    """One SSE event's name and parsed ``data`` (``None`` for ``[DONE]`` and data that is not JSON)."""
    event = parse_event(raw)
    if not event.data or event.data == DONE_DATA:
        return event.event, None
    return event.event, _loads(event.data)


def streamed_text(events: Iterable[bytes], dialect: Dialect) -> str:
    """The text generated in the given SSE events (used only when a stream ended early)."""
    reader = dialect.stream_meter()
    return "".join(reader.feed(*decode_event(raw)) for raw in events)
