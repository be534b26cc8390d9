"""What the answer says about itself that the request context does not hold: its id and finish reasons
(and, for an app that records none, its model and usage).

Read off the wire as it passes, only while a span records: a JSON answer is kept (references, up to a
bound) and decoded once at the end; of a stream, only the events that carry these facts are decoded
(the first, and those holding a dialect's marks), never the text deltas in between.
"""

from __future__ import annotations

import re
from typing import Any

from ..kernel.answer_reader import AnswerReader
from ..kernel.context import Usage
from ..kernel.dialects import Dialect, dialect_for

#: An id or a finish reason longer than this is not one (it is cut).
_MAX_VALUE = 128

#: Stream events worth decoding, per dialect, besides the first: those carrying a finish reason or usage.
_FINISH = re.compile(rb'"finish_reason"\s*:\s*"')
_MARKS: dict[str, tuple[bytes, ...]] = {
    "messages": (b"message_delta",),
    "responses": (b'"response.completed"', b'"response.incomplete"', b'"response.failed"'),
}


class AnswerFacts(AnswerReader):
    """Fed the response's start and body messages; then ``id``, ``model``, ``finish_reasons`` and
    :meth:`usage` say what the answer reported."""

    __slots__ = (
        "_dialect",
        "_first",
        "_json_usage",
        "_marks",
        "_meter",
        "_route",
        "finish_reasons",
        "id",
        "model",
    )

    def __init__(self, route: str) -> None:
        super().__init__()
        self._route = route
        self._dialect: Dialect = dialect_for(route)
        self._marks = (*_MARKS.get(self._dialect.name, ()), self._dialect.usage_mark)
        self._meter = self._dialect.stream_meter()
        self._first = True
        self._json_usage: Usage | None = None
        self.id: str | None = None
        self.model: str | None = None
        self.finish_reasons: list[str] = []

    def wants(self, raw: bytes) -> bool:
        return self._first or any(mark in raw for mark in self._marks) or bool(_FINISH.search(raw))

    def finish(self) -> None:
        """The answer is complete: decode a kept JSON answer."""
        payload = self.answer()
        if isinstance(payload, dict):
            self._read(payload)
            self._json_usage = self._usage_of(payload)

    def usage(self) -> Usage | None:
        """The usage the answer reported, if any."""
        return self._json_usage if self.kind == "json" else self._meter.usage

    # -- reading ------------------------------------------------------------------------------------

    def event(self, name: str | None, payload: Any, raw: bytes) -> None:
        if not isinstance(payload, dict):
            return
        self._first = False
        if self._dialect.usage_mark in raw:
            self._meter.feed(name, payload)
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
