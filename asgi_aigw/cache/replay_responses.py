"""A cached OpenAI Responses answer: captured from a ``response`` object or its typed event stream,
replayed as either.

What is kept is the final ``response`` object (status, output items, usage, model and the settings it
echoes) and the headers that say who answered; never its ids: every replay gets a fresh ``resp_`` id,
fresh item ids (``msg_``, ``fc_``, ``rs_``) and the current time, like a live answer. A function call's
``call_id`` is kept (the client's ``function_call_output`` names it). The request fields that are not
part of the key but echoed in the response (``metadata``, ``user``, ...) are the asking request's.

A replayed stream is the documented event sequence, numbered by ``sequence_number`` from 0:
``response.created``, ``response.in_progress``, per output item ``response.output_item.added``, for
a message per part ``response.content_part.added``, its ``response.output_text.delta`` (or
``response.refusal.delta``) pieces, ``response.output_text.done`` (``response.refusal.done``) and
``response.content_part.done``, for a function call its ``response.function_call_arguments.delta``
pieces and ``response.function_call_arguments.done``, then ``response.output_item.done``; last
``response.completed`` (``response.incomplete``) with the whole response.

Only answers made of what such a replay reproduces are stored: ``message`` items of ``output_text``
parts without annotations or log probabilities and ``refusal`` parts, ``function_call`` items, and
``reasoning`` items with neither summary nor ``encrypted_content`` (reasoning a replay could not
stream faithfully, or that the client would send back to a model that never produced it, is not
cached), in a response ``completed`` or ``incomplete`` at ``max_output_tokens``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from ..kernel.context import Usage
from ..kernel.dialects.responses import usage_from_responses
from .entry import split_pieces
from .stored import decode_entry, encode_entry, kept_headers, replayed, stored_at, stored_headers
from .stream_event import stream_event
from .usage_memo import UsageMemo

DIALECT = "responses"

#: The stream events whose ``response`` is the whole, final answer.
_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete"})
#: Item id prefix per output item type.
_ITEM_PREFIX = {"message": "msg_", "function_call": "fc_", "reasoning": "rs_"}


def new_id(prefix: str) -> str:
    return prefix + os.urandom(16).hex()


def _empty(value: Any) -> bool:
    return value is None or value == []


def _part(value: Any) -> dict[str, Any] | None:
    """A message content part the cache can replay, in its stored form; ``None`` for any other."""
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    if (
        kind == "output_text"
        and isinstance(value.get("text"), str)
        and _empty(value.get("annotations"))
        and _empty(value.get("logprobs"))
    ):
        return {"type": "output_text", "text": value["text"], "annotations": [], "logprobs": []}
    if kind == "refusal" and isinstance(value.get("refusal"), str):
        return {"type": "refusal", "refusal": value["refusal"]}
    return None


def _item(value: Any) -> dict[str, Any] | None:
    """An output item the cache can replay, in its stored form (its id left out); ``None`` otherwise."""
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    status = value.get("status") if isinstance(value.get("status"), str) else "completed"
    if kind == "message" and value.get("role") == "assistant" and isinstance(value.get("content"), list):
        parts = [_part(p) for p in value["content"]]
        if any(p is None for p in parts):
            return None
        return {"type": "message", "status": status, "role": "assistant", "content": parts}
    if (
        kind == "function_call"
        and isinstance(value.get("call_id"), str)
        and isinstance(value.get("name"), str)
        and isinstance(value.get("arguments"), str)
    ):
        return {
            "type": "function_call",
            "status": status,
            "call_id": value["call_id"],
            "name": value["name"],
            "arguments": value["arguments"],
        }
    if (
        kind == "reasoning"
        and value.get("summary") == []
        and _empty(value.get("content"))
        and value.get("encrypted_content") is None
    ):
        return {"type": "reasoning", "summary": []}
    return None


def _response(value: Any) -> dict[str, Any] | None:
    """A ``response`` object worth replaying, without its ids; ``None`` for any other."""
    if not isinstance(value, dict) or value.get("object") != "response":
        return None
    status, output = value.get("status"), value.get("output")
    incomplete = value.get("incomplete_details")
    if status == "incomplete":
        if not isinstance(incomplete, dict) or incomplete.get("reason") != "max_output_tokens":
            return None  # a content filter's cut is not an answer to repeat
    elif status != "completed":
        return None
    if not isinstance(value.get("model"), str) or not isinstance(output, list):
        return None
    items = [_item(i) for i in output]
    if any(i is None for i in items):
        return None
    kept = {k: v for k, v in value.items() if k not in ("id", "created_at")}
    if "completed_at" in kept:
        kept["completed_at"] = None  # a replay's own time (see CachedResponse._fresh)
    return {**kept, "output": items}


@dataclass(slots=True)
class CachedResponse:
    #: The ``response`` object without its ids and times (see :func:`_response`).
    response: dict[str, Any]
    #: :data:`REPLAYED_HEADERS` of the answer that was stored, as (name, value) text pairs.
    headers: list[tuple[str, str]] | None = None
    created_at: float = field(default_factory=time.time)
    #: The asking request's echoed fields (see :meth:`answering`); empty: the stored ones.
    echo: Mapping[str, Any] = field(default_factory=dict)
    _usage: UsageMemo = field(
        default_factory=lambda: UsageMemo(usage_from_responses), init=False, repr=False, compare=False
    )

    @property
    def model(self) -> str:
        return str(self.response["model"])

    @property
    def usage(self) -> dict[str, Any] | None:
        usage = self.response.get("usage")
        return usage if isinstance(usage, dict) else None

    # -- storage --------------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        return encode_entry(DIALECT, {"response": self.response}, self.headers, self.created_at)

    @classmethod
    def from_bytes(cls, raw: bytes | str) -> CachedResponse | None:
        """The answer stored as ``raw``; ``None`` if it is not a Responses entry of this version."""
        data = decode_entry(raw, DIALECT)
        if data is None:
            return None
        response = _response(data.get("response"))
        if response is None:
            return None
        return cls(
            response=response,
            headers=stored_headers(data),
            created_at=stored_at(data),
        )

    # -- capture --------------------------------------------------------------------------------------

    @classmethod
    def from_json(cls, body: bytes) -> CachedResponse | None:
        """From a complete ``response`` body; ``None`` if it is not one to replay."""
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        response = _response(data)
        return cls(response=response) if response is not None else None

    @property
    def has_tool_use(self) -> bool:
        return any(item["type"] == "function_call" for item in self.response["output"])

    def worth_storing(self, *, cache_tool_calls: bool) -> bool:
        return cache_tool_calls or not self.has_tool_use

    def keep_headers(self, headers: Any) -> None:
        """Keep the :data:`REPLAYED_HEADERS` among the answer's response ``headers``."""
        self.headers = kept_headers(headers)

    def replayed_headers(self) -> list[tuple[bytes, bytes]]:
        """The stored headers, ready for ``http.response.start``."""
        return replayed(self.headers)

    def replay_usage(self) -> Usage | None:
        """The usage a hit reports to the other layers: the stored answer's own figures."""
        return self._usage(self.usage)

    def fill_usage(self, usage: Usage) -> None:
        """Store ``usage`` (read by the router) with an answer whose stream carried none."""
        self.response["usage"] = {
            "input_tokens": usage.prompt_tokens,
            "input_tokens_details": {
                "cached_tokens": usage.cached_tokens,
                "cache_write_tokens": usage.cache_write_tokens,
            },
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
        }

    # -- replay ---------------------------------------------------------------------------------------

    def answering(self, echo: Mapping[str, Any]) -> CachedResponse:
        """This answer as replayed to a request whose :data:`ECHOED_FIELDS` are ``echo`` (a copy: the
        decoded entry is shared between requests)."""
        return replace(self, echo=echo)

    def _fresh(self) -> dict[str, Any]:
        """The ``response`` object as a live answer would have it: fresh ids and time, the asking
        request's echoed fields."""
        now = int(time.time())
        response: dict[str, Any] = {"id": new_id("resp_"), "created_at": now, **self.response}
        if "completed_at" in response:
            response["completed_at"] = now
        for name, value in self.echo.items():
            if name in response:
                response[name] = ({} if value is None else value) if name == "metadata" else value
        response["output"] = [
            {"id": new_id(_ITEM_PREFIX[item["type"]]), **item} for item in self.response["output"]
        ]
        return response

    def to_json(self) -> bytes:
        """A ``response`` body, as a live answer would be."""
        return orjson.dumps(self._fresh())

    def to_sse(self, *, include_usage: bool = True) -> list[bytes]:
        """The typed events of a live stream (usage is always in the final event; ``include_usage`` is
        accepted for the chat answer's signature)."""
        return _EventWriter(self._fresh()).events()


