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

import re
from collections.abc import Callable
from typing import Any

import orjson

from ..kernel.sse import encode_event, parse_event
from .placeholders import PlaceholderMap, json_escape
from .restore import _may_hold_placeholder, _reencode

#: Content blocks whose text is signed or encrypted by the provider: never changed.
SIGNED_BLOCKS = frozenset({"thinking", "redacted_thinking"})
#: A placeholder in JSON source: ``<`` and ``>`` as written or as ``\u003c`` / ``\u003e``.
_SOURCE_PLACEHOLDER = re.compile(r"(?:<|\\u003[cC])([A-Z][A-Z0-9_]*_\d{1,6})(?:>|\\u003[eE])")
_OPEN_ESCAPED = "\\u003c"
_CLOSE_ESCAPED = "\\u003e"
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


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


class MessagesJSONRestorer:
    """``ResponseTap.on_json``: restore placeholders in a Messages answer (or error), thinking aside."""

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
        data, changed = restore_answer(data, self.mapping)
        return orjson.dumps(data) if changed else None


# -- JSON source (partial_json) -----------------------------------------------------------------------


def _escaped_backslash(text: str, position: int, odd_before: bool) -> bool:
    """Whether the backslash at ``position`` is itself escaped (preceded by an odd run of them);
    ``odd_before``: the text already sent ended in an odd run."""
    run = 0
    while position - run - 1 >= 0 and text[position - run - 1] == "\\":
        run += 1
    odd = run % 2 == 1
    return odd != odd_before if run == position else odd


def restore_source(text: str, mapping: PlaceholderMap, odd_before: bool = False) -> str:
    """``text`` (JSON source) with each of the map's placeholders, literal or ``\\u003c``-escaped,
    replaced by its value JSON-escaped."""

    def value(match: re.Match[str]) -> str:
        found = mapping.values.get(f"<{match.group(1)}>")
        if found is None:
            return match.group()
        if match.group().startswith("\\") and _escaped_backslash(text, match.start(), odd_before):
            return match.group()  # ``\\u003c``: a backslash and the letters, not ``<``
        return json_escape(found)

    if "<" not in text and "\\" not in text:
        return text
    return _SOURCE_PLACEHOLDER.sub(value, text)


def _odd_after(text: str, odd_before: bool) -> bool:
    """Whether ``text``, sent after text ending as ``odd_before`` says, ends in an odd run of backslashes."""
    run = len(text) - len(text.rstrip("\\"))
    odd = run % 2 == 1
    return odd != odd_before if run == len(text) else odd


class _Prefixes:
    """Which tails of JSON source could still become one of the map's placeholders."""

    __slots__ = ("mapping", "prefixes", "window")

    def __init__(self, mapping: PlaceholderMap) -> None:
        self.mapping = mapping
        self.prefixes = frozenset(p[:i] for p in mapping.values for i in range(1, len(p)))
        # the escaped form is ten characters longer than the literal one
        self.window = mapping.max_length + 2 * (len(_OPEN_ESCAPED) - 1)

    def could_begin(self, tail: str) -> bool:
        if tail.startswith("<"):
            rest = tail[1:]
        else:
            head = tail[: len(_OPEN_ESCAPED)]
            if not _OPEN_ESCAPED.startswith(head.lower()):
                return False
            if len(tail) < len(_OPEN_ESCAPED):
                return True
            rest = tail[len(_OPEN_ESCAPED) :]
        end = 0
        while end < len(rest) and rest[end] in _NAME_CHARS:
            end += 1
        name, closer = rest[:end], rest[end:]
        if not closer:
            return "<" + name in self.prefixes
        partial_close = len(closer) < len(_CLOSE_ESCAPED) and _CLOSE_ESCAPED.startswith(closer.lower())
        return partial_close and f"<{name}>" in self.mapping.values

    def split(self, text: str) -> tuple[str, str]:
        """What can go now, and the tail that may be the start of a placeholder."""
        start = max(0, len(text) - self.window)
        for position in range(start, len(text)):
            if text[position] in "<\\" and self.could_begin(text[position:]):
                return text[:position], text[position:]
        return text, ""


# -- the stream ---------------------------------------------------------------------------------------


class MessagesStreamRestorer:
    """``ResponseTap.on_event``: restore placeholders in Anthropic Messages stream events."""

    __slots__ = ("_held", "_odd", "_source", "mapping")

    def __init__(self, mapping: PlaceholderMap) -> None:
        self.mapping = mapping
        #: (content block index, "text" or "json") -> characters held back
        self._held: dict[tuple[int, str], str] = {}
        #: content block index -> the partial JSON sent so far ends in an odd run of backslashes
        self._odd: dict[int, bool] = {}
        self._source = _Prefixes(mapping)

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
            new = self._feed_text(index, text)
        elif kind == "input_json_delta" and isinstance(delta.get("partial_json"), str):
            field, text = "partial_json", delta["partial_json"]
            new = self._feed_source(index, text)
        elif kind in ("thinking_delta", "signature_delta"):
            return False  # signed: see the module docstring
        else:  # citations_delta, and deltas this module does not know
            _, changed = restore_answer(delta, self.mapping)
            return changed
        if new == text:
            return False
        delta[field] = new
        return True

    def _feed_text(self, index: int, text: str) -> str:
        combined = self._held.pop((index, "text"), "") + text
        ready, tail = self.mapping.split_tail(combined)
        if tail:
            self._held[(index, "text")] = tail
        return self.mapping.restore(ready)

    def _feed_source(self, index: int, text: str) -> str:
        combined = self._held.pop((index, "json"), "") + text
        ready, tail = self._source.split(combined)
        if tail:
            self._held[(index, "json")] = tail
        odd = self._odd.get(index, False)
        self._odd[index] = _odd_after(ready, odd)
        return restore_source(ready, self.mapping, odd)

    def _flush(self, which: Callable[[tuple[int, str]], bool]) -> bytes:
        """Held text of the blocks ``which`` selects, as deltas of their own: it was no placeholder."""
        out = b""
        for key in [key for key in self._held if which(key)]:
            text = self._held.pop(key)
            index, kind = key
            delta = (
                {"type": "text_delta", "text": text}
                if kind == "text"
                else {"type": "input_json_delta", "partial_json": text}
            )
            payload = {"type": "content_block_delta", "index": index, "delta": delta}
            out += encode_event("content_block_delta", orjson.dumps(payload))
        return out
