"""The few fields of an Anthropic Messages request the cache acts on, and whether it may be cached."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


@dataclass(frozen=True, slots=True)
class MessagesView:
    """What the cache needs from a ``POST /v1/messages`` body (docs.anthropic.com, "Messages")."""

    model: str
    stream: bool
    temperature: float
    thinking: bool
    #: Anthropic streams always carry usage (``message_start`` and ``message_delta``).
    include_usage: bool = True

    @classmethod
    def read(cls, data: Any) -> MessagesView | None:
        """From a body whose fields involved have Anthropic's types; ``None`` otherwise (then the app
        answers it, with its own 400, uncached)."""
        if not isinstance(data, dict):
            return None
        get = data.get
        model, messages, max_tokens = get("model"), get("messages"), get("max_tokens")
        stream, temperature, thinking = get("stream"), get("temperature"), get("thinking")
        if (
            not isinstance(model, str)
            or not model
            or not isinstance(messages, list)
            or not messages
            or not all(_is_message(m) for m in messages)
            or type(max_tokens) is not int
            or max_tokens < 1
            or not isinstance(stream, bool | None)
            or not (temperature is None or (_is_number(temperature) and 0 <= temperature <= 1))
            or not isinstance(get("system"), str | list | None)
            or not isinstance(get("metadata"), dict | None)
            or not isinstance(get("tools"), list | None)
            or not isinstance(get("stop_sequences"), list | None)
            or not (thinking is None or _is_thinking(thinking))
        ):
            return None
        return cls(
            model=model,
            stream=bool(stream),
            temperature=float(temperature or 0.0),
            # every thinking mode but "disabled" (enabled, adaptive, between_tools, those to come)
            thinking=isinstance(thinking, dict) and thinking.get("type") != "disabled",
        )

    def cacheable(self, max_temperature: float | None) -> bool:
        """Whether the answer may be looked up and stored: not with extended thinking (signed thinking
        blocks, and a temperature fixed at 1 so that answers vary), nor above ``max_temperature``."""
        if self.thinking:
            return False
        return max_temperature is None or self.temperature <= max_temperature


def _is_thinking(thinking: Any) -> bool:
    return isinstance(thinking, dict) and isinstance(thinking.get("type"), str)


def _is_message(message: Any) -> bool:
    return (
        isinstance(message, dict)
        and message.get("role") in ("user", "assistant")
        and isinstance(message.get("content"), str | list)
    )
