"""OpenAI Chat Completions and Embeddings, and any OpenAI-compatible server (vLLM, LM Studio, ...).

The canonical format *is* this wire format, so requests go out as the client sent them (model name
swapped, usage requested in streams) and answers come back byte for byte; the only parse on the way back
is the one that reads ``usage``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from ..kernel.caps import output_cap_fields
from ..kernel.context import Usage
from ..kernel.errors import GatewayError, UpstreamError
from ..kernel.models import ChatCompletionRequest, EmbeddingRequest
from ..kernel.sse import DONE_DATA, DONE_EVENT, SSEDecoder, parse_event
from ._translate import error_body, loads_object, post_json
from .base import Deployment, TranslatedResponse, UpstreamRequest
from .errors import error_from_status

_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')


def _checked(content: bytes, what: str, key: str) -> TranslatedResponse:
    """The answer as it came, once it proved to be ``what`` (a JSON object with a ``key`` list); the
    only parse reads its usage and model."""
    data = loads_object(content, what)
    if not isinstance(data.get(key), list):
        raise UpstreamError(f"The upstream answered with JSON that is not {what}.")
    model = data.get("model")
    return TranslatedResponse(
        content, Usage.from_openai(data.get("usage")), model if isinstance(model, str) else None
    )


class OpenAIStreamTranslator:
    """Forwards OpenAI SSE events as they are; reads usage; drops the usage chunk unless asked for."""

    __slots__ = ("_decoder", "_include_usage", "done", "usage")

    def __init__(self, *, include_usage: bool) -> None:
        self._decoder = SSEDecoder()
        self._include_usage = include_usage
        self.usage: Usage | None = None
        self.done = False

    def feed(self, chunk: bytes) -> list[bytes]:
        events = self._decoder.feed(chunk)
        if not events:
            return events
        out: list[bytes] = []
        for raw in events:
            if self.done:
                break  # nothing after [DONE] belongs to this answer
            if _USAGE_OBJECT.search(raw) is None:
                if raw.startswith((b"data: [DONE]", b"data:[DONE]")):
                    self.done = True
                    out.append(DONE_EVENT)
                else:
                    out.append(raw)
                continue
            event = parse_event(raw)
            if event.data == DONE_DATA:
                self.done = True
                out.append(DONE_EVENT)
                continue
            try:
                data = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                out.append(raw)
                continue
            usage = Usage.from_openai(data.get("usage")) if isinstance(data, dict) else None
            if usage is not None:
                self.usage = usage
            # The usage-only chunk (no choices) exists because the gateway asked for it: pass it on
            # only if the client asked too. Usage riding on a content chunk always goes through.
            if self._include_usage or (isinstance(data, dict) and data.get("choices")):
                out.append(raw)
        return out

    def close(self) -> list[bytes]:
        return self.feed(b"\n\n") if not self.done else []


class OpenAIAdapter:
    name = "openai"
    default_base_url = "https://api.openai.com/v1"
    requires_api_key = True

    def dropped_params(self, request: ChatCompletionRequest, body: Mapping[str, Any]) -> list[str]:
        """Nothing: the request goes out as the client sent it."""
        return []

    def chat_request(
        self, deployment: Deployment, request: ChatCompletionRequest, body: dict[str, Any], *, stream: bool
    ) -> UpstreamRequest:
        payload = output_cap_fields({**body, "model": deployment.model}, deployment.model)
        if stream and deployment.stream_usage:
            options = body.get("stream_options")
            payload["stream_options"] = (
                {**options, "include_usage": True} if options else {"include_usage": True}
            )
        return post_json(f"{deployment.base_url}/chat/completions", deployment, payload)

    def chat_response(
        self, deployment: Deployment, request: ChatCompletionRequest, content: bytes
    ) -> TranslatedResponse:
        return _checked(content, "a chat completion", "choices")

    def chat_stream(
        self, deployment: Deployment, request: ChatCompletionRequest, *, include_usage: bool
    ) -> OpenAIStreamTranslator:
        return OpenAIStreamTranslator(include_usage=include_usage)

    def embeddings_request(
        self, deployment: Deployment, request: EmbeddingRequest, body: dict[str, Any]
    ) -> UpstreamRequest:
        payload = {**body, "model": deployment.model}
        return post_json(f"{deployment.base_url}/embeddings", deployment, payload)

    def embeddings_response(
        self, deployment: Deployment, request: EmbeddingRequest, content: bytes
    ) -> TranslatedResponse:
        return _checked(content, "an embeddings response", "data")

    def error(self, status: int, content: bytes, headers: dict[str, str]) -> GatewayError:
        message: str | None = None
        err_type: str | None = None
        code: str | None = None
        param: str | None = None
        data = error_body(content)
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict):
            message = error.get("message") if isinstance(error.get("message"), str) else None
            err_type = error.get("type") if isinstance(error.get("type"), str) else None
            code = str(error["code"]) if error.get("code") is not None else None
            param = error.get("param") if isinstance(error.get("param"), str) else None
        elif isinstance(error, str):
            message = error
        return error_from_status(
            self.name, status, message, headers=headers, err_type=err_type, code=code, param=param
        )
