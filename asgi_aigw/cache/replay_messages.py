"""A cached Anthropic Messages answer: captured from a JSON ``message`` or its SSE events, replayed as either.

What is kept is the final message (its ``text`` and ``tool_use`` blocks, ``stop_reason``,
``stop_sequence``, ``usage``, model) and the headers that say who answered; never the message id, so
every replay gets a fresh ``msg_`` id like a live answer. A replayed stream is Anthropic's event sequence
(docs.anthropic.com, "Streaming Messages"): ``message_start`` (with the usage's input figures),
for each block ``content_block_start``, its ``text_delta`` or ``input_json_delta`` pieces and
``content_block_stop``, then ``message_delta`` (``stop_reason``, cumulative usage) and ``message_stop``.

Answers with other blocks (thinking, server tools and their results, text with citations) are not
cached: their stream events carry signatures and results a replay could not reproduce faithfully.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..kernel.context import Usage
from .entry import split_pieces
from .stored import decode_entry, encode_entry, kept_headers, replayed, stored_at, stored_headers
from .stream_event import stream_event
from .usage_memo import UsageMemo

DIALECT = "messages"

#: Stop reasons of answers worth replaying (``refusal``, ``pause_turn``, ``model_context_window_exceeded``
#: and unknown ones are not stored).
CACHEABLE_STOPS = frozenset({"end_turn", "max_tokens", "stop_sequence", "tool_use"})


def _block(value: Any) -> dict[str, Any] | None:
    """A content block the cache can replay, in its stored form; ``None`` for any other."""
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    if kind == "text" and isinstance(value.get("text"), str) and not value.get("citations"):
        return {"type": "text", "text": value["text"]}
    if (
        kind == "tool_use"
        and isinstance(value.get("id"), str)
        and isinstance(value.get("name"), str)
        and isinstance(value.get("input"), dict)
    ):
        return {"type": "tool_use", "id": value["id"], "name": value["name"], "input": value["input"]}
    return None


def new_message_id() -> str:
    return "msg_" + os.urandom(12).hex()


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


@dataclass(slots=True)
class CachedMessage:
    model: str
    content: list[dict[str, Any]]
    stop_reason: str
    stop_sequence: str | None = None
    #: Anthropic's ``usage`` object as the provider reported it.
    usage: dict[str, Any] | None = None
    #: :data:`REPLAYED_HEADERS` of the answer that was stored, as (name, value) text pairs.
    headers: list[tuple[str, str]] | None = None
    created_at: float = field(default_factory=time.time)
    _usage: UsageMemo = field(
        default_factory=lambda: UsageMemo(Usage.from_anthropic), init=False, repr=False, compare=False
    )

    # -- storage --------------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        return encode_entry(
            DIALECT,
            {
                "model": self.model,
                "content": self.content,
                "stop_reason": self.stop_reason,
                "stop_sequence": self.stop_sequence,
                "usage": self.usage,
            },
            self.headers,
            self.created_at,
        )

    @classmethod
    def from_bytes(cls, raw: bytes | str) -> CachedMessage | None:
        """The answer stored as ``raw``; ``None`` if it is not a Messages entry of this version."""
        data = decode_entry(raw, DIALECT)
        if data is None:
            return None
        content = data.get("content")
        blocks = [_block(b) for b in content] if isinstance(content, list) else [None]
        if not isinstance(data.get("model"), str) or not isinstance(data.get("stop_reason"), str):
            return None
        if any(b is None for b in blocks):
            return None
        return cls(
            model=data["model"],
            content=[b for b in blocks if b is not None],
            stop_reason=data["stop_reason"],
            stop_sequence=data["stop_sequence"] if isinstance(data.get("stop_sequence"), str) else None,
            usage=data["usage"] if isinstance(data.get("usage"), dict) else None,
            headers=stored_headers(data),
            created_at=stored_at(data),
        )

    # -- capture --------------------------------------------------------------------------------------

    @classmethod
    def from_json(cls, body: bytes) -> CachedMessage | None:
        """From a complete ``message`` body; ``None`` if it is not one or holds a block not replayed."""
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, dict) or data.get("type") != "message" or data.get("role") != "assistant":
            return None
        content = data.get("content")
        if not isinstance(content, list) or not isinstance(data.get("stop_reason"), str):
            return None
        blocks = [_block(b) for b in content]
        if any(b is None for b in blocks):
            return None
        return cls(
            model=str(data.get("model") or ""),
            content=[b for b in blocks if b is not None],
            stop_reason=data["stop_reason"],
            stop_sequence=data["stop_sequence"] if isinstance(data.get("stop_sequence"), str) else None,
            usage=data["usage"] if isinstance(data.get("usage"), dict) else None,
        )

    @property
    def has_tool_use(self) -> bool:
        return any(block["type"] == "tool_use" for block in self.content)

    def worth_storing(self, *, cache_tool_calls: bool) -> bool:
        return self.stop_reason in CACHEABLE_STOPS and (cache_tool_calls or not self.has_tool_use)

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
        self.usage = usage.to_anthropic()

    # -- replay ---------------------------------------------------------------------------------------

    def to_json(self) -> bytes:
        """A ``message`` body, as a live answer would be."""
        return orjson.dumps(
            {
                "id": new_message_id(),
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": self.content,
                "stop_reason": self.stop_reason,
                "stop_sequence": self.stop_sequence,
                "usage": self.usage or {"input_tokens": 0, "output_tokens": 0},
            }
        )

    def to_sse(self, *, include_usage: bool = True) -> list[bytes]:
        """The SSE events of a live stream (usage is always part of Anthropic's; ``include_usage`` is
        accepted for the chat answer's signature)."""
        usage = self.usage or {"input_tokens": 0, "output_tokens": 0}
        output = usage.get("output_tokens")
        output_tokens = output if type(output) is int else 0
        # message_start reports the input figures and the first output token, as a live stream does;
        # message_delta's figures are cumulative: the whole stored usage
        start_usage = {**usage, "output_tokens": min(output_tokens, 1)}
        events = [
            _event(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": new_message_id(),
                        "type": "message",
                        "role": "assistant",
                        "model": self.model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": start_usage,
                    },
                },
            )
        ]
        for index, block in enumerate(self.content):
            if block["type"] == "tool_use":
                start = {**block, "input": {}}
                arguments = orjson.dumps(block["input"]).decode()
                deltas = [
                    {"type": "input_json_delta", "partial_json": piece} for piece in split_pieces(arguments)
                ]
            else:
                start = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": piece} for piece in split_pieces(block["text"])]
            events.append(
                _event(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": start},
                )
            )
            events.extend(
                _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
                for d in deltas
            )
            events.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
        events.append(
            _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self.stop_reason, "stop_sequence": self.stop_sequence},
                    "usage": {**usage, "output_tokens": output_tokens},
                },
            )
        )
        events.append(_event("message_stop", {"type": "message_stop"}))
        return events


