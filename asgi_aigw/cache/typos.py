"""Typos: "pasword" asks what "password" asks, "desert" does not ask what "dessert" asks.

A word of one question that is not an English word, one edit (a letter added, dropped, changed, or two
neighbours swapped) away from a word of the other question that is, is read as that word. Whether a
word is English is decided by the word list of the embedding model's tokenizer, which the package ships
(``runtime/data/all-MiniLM-L6-v2/tokenizer.json``): two real words never pass for each other.
"""

from __future__ import annotations

import re
from pathlib import Path

import orjson

_TOKENIZER = Path(__file__).resolve().parent.parent / "runtime" / "data" / "all-MiniLM-L6-v2"
_TOKENIZER = _TOKENIZER / "tokenizer.json"
_WORD = re.compile(r"[a-z]+")
#: Shorter words are left alone: at three or four letters one edit turns most words into others.
_MIN_LENGTH = 5


def _load_words() -> frozenset[str]:
    try:
        vocab = orjson.loads(_TOKENIZER.read_bytes())["model"]["vocab"]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        return frozenset()  # no word list: no typo is forgiven
    return frozenset(w for w in vocab if w.isascii() and w.isalpha() and len(w) >= 3)


#: Loaded once at import (about 10 ms), never on the request path.
WORDS = _load_words()


def one_edit(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` differ by exactly one insertion, deletion, substitution or swap of two
    neighbouring letters."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) < len(b):
        return a[i:] == b[i + 1 :]
    if a[i + 1 :] == b[i + 1 :]:
        return True
    return i + 1 < len(a) and a[i] == b[i + 1] and a[i + 1] == b[i] and a[i + 2 :] == b[i + 2 :]


def corrections(text: str, other: str) -> dict[str, str]:
    """The words of ``text`` read as a word of ``other`` (typo -> word)."""
    if not WORDS:
        return {}
    mine = set(_WORD.findall(text))
    theirs = set(_WORD.findall(other))
    unknown = [w for w in mine - theirs if len(w) >= _MIN_LENGTH and w not in WORDS]
    if not unknown:
        return {}
    known = [w for w in theirs - mine if w in WORDS]
    fixes: dict[str, str] = {}
    for word in unknown:
        matches = [w for w in known if one_edit(word, w)]
        if len(matches) == 1:  # two candidates: which one was meant is a guess
            fixes[word] = matches[0]
    return fixes


_ANY_WORD = re.compile(r"[A-Za-z]+")


def apply(text: str, fixes: dict[str, str]) -> str:
    """``text`` with each typo (found lower-cased) replaced by its word; other words keep their case."""
    if not fixes:
        return text
    return _ANY_WORD.sub(lambda m: fixes.get(m.group().lower(), m.group()), text)
