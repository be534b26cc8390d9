"""``POST /v1/responses``: OpenAI's Responses API, routed by model name exactly as chat completions are
(same registry, retries, fallbacks, timeouts, cooldowns).

To a deployment that serves the Responses API itself (OpenAI's own API, or one configured with
``responses_api: true``) the request passes through: the body as received with only ``model``
renamed, the deployment's key, the answer and its events relayed as they came. To any other the
request is translated to a chat completion for the provider's adapter and the answer translated back
(:mod:`asgi_aigw.translate.responses`). A model with deployments of both kinds may fall back from one
to the other: each attempt builds its own request.

Once a stream has started, an error is the Responses ``error`` event numbered after the events already
sent, whichever way the stream was made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from ..kernel.body import JSONBody
from ..kernel.context import RequestContext, Usage
from ..kernel.dialects import RESPONSES
from ..kernel.errors import GatewayError, InvalidRequest, UpstreamError
from ..kernel.sse import SSEDecoder, parse_event
from ..kernel.types import Receive, Scope, Send
from ..providers import Deployment, ProviderAdapter, TranslatedResponse, UpstreamRequest
from ..providers.openai import OpenAIAdapter
from ..translate.responses import ChatTranslation, ResponsesStream, chat_request, response_answer
from .answer import DROPPED_PARAMS, STREAM_ERROR_EVENT
from .passthrough import rewrite_model
from .upstream import UpstreamResponse

if TYPE_CHECKING:
    from .app import ProviderRouter, _Progress

#: The provider whose deployments may serve the Responses API themselves.
OPENAI = "openai"
#: Chat fields an adapter reports dropped, under the Responses names the client sent.
_RESPONSES_NAMES = {
    "max_tokens": "max_output_tokens",
    "max_completion_tokens": "max_output_tokens",
    "response_format": "text.format",
    "verbosity": "text.verbosity",
    "reasoning_effort": "reasoning.effort",
}
#: The stream events that end a Responses answer.
_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def serves_responses(deployment: Deployment) -> bool:
    """Whether ``deployment`` answers ``POST /responses`` itself: as configured, else only OpenAI's API."""
    if deployment.provider != OPENAI:
        return False
    if deployment.responses_api is not None:
        return deployment.responses_api
    return deployment.base_url == OpenAIAdapter.default_base_url


def upstream_request(deployment: Deployment, raw: bytes, model: str) -> UpstreamRequest:
    """The POST to ``{base_url}/responses`` carrying ``raw`` (its ``model`` renamed if need be)."""
    content = raw if deployment.model == model else rewrite_model(raw, deployment.model)
    headers = {"content-type": "application/json"}
    if deployment.api_key:
        headers["authorization"] = f"Bearer {deployment.api_key}"
    headers.update(deployment.headers)
    return UpstreamRequest("POST", f"{deployment.base_url}/responses", headers, content)


def _validated(body: JSONBody) -> tuple[dict[str, Any], str, bool]:
    """The body, its ``model`` and ``stream``: what routing needs before any deployment reads the rest."""
    data = body.data
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object (a Responses API request).")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model")
    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("Invalid type for 'stream': expected a boolean.", param="stream")
    return data, model, bool(stream)


def event_error(payload: Mapping[str, Any]) -> GatewayError:
    """The error of an upstream ``error`` event (its status line said 200): a server error, as OpenAI
    sends these for failures while answering."""
    message = payload.get("message")
    code = payload.get("code")
    return GatewayError(
        message if isinstance(message, str) and message else "openai sent an error event",
        status=500,
        code=code if isinstance(code, str) else "upstream_error",
        param=payload.get("param") if isinstance(payload.get("param"), str) else None,
    )


