"""Normalise text for detection, keeping a map back to the original.

Recognisers are written for plain text: a full-width at sign (U+FF20), a zero-width space inside an
address or an HTML entity (``&#64;``) hides an e-mail address from them, while a model reads straight
through all three. Detection therefore runs on a normalised copy: HTML entities decoded, each
character cluster (a base character and its combining marks) in NFKC form, format characters (Unicode
category ``Cf``: zero-width spaces and joiners, soft hyphens, direction marks, BOM) dropped. Every
normalised character remembers the original span it came from, so a finding is replaced in the
ORIGINAL text, covering whatever was dropped inside it.

Plain ASCII without ``&`` is already normal: it skips all of this (the common case costs one
``isascii()`` and one ``in``).
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass

#: An HTML character reference: numeric (``&#64;``, ``&#x40;``) or named (``&commat;``), ``;`` optional
#: as browsers allow.
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});?")
#: Entities can be encoded again (``&amp;#64;``): decoded this many times at most.
_MAX_PASSES = 3
#: Format characters (Unicode category Cf, as of Unicode 14): invisible, so dropped for detection.
_FORMAT = re.compile(
    "[\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]"
)
#: Where a pass has work: an ``&`` or a character outside ASCII (or an ASCII one followed by a mark).
_SPECIAL = re.compile(
    r"[&\u0080-\U0010ffff]|[\x00-\x7f](?=[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f])"
)


@dataclass(frozen=True, slots=True)
class Normalised:
    """A normalised text and, for each of its characters, the original span it came from."""

    text: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The span of the original text that produced ``text[start:end]`` (``end > start``)."""
        return self.starts[start], self.ends[end - 1]


def needs_normalising(text: str) -> bool:
    """False for plain ASCII without ``&``: nothing in it can change."""
    return not text.isascii() or "&" in text


def normalise(text: str) -> Normalised | None:
    """``text`` normalised for detection, or None when that changes nothing."""
    if not needs_normalising(text):
        return None
    # text in another script, already in NFKC form with no format character, is normal too (C speed)
    if "&" not in text and unicodedata.is_normalized("NFKC", text) and _FORMAT.search(text) is None:
        return None
    starts = list(range(len(text)))
    ends = list(range(1, len(text) + 1))
    current = text
    changed = False
    for _ in range(_MAX_PASSES):
        result = _one_pass(current)
        if result is None:
            break
        changed = True
        current, pass_starts, pass_ends = result
        # compose with the earlier passes: each new character maps to the span of the old ones
        starts, ends = [starts[s] for s in pass_starts], [ends[e - 1] for e in pass_ends]
        if "&" not in current:
            break
    if not changed:
        return None
    return Normalised(current, tuple(starts), tuple(ends))


def _one_pass(text: str) -> tuple[str, list[int], list[int]] | None:
    """One decoding pass: the new text and each new character's span in ``text``; None if unchanged."""
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    changed = False
    position = 0  # everything before it is in ``out``
    length = len(text)
    for found in _SPECIAL.finditer(text):
        at = found.start()
        if at < position:
            continue  # inside an entity or cluster already handled
        # the plain ASCII run before it is copied as it is
        out.append(text[position:at])
        starts.extend(range(position, at))
        ends.extend(range(position + 1, at + 1))
        if found.group() == "&":
            match = _ENTITY.match(text, at)
            decoded = html.unescape(match.group()) if match is not None else "&"
            if match is None or decoded == match.group():
                out.append("&")
                starts.append(at)
                ends.append(at + 1)
                position = at + 1
                continue
            end = match.end()
            changed = True
        else:
            # a character with the combining marks that follow it: NFKC needs them together
            end = at + 1
            while end < length and not text[end].isascii() and unicodedata.combining(text[end]):
                end += 1
            decoded = text[at:end]
        normal = _normal(decoded)
        if normal != text[at:end]:
            changed = True
        for char in normal:  # every character produced by one source span maps to the whole span
            out.append(char)
            starts.append(at)
            ends.append(end)
        position = end
    if not changed:
        return None
    out.append(text[position:])
    starts.extend(range(position, length))
    ends.extend(range(position + 1, length + 1))
    return "".join(out), starts, ends


def _normal(cluster: str) -> str:
    normal = unicodedata.normalize("NFKC", cluster)
    if normal.isascii():
        return normal
    return _FORMAT.sub("", normal)
