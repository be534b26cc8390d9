"""``POST /v1/messages`` and ``POST /v1/messages/count_tokens``: Anthropic's Messages API, routed by model
name exactly as chat completions are (same registry, retries, fallbacks, timeouts, cooldowns).

To an Anthropic deployment the request passes through (:mod:`.passthrough`); to any other it is
translated to a chat completion for the provider's adapter and the answer translated back
(:mod:`asgi_aigw.translate.messages`). A model with deployments of both kinds may fall back from one to the
other: each attempt builds its own request.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from ..kernel.body import JSONBody
from ..kernel.context import RequestContext
from ..kernel.dialects import MESSAGES
from ..kernel.errors import GatewayError, InvalidRequest, UpstreamError
from ..kernel.http import send_json_bytes
from ..kernel.models import CountTokensRequest, MessagesRequest
from ..kernel.types import Send
from ..providers import Deployment, ProviderAdapter, TranslatedResponse, UpstreamRequest
from ..providers._translate import loads_object, random_id
from ..providers.base import StreamTranslator
from ..translate.messages import MessagesStream, chat_request, message_answer
from . import passthrough
from .answer import RELAYED_HEADERS, answer_headers, record
from .dialect import DialectRequest, serve
from .kit import Progress, RouteCall, RouteKit
from .translation import Translations
from .upstream import UpstreamResponse

#: The provider whose deployments take Messages requests as they are.
ANTHROPIC = "anthropic"
#: Anthropic's answer headers the client gets as they are: the id its SDKs expose as ``_request_id``.
_RELAYED = ("request-id",)
#: Chat fields an adapter reports dropped, under the Messages names the client sent.
_MESSAGES_NAMES = {"user": "metadata.user_id", "stop": "stop_sequences", "parallel_tool_calls": "tool_choice"}


def _read_error(
    deployment: Deployment, adapter: ProviderAdapter, status: int, content: bytes, headers: dict[str, str]
) -> GatewayError:
    """Anthropic's own errors keep their status and message; other providers' go through their adapter."""
    if deployment.provider == ANTHROPIC:
        return passthrough.upstream_error(status, content, headers)
    return adapter.error(status, content, headers)


class _MessagesRequest(DialectRequest):
    """A Messages request: passed through to Anthropic, translated for any other provider."""

    def __init__(self, request: MessagesRequest, raw: bytes, headers: dict[str, str]) -> None:
        super().__init__(
            Translations(lambda provider: chat_request(request, provider), names=_MESSAGES_NAMES)
        )
        self._model = request.model
        self._raw = raw
        self._headers = headers
        self._fallback_id = random_id("msg_")

    def native(self, deployment: Deployment) -> bool:
        return deployment.provider == ANTHROPIC

    def passthrough_request(self, deployment: Deployment) -> UpstreamRequest:
        return passthrough.upstream_request(deployment, self._raw, self._model, self._headers, "messages")

    def relay(self) -> passthrough.MessagesRelay:
        return passthrough.MessagesRelay()

    def stream(self, deployment: Deployment, inner: StreamTranslator) -> MessagesStream:
        return MessagesStream(inner, model=deployment.model, fallback_id=self._fallback_id)

    def answer(self, content: bytes) -> TranslatedResponse:
        return _anthropic_answer(content)

    def translated(self, deployment: Deployment, completion: TranslatedResponse) -> TranslatedResponse:
        return message_answer(completion, deployment.model, self._fallback_id)

    def attempt(
        self, ctx: RequestContext, deployment: Deployment, response: UpstreamResponse, translator: Any
    ) -> None:
        # per attempt: only the answering deployment's headers
        ctx.extra[RELAYED_HEADERS] = _relayed(deployment, response)


class MessagesRoutes:
    """The Messages routes, using the routing of a router through its :class:`~.kit.RouteKit`."""

    def __init__(self, kit: RouteKit) -> None:
        self._kit = kit

    async def messages(self, call: RouteCall) -> None:
        kit, ctx = self._kit, call.ctx
        request = call.body.validate(MessagesRequest, "messages request")
        ctx.model = request.model
        ctx.stream = bool(request.stream)
        resolved = kit.registry.resolve(request.model)
        headers = passthrough.client_headers(call.scope.get("headers"))
        await serve(kit, _MessagesRequest(request, call.body.raw, headers), call, resolved, _read_error)

    async def count_tokens(self, call: RouteCall) -> None:
        """Anthropic deployments count; for a model without one the gateway estimates locally."""
        kit = self._kit
        scope, receive, send, ctx, body, progress = call
        request = body.validate(CountTokensRequest, "count tokens request")
        ctx.model = request.model
        resolved = kit.registry.resolve(request.model)
        anthropic = tuple(d for d in resolved.deployments if d.provider == ANTHROPIC)
        if not anthropic:
            if extra := sorted(request.model_extra or ()):
                # Anthropic refuses them too; here they would be silently left out of the count
                raise InvalidRequest(f"{extra[0]}: Extra inputs are not permitted", param=extra[0])
            await self._count_locally(send, ctx, body, resolved.deployments[0], progress)
            return
        headers = passthrough.client_headers(scope.get("headers"))

        def build(deployment: Deployment, adapter: ProviderAdapter) -> UpstreamRequest:
            return passthrough.upstream_request(
                deployment, body.raw, request.model, headers, "messages/count_tokens"
            )

        async def deliver(
            deployment: Deployment, adapter: ProviderAdapter, response: UpstreamResponse, _: float | None
        ) -> None:
            content = await kit.read(deployment, response)
            data = loads_object(content, "a token count", upstream=ANTHROPIC)
            if not isinstance(data.get("input_tokens"), int):
                raise UpstreamError("anthropic answered count_tokens without input_tokens.")
            await kit.send_translated(send, ctx, deployment, TranslatedResponse(content, None), progress)

        only_anthropic = dataclasses.replace(resolved, deployments=anthropic)
        await kit.route(receive, ctx, progress, only_anthropic, build, deliver, _read_error)

    async def _count_locally(
        self, send: Send, ctx: RequestContext, body: JSONBody, deployment: Deployment, progress: Progress
    ) -> None:
        # imported here: the tokenizer loads its tables on first use, which only this route needs
        from ..runtime.tokens import count_chat_tokens

        data = body.data
        if not isinstance(data, dict):  # pragma: no cover - validated as an object above
            raise InvalidRequest("The request body must be a JSON object.")
        # the same translation a Messages request gets, so what is refused there is refused here
        request = MessagesRequest.model_validate({**data, "max_tokens": 1})
        translation = chat_request(request, deployment.provider)
        tokens = count_chat_tokens(translation.body, deployment.model)
        record(ctx, deployment, None)
        ctx.status = 200
        progress.finished = True
        headers = [*answer_headers(ctx), (b"x-aigw-estimate", b"true")]
        await send_json_bytes(send, 200, orjson.dumps({"input_tokens": tokens}), headers)


def _relayed(deployment: Deployment, response: UpstreamResponse) -> list[tuple[bytes, bytes]]:
    if deployment.provider != ANTHROPIC:
        return []
    headers = response.headers
    return [
        (name.encode(), value.encode("latin-1", "replace"))
        for name in _RELAYED
        if (value := headers.get(name)) is not None
    ]


def _anthropic_answer(content: bytes) -> TranslatedResponse:
    """Anthropic's answer as it came; read for its usage (cache reads and writes included) and model."""
    data = loads_object(content, "a message", upstream=ANTHROPIC)
    if data.get("type") == "error":
        raise passthrough.event_error(data)
    model = data.get("model")
    return TranslatedResponse(content, MESSAGES.usage(data), model if isinstance(model, str) else None)
