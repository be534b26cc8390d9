"""Anthropic Messages to and from the canonical OpenAI Chat Completions format.

A Messages request routed to a provider that does not speak Messages (OpenAI, Gemini, Ollama) is
translated to a chat completion request (:func:`chat_request`), answered by the provider adapter as any
chat request is, and the OpenAI answer is translated back: a complete one by :func:`message_answer`, a
chunk stream by :class:`MessagesStream`. What cannot be translated is refused with a 400 naming the field;
a hint without effect on the answer (``cache_control``) is left out and reported as dropped.
"""

from ..base import ChatTranslation
from .answer import message_answer
from .request import chat_request
from .stream import MessagesStream

__all__ = ["ChatTranslation", "MessagesStream", "chat_request", "message_answer"]
