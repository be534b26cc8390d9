"""The strings of a request that are scanned, where they are, and how to rewrite them.

:mod:`asgi_aigw.redact.walk` finds them; this module plans the replacements from the findings and
writes them back: into a string value, an object key, the text parts of one message scanned as one
text, or a string inside decoded tool-call arguments (then encoded again as JSON).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from .config import Action, RedactConfig
from .placeholders import PlaceholderMap, json_escape
from .scanner import Finding

#: When findings overlap, the stricter action wins the merged span.
_SEVERITY: dict[str, int] = {"allow": 0, "pseudonymize": 1, "mask": 2, "block": 3}


@dataclass(slots=True)
class JSONSource:
    """A string holding JSON (tool-call arguments), decoded so its strings are scanned as text, and
    encoded again only if one of them changed."""

    container: dict[str, Any]
    key: str
    #: ``{"value": decoded}``: a holder, so a JSON document that is a bare string can be rewritten too
    holder: dict[str, Any]
    dirty: bool = False

    def encode(self) -> None:
        if self.dirty:
            self.container[self.key] = orjson.dumps(self.holder["value"]).decode()


@dataclass(slots=True)
class TextField:
    """One string of the request body: the object holding it, its key, and a readable location."""

    container: dict[str, Any] | list[Any]
    key: Any
    location: str
    text: str
    #: The string is JSON source that could not be decoded: replacements must be JSON-escaped.
    json_source: bool = False
    #: The string is the object key ``key`` itself, not the value under it.
    is_key: bool = False
    #: The decoded JSON this string belongs to, encoded again when it changes.
    source: JSONSource | None = None

    def set(self, value: str) -> None:
        if self.is_key:
            assert isinstance(self.container, dict)
            # rebuilt in place: other fields hold this dict, and key order is the client's
            items = [(value if k == self.key else k, v) for k, v in self.container.items()]
            self.container.clear()
            self.container.update(items)
        else:
            self.container[self.key] = value
        if self.source is not None:
            self.source.dirty = True


@dataclass(slots=True)
class TextGroup:
    """Strings scanned as one text (the text parts of one message, which the model reads as one):
    a value split across parts is still found."""

    location: str
    parts: list[TextField]
    text: str = field(init=False)

    def __post_init__(self) -> None:
        self.text = "".join(part.text for part in self.parts)


Scanned = TextField | TextGroup


@dataclass(slots=True)
class Replacement:
    start: int
    end: int
    entity_type: str
    action: Action


def plan(findings: Iterable[Finding], config: RedactConfig) -> list[Replacement]:
    """Non-overlapping replacements in text order. Overlapping findings merge into one span covering
    them all (so no part of either leaks), typed by the strictest action, then the best score."""
    spans: list[tuple[Replacement, float]] = []
    for finding in sorted(findings, key=lambda f: (f.start, -f.end)):
        action = config.action_for(finding.entity_type)
        if action == "allow":
            continue
        current = Replacement(finding.start, finding.end, finding.entity_type, action)
        if spans and finding.start < spans[-1][0].end:
            last, score = spans[-1]
            winner_is_new = (_SEVERITY[action], finding.score) > (_SEVERITY[last.action], score)
            last.end = max(last.end, finding.end)
            if winner_is_new:
                last.entity_type, last.action = finding.entity_type, action
                spans[-1] = (last, finding.score)
            continue
        spans.append((current, finding.score))
    return [span for span, _ in spans]


def _substitute(item: Replacement, value: str, mapping: PlaceholderMap, config: RedactConfig) -> str:
    """What replaces ``value`` (placeholders for pseudonymize, the mask text for mask; block never
    gets here)."""
    if item.action == "pseudonymize":
        return mapping.placeholder(item.entity_type, value)
    return config.mask_format.format(entity_type=item.entity_type)


def rewrite(
    field: TextField, replacements: list[Replacement], mapping: PlaceholderMap, config: RedactConfig
) -> str:
    """The field's text with each replacement applied."""
    out: list[str] = []
    position = 0
    text = field.text
    for item in replacements:
        out.append(text[position : item.start])
        new = _substitute(item, text[item.start : item.end], mapping, config)
        out.append(json_escape(new) if field.json_source else new)
        position = item.end
    out.append(text[position:])
    return "".join(out)


def apply(
    scanned: Scanned, replacements: list[Replacement], mapping: PlaceholderMap, config: RedactConfig
) -> list[tuple[TextField, str]]:
    """The new text of each string of ``scanned`` that changes (not yet written back)."""
    if isinstance(scanned, TextField):
        return [(scanned, rewrite(scanned, replacements, mapping, config))]
    # a group: a value spanning parts becomes one placeholder in the part where it starts, and the
    # rest of it is removed from the parts it runs into
    text = scanned.text
    substitutes = [_substitute(item, text[item.start : item.end], mapping, config) for item in replacements]
    changes: list[tuple[TextField, str]] = []
    offset = 0
    for part in scanned.parts:
        start, end = offset, offset + len(part.text)
        offset = end
        out: list[str] = []
        position = start
        for item, new in zip(replacements, substitutes, strict=True):
            if item.end <= start or item.start >= end:
                continue
            out.append(text[position : max(item.start, start)])
            if item.start >= start:
                out.append(new)
            position = min(item.end, end)
        if position == start and not out:
            continue
        out.append(text[position:end])
        changes.append((part, "".join(out)))
    return changes
