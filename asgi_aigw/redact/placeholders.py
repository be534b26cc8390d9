"""The request's redaction map: values to placeholders such as ``<EMAIL_ADDRESS_1>`` and back.

Placeholders are numbered per entity type in order of first appearance in the request, so the same
value gets the same placeholder everywhere in a request, and a conversation re-sent each turn gets
the same placeholders each turn (its history reaches the provider, and any cache, byte for byte
unchanged).

**Forgery.** A client may write ``<PERSON_1>`` itself, hoping the model repeats it and the gateway
"restores" it into a value the client was not meant to see (a name in the system prompt, a
retrieved document). No placeholder is ever allocated that already appears anywhere in the
request's text: numbering skips every placeholder-shaped string found there, so such a string
maps to nothing and comes back exactly as written. This needs no per-request nonce, which would
make every turn's prompt different and defeat provider prompt caching and the semantic cache.

The map lives in this object only, for one request; it is never stored or logged.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

#: Anything shaped like a placeholder: ``<`` upper-case type ``_`` number ``>``.
PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*)_(\d{1,6})>")


def placeholders_in(data: Any) -> set[str]:
    """Every placeholder-shaped string in the strings of a JSON value (keys included)."""
    found: set[str] = set()
    for text in _strings(data):
        if "<" in text:
            found.update(match.group() for match in PLACEHOLDER.finditer(text))
    return found


def _strings(data: Any) -> Iterator[str]:
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            for key, value in item.items():
                if isinstance(key, str):
                    yield key
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


def json_escape(value: str) -> str:
    """``value`` as it must appear inside a JSON string literal (tool-call arguments are JSON text)."""
    import orjson

    return orjson.dumps(value).decode()[1:-1]


class PlaceholderMap:
    """Placeholders allocated for one request, and the values behind them."""

    __slots__ = ("_by_value", "_counters", "_escaped", "_max_length", "_prefixes", "_reserved", "values")

    def __init__(self, reserved: set[str] | None = None) -> None:
        #: Placeholder-shaped strings the request already contained: never allocated.
        self._reserved = reserved or set()
        self._by_value: dict[tuple[str, str], str] = {}
        self._counters: dict[str, int] = {}
        #: placeholder -> original value
        self.values: dict[str, str] = {}
        self._escaped: dict[str, str] = {}
        self._prefixes: frozenset[str] | None = None
        self._max_length = 0

    def __bool__(self) -> bool:
        return bool(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def placeholder(self, entity_type: str, value: str) -> str:
        """The placeholder standing for ``value`` (the same one each time in this request)."""
        key = (entity_type, value)
        existing = self._by_value.get(key)
        if existing is not None:
            return existing
        number = self._counters.get(entity_type, 0)
        while True:
            number += 1
            candidate = f"<{entity_type}_{number}>"
            if candidate not in self._reserved:
                break
        self._counters[entity_type] = number
        self._by_value[key] = candidate
        self.values[candidate] = value
        self._prefixes = None
        self._max_length = max(self._max_length, len(candidate))
        return candidate

    # -- restoring ------------------------------------------------------------------------------

    def restore(self, text: str, *, escape: bool = False) -> str:
        """``text`` with every allocated placeholder replaced by its value (JSON-escaped when
        ``escape``: the text is JSON source, like tool-call arguments). Other placeholder-shaped
        strings are left as they are."""
        if "<" not in text or not self.values:
            return text
        return PLACEHOLDER.sub(lambda m: self._value(m.group(), escape), text)

    def _value(self, placeholder: str, escape: bool) -> str:
        value = self.values.get(placeholder)
        if value is None:
            return placeholder
        if not escape:
            return value
        escaped = self._escaped.get(placeholder)
        if escaped is None:
            escaped = self._escaped[placeholder] = json_escape(value)
        return escaped

    @property
    def max_length(self) -> int:
        return self._max_length

    def split_tail(self, text: str) -> tuple[str, str]:
        """Split ``text`` into what can go now and the tail that may be the start of a placeholder
        (held until the next piece shows whether it is one). The tail is never longer than the
        longest placeholder minus one character."""
        if not self.values:
            return text, ""
        window_start = max(0, len(text) - self._max_length + 1)
        cut = text.rfind("<", window_start)
        if cut < 0:
            return text, ""
        if self._prefixes is None:
            self._prefixes = frozenset(p[:i] for p in self.values for i in range(1, len(p)))
        if text[cut:] in self._prefixes:
            return text[:cut], text[cut:]
        return text, ""


def placeholder_counts(data: Any) -> Counter[str]:
    """How many times each placeholder-shaped string occurs in the strings of a JSON value."""
    counts: Counter[str] = Counter()
    for text in _strings(data):
        if "<" in text:
            counts.update(match.group() for match in PLACEHOLDER.finditer(text))
    return counts
