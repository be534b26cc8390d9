"""Put the original values back into an OpenAI Responses answer: a ``response`` object, or its typed
event stream.

Restored: every string of the answer (output text, refusals, reasoning summaries, the request's
settings the response echoes, an error's message), and function call ``arguments``, which are JSON
source: a placeholder there may be written ``<...>`` or ``\\u003c...\\u003e``, and its value goes in
JSON-escaped, so the arguments stay valid JSON.

In a stream, each ``*.delta`` event's ``delta`` (``response.output_text.delta``,
``response.function_call_arguments.delta``, refusals, reasoning text...) is restored as it passes.
Each delta stream (one per item, content part and event kind) holds back only the characters at its
end that could still become a placeholder (the model may split one across deltas) and sends them with
its next delta. What it still holds when its ``.done`` event arrives (or its item's
``response.output_item.done``, the response's last event, or an ``error``) goes out just before, as
one more delta of the same kind; the events after it are renumbered (``sequence_number`` + 1 per
added event), so the numbering the SDK reads stays gapless and increasing. The ``.done`` events, the
finished items and the final ``response`` are restored whole, so the SDK's final response holds the
values too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from ..kernel.sse import encode_event, parse_event
from .placeholders import PlaceholderMap
from .restore import JSONRestorer, _may_hold_placeholder, _reencode
from .tails import HeldTails, restore_source

#: Delta events whose text is JSON source (a tool call's arguments).
SOURCE_DELTAS = frozenset({"response.function_call_arguments.delta", "response.mcp_call_arguments.delta"})
#: Events that end the response: everything still held goes out before them.
_LAST_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})
#: The fields of a delta event that say where it belongs (copied into a delta of held text).
_WHERE = ("item_id", "output_index", "content_index", "summary_index")

_Key = tuple[Any, ...]


def restore_response(data: Any, mapping: PlaceholderMap, *, source: bool = False) -> tuple[Any, bool]:
    """``data`` with placeholders restored in every string (as JSON source under ``arguments``); and
    whether anything changed."""
    if isinstance(data, str):
        restored = restore_source(data, mapping) if source else mapping.restore(data)
        return restored, restored != data
    changed = False
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "encrypted_content":
                continue  # the provider's own ciphertext
            new, did = restore_response(value, mapping, source=key == "arguments")
            if did:
                data[key] = new
                changed = True
    elif isinstance(data, list):
        for index, value in enumerate(data):
            new, did = restore_response(value, mapping, source=source)
            if did:
                data[index] = new
                changed = True
    return data, changed


class ResponsesJSONRestorer(JSONRestorer):
    """``ResponseTap.on_json``: restore placeholders in a ``response`` object (or an error)."""

    __slots__ = ()

    def _restore(self, data: Any) -> tuple[Any, bool]:
        return restore_response(data, self.mapping)


class ResponsesStreamRestorer:
    """``ResponseTap.on_event``: restore placeholders in the Responses API's stream events."""

    __slots__ = ("_added", "_held", "_where", "mapping")

    def __init__(self, mapping: PlaceholderMap) -> None:
        self.mapping = mapping
        #: (delta event type, item id, output index, content index, summary index) -> held characters
        self._held: HeldTails[_Key] = HeldTails(mapping)
        #: the same key -> the fields placing a delta of held text where its own deltas went
        self._where: dict[_Key, dict[str, Any]] = {}
        #: events added so far: every later event's ``sequence_number`` is raised by this much
        self._added = 0

    def on_event(self, raw: bytes) -> bytes | None:
        # a literal backslash in JSON source may start an escaped placeholder split across deltas
        if not self._held and not self._added and not _may_hold_placeholder(raw) and b"\\\\" not in raw:
            return None
        event = parse_event(raw)
        try:
            payload = orjson.loads(event.data) if event.data else None
        except orjson.JSONDecodeError:
            return None
        if not isinstance(payload, dict):
            return None
        kind = payload.get("type")
        kind = kind if isinstance(kind, str) else ""
        number = payload.get("sequence_number")
        flushed: list[tuple[str, dict[str, Any]]] = []
        if kind.endswith(".delta") and isinstance(payload.get("delta"), str):
            changed = self._delta(kind, payload)
        else:
            place = _key(kind, payload)
            if kind.endswith(".done") and kind != "response.output_item.done":
                # ``response.output_text.done`` ends the ``response.output_text.delta`` stream there
                deltas = (kind[: -len("done")] + "delta", *place[1:])
                flushed = self._flush(lambda key: key == deltas)
            elif kind == "response.output_item.done":
                flushed = self._flush(lambda key: key[2] == place[2])
            elif kind in _LAST_EVENTS:
                flushed = self._flush(lambda key: True)
            payload, changed = restore_response(payload, self.mapping)
        out = b""
        if isinstance(number, int) and not isinstance(number, bool):
            for position, (_, added) in enumerate(flushed):
                added["sequence_number"] = number + self._added + position
            self._added += len(flushed)
            if self._added:
                payload["sequence_number"] = number + self._added
                changed = True
        for name, added in flushed:
            out += encode_event(name, orjson.dumps(added))
        if not changed:
            return out + raw if out else None
        return out + _reencode(raw, orjson.dumps(payload))

    def _delta(self, kind: str, payload: dict[str, Any]) -> bool:
        key = _key(kind, payload)
        text: str = payload["delta"]
        new = self._held.source(key, text) if kind in SOURCE_DELTAS else self._held.text(key, text)
        if key in self._held:
            self._where[key] = {name: payload[name] for name in _WHERE if name in payload}
            if "logprobs" in payload:
                self._where[key]["logprobs"] = []
        if new == text:
            return False
        payload["delta"] = new
        return True

    def _flush(self, which: Callable[[_Key], bool]) -> list[tuple[str, dict[str, Any]]]:
        """Held text of the delta streams ``which`` selects, as delta events of their own: it was no
        placeholder."""
        out: list[tuple[str, dict[str, Any]]] = []
        for key, text in self._held.take(which):
            where = self._where.pop(key, {})
            out.append((key[0], {"type": key[0], **where, "delta": text}))
        return out


def _key(kind: str, payload: dict[str, Any]) -> _Key:
    return (kind, *(payload.get(name) for name in _WHERE))
