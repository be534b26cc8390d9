"""Put the original values back into an Anthropic Messages answer: a JSON message, or its SSE events.

Restored: text blocks, every string of ``tool_use`` input, citations, and any other string, except
thinking. **Thinking text is left as the model wrote it**, placeholders included: Anthropic signs it
(``signature``) and verifies the signature when the client sends the block back, so a restored value
would make the next turn fail; and it would then come back holding the value, to be found and rewritten
again. See docs/redaction.md, "Thinking".

In a stream, ``text_delta`` text and ``input_json_delta`` partial JSON are restored as they pass. Each
content block holds back only the characters at its end that could still become a placeholder (the
model may split one across deltas) and sends them with its next delta, or in a delta of its own just
before its ``content_block_stop`` (or the message's end, or an error). Partial JSON is JSON source: a
placeholder there may be written ``\\u003c...\\u003e``, and its value is restored JSON-escaped, so the
tool input stays valid JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from ..kernel.sse import encode_event, parse_event
from .placeholders import PlaceholderMap
from .restore import JSONRestorer, _may_hold_placeholder, _reencode
from .tails import HeldTails

#: Content blocks whose text is signed or encrypted by the provider: never changed.
SIGNED_BLOCKS = frozenset({"thinking", "redacted_thinking"})


def restore_answer(data: Any, mapping: PlaceholderMap) -> tuple[Any, bool]:
    """``data`` with placeholders restored in every string but those of thinking blocks; and whether
    anything changed."""
    if isinstance(data, str):
        restored = mapping.restore(data)
        return restored, restored != data
    changed = False
    if isinstance(data, dict):
        if data.get("type") in SIGNED_BLOCKS:
            return data, False
        for key, value in data.items():
            new, did = restore_answer(value, mapping)
            if did:
                data[key] = new
                changed = True
    elif isinstance(data, list):
        for index, value in enumerate(data):
            new, did = restore_answer(value, mapping)
            if did:
                data[index] = new
                changed = True
    return data, changed


class MessagesJSONRestorer(JSONRestorer):
    """``ResponseTap.on_json``: restore placeholders in a Messages answer (or error), thinking aside."""

    __slots__ = ()

    def _restore(self, data: Any) -> tuple[Any, bool]:
        return restore_answer(data, self.mapping)


# -- the stream ---------------------------------------------------------------------------------------


class MessagesStreamRestorer:
    """``ResponseTap.on_event``: restore placeholders in Anthropic Messages stream events."""

    __slots__ = ("_held", "mapping")

    def __init__(self, mapping: PlaceholderMap) -> None:
        self.mapping = mapping
        #: (content block index, "text" or "json") -> characters held back
        self._held: HeldTails[tuple[int, str]] = HeldTails(mapping)

    def on_event(self, raw: bytes) -> bytes | None:
        # a literal backslash in partial JSON may start an escaped placeholder split across deltas
        if not self._held and not _may_hold_placeholder(raw) and b"\\\\" not in raw:
            return None
        event = parse_event(raw)
        try:
            payload = orjson.loads(event.data) if event.data else None
        except orjson.JSONDecodeError:
            return None
        if not isinstance(payload, dict):
            return None
        kind = payload.get("type")
        flushed = b""
        changed = False
        if kind == "content_block_delta":
            changed = self._delta(payload)
        elif kind == "content_block_stop":
            index = payload.get("index")
            flushed = self._flush(lambda key: key[0] == index)
        elif kind in ("message_delta", "message_stop", "error"):
            flushed = self._flush(lambda key: True)
            payload, changed = restore_answer(payload, self.mapping)
        else:  # message_start, content_block_start, and events this module does not know
            payload, changed = restore_answer(payload, self.mapping)
        if not changed:
            return flushed + raw if flushed else None
        return flushed + _reencode(raw, orjson.dumps(payload))

    def _delta(self, payload: dict[str, Any]) -> bool:
        index = payload.get("index")
        delta = payload.get("delta")
        if not isinstance(index, int) or not isinstance(delta, dict):
            _, changed = restore_answer(payload, self.mapping)
            return changed
        kind = delta.get("type")
        if kind == "text_delta" and isinstance(delta.get("text"), str):
            field, text = "text", delta["text"]
            new = self._held.text((index, "text"), text)
        elif kind == "input_json_delta" and isinstance(delta.get("partial_json"), str):
            field, text = "partial_json", delta["partial_json"]
            new = self._held.source((index, "json"), text)
        elif kind in ("thinking_delta", "signature_delta"):
            return False  # signed: see the module docstring
        else:  # citations_delta, and deltas this module does not know
            _, changed = restore_answer(delta, self.mapping)
            return changed
        if new == text:
            return False
        delta[field] = new
        return True

    def _flush(self, which: Callable[[tuple[int, str]], bool]) -> bytes:
        """Held text of the blocks ``which`` selects, as deltas of their own: it was no placeholder."""
        out = b""
        for (index, kind), text in self._held.take(which):
            delta = (
                {"type": "text_delta", "text": text}
                if kind == "text"
                else {"type": "input_json_delta", "partial_json": text}
            )
            payload = {"type": "content_block_delta", "index": index, "delta": delta}
            out += encode_event("content_block_delta", orjson.dumps(payload))
        return out
