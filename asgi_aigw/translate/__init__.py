"""Client dialects to and from the canonical OpenAI Chat Completions format, one package per dialect:
:mod:`.messages` (Anthropic Messages) and :mod:`.responses` (OpenAI Responses).

A request routed to a provider that does not speak its dialect is translated to a chat completion
request, answered by the provider adapter as any chat request is, and the answer translated back.
"""

from .base import ChatTranslation

__all__ = ["ChatTranslation"]
