"""Put the original values back into the answer: a whole JSON body, or an SSE stream event by event.

The model may split a placeholder over several stream chunks (``<EMAIL_`` then ``ADDRESS_1>``), so
each text field of each choice keeps back the few characters at its end that could still become a
placeholder, and sends them with the next piece (or with the choice's last chunk, or just before
``[DONE]``). Everything else leaves as it arrives: the stream is never buffered.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..kernel.sse import encode_data, parse_event
from .placeholders import PlaceholderMap
from .tails import HeldTails, restore_source

#: Text fields of a message or delta that may hold placeholders (besides tool-call arguments).
TEXT_FIELDS = ("content", "refusal", "reasoning_content")
#: Fields whose string value is JSON source: a value restored there is JSON-escaped.
JSON_SOURCE_FIELDS = frozenset({"arguments"})


def _may_hold_placeholder(raw: bytes) -> bool:
    # "<" may arrive escaped as \u003c by serialisers that escape HTML characters
    return b"<" in raw or b"\\u003c" in raw or b"\\u003C" in raw


def restore_json_value(data: Any, mapping: PlaceholderMap, *, escape: bool = False) -> tuple[Any, bool]:
    """``data`` with placeholders restored in every string; and whether anything changed."""
    if isinstance(data, str):
        # JSON source (tool-call arguments) may carry a placeholder as ``\u003c...\u003e`` when the
        # server encoded the arguments with HTML escaping (Go's encoding/json does): restore_source
        # reads both spellings and JSON-escapes the value
        restored = restore_source(data, mapping) if escape else mapping.restore(data)
        return restored, restored != data
    changed = False
    if isinstance(data, dict):
        for key, value in data.items():
            new, did = restore_json_value(value, mapping, escape=escape or key in JSON_SOURCE_FIELDS)
            if did:
                data[key] = new
                changed = True
    elif isinstance(data, list):
        for index, value in enumerate(data):
            new, did = restore_json_value(value, mapping, escape=escape)
            if did:
                data[index] = new
                changed = True
    return data, changed


class JSONRestorer:
    """``ResponseTap.on_json``: restore placeholders anywhere in a JSON answer (each dialect's
    restorer says, in ``_restore``, which strings of its answers are restored)."""

    __slots__ = ("mapping",)

    def __init__(self, mapping: PlaceholderMap) -> None:
        self.mapping = mapping

    def __call__(self, status: int, body: bytes) -> bytes | None:
        if not self.mapping or not _may_hold_placeholder(body):
            return None
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None  # not ours to fix; pass it on as it came
        data, changed = self._restore(data)
        return orjson.dumps(data) if changed else None

    def _restore(self, data: Any) -> tuple[Any, bool]:
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list):
            return restore_json_value(data, self.mapping)
        # a choice's token log probabilities stay as the provider sent them, as in streams: a
        # placeholder comes split over several tokens, each with its own bytes and probability, and
        # no token of the original value was ever generated
        changed = False
        for key in data:
            if key != "choices":
                changed |= self._restore_field(data, key)
        for choice in choices:
            if isinstance(choice, dict):
                for field in choice:
                    if field != "logprobs":
                        changed |= self._restore_field(choice, field)
        return data, changed

    def _restore_field(self, holder: dict[str, Any], key: str) -> bool:
        new, did = restore_json_value(holder[key], self.mapping)
        if did:
            holder[key] = new
        return did


class StreamRestorer:
    """``ResponseTap.on_event`` / ``on_end``: restore placeholders in OpenAI chat completion chunks."""

    __slots__ = ("_held", "_last", "mapping")

    def __init__(self, mapping: PlaceholderMap) -> None:
        self.mapping = mapping
        #: (choice index, field, tool call index) -> characters held back
        self._held: HeldTails[tuple[int, str, int]] = HeldTails(mapping)
        #: the last chunk's envelope (id, model, created...) for a closing chunk of held text
        self._last: dict[str, Any] = {}

    def on_event(self, raw: bytes) -> bytes | None:
        if not self._held and not _may_hold_placeholder(raw):
            return None
        event = parse_event(raw)
        if event.data == b"[DONE]" or not event.data:
            return None
        try:
            payload = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(payload, dict):
            return None
        changed = False
        choices = payload.get("choices")
        if isinstance(choices, list):
            self._last = {k: v for k, v in payload.items() if k in ("id", "object", "created", "model")}
            for position, choice in enumerate(choices):
                if isinstance(choice, dict) and self._restore_choice(choice, position):
                    changed = True
        else:  # an error event, say: restore whatever strings it has
            payload, changed = restore_json_value(payload, self.mapping)
        if not changed:
            return None
        return _reencode(raw, orjson.dumps(payload))

    def on_end(self) -> list[bytes]:
        """Held text still pending when ``[DONE]`` arrives, as one last chunk per choice."""
        if not self._held:
            return []
        by_choice: dict[int, dict[str, Any]] = {}
        for (choice, field, tool), text in self._held.take(lambda key: True):
            if not text:
                continue
            delta = by_choice.setdefault(choice, {})
            _append(delta, field, tool, text)
        events = []
        for index, delta in sorted(by_choice.items()):
            chunk = {
                "object": "chat.completion.chunk",
                **self._last,
                "choices": [{"index": index, "delta": delta, "finish_reason": None}],
            }
            events.append(encode_data(orjson.dumps(chunk)))
        return events

    # -- internals ------------------------------------------------------------------------------

    def _restore_choice(self, choice: dict[str, Any], position: int) -> bool:
        index = choice.get("index", position)
        if not isinstance(index, int):
            index = position
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            delta = choice.get("message")  # some servers send whole messages in chunks
        changed = False
        if isinstance(delta, dict):
            for field in TEXT_FIELDS:
                value = delta.get(field)
                if isinstance(value, str):
                    new = self._held.text((index, field, -1), value)
                    if new != value:
                        delta[field] = new
                        changed = True
            calls = delta.get("tool_calls")
            if isinstance(calls, list):
                for call_position, call in enumerate(calls):
                    function = call.get("function") if isinstance(call, dict) else None
                    if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
                        continue
                    tool = call.get("index", call_position)
                    tool = tool if isinstance(tool, int) else call_position
                    value = function["arguments"]
                    new = self._held.source((index, "arguments", tool), value)
                    if new != value:
                        function["arguments"] = new
                        changed = True
        if choice.get("finish_reason") is not None and self._flush_choice(index, choice):
            changed = True
        return changed

    def _flush_choice(self, index: int, choice: dict[str, Any]) -> bool:
        """The choice is finished: whatever it held was not a placeholder after all."""
        held = self._held.take(lambda key: key[0] == index)
        if not held:
            return False
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            delta = choice["delta"] = {}
        for key, text in held:
            if text:
                _append(delta, key[1], key[2], text)
        return True


def _append(delta: dict[str, Any], field: str, tool: int, text: str) -> None:
    if field != "arguments":
        current = delta.get(field)
        delta[field] = (current if isinstance(current, str) else "") + text
        return
    calls = delta.get("tool_calls")
    if not isinstance(calls, list):
        calls = delta["tool_calls"] = []
    for call in calls:
        if isinstance(call, dict) and call.get("index") == tool:
            function = call.setdefault("function", {})
            function["arguments"] = (function.get("arguments") or "") + text
            return
    calls.append({"index": tool, "function": {"arguments": text}})


def _reencode(raw: bytes, payload: bytes) -> bytes:
    """The event with its data replaced, other fields (event:, id:) kept in place."""
    lines = [line for line in raw.split(b"\n") if line and not line.startswith(b"data")]
    return b"".join(line + b"\n" for line in lines) + encode_data(payload)
