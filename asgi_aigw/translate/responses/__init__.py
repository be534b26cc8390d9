"""OpenAI Responses to and from the canonical OpenAI Chat Completions format.

A Responses request routed to a provider reached through the chat adapters is translated to a chat
completion request (:func:`chat_request`), answered as any chat request is, and the answer translated
back: a complete one by :func:`response_answer`, a chunk stream by :class:`ResponsesStream`. What cannot
be translated is refused with a 400 naming the field; ``previous_response_id`` and ``store: true`` are
refused because the gateway keeps no responses.
"""

from ..base import ChatTranslation
from .answer import response_answer
from .request import chat_request
from .stream import ResponsesStream

__all__ = ["ChatTranslation", "ResponsesStream", "chat_request", "response_answer"]
