"""OpenAI Chat Completions: the gateway's canonical dialect."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .. import caps
from ..context import Usage
from ..sse import encode_event

if TYPE_CHECKING:
    from ..errors import GatewayError


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


class ChatStreamMeter:
    """Chat chunks carry usage (with ``stream_options.include_usage``) and the model in any chunk."""

    __slots__ = ("model", "usage")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.model: str | None = None

    def feed(self, event: str | None, payload: Any) -> str:
        if not isinstance(payload, dict):
            return ""
        usage = Usage.from_openai(payload.get("usage"))
        if usage is not None:
            self.usage = usage
        model = payload.get("model")
        if isinstance(model, str) and model:
            self.model = model
        return answer_text(payload)


class ChatDialect:
    """``POST /v1/chat/completions``: OpenAI's errors, ``max_completion_tokens``/``max_tokens``, ``n``."""

    name = "chat"
    # usage rides on the last chunk (``stream_options.include_usage``)
    usage_mark = b'"prompt_tokens"'
    final_mark = b'"prompt_tokens"'
    cap_required = False

    def error_body(self, exc: GatewayError) -> bytes:
        return exc.to_json()

    def error_event(self, exc: GatewayError) -> bytes:
        # OpenAI's own mid-stream errors are its error object: the openai SDK raises APIError with it
        return encode_event("error", exc.to_json())

    def client_cap(self, data: Mapping[str, Any]) -> int | None:
        return caps.client_cap(data)

    def cap_field(self, model: str | None) -> str:
        return caps.cap_field(model)

    def choices(self, data: Mapping[str, Any]) -> int:
        n = data.get("n")
        return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1

    def usage(self, payload: Any) -> Usage | None:
        return Usage.from_openai(payload.get("usage")) if isinstance(payload, dict) else None

    def answer_text(self, payload: Any) -> str:
        return answer_text(payload)

    def stream_meter(self) -> ChatStreamMeter:
        return ChatStreamMeter()


CHAT = ChatDialect()
