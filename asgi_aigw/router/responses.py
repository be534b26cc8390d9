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
from typing import Any

import orjson

from ..kernel.body import JSONBody
from ..kernel.context import RequestContext, Usage
from ..kernel.dialects import RESPONSES
from ..kernel.dialects.responses import ResponsesStreamMeter
from ..kernel.errors import GatewayError, InvalidRequest, UpstreamError
from ..providers import Deployment, TranslatedResponse, UpstreamRequest
from ..providers._translate import loads_object
from ..providers.base import StreamTranslator
from ..providers.openai import OPENAI_BASE_URL
from ..translate.responses import ResponsesStream, chat_request, response_answer
from .answer import STREAM_ERROR_EVENT
from .dialect import DialectRequest, serve
from .kit import RouteCall, RouteKit
from .passthrough import EventRelay, forward
from .translation import Translations
from .upstream import UpstreamResponse

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
    return deployment.base_url == OPENAI_BASE_URL


def upstream_request(deployment: Deployment, raw: bytes, model: str) -> UpstreamRequest:
    """The POST to ``{base_url}/responses`` carrying ``raw`` (its ``model`` renamed if need be)."""
    url = f"{deployment.base_url}/responses"
    return forward(deployment, raw, model, url, key_header="authorization", key_prefix="Bearer ")


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


class ResponsesRelay(EventRelay[ResponsesStreamMeter]):
    """OpenAI's Responses stream relayed up to its final event; read on the way for the last
    ``sequence_number`` too, so the router's own error event is numbered after it."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(
            RESPONSES.stream_meter(), upstream=OPENAI, final=_FINAL_EVENTS, event_error=event_error
        )

    @property
    def next_sequence_number(self) -> int:
        return self._meter.next_sequence_number()


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


class _ResponsesRequest(DialectRequest):
    """A Responses request: passed through to a deployment serving the Responses API, translated for
    any other."""

    def __init__(self, data: Mapping[str, Any], raw: bytes, model: str) -> None:
        # the translation does not depend on the provider: made once
        super().__init__(
            Translations(lambda _: chat_request(data), names=_RESPONSES_NAMES, per_provider=False)
        )
        self._data = data
        self._raw = raw
        self._model = model

    def native(self, deployment: Deployment) -> bool:
        return serves_responses(deployment)

    def passthrough_request(self, deployment: Deployment) -> UpstreamRequest:
        return upstream_request(deployment, self._raw, self._model)

    def relay(self) -> ResponsesRelay:
        return ResponsesRelay()

    def stream(self, deployment: Deployment, inner: StreamTranslator) -> _TranslatedStream:
        return _TranslatedStream(ResponsesStream(inner, request=self._data, model=deployment.model))

    def answer(self, content: bytes) -> TranslatedResponse:
        return _openai_answer(content)

    def translated(self, deployment: Deployment, completion: TranslatedResponse) -> TranslatedResponse:
        return _translated_answer(completion, self._data)

    def attempt(
        self, ctx: RequestContext, deployment: Deployment, response: UpstreamResponse, translator: Any
    ) -> None:
        if translator is not None:
            # per attempt: the stream that is being relayed numbers the router's own error event
            ctx.extra[STREAM_ERROR_EVENT] = _error_event_writer(translator)


class ResponsesRoutes:
    """The Responses route, using the routing of a router through its :class:`~.kit.RouteKit`."""

    def __init__(self, kit: RouteKit) -> None:
        self._kit = kit

    async def responses(self, call: RouteCall) -> None:
        ctx = call.ctx
        data, model, stream = _validated(call.body)
        ctx.model = model
        ctx.stream = stream
        resolved = self._kit.registry.resolve(model)
        await serve(self._kit, _ResponsesRequest(data, call.body.raw, model), call, resolved)


def _openai_answer(content: bytes) -> TranslatedResponse:
    """OpenAI's answer as it came; read for its usage (cached and reasoning tokens included) and model."""
    data = loads_object(content, "a response", upstream=OPENAI)
    if not isinstance(data.get("output"), list):
        raise UpstreamError("openai answered with JSON that is not a response.")
    model = data.get("model")
    return TranslatedResponse(content, RESPONSES.usage(data), model if isinstance(model, str) else None)


def _translated_answer(completion: TranslatedResponse, data: Mapping[str, Any]) -> TranslatedResponse:
    """The provider's answer, read by its adapter as a chat completion, written as a ``response``."""
    answer = response_answer(orjson.loads(completion.body), data, usage=completion.usage)
    model = answer.get("model")
    return TranslatedResponse(
        orjson.dumps(answer),
        completion.usage or RESPONSES.usage(answer),
        model if isinstance(model, str) else completion.model,
    )
