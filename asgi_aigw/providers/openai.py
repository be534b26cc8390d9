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
#: OpenAI's own API root.
OPENAI_BASE_URL = "https://api.openai.com/v1"


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
            self._event(raw, out)
        return out

    def _event(self, raw: bytes, out: list[bytes]) -> None:
        """One complete SSE event in; what the client gets of it appended to ``out``."""
        if _USAGE_OBJECT.search(raw) is None:
            if raw.startswith((b"data: [DONE]", b"data:[DONE]")):
                self.done = True
                out.append(DONE_EVENT)
            else:
                out.append(raw)
            return
        event = parse_event(raw)
        if event.data == DONE_DATA:
            self.done = True
            out.append(DONE_EVENT)
            return
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            out.append(raw)
            return
        usage = Usage.from_openai(data.get("usage")) if isinstance(data, dict) else None
        if usage is not None:
            self.usage = usage
        # The usage-only chunk (no choices) exists because the gateway asked for it: pass it on
        # only if the client asked too. Usage riding on a content chunk always goes through.
        if self._include_usage or (isinstance(data, dict) and data.get("choices")):
            out.append(raw)

    def close(self) -> list[bytes]:
        return self.feed(b"\n\n") if not self.done else []


class OpenAIAdapter:
    """OpenAI's own API by default; ``name`` and ``default_base_url`` make it any OpenAI-compatible
    server's (the presets in :mod:`.presets`)."""

    #: The header the API key travels in, and what goes before the key.
    key_header = "authorization"
    key_prefix = "Bearer "

    def __init__(
        self,
        *,
        name: str = "openai",
        default_base_url: str = OPENAI_BASE_URL,
        requires_api_key: bool = True,
    ) -> None:
        self.name = name
        self.default_base_url = default_base_url
        self.requires_api_key = requires_api_key

    def dropped_params(self, request: ChatCompletionRequest, body: Mapping[str, Any]) -> list[str]:
        """Nothing: the request goes out as the client sent it."""
        return []

    def url(self, deployment: Deployment, endpoint: str) -> str:
        """Where ``endpoint`` (``chat/completions``, ``embeddings``) of ``deployment`` is served."""
        return f"{deployment.base_url}/{endpoint}"

    def chat_payload(self, deployment: Deployment, body: dict[str, Any], *, stream: bool) -> dict[str, Any]:
        """The request body: the client's, with the deployment's model and usage asked for in streams."""
        payload = output_cap_fields({**body, "model": deployment.model}, deployment.model)
        if stream and deployment.stream_usage:
            options = body.get("stream_options")
            payload["stream_options"] = (
                {**options, "include_usage": True} if options else {"include_usage": True}
            )
        return payload

    def chat_request(
        self, deployment: Deployment, request: ChatCompletionRequest, body: dict[str, Any], *, stream: bool
    ) -> UpstreamRequest:
        payload = self.chat_payload(deployment, body, stream=stream)
        return post_json(
            self.url(deployment, "chat/completions"), deployment, payload, self.key_header, self.key_prefix
        )

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
        return post_json(
            self.url(deployment, "embeddings"), deployment, payload, self.key_header, self.key_prefix
        )

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
        elif isinstance(data, dict) and data.get("object") == "error":
            # vLLM's and Mistral's shape: the error's fields at the top level, Mistral's message
            # sometimes a validation report rather than a string
            found = data.get("message")
            message = found if isinstance(found, str) else orjson.dumps(found).decode()[:1000]
            err_type = data.get("type") if isinstance(data.get("type"), str) else None
        return error_from_status(
            self.name, status, message, headers=headers, err_type=err_type, code=code, param=param
        )
