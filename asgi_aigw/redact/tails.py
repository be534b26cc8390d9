"""Held tails: the shared engine of the stream restorers (chat, Messages, Responses).

A model may split a placeholder over several deltas (``<EMAIL_`` then ``ADDRESS_1>``), so each delta
stream (a restorer names its streams with its own keys) holds back only the characters at its end that
could still become a placeholder, and sends them with its next delta; the restorer takes what is still
held when the stream ends and sends it as it was (it was no placeholder). Text is restored as text;
JSON source (tool arguments) finds placeholders written ``<...>`` or ``\\u003c...\\u003e`` and puts
their values in JSON-escaped, so the source stays valid JSON.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from .placeholders import PlaceholderMap, json_escape

#: A placeholder in JSON source: ``<`` and ``>`` as written or as ``\u003c`` / ``\u003e``.
_SOURCE_PLACEHOLDER = re.compile(r"(?:<|\\u003[cC])([A-Z][A-Z0-9_]*_\d{1,6})(?:>|\\u003[eE])")
_OPEN_ESCAPED = "\\u003c"
_CLOSE_ESCAPED = "\\u003e"
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")

K = TypeVar("K", bound=Hashable)


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


class HeldTails(Generic[K]):
    """The characters each delta stream holds back, keyed as its restorer names the streams."""

    __slots__ = ("_held", "_odd", "_source", "mapping")

    def __init__(self, mapping: PlaceholderMap) -> None:
        self.mapping = mapping
        self._held: dict[K, str] = {}
        #: stream key -> the JSON source sent so far ends in an odd run of backslashes
        self._odd: dict[K, bool] = {}
        # built on the first JSON source: many streams never carry any
        self._source: _Prefixes | None = None

    def __bool__(self) -> bool:
        return bool(self._held)

    def __contains__(self, key: K) -> bool:
        return key in self._held

    def text(self, key: K, text: str, *, escape: bool = False) -> str:
        """``text``, the next delta of the stream ``key``, restored as far as it can go now."""
        combined = self._held.pop(key, "") + text
        ready, tail = self.mapping.split_tail(combined)
        if tail:
            self._held[key] = tail
        return self.mapping.restore(ready, escape=escape)

    def source(self, key: K, text: str) -> str:
        """``text``, the next delta of JSON source of the stream ``key``, restored as far as it can go now."""
        if self._source is None:
            self._source = _Prefixes(self.mapping)
        combined = self._held.pop(key, "") + text
        ready, tail = self._source.split(combined)
        if tail:
            self._held[key] = tail
        odd = self._odd.get(key, False)
        self._odd[key] = _odd_after(ready, odd)
        return restore_source(ready, self.mapping, odd)

    def take(self, which: Callable[[K], bool]) -> list[tuple[K, str]]:
        """Held text of the streams ``which`` selects, removed: it was no placeholder."""
        return [(key, self._held.pop(key)) for key in [key for key in self._held if which(key)]]
