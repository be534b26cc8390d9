"""The usage of an answer, read off the wire as it passes, for a row whose request no router metered.

In front of any app speaking a dialect (chat completions, Anthropic Messages, OpenAI Responses), no
layer may fill ``ctx.usage``; the answer still says what it cost. The reader keeps a JSON answer's
chunks (references, no copies, up to a bound) and decodes only the stream events that carry usage,
through the dialect.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..kernel.context import Usage
from ..kernel.dialects import Dialect
from ..kernel.sse import DONE_DATA, SSEDecoder, parse_event
from ..kernel.types import Headers

#: A JSON answer past this many bytes is not kept for its usage (the row then has none).
MAX_JSON_BYTES = 4 * 1024 * 1024


class AnswerUsage:
    """Fed the response's start and body messages; :meth:`usage` gives what the answer reported."""

    __slots__ = ("_chunks", "_decoder", "_dialect", "_final", "_kind", "_reader", "_size")

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._kind: str | None = None
        self._chunks: list[bytes] = []
        self._size = 0
        self._decoder: SSEDecoder | None = None
        self._reader = dialect.stream_meter()
        self._final = False

    def start(self, status: int, headers: Headers) -> None:
        if not 200 <= status < 300:
            return
        content_type = next((v.lower() for k, v in headers if k.lower() == b"content-type"), b"")
        if content_type.startswith(b"application/json"):
            self._kind = "json"
        elif content_type.startswith(b"text/event-stream"):
            self._kind = "sse"
            self._decoder = SSEDecoder()

    def body(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self._kind == "json":
            self._size += len(chunk)
            if self._size > MAX_JSON_BYTES:
                self._kind, self._chunks = None, []
            else:
                self._chunks.append(chunk)
        elif self._decoder is not None:
            # only the events holding the dialect's usage mark are decoded
            mark = self._dialect.usage_mark
            for raw in self._decoder.feed(chunk):
                if mark in raw:
                    self._feed(raw)

    def _feed(self, raw: bytes) -> None:
        event = parse_event(raw)
        if not event.data or event.data == DONE_DATA:
            return
        try:
            payload: Any = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return
        self._reader.feed(event.event, payload)
        if self._reader.usage is not None and self._dialect.final_mark in raw:
            self._final = True

    def usage(self) -> Usage | None:
        """The usage the answer reported; marked estimated when a stream ended before its final figures."""
        if self._kind == "json" and self._chunks:
            try:
                payload = orjson.loads(b"".join(self._chunks))
            except orjson.JSONDecodeError:
                return None
            return self._dialect.usage(payload)
        usage = self._reader.usage
        if usage is not None and not self._final:
            usage.estimated = True
        return usage
