"""One request in a client dialect (Messages, Responses), served attempt by attempt: passed through to
a deployment that speaks the dialect, translated to a chat completion for any other. The dialect's
route module says how (a :class:`DialectRequest`); :func:`serve` runs the attempts."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from ..kernel.context import RequestContext
from ..providers import Deployment, ProviderAdapter, TranslatedResponse, UpstreamRequest
from ..providers.base import StreamTranslator
from .answer import DROPPED_PARAMS
from .kit import ReadError, RouteCall, RouteKit
from .registry import ResolvedModel
from .translation import Translations
from .upstream import UpstreamResponse


class DialectRequest(ABC):
    """One validated request in a client dialect: what passing it through and translating it take."""

    def __init__(self, translations: Translations) -> None:
        self.translations = translations

    @abstractmethod
    def native(self, deployment: Deployment) -> bool:
        """Whether ``deployment`` serves the dialect itself (the request passes through)."""

    @abstractmethod
    def passthrough_request(self, deployment: Deployment) -> UpstreamRequest:
        """The request as the client sent it, for a deployment that serves the dialect."""

    @abstractmethod
    def relay(self) -> Any:
        """The stream translator relaying a native stream as it came."""

    @abstractmethod
    def stream(self, deployment: Deployment, inner: StreamTranslator) -> Any:
        """The stream translator writing the adapter's chat chunks in the dialect."""

    @abstractmethod
    def answer(self, content: bytes) -> TranslatedResponse:
        """A native one-shot answer, as it came (read for its usage and model)."""

    @abstractmethod
    def translated(self, deployment: Deployment, completion: TranslatedResponse) -> TranslatedResponse:
        """The adapter's chat completion written in the dialect."""

    @abstractmethod
    def attempt(
        self, ctx: RequestContext, deployment: Deployment, response: UpstreamResponse, translator: Any
    ) -> None:
        """Per attempt, before its answer is delivered (``translator``: the stream's, ``None`` for a
        one-shot answer): what the context must say of this attempt only."""


async def serve(
    kit: RouteKit,
    request: DialectRequest,
    call: RouteCall,
    resolved: ResolvedModel,
    read_error: ReadError | None = None,
) -> None:
    """Attempt ``resolved``'s deployments until one delivers ``request``'s answer (``ctx.stream``: as a
    stream), each passing the request through or translating it as its deployment needs."""
    _, receive, send, ctx, _, progress = call
    translations = request.translations

    def build(deployment: Deployment, adapter: ProviderAdapter) -> UpstreamRequest:
        if request.native(deployment):
            ctx.extra[DROPPED_PARAMS] = []
            return request.passthrough_request(deployment)
        return translations.upstream_request(ctx, deployment, adapter, stream=ctx.stream)

    async def deliver(
        deployment: Deployment, adapter: ProviderAdapter, response: UpstreamResponse, deadline: float | None
    ) -> None:
        native = request.native(deployment)
        if ctx.stream:
            if native:
                translator = request.relay()
            else:
                translator = request.stream(deployment, translations.chat_stream(deployment, adapter))
            request.attempt(ctx, deployment, response, translator)
            await kit.relay_stream(send, ctx, deployment, response, translator, progress, deadline)
            return
        request.attempt(ctx, deployment, response, None)
        content = await kit.read(deployment, response)
        if native:
            answer = request.answer(content)
        else:
            answer = request.translated(deployment, translations.chat_response(deployment, adapter, content))
        await kit.send_translated(send, ctx, deployment, answer, progress)

    await kit.route(receive, ctx, progress, resolved, build, deliver, read_error)
