"""The usage of an answer, read off the wire as it passes, for a row whose request no router metered.

In front of any app speaking a dialect (chat completions, Anthropic Messages, OpenAI Responses), no
layer may fill ``ctx.usage``; the answer still says what it cost. The reader keeps a JSON answer's
chunks (references, no copies, up to a bound) and decodes only the stream events that carry usage,
through the dialect.
"""

from __future__ import annotations

from typing import Any

from ..kernel.answer_reader import AnswerReader
from ..kernel.context import Usage
from ..kernel.dialects import Dialect


class AnswerUsage(AnswerReader):
    """Fed the response's start and body messages; :meth:`usage` gives what the answer reported."""

    __slots__ = ("_dialect", "_final", "_reader")

    def __init__(self, dialect: Dialect) -> None:
        super().__init__()
        self._dialect = dialect
        self._reader = dialect.stream_meter()
        self._final = False

    def wants(self, raw: bytes) -> bool:
        # only the events holding the dialect's usage mark are decoded
        return self._dialect.usage_mark in raw

    def event(self, name: str | None, payload: Any, raw: bytes) -> None:
        self._reader.feed(name, payload)
        if self._reader.usage is not None and self._dialect.final_mark in raw:
            self._final = True

    def usage(self) -> Usage | None:
        """The usage the answer reported; marked estimated when a stream ended before its final figures."""
        if self.kind == "json":
            payload = self.answer()
            return None if payload is None else self._dialect.usage(payload)
        usage = self._reader.usage
        if usage is not None and not self._final:
            usage.estimated = True
        return usage
