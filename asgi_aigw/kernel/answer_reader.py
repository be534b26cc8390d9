"""Reading an answer off the wire as it passes, for a layer that needs a few facts from it (its usage, its
id) without holding up the bytes.

A JSON answer's chunks are kept (references, no copies, up to a bound) and decoded once at the end; of a
stream, only the events the reader asks for are handed to it, so text deltas are never decoded.
"""

from __future__ import annotations

from typing import Any

import orjson

from .sse import DONE_DATA, SSEDecoder, parse_event
from .types import Headers

#: A JSON answer past this many bytes is not kept (the reader then learns nothing from it).
MAX_JSON_BYTES = 4 * 1024 * 1024


class AnswerReader:
    """Fed the response's start and body messages. A subclass says which stream events it wants
    (:meth:`wants`, on the raw event) and reads them (:meth:`event`, decoded); :meth:`answer` is a JSON
    answer's decoded payload once the body is complete."""

    __slots__ = ("_chunks", "_decoder", "_size", "kind")

    def __init__(self) -> None:
        #: ``"json"``, ``"sse"``, or ``None`` (an error, another type, or a JSON answer past the bound).
        self.kind: str | None = None
        self._chunks: list[bytes] = []
        self._size = 0
        self._decoder: SSEDecoder | None = None

    def start(self, status: int, headers: Headers) -> None:
        if not 200 <= status < 300:
            return
        content_type = next((v.lower() for k, v in headers if k.lower() == b"content-type"), b"")
        if content_type.startswith(b"application/json"):
            self.kind = "json"
        elif content_type.startswith(b"text/event-stream"):
            self.kind = "sse"
            self._decoder = SSEDecoder()

    def body(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self.kind == "json":
            self._size += len(chunk)
            if self._size > MAX_JSON_BYTES:
                self.kind, self._chunks = None, []
            else:
                self._chunks.append(chunk)
        elif self._decoder is not None:
            for raw in self._decoder.feed(chunk):
                if self.wants(raw):
                    self._decode(raw)

    def answer(self) -> Any:
        """A complete JSON answer, decoded (``None`` when there is none or it is not JSON); its chunks are
        let go."""
        if self.kind != "json" or not self._chunks:
            return None
        chunks, self._chunks = self._chunks, []
        try:
            return orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError:
            return None

    def wants(self, raw: bytes) -> bool:
        """Whether a raw stream event is worth decoding."""
        return True

    def event(self, name: str | None, payload: Any, raw: bytes) -> None:
        """One wanted stream event's JSON data (``[DONE]`` and data that is not JSON are skipped)."""

    def _decode(self, raw: bytes) -> None:
        event = parse_event(raw)
        if not event.data or event.data == DONE_DATA:
            return
        try:
            payload: Any = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return
        self.event(event.event, payload, raw)