class MessageAssembler:
    """Rebuilds the final message from the SSE events of a Messages stream as they pass.

    ``failed`` turns true on anything that must not be cached: an ``error`` event, an event that is not
    JSON, a block or delta the cache does not replay (thinking, citations, server tools).
    """

    __slots__ = ("_blocks", "_json", "failed", "model", "stop_reason", "stop_sequence", "stopped", "usage")

    def __init__(self) -> None:
        self._blocks: dict[int, dict[str, Any]] = {}
        self._json: dict[int, list[str]] = {}
        self.model = ""
        self.stop_reason: str | None = None
        self.stop_sequence: str | None = None
        self.usage: dict[str, Any] | None = None
        self.failed = False
        #: ``message_stop`` was seen: the stream ended as a whole (Anthropic sends no ``[DONE]``).
        self.stopped = False

    def feed(self, raw: bytes) -> None:
        if self.failed:
            return
        data, self.failed = stream_event(raw)
        if data is None:
            return
        kind = data.get("type")
        if kind == "message_start":
            message = data.get("message")
            if isinstance(message, dict):
                if isinstance(message.get("model"), str):
                    self.model = message["model"]
                self._merge_usage(message.get("usage"))
        elif kind == "content_block_start":
            self._start_block(data)
        elif kind == "content_block_delta":
            self._add_delta(data)
        elif kind == "message_delta":
            delta = data.get("delta")
            if isinstance(delta, dict):
                if isinstance(delta.get("stop_reason"), str):
                    self.stop_reason = delta["stop_reason"]
                if isinstance(delta.get("stop_sequence"), str):
                    self.stop_sequence = delta["stop_sequence"]
            self._merge_usage(data.get("usage"))
        elif kind == "message_stop":
            self.stopped = True
        elif kind == "error":
            self.failed = True

    def _merge_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            # message_delta's figures are cumulative: later values replace earlier ones (as the dialect's
            # stream meter reads them); absent or null ones stay
            self.usage = {**(self.usage or {}), **{k: v for k, v in usage.items() if v is not None}}

    def _start_block(self, data: dict[str, Any]) -> None:
        index, block = data.get("index"), data.get("content_block")
        if type(index) is not int or not isinstance(block, dict) or index in self._blocks:
            self.failed = True
            return
        if block.get("type") == "tool_use":
            block = {**block, "input": {}}
            self._json[index] = []
        block = _block(block)
        if block is None:
            self.failed = True
            return
        self._blocks[index] = block

    def _add_delta(self, data: dict[str, Any]) -> None:
        block = self._blocks.get(data.get("index"))  # type: ignore[arg-type]
        delta = data.get("delta")
        if block is None or not isinstance(delta, dict):
            self.failed = True
            return
        kind = delta.get("type")
        if kind == "text_delta" and block["type"] == "text" and isinstance(delta.get("text"), str):
            block["text"] += delta["text"]
        elif (
            kind == "input_json_delta"
            and block["type"] == "tool_use"
            and isinstance(delta.get("partial_json"), str)
        ):
            self._json[data["index"]].append(delta["partial_json"])
        else:
            self.failed = True  # thinking, signatures, citations: not replayed

    def answer(self) -> CachedMessage | None:
        """The assembled message, or ``None`` when the stream is not one to cache."""
        if self.failed or self.stop_reason is None or not self.stopped:
            return None
        content: list[dict[str, Any]] = []
        for index in sorted(self._blocks):
            block = self._blocks[index]
            if block["type"] == "tool_use":
                arguments = "".join(self._json[index])
                try:
                    # a tool called with no arguments streams no delta at all
                    block["input"] = orjson.loads(arguments) if arguments else {}
                except orjson.JSONDecodeError:
                    return None
                if not isinstance(block["input"], dict):
                    return None
            content.append(block)
        return CachedMessage(
            model=self.model,
            content=content,
            stop_reason=self.stop_reason,
            stop_sequence=self.stop_sequence,
            usage=self.usage,
        )
