"""What the cache does per dialect: read the request, capture the answer, decode and replay the entry.

The middleware asks :data:`FORMATS` with the request's route and holds no special case for any dialect;
a new wire format is a request view and an entry module here (see docs/architecture.md, "Dialects").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..kernel.body import JSONBody
from .chat_request import chat_valid, chat_view
from .entry import CachedAnswer, StreamAssembler
from .messages_request import MessagesView
from .replay_messages import CachedMessage, MessageAssembler
from .replay_responses import CachedResponse, ResponseAssembler
from .responses_request import ResponsesView

#: A stored answer of any dialect.
Entry = CachedAnswer | CachedMessage | CachedResponse


class RequestView(Protocol):
    """The request fields the cache acts on."""

    @property
    def model(self) -> str: ...

    @property
    def stream(self) -> bool: ...

    @property
    def include_usage(self) -> bool: ...

    def cacheable(self, max_temperature: float | None) -> bool: ...


class Assembler(Protocol):
    """Rebuilds an answer from the SSE events of a stream as they pass."""

    def feed(self, raw: bytes) -> None: ...

    def answer(self) -> Entry | None: ...


@dataclass(frozen=True, slots=True)
class EntryFormat:
    #: The request's view; ``None`` when the body is not a valid request of the dialect.
    view: Callable[[JSONBody], RequestView | None]
    #: Whether the whole body is valid (asked before the semantic layer only).
    valid: Callable[[JSONBody], bool]
    entry: type[CachedAnswer] | type[CachedMessage] | type[CachedResponse]
    #: The answer of a complete JSON body; ``None`` when it is not one to cache.
    from_json: Callable[[bytes], Entry | None]
    assembler: Callable[[], Assembler]
    #: The entry as replayed to the request of this view (a copy when it differs: entries are shared).
    bind: Callable[[Entry, RequestView], Entry] = lambda entry, view: entry
    #: Whether one view may serve every request of the same bytes (it holds values only, no part of the
    #: body that a layer may change): the cache then remembers it with the body's keys.
    view_shared: bool = True


def _messages_view(body: JSONBody) -> MessagesView | None:
    return MessagesView.read(body.data)


def _always(body: JSONBody) -> bool:
    return True  # the view's read checked every field the cache relies on


def _responses_view(body: JSONBody) -> ResponsesView | None:
    return ResponsesView.read(body.data)


def _responses_bind(entry: Entry, view: RequestView) -> Entry:
    # a response echoes metadata, user, ...: the asking request's, which the key leaves out
    if isinstance(entry, CachedResponse) and isinstance(view, ResponsesView):
        return entry.answering(view.echo)
    return entry


FORMATS: dict[str, EntryFormat] = {
    "chat": EntryFormat(chat_view, chat_valid, CachedAnswer, CachedAnswer.from_json, StreamAssembler),
    "messages": EntryFormat(
        _messages_view, _always, CachedMessage, CachedMessage.from_json, MessageAssembler
    ),
    "responses": EntryFormat(
        _responses_view,
        _always,
        CachedResponse,
        CachedResponse.from_json,
        ResponseAssembler,
        _responses_bind,
        view_shared=False,  # its echo holds the request's metadata: read from each request's own body
    ),
}