class ResponsesRelay:
    """OpenAI's Responses stream relayed event by event as it came; read on the way for usage, the model
    and the last ``sequence_number``. An ``error`` event is raised, not relayed: before the first event
    the router can still try elsewhere; after it, the router ends the stream with the error event
    numbered in sequence."""

    __slots__ = ("_decoder", "_meter", "done")

    def __init__(self) -> None:
        self._decoder = SSEDecoder()
        self._meter = RESPONSES.stream_meter()
        self.done = False

    @property
    def usage(self) -> Usage | None:
        return self._meter.usage

    @property
    def upstream_model(self) -> str | None:
        return self._meter.model

    @property
    def next_sequence_number(self) -> int:
        return self._meter.next_sequence_number()

    def feed(self, chunk: bytes) -> list[bytes]:
        return self._relay(self._decoder.feed(chunk))

    def close(self) -> list[bytes]:
        return self._relay(self._decoder.flush())

    def _relay(self, events: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        for raw in events:
            if self.done:
                break  # nothing after the final event belongs to this answer
            event = parse_event(raw)
            if not event.data:
                out.append(raw)  # a comment or keep-alive
                continue
            try:
                payload = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                raise UpstreamError("openai sent a stream event that is not valid JSON.") from None
            kind = payload.get("type") if isinstance(payload, dict) else None
            if kind == "error":
                raise event_error(payload)
            self._meter.feed(event.event, payload)
            out.append(raw)
            if kind in _FINAL_EVENTS:
                self.done = True
        return out


class _TranslatedStream:
    """:class:`ResponsesStream` noting whether it already wrote an ``error`` event (an upstream error
    inside the chat stream), so the router does not end the stream with a second one."""

    __slots__ = ("errored", "inner")

    def __init__(self, inner: ResponsesStream) -> None:
        self.inner = inner
        self.errored = False

    @property
    def done(self) -> bool:
        return self.inner.done

    @property
    def usage(self) -> Usage | None:
        return self.inner.usage

    @property
    def upstream_model(self) -> str:
        return self.inner.upstream_model

    @property
    def next_sequence_number(self) -> int:
        return self.inner.next_sequence_number

    def feed(self, chunk: bytes) -> list[bytes]:
        return self._note(self.inner.feed(chunk))

    def close(self) -> list[bytes]:
        return self._note(self.inner.close())

    def _note(self, events: list[bytes]) -> list[bytes]:
        if any(raw.startswith(b"event: error\n") for raw in events):
            self.errored = True
        return events


def _error_event_writer(relay: ResponsesRelay | _TranslatedStream) -> Callable[[GatewayError], bytes]:
    """Writes the router's own mid-stream error as the Responses ``error`` event, numbered after what
    ``relay`` sent (nothing more when the translation already sent the upstream's error event)."""

    def write(exc: GatewayError) -> bytes:
        if isinstance(relay, _TranslatedStream) and relay.errored:
            return b""
        return RESPONSES.error_event(exc, relay.next_sequence_number)

    return write


class _Translation:
    """The request as a chat completion, made once when a deployment first needs it."""

    __slots__ = ("_data", "_done")

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data
        self._done: ChatTranslation | None = None

    def get(self) -> ChatTranslation:
        if self._done is None:
            self._done = chat_request(self._data)
        return self._done


class ResponsesRoutes:
    """The Responses route of one :class:`~asgi_aigw.router.ProviderRouter`, using its routing."""

    def __init__(self, router: ProviderRouter) -> None:
        self._router = router

    async def responses(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        ctx: RequestContext,
        body: JSONBody,
        progress: _Progress,
    ) -> None:
        router = self._router
        data, model, stream = _validated(body)
        ctx.model = model
        ctx.stream = stream
        resolved = router.registry.resolve(model)
        translation = _Translation(data)

        def build(deployment: Deployment, adapter: ProviderAdapter) -> UpstreamRequest:
            if serves_responses(deployment):
                ctx.extra[DROPPED_PARAMS] = []
                return upstream_request(deployment, body.raw, model)
            translated = translation.get()
            chat, chat_body = translated.request, translated.body
            unread = [_RESPONSES_NAMES.get(n, n) for n in adapter.dropped_params(chat, chat_body)]
            ctx.extra[DROPPED_PARAMS] = translated.dropped + unread
            return adapter.chat_request(deployment, chat, chat_body, stream=stream)

        async def deliver(
            deployment: Deployment,
            adapter: ProviderAdapter,
            response: UpstreamResponse,
            deadline: float | None,
        ) -> None:
            if stream:
                relay: ResponsesRelay | _TranslatedStream
                if serves_responses(deployment):
                    relay = ResponsesRelay()
                else:
                    chat = translation.get().request
                    inner = adapter.chat_stream(deployment, chat, include_usage=True)
                    relay = _TranslatedStream(ResponsesStream(inner, request=data, model=deployment.model))
                # per attempt: the stream that is being relayed numbers the router's own error event
                ctx.extra[STREAM_ERROR_EVENT] = _error_event_writer(relay)
                await router._relay_stream(send, ctx, deployment, response, relay, progress, deadline)
                return
            content = await router._read(deployment, response)
            if serves_responses(deployment):
                answer = _openai_answer(content)
            else:
                answer = _translated_answer(adapter, deployment, translation.get(), data, content)
            await router._send_translated(send, ctx, deployment, answer, progress)

        await router._route(receive, ctx, progress, resolved, build, deliver)


def _openai_answer(content: bytes) -> TranslatedResponse:
    """OpenAI's answer as it came; read for its usage (cached and reasoning tokens included) and model."""
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise UpstreamError("openai answered with a response that is not valid JSON.") from None
    if not isinstance(data, dict) or not isinstance(data.get("output"), list):
        raise UpstreamError("openai answered with JSON that is not a response.")
    model = data.get("model")
    return TranslatedResponse(content, RESPONSES.usage(data), model if isinstance(model, str) else None)


def _translated_answer(
    adapter: ProviderAdapter,
    deployment: Deployment,
    translation: ChatTranslation,
    data: Mapping[str, Any],
    content: bytes,
) -> TranslatedResponse:
    """The provider's answer, read by its adapter as a chat completion, written as a ``response``."""
    completion = adapter.chat_response(deployment, translation.request, content)
    answer = response_answer(orjson.loads(completion.body), data, usage=completion.usage)
    model = answer.get("model")
    return TranslatedResponse(
        orjson.dumps(answer),
        completion.usage or RESPONSES.usage(answer),
        model if isinstance(model, str) else completion.model,
    )