class _EventWriter:
    """Writes the event sequence of one ``response``, numbering events from 0."""

    __slots__ = ("_events", "_response", "_sequence")

    def __init__(self, response: dict[str, Any]) -> None:
        self._response = response
        self._events: list[bytes] = []
        self._sequence = 0

    def events(self) -> list[bytes]:
        response = self._response
        # the first two events show the response before any output: in progress, no usage yet
        started = {
            **response,
            "status": "in_progress",
            "output": [],
            "usage": None,
            "incomplete_details": None,
        }
        if "completed_at" in started:
            started["completed_at"] = None
        self._emit("response.created", {"response": started})
        self._emit("response.in_progress", {"response": started})
        for index, item in enumerate(response["output"]):
            if item["type"] == "message":
                self._message(index, item)
            elif item["type"] == "function_call":
                self._call(index, item)
            else:
                self._emit("response.output_item.added", {"output_index": index, "item": item})
                self._emit("response.output_item.done", {"output_index": index, "item": item})
        self._emit(f"response.{response['status']}", {"response": response})
        return self._events

    def _message(self, index: int, item: dict[str, Any]) -> None:
        opened = {**item, "status": "in_progress", "content": []}
        self._emit("response.output_item.added", {"output_index": index, "item": opened})
        for content_index, part in enumerate(item["content"]):
            where = {"item_id": item["id"], "output_index": index, "content_index": content_index}
            if part["type"] == "output_text":
                self._emit("response.content_part.added", {**where, "part": {**part, "text": ""}})
                for piece in split_pieces(part["text"]):
                    self._emit("response.output_text.delta", {**where, "delta": piece, "logprobs": []})
                self._emit("response.output_text.done", {**where, "text": part["text"], "logprobs": []})
            else:
                self._emit("response.content_part.added", {**where, "part": {**part, "refusal": ""}})
                for piece in split_pieces(part["refusal"]):
                    self._emit("response.refusal.delta", {**where, "delta": piece})
                self._emit("response.refusal.done", {**where, "refusal": part["refusal"]})
            self._emit("response.content_part.done", {**where, "part": part})
        self._emit("response.output_item.done", {"output_index": index, "item": item})

    def _call(self, index: int, item: dict[str, Any]) -> None:
        opened = {**item, "status": "in_progress", "arguments": ""}
        self._emit("response.output_item.added", {"output_index": index, "item": opened})
        where = {"item_id": item["id"], "output_index": index}
        for piece in split_pieces(item["arguments"]):
            self._emit("response.function_call_arguments.delta", {**where, "delta": piece})
        self._emit("response.function_call_arguments.done", {**where, "arguments": item["arguments"]})
        self._emit("response.output_item.done", {"output_index": index, "item": item})

    def _emit(self, kind: str, payload: dict[str, Any]) -> None:
        data = {"type": kind, **payload, "sequence_number": self._sequence}
        self._sequence += 1
        self._events.append(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")


class ResponseAssembler:
    """Keeps the ``response`` of a Responses stream's final event as the events pass.

    ``response.completed`` (or ``response.incomplete``) carries the whole response, output items
    included, so nothing is rebuilt from the deltas. ``failed`` turns true on anything that must not be
    cached: an ``error`` or ``response.failed`` event, an event that is not a JSON object.
    """

    __slots__ = ("_final", "failed")

    def __init__(self) -> None:
        self._final: Any = None
        self.failed = False

    def feed(self, raw: bytes) -> None:
        if self.failed:
            return
        data, self.failed = stream_event(raw)
        if data is None:
            return
        kind = data.get("type")
        if kind in ("error", "response.failed"):
            self.failed = True
        elif kind in _FINAL_EVENTS:
            self._final = data.get("response")

    def answer(self) -> CachedResponse | None:
        """The final response, or ``None`` when the stream is not one to cache."""
        if self.failed or self._final is None:
            return None
        response = _response(self._final)
        return CachedResponse(response=response) if response is not None else None
