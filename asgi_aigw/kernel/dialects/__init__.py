"""Dialects: the wire formats clients speak to the gateway (OpenAI Chat Completions, Anthropic Messages,
OpenAI Responses).

A dialect is everything a layer needs to treat a request without knowing its format: the output cap, the
shape of errors, where usage and generated text sit in an answer and its stream events. Each middleware
asks :func:`dialect_for` with the request's route and works through the :class:`Dialect` it gets; a new
wire format is one more module here and one more route in :mod:`..routes`.
"""

from .base import Dialect, StreamMeter
from .chat import CHAT
from .messages import MESSAGES
from .responses import RESPONSES

#: Generation routes and the dialect each speaks (``count_tokens`` speaks Messages, generating nothing).
DIALECTS: dict[str, Dialect] = {
    "chat": CHAT,
    "messages": MESSAGES,
    "count_tokens": MESSAGES,
    "responses": RESPONSES,
}


def dialect_for(route: str | None) -> Dialect:
    """The dialect of a route; chat (OpenAI's format) for every other route, errors included."""
    return DIALECTS.get(route or "", CHAT)


__all__ = ["CHAT", "DIALECTS", "MESSAGES", "RESPONSES", "Dialect", "StreamMeter", "dialect_for"]
