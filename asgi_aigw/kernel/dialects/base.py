"""The :class:`Dialect` contract every wire format implements."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..context import Usage
    from ..errors import GatewayError


class StreamMeter(Protocol):
    """Reads one answer stream, event by event: usage, model and generated text as they arrive.

    Stateful because some formats spread usage over several events (Anthropic reports input tokens in
    ``message_start`` and the cumulative output tokens in ``message_delta``).
    """

    #: Usage as reported so far; ``None`` until an event carried some.
    usage: Usage | None
    #: The upstream model, once an event named it.
    model: str | None

    def feed(self, event: str | None, payload: Any) -> str:
        """One decoded event (its ``event:`` name and parsed ``data``); returns the text it generated."""
        ...


class Dialect(Protocol):
    """One client-facing wire format."""

    #: ``"chat"``, ``"messages"``, ``"responses"``: the ``dialect`` column of the request log and part of
    #: cache keys.
    name: str
    #: Bytes only a stream event carrying usage holds: a layer reading usage off a stream decodes only
    #: the events holding them.
    usage_mark: bytes
    #: Bytes of the event whose usage is final (Anthropic's ``message_start`` reports input only).
    final_mark: bytes
    #: Whether a request without the output cap is refused (Anthropic requires ``max_tokens``); when
    #: not, a layer that needs a cap writes one into :meth:`cap_field`.
    cap_required: bool

    def error_body(self, exc: GatewayError) -> bytes:
        """The JSON body of an error answer in this format."""
        ...

    def error_event(self, exc: GatewayError) -> bytes:
        """The final SSE event for an error once a stream has started."""
        ...

    def client_cap(self, data: Mapping[str, Any]) -> int | None:
        """The output cap the request sets, ``None`` if none; ``ValueError`` naming the field when the
        value is not a positive integer."""
        ...

    def cap_field(self, model: str | None) -> str:
        """The field the gateway writes a cap into when the client set none."""
        ...

    def choices(self, data: Mapping[str, Any]) -> int:
        """How many answers the request asks for (OpenAI's ``n``; 1 elsewhere)."""
        ...

    def usage(self, payload: Any) -> Usage | None:
        """The usage of a complete JSON answer, ``None`` when absent or malformed."""
        ...

    def answer_text(self, payload: Any) -> str:
        """The generated text of a complete JSON answer (content, tool-call arguments, refusals)."""
        ...

    def stream_meter(self) -> StreamMeter:
        """A fresh meter for one answer stream."""
        ...
