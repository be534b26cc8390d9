"""What the dialect translations share: the translated request, and the reading of an adapter's chunks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import orjson

from ..kernel.context import Usage
from ..kernel.errors import UpstreamError
from ..kernel.models import ChatCompletionRequest
from ..kernel.sse import parse_event
from ..providers.base import StreamTranslator

#: The chat stream's last event.
DONE = b"[DONE]"


class ChatTranslation(NamedTuple):
    """The chat completion body, the same validated, and the client's fields left out as hints."""

    body: dict[str, Any]
    request: ChatCompletionRequest
    dropped: list[str]


def chat_payloads(events: Iterable[bytes]) -> Iterator[Any]:
    """The decoded JSON of each chat SSE event an adapter wrote, :data:`DONE` as it is; events without
    data are skipped. Read lazily, so a caller that has finished stops reading."""
    for raw in events:
        data = parse_event(raw).data
        if not data:
            continue
        if data == DONE:
            yield DONE
            continue
        try:
            yield orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError("The upstream sent a stream event that is not valid JSON.") from None


class ChatStreamTranslation:
    """Wraps the chat stream translator of an adapter: what a dialect's stream reports besides its events.

    A subclass writes its events in :meth:`_translate`, from the chat events the adapter made."""

    __slots__ = ("_inner", "_model", "done")

    def __init__(self, inner: StreamTranslator, model: str) -> None:
        self._inner = inner
        self._model = model
        self.done = False

    @property
    def usage(self) -> Usage | None:
        return self._inner.usage

    @property
    def upstream_model(self) -> str:
        return self._model

    def feed(self, chunk: bytes) -> list[bytes]:
        return self._translate(self._inner.feed(chunk))

    def close(self) -> list[bytes]:
        return self._translate(self._inner.close())

    def _translate(self, events: list[bytes]) -> list[bytes]:
        raise NotImplementedError
