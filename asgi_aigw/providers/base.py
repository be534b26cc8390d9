"""The contract between the router and a provider adapter.

An adapter is a pure translator: it builds the native HTTP request from the canonical (OpenAI-format)
request and turns the native answer, JSON or stream, back into OpenAI format. It never does I/O; the router
sends, retries, times out and cancels. That keeps adapters golden-testable byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from ..kernel.context import Usage
from ..kernel.errors import GatewayError
from ..kernel.models import ChatCompletionRequest, EmbeddingRequest


@dataclass(frozen=True, slots=True)
class Timeout:
    """Seconds. ``first_byte`` and ``idle`` are enforced by the router; ``None`` leaves them to ``read``."""

    connect: float = 5.0
    read: float = 600.0
    write: float = 30.0
    pool: float = 10.0
    #: From sending the request to the response headers (and, for a stream, its first chunk).
    first_byte: float | None = None
    #: The longest gap allowed between two chunks of a stream.
    idle: float | None = None


@dataclass(frozen=True, slots=True)
class Deployment:
    """A resolved deployment: everything needed to call one upstream model."""

    id: str
    provider: str
    #: The model name the provider knows.
    model: str
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    headers: tuple[tuple[str, str], ...] = ()
    timeout: Timeout = Timeout()
    weight: float = 1.0
    stream_usage: bool = True
    #: Whether the deployment serves OpenAI's Responses API (``POST {base_url}/responses``) itself, so
    #: that Responses requests pass through; ``None``: only OpenAI's own API does.
    responses_api: bool | None = None
    #: Azure OpenAI's ``api-version`` (``v1`` for its v1 API); ``None``: the adapter's default.
    api_version: str | None = None


class UpstreamRequest(NamedTuple):
    method: str
    url: str
    headers: dict[str, str]
    content: bytes


class TranslatedResponse(NamedTuple):
    """A complete answer in OpenAI format, ready to send."""

    body: bytes
    usage: Usage | None
    #: The upstream's model name as it reported it, when it did.
    model: str | None = None


class StreamTranslator(Protocol):
    """Turns a native stream into OpenAI SSE events, chunk by chunk, never holding a complete answer."""

    #: Usage once the stream reported it.
    usage: Usage | None
    #: True once the stream ended normally (``[DONE]`` or the provider's equivalent).
    done: bool

    def feed(self, chunk: bytes) -> list[bytes]:
        """Bytes from upstream in; complete OpenAI SSE events (``data: ...\\n\\n``) out."""
        ...

    def close(self) -> list[bytes]:
        """Upstream ended: any final events (nothing if the stream was cut short)."""
        ...


class ProviderAdapter(Protocol):
    name: str
    default_base_url: str
    #: Whether a deployment of this provider needs an API key to be usable.
    requires_api_key: bool

    def chat_request(
        self, deployment: Deployment, request: ChatCompletionRequest, body: dict[str, Any], *, stream: bool
    ) -> UpstreamRequest: ...

    def dropped_params(self, request: ChatCompletionRequest, body: Mapping[str, Any]) -> list[str]:
        """The request fields :meth:`chat_request` leaves out (the provider has no place for them),
        for the ``x-aigw-dropped-params`` answer header."""
        ...

    def chat_response(
        self, deployment: Deployment, request: ChatCompletionRequest, content: bytes
    ) -> TranslatedResponse: ...

    def chat_stream(
        self, deployment: Deployment, request: ChatCompletionRequest, *, include_usage: bool
    ) -> StreamTranslator: ...

    def embeddings_request(
        self, deployment: Deployment, request: EmbeddingRequest, body: dict[str, Any]
    ) -> UpstreamRequest: ...

    def embeddings_response(
        self, deployment: Deployment, request: EmbeddingRequest, content: bytes
    ) -> TranslatedResponse: ...

    def error(self, status: int, content: bytes, headers: dict[str, str]) -> GatewayError:
        """The OpenAI-shaped error for a non-2xx native answer."""
        ...
