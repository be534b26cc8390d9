"""A request in a client dialect, translated to a chat completion for a provider's adapter: made when an
attempt first needs it, kept for the attempts after it (a fallback may cross providers)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..kernel.context import RequestContext
from ..providers import Deployment, ProviderAdapter, TranslatedResponse, UpstreamRequest
from ..providers.base import StreamTranslator
from ..translate import ChatTranslation
from .answer import DROPPED_PARAMS


class Translations:
    """``make(provider)`` once per provider when the translation depends on it (Messages: ``top_k``),
    else once (``per_provider=False``). ``names`` maps the chat fields an adapter reports dropped to the
    names the client sent."""

    __slots__ = ("_done", "_make", "_names", "_per_provider")

    def __init__(
        self,
        make: Callable[[str], ChatTranslation],
        *,
        names: Mapping[str, str],
        per_provider: bool = True,
    ) -> None:
        self._make = make
        self._names = names
        self._per_provider = per_provider
        self._done: dict[str, ChatTranslation] = {}

    def get(self, provider: str) -> ChatTranslation:
        key = provider if self._per_provider else ""
        found = self._done.get(key)
        if found is None:
            found = self._done[key] = self._make(provider)
        return found

    def upstream_request(
        self, ctx: RequestContext, deployment: Deployment, adapter: ProviderAdapter, *, stream: bool
    ) -> UpstreamRequest:
        """The adapter's request for the translation; what it and the adapter left out is reported."""
        translation = self.get(deployment.provider)
        chat, body = translation.request, translation.body
        unread = [self._names.get(name, name) for name in adapter.dropped_params(chat, body)]
        # per attempt: a fallback to another provider drops other fields
        ctx.extra[DROPPED_PARAMS] = translation.dropped + unread
        return adapter.chat_request(deployment, chat, body, stream=stream)

    def chat_stream(self, deployment: Deployment, adapter: ProviderAdapter) -> StreamTranslator:
        """The adapter's chunk stream, asked for usage (the client's dialect reports it)."""
        return adapter.chat_stream(deployment, self.get(deployment.provider).request, include_usage=True)

    def chat_response(
        self, deployment: Deployment, adapter: ProviderAdapter, content: bytes
    ) -> TranslatedResponse:
        """The adapter's chat completion for a one-shot answer."""
        return adapter.chat_response(deployment, self.get(deployment.provider).request, content)
