"""What the answer says about itself that the request context does not hold: its id and finish reasons
(and, for an app that records none, its model and usage).

Read off the wire as it passes, only while a span records: a JSON answer is kept (references, up to a
bound) and decoded once at the end; of a stream, only the events that carry these facts are decoded
(the first, and those holding a dialect's marks), never the text deltas in between.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from ..kernel.context import Usage
from ..kernel.dialects import Dialect, dialect_for
from ..kernel.sse import DONE_DATA, SSEDecoder, parse_event
from ..kernel.types import Headers

#: A JSON answer past this many bytes is not kept (the span then has no id or finish reasons).
MAX_JSON_BYTES = 4 * 1024 * 1024
#: An id or a finish reason longer than this is not one (it is cut).
_MAX_VALUE = 128

#: Stream events worth decoding, per dialect, besides the first: those carrying a finish reason or usage.
_FINISH = re.compile(rb'"finish_reason"\s*:\s*"')
_MARKS: dict[str, tuple[bytes, ...]] = {
    "messages": (b"message_delta",),
    "responses": (b'"response.completed"', b'"response.incomplete"', b'"response.failed"'),
}


class AnswerFacts:
    """Fed the response's start and body messages; then ``id``, ``model``, ``finish_reasons`` and
    :meth:`usage` say what the answer reported."""

    __slots__ = (
        "_chunks",
        "_decoder",
        "_dialect",
        "_first",
        "_json_usage",
        "_kind",
        "_marks",
        "_meter",
        "_route",
        "_size",
        "finish_reasons",
        "id",
        "model",
    )

    def __init__(self, route: str) -> None:
        self._route = route
        self._dialect: Dialect = dialect_for(route)
        self._marks = (*_MARKS.get(self._dialect.name, ()), self._dialect.usage_mark)
        self._kind: str | None = None
        self._chunks: list[bytes] = []
        self._size = 0
        self._decoder: SSEDecoder | None = None
        self._meter = self._dialect.stream_meter()
        self._first = True
        self._json_usage: Usage | None = None
        self.id: str | None = None
        self.model: str | None = None
        self.finish_reasons: list[str] = []

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
            for raw in self._decoder.feed(chunk):
                if self._first or any(mark in raw for mark in self._marks) or _FINISH.search(raw):
                    self._event(raw)

    def finish(self) -> None:
        """The answer is complete: decode a kept JSON answer."""
        if self._kind != "json" or not self._chunks:
            return
        try:
            payload = orjson.loads(b"".join(self._chunks))
        except orjson.JSONDecodeError:
            return
        finally:
            self._chunks = []
        if isinstance(payload, dict):
            self._read(payload)
            self._json_usage = self._usage_of(payload)

    def usage(self) -> Usage | None:
        """The usage the answer reported, if any."""
        return self._json_usage if self._kind == "json" else self._meter.usage

    # -- reading ------------------------------------------------------------------------------------

    def _event(self, raw: bytes) -> None:
        event = parse_event(raw)
        if not event.data or event.data == DONE_DATA:
            return
        try:
            payload: Any = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(payload, dict):
            return
        self._first = False
        if self._dialect.usage_mark in raw:
            self._meter.feed(event.event, payload)
        self._read(payload)

    def _read(self, payload: dict[str, Any]) -> None:
        """The id, model and finish reasons of one answer, or one stream event, in the client's dialect."""
        name = self._dialect.name
        if name == "messages":
            if payload.get("type") == "message_start":
                payload = payload.get("message") or {}
            elif payload.get("type") == "message_delta":
                self._reason((payload.get("delta") or {}).get("stop_reason"))
                return
            if isinstance(payload, dict) and payload.get("type") == "message":
                self._identify(payload)
                self._reason(payload.get("stop_reason"))
        elif name == "responses":
            if isinstance(payload.get("response"), dict):
                payload = payload["response"]  # a stream event wraps the response object
            if payload.get("object") == "response":
                self._identify(payload)
                status = payload.get("status")
                details = payload.get("incomplete_details")
                reason = details.get("reason") if isinstance(details, dict) else None
                if status in ("completed", "incomplete", "failed"):
                    self._reason(reason if status == "incomplete" and reason else status)
        else:
            # chat completions (answers and chunks alike) and embeddings
            self._identify(payload)
            choices = payload.get("choices")
            if isinstance(choices, list):
                for choice in choices:
                    if isinstance(choice, dict):
                        self._reason(choice.get("finish_reason"))

    def _identify(self, payload: dict[str, Any]) -> None:
        if self.id is None and isinstance(payload.get("id"), str):
            self.id = payload["id"][:_MAX_VALUE]
        if self.model is None and isinstance(payload.get("model"), str):
            self.model = payload["model"][:_MAX_VALUE]

    def _reason(self, reason: Any) -> None:
        if isinstance(reason, str) and reason:
            self.finish_reasons.append(reason[:_MAX_VALUE])

    def _usage_of(self, payload: dict[str, Any]) -> Usage | None:
        if self._route == "embeddings":
            return Usage.from_openai(payload.get("usage"))
        return self._dialect.usage(payload)
