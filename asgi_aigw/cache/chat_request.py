"""The few fields of a Chat Completions request the cache acts on, and whether it may be cached."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..kernel.body import JSONBody
from ..kernel.errors import InvalidRequest
from ..kernel.models import ChatCompletionRequest


@dataclass(frozen=True, slots=True)
class ChatView:
    """The few request fields the cache acts on, read from the parsed body."""

    model: str
    stream: bool
    include_usage: bool
    n: int
    temperature: float
    logprobs: bool

    @classmethod
    def read(cls, data: Any) -> ChatView | None:
        """From the raw body when every field involved has the expected type; ``None`` otherwise
        (then the pydantic model decides)."""
        if not isinstance(data, dict):
            return None
        get = data.get
        model, stream, options, n = get("model"), get("stream"), get("stream_options"), get("n")
        temperature, logprobs = get("temperature"), get("logprobs")
        if (
            not isinstance(model, str)
            or not model
            or not isinstance(get("messages"), list)
            or not isinstance(stream, bool | None)
            or not (
                options is None
                or (isinstance(options, dict) and isinstance(options.get("include_usage"), bool | None))
            )
            or not (n is None or (type(n) is int and n >= 1))
            or not (temperature is None or (type(temperature) in (int, float) and 0 <= temperature <= 2))
            or not isinstance(logprobs, bool | None)
            or not isinstance(get("user"), str | None)
            or not isinstance(get("metadata"), dict | None)
            or not isinstance(get("store"), bool | None)
        ):
            return None
        return cls(
            model,
            bool(stream),
            bool(options and options.get("include_usage")),
            n or 1,
            float(temperature or 0.0),
            bool(logprobs),
        )

    @classmethod
    def of(cls, request: ChatCompletionRequest) -> ChatView:
        return cls(
            request.model,
            bool(request.stream),
            bool(request.stream_options and request.stream_options.include_usage),
            request.n or 1,
            float(request.temperature or 0.0),
            bool(request.logprobs),
        )

    def cacheable(self, max_temperature: float | None) -> bool:
        """Not answers that differ on every call, or that the cache cannot replay faithfully."""
        return not (
            self.n > 1
            or self.logprobs
            or (max_temperature is not None and self.temperature > max_temperature)
        )


def chat_view(body: JSONBody) -> ChatView | None:
    """The view of a chat body: read from the raw JSON when its fields have the expected types, else
    from the validated model; ``None`` when the body is not a valid chat request."""
    view = ChatView.read(body.data)
    if view is None:
        try:
            view = ChatView.of(body.validate(ChatCompletionRequest))
        except InvalidRequest:
            return None
    return view


def chat_valid(body: JSONBody) -> bool:
    """Whether the whole body validates (an exact hit needs no more than :meth:`ChatView.read`; the
    semantic layer answers other bodies, so it asks for this first)."""
    try:
        body.validate(ChatCompletionRequest)
    except InvalidRequest:
        return False
    return True
