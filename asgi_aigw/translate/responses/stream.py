"""A chat completion chunk stream as the Responses API's typed event stream.

The sequence the ``openai`` SDK's ``ResponseStreamEvent`` types describe, each event named by its
``type`` and numbered by ``sequence_number`` from 0: ``response.created`` and ``response.in_progress``;
per output item a ``response.output_item.added``, then for a message ``response.content_part.added``,
its ``response.output_text.delta`` (or ``response.refusal.delta``) events, ``response.output_text.done``
and ``response.content_part.done``, for a function call its ``response.function_call_arguments.delta``
events and ``response.function_call_arguments.done``, and ``response.output_item.done``; last
``response.completed`` (``response.incomplete`` when the answer was cut at the output cap or filtered)
with the whole response and its usage.

Chat chunks carry no item boundaries: a message item opens with the first text, a function call item
with each tool call's first chunk (the one with its id), and each opening closes the item before it.
Usage comes in the chat stream's last chunk (the translation asks for it), so only the final event
carries it. A stream cut short upstream ends without a final event (:attr:`done` stays false); an
upstream error event becomes the Responses ``error`` event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from ...kernel.dialects.responses import error_payload
from ...kernel.errors import GatewayError
from ...kernel.sse import encode_event
from ...providers.base import StreamTranslator
from ..base import DONE, ChatStreamTranslation, chat_payloads
from .answer import INCOMPLETE, IdFactory, chat_usage, envelope, function_call_item, random_id, response_id


class _Message:
    """The message item being written: its text and refusal parts, in the order they opened."""

    __slots__ = ("id", "index", "parts")

    def __init__(self, id: str, index: int) -> None:
        self.id = id
        self.index = index
        #: ``[kind, text]`` per content part, ``kind`` being ``output_text`` or ``refusal``.
        self.parts: list[list[str]] = []


class _Call:
    __slots__ = ("arguments", "call_id", "id", "index", "name")

    def __init__(self, id: str, index: int, call_id: str, name: str) -> None:
        self.id, self.index, self.call_id, self.name = id, index, call_id, name
        self.arguments = ""


class ResponsesStream(ChatStreamTranslation):
    """Wraps the chat stream translator of an adapter; Responses events out, as the chunks arrive.

    ``request`` is the client's Responses body (its settings are echoed in each ``response``).
    """

    __slots__ = (
        "_call",
        "_clock",
        "_created",
        "_finish",
        "_id",
        "_ids",
        "_message",
        "_output",
        "_request",
        "_sequence",
        "_usage_data",
    )

    def __init__(
        self,
        inner: StreamTranslator,
        *,
        request: Mapping[str, Any],
        model: str,
        ids: IdFactory = random_id,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(inner, model)
        self._request = request
        self._ids = ids
        self._clock = clock
        self._id: str | None = None
        self._created: float = 0
        self._sequence = 0
        #: Every output item so far, as it stands (the final event lists them).
        self._output: list[dict[str, Any]] = []
        self._message: _Message | None = None
        self._call: _Call | None = None
        self._finish: str | None = None
        self._usage_data: Any = None

    @property
    def next_sequence_number(self) -> int:
        """The number an event written after these (a gateway's own ``error`` event) takes."""
        return self._sequence

    def close(self) -> list[bytes]:
        out = super().close()
        if not self.done and self._finish is not None:
            # the finish chunk came but not [DONE]: the answer is whole all the same
            out.extend(self._end())
        return out

    # -- translation --------------------------------------------------------------------------------

    def _translate(self, events: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        for payload in chat_payloads(events):
            if payload is DONE:
                if not self.done:
                    out.extend(self._end())
                continue
            if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
                out.append(self._error(payload["error"]))
                continue
            if isinstance(payload, dict):
                self._chunk(payload, out)
        return out

    def _chunk(self, chunk: dict[str, Any], out: list[bytes]) -> None:
        if self._id is None:
            self._start(chunk, out)
        if chunk.get("usage") is not None:
            self._usage_data = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                for kind, field in (("output_text", "content"), ("refusal", "refusal")):
                    text = delta.get(field)
                    if isinstance(text, str) and text:
                        self._text(kind, text, out)
                for call in delta.get("tool_calls") or ():
                    if isinstance(call, dict):
                        self._tool_call(call, out)
            if isinstance(choice.get("finish_reason"), str):
                self._finish = choice["finish_reason"]

    def _start(self, chunk: dict[str, Any], out: list[bytes]) -> None:
        self._id = response_id(chunk.get("id"), self._ids)
        created = chunk.get("created")
        self._created = created if isinstance(created, int | float) else self._clock()
        model = chunk.get("model")
        if isinstance(model, str) and model:
            self._model = model
        for kind in ("response.created", "response.in_progress"):
            out.append(self._event(kind, {"response": self._response("in_progress")}))

    def _text(self, kind: str, text: str, out: list[bytes]) -> None:
        if self._call is not None:
            self._close_call(out)
        message = self._message
        if message is None:
            message = self._message = _Message(self._ids("msg_"), len(self._output))
            item = {
                "id": message.id,
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            self._output.append(item)
            out.append(
                self._event("response.output_item.added", {"output_index": message.index, "item": item})
            )
        if not message.parts or message.parts[-1][0] != kind:
            message.parts.append([kind, ""])
            out.append(
                self._event(
                    "response.content_part.added",
                    {**self._where(message), "part": _part(kind, "")},
                )
            )
        message.parts[-1][1] += text
        name = "response.output_text.delta" if kind == "output_text" else "response.refusal.delta"
        extra: dict[str, Any] = {"logprobs": []} if kind == "output_text" else {}
        out.append(self._event(name, {**self._where(message), "delta": text, **extra}))

    def _tool_call(self, call: dict[str, Any], out: list[bytes]) -> None:
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        assert isinstance(function, dict)
        if isinstance(call.get("id"), str) and call["id"]:
            if self._message is not None:
                self._close_message(out)
            if self._call is not None:
                self._close_call(out)
            index = len(self._output)
            self._call = _Call(self._ids("fc_"), index, call["id"], str(function.get("name") or ""))
            item = function_call_item(self._call.id, self._call.call_id, self._call.name, "", "in_progress")
            self._output.append(item)
            out.append(self._event("response.output_item.added", {"output_index": index, "item": item}))
        arguments = function.get("arguments")
        if self._call is None or not isinstance(arguments, str) or not arguments:
            return
        self._call.arguments += arguments
        out.append(
            self._event(
                "response.function_call_arguments.delta",
                {"item_id": self._call.id, "output_index": self._call.index, "delta": arguments},
            )
        )

    def _close_message(self, out: list[bytes]) -> None:
        message = self._message
        assert message is not None
        self._message = None
        for content_index, (kind, text) in enumerate(message.parts):
            where = {**self._where(message), "content_index": content_index}
            if kind == "output_text":
                out.append(self._event("response.output_text.done", {**where, "text": text, "logprobs": []}))
            else:
                out.append(self._event("response.refusal.done", {**where, "refusal": text}))
            out.append(self._event("response.content_part.done", {**where, "part": _part(kind, text)}))
        item = {
            "id": message.id,
            "type": "message",
            "status": self._item_status(),
            "role": "assistant",
            "content": [_part(kind, text) for kind, text in message.parts],
        }
        self._output[message.index] = item
        out.append(self._event("response.output_item.done", {"output_index": message.index, "item": item}))

    def _close_call(self, out: list[bytes]) -> None:
        call = self._call
        assert call is not None
        self._call = None
        out.append(
            self._event(
                "response.function_call_arguments.done",
                {"item_id": call.id, "output_index": call.index, "arguments": call.arguments},
            )
        )
        item = function_call_item(call.id, call.call_id, call.name, call.arguments, "completed")
        self._output[call.index] = item
        out.append(self._event("response.output_item.done", {"output_index": call.index, "item": item}))

    def _end(self) -> list[bytes]:
        out: list[bytes] = []
        if self._id is None:
            # [DONE] without a chunk: an empty answer is still a response
            self._start({}, out)
        if self._message is not None:
            self._close_message(out)
        if self._call is not None:
            self._close_call(out)
        incomplete = INCOMPLETE.get(self._finish or "")
        status = "incomplete" if incomplete else "completed"
        response = self._response(
            status, usage=chat_usage(self._usage_data, self._inner.usage), incomplete=incomplete
        )
        out.append(self._event(f"response.{status}", {"response": response}))
        self.done = True
        return out

    def _error(self, error: dict[str, Any]) -> bytes:
        exc = GatewayError(str(error.get("message") or "The upstream stream failed."))
        exc.code = error.get("code") if isinstance(error.get("code"), str) else None
        exc.param = error.get("param") if isinstance(error.get("param"), str) else None
        payload = error_payload(exc, self._sequence)
        self._sequence += 1
        return encode_event("error", orjson.dumps(payload))

    # -- helpers ------------------------------------------------------------------------------------

    def _item_status(self) -> str:
        return "incomplete" if self._finish in INCOMPLETE else "completed"

    def _where(self, message: _Message) -> dict[str, Any]:
        return {"item_id": message.id, "output_index": message.index, "content_index": len(message.parts) - 1}

    def _response(
        self, status: str, usage: dict[str, Any] | None = None, incomplete: str | None = None
    ) -> dict[str, Any]:
        assert self._id is not None
        output = list(self._output) if status != "in_progress" else []
        return envelope(
            self._request,
            id=self._id,
            created_at=self._created,
            model=self._model,
            status=status,
            output=output,
            usage=usage,
            incomplete=incomplete,
        )

    def _event(self, kind: str, payload: dict[str, Any]) -> bytes:
        data = {"type": kind, **payload, "sequence_number": self._sequence}
        self._sequence += 1
        return encode_event(kind, orjson.dumps(data))


def _part(kind: str, text: str) -> dict[str, Any]:
    if kind == "output_text":
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"type": "refusal", "refusal": text}
