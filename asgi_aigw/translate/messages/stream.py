"""A chat completion chunk stream as Anthropic's Messages event stream.

Anthropic's sequence (docs.anthropic.com "Streaming Messages"): ``message_start``; per content block a
``content_block_start``, its ``content_block_delta`` events (``text_delta``, ``input_json_delta``) and a
``content_block_stop``; then ``message_delta`` (stop reason, cumulative usage) and ``message_stop``.

Chat chunks carry no block boundaries: a text block opens with the first text, a ``tool_use`` block with
each tool call's first chunk (the one with its id), and each opening closes the block before it. A
``ping`` follows the first ``content_block_start``, where Anthropic's own streams send one.

Usage comes at the end of a chat stream, so ``message_start`` carries zeros (its ``input_tokens`` is
required; a zero prompt is never a real figure, and the gateway's meters read it as "not reported yet")
and ``message_delta`` the provider's cumulative figures, input and cache ones included, which the SDKs
apply to the message they accumulate. When the upstream reported no usage at all, ``message_delta``
carries only the one count its type requires (``output_tokens``, 0) and no input figure, and the
gateway's own layers fall back to their estimates.
"""

from __future__ import annotations

from typing import Any

import orjson

from ...kernel.sse import encode_event
from ...providers.base import StreamTranslator
from ..base import DONE, ChatStreamTranslation, chat_payloads
from .answer import message_id, stop_reason, usage_object


def event(name: str, payload: dict[str, Any]) -> bytes:
    """One Anthropic SSE event: its name, and the same name as the payload's ``type``."""
    return encode_event(name, orjson.dumps({"type": name, **payload}))


#: Anthropic's keep-alive event, sent once after the first block opens as Anthropic's streams do.
PING = event("ping", {})


class MessagesStream(ChatStreamTranslation):
    """Wraps the chat stream translator of an adapter; Anthropic events out, as the chunks arrive."""

    __slots__ = ("_blocks", "_fallback_id", "_finish", "_next", "_open", "_started")

    def __init__(self, inner: StreamTranslator, *, model: str, fallback_id: str) -> None:
        super().__init__(inner, model)
        self._fallback_id = fallback_id
        self._started = False
        #: The index of the block being written (``None`` when none is open).
        self._open: int | None = None
        #: Tool call position -> its block index.
        self._blocks: dict[int, int] = {}
        self._next = 0
        self._finish: str | None = None

    # -- translation --------------------------------------------------------------------------------

    def _translate(self, events: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        if self.done:
            return out
        for chunk in chat_payloads(events):
            if chunk is DONE:
                self._end(out)
                break  # nothing after [DONE] belongs to this answer
            if isinstance(chunk, dict):
                self._chunk(chunk, out)
        return out

    def _start(self, chunk: dict[str, Any], out: list[bytes]) -> None:
        if self._started:
            return
        self._started = True
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            self._model = chunk["model"]
        message: dict[str, Any] = {
            "id": message_id(chunk.get("id"), self._fallback_id),
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": self._model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_object(None),
        }
        out.append(event("message_start", {"message": message}))

    def _chunk(self, chunk: dict[str, Any], out: list[bytes]) -> None:
        self._start(chunk, out)
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                for field in ("content", "refusal"):
                    text = delta.get(field)
                    if isinstance(text, str) and text:
                        self._text(text, out)
                        if field == "refusal":
                            self._finish = "content_filter"
                for call in delta.get("tool_calls") or ():
                    if isinstance(call, dict):
                        self._tool_call(call, out)
            finish = choice.get("finish_reason")
            if isinstance(finish, str) and self._finish is None:
                self._finish = finish

    def _close_open(self, out: list[bytes]) -> None:
        if self._open is not None:
            out.append(event("content_block_stop", {"index": self._open}))
            self._open = None

    def _open_block(self, block: dict[str, Any], out: list[bytes]) -> int:
        self._close_open(out)
        index = self._open = self._next
        self._next += 1
        out.append(event("content_block_start", {"index": index, "content_block": block}))
        if index == 0:
            out.append(PING)
        return index

    def _text(self, text: str, out: list[bytes]) -> None:
        if self._open is None or self._open in self._blocks.values():
            self._open_block({"type": "text", "text": ""}, out)
        delta = {"type": "text_delta", "text": text}
        out.append(event("content_block_delta", {"index": self._open, "delta": delta}))

    def _tool_call(self, call: dict[str, Any], out: list[bytes]) -> None:
        position = call.get("index", 0)
        found = call.get("function")
        function: dict[str, Any] = found if isinstance(found, dict) else {}
        if position not in self._blocks:
            block = {
                "type": "tool_use",
                "id": str(call.get("id") or ""),
                "name": str(function.get("name") or ""),
                "input": {},
            }
            self._blocks[position] = self._open_block(block, out)
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            out.append(event("content_block_delta", {"index": self._blocks[position], "delta": delta}))

    def _end(self, out: list[bytes]) -> None:
        self._start({}, out)
        self._close_open(out)
        delta = {"stop_reason": stop_reason(self._finish), "stop_sequence": None}
        usage = self.usage
        # no figures from the upstream: the one count Anthropic's type requires, and no input to mislead
        figures = usage.to_anthropic() if usage is not None else {"output_tokens": 0}
        out.append(event("message_delta", {"delta": delta, "usage": figures}))
        out.append(event("message_stop", {}))
        self.done = True
