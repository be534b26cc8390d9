"""Anthropic Messages (``POST /v1/messages``), as documented at docs.anthropic.com.

Errors are ``{"type": "error", "error": {"type", "message"}}``; the output cap is the required
``max_tokens``; usage is ``input_tokens`` (uncached input only), ``cache_read_input_tokens``,
``cache_creation_input_tokens`` and ``output_tokens``, which a stream spreads over ``message_start``
and the cumulative ``message_delta``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from ..caps import positive_cap
from ..context import Usage
from ..sse import encode_event

if TYPE_CHECKING:
    from ..errors import GatewayError

#: Anthropic's error type for each status it documents ("Errors"); other statuses by their class.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    """Anthropic's error ``type`` for an HTTP status."""
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    if status == 503:
        return "overloaded_error"
    return "api_error" if status >= 500 else "invalid_request_error"


def error_payload(exc: GatewayError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(exc.status), "message": exc.message}}


def block_text(block: Any) -> str:
    """The generated text of one answer content block (text, thinking, a tool call's name and input)."""
    if not isinstance(block, dict):
        return ""
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        return text if isinstance(text, str) else ""
    if kind == "thinking":
        text = block.get("thinking")
        return text if isinstance(text, str) else ""
    if kind in ("tool_use", "server_tool_use"):
        name = block.get("name")
        return (name if isinstance(name, str) else "") + orjson.dumps(block.get("input", {})).decode()
    return ""


def delta_text(delta: Any) -> str:
    """The generated text of one ``content_block_delta``'s ``delta``."""
    if not isinstance(delta, dict):
        return ""
    for field in ("text", "partial_json", "thinking"):
        value = delta.get(field)
        if isinstance(value, str):
            return value
    return ""


class MessagesStreamMeter:
    """Usage from ``message_start`` (input and cache figures) and ``message_delta`` (cumulative); none
    while the input reported is zero."""

    __slots__ = ("_figures", "model", "usage")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.model: str | None = None
        self._figures: dict[str, Any] = {}

    def feed(self, event: str | None, payload: Any) -> str:
        if not isinstance(payload, dict):
            return ""
        kind = payload.get("type")
        if kind == "message_start":
            message = payload.get("message")
            if isinstance(message, dict):
                model = message.get("model")
                if isinstance(model, str) and model:
                    self.model = model
                self._merge(message.get("usage"))
            return ""
        if kind == "message_delta":
            self._merge(payload.get("usage"))
            return ""
        if kind == "content_block_start":
            return block_text(payload.get("content_block")) if _is_tool(payload) else ""
        if kind == "content_block_delta":
            return delta_text(payload.get("delta"))
        return ""

    def _merge(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        # message_delta's figures are cumulative: later values replace earlier ones, absent ones stay
        self._figures.update({k: v for k, v in usage.items() if v is not None})
        figures = Usage.from_anthropic(self._figures)
        # a prompt is never empty: a zero input (a translated stream's message_start, before the upstream
        # reported) is a placeholder, and reading it as a figure would charge a cut stream no input
        self.usage = figures if figures is not None and figures.prompt_tokens > 0 else None


def _is_tool(payload: dict[str, Any]) -> bool:
    block = payload.get("content_block")
    return isinstance(block, dict) and block.get("type") in ("tool_use", "server_tool_use")


class MessagesDialect:
    """``POST /v1/messages``: Anthropic's errors, the required ``max_tokens``, one answer."""

    name = "messages"
    # message_start has the input figures; the cumulative message_delta completes them
    usage_mark = b'"usage"'
    final_mark = b'"message_delta"'
    cap_required = True

    def error_body(self, exc: GatewayError) -> bytes:
        return orjson.dumps(error_payload(exc))

    def error_event(self, exc: GatewayError) -> bytes:
        return encode_event("error", orjson.dumps(error_payload(exc)))

    def client_cap(self, data: Mapping[str, Any]) -> int | None:
        return positive_cap(data, "max_tokens")

    def cap_field(self, model: str | None) -> str:
        return "max_tokens"

    def choices(self, data: Mapping[str, Any]) -> int:
        return 1

    def usage(self, payload: Any) -> Usage | None:
        return Usage.from_anthropic(payload.get("usage")) if isinstance(payload, dict) else None

    def answer_text(self, payload: Any) -> str:
        if not isinstance(payload, dict):
            return ""
        return "".join(block_text(block) for block in payload.get("content") or ())

    def stream_meter(self) -> MessagesStreamMeter:
        return MessagesStreamMeter()


MESSAGES = MessagesDialect()
