"""Typos and spellings: "pasword" asks what "password" asks, "desert" does not ask what "dessert" asks;
"tyre" is "tire", "wi-fi" is "wifi".

A word of one question that is not an English word, one edit (a letter added, dropped, changed, or two
neighbours swapped) away from a word of the other question that is, is read as that word. Whether a
word is English is decided by the word list of the embedding model's tokenizer, which the package ships
(``runtime/data/all-MiniLM-L6-v2/tokenizer.json``): two real words never pass for each other.
"""

from __future__ import annotations

import re
from itertools import pairwise
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
        # the first letter is kept: typos seldom hit it, and other words often differ there
        # ("ethanol" / "methanol")
        matches = [w for w in known if w[0] == word[0] and one_edit(word, w)]
        if len(matches) == 1:  # two candidates: which one was meant is a guess
            fixes[word] = matches[0]
    return fixes


def variants(text: str, other: str) -> dict[str, str]:
    """Words of ``text`` that ``other`` spells another way: British and American spellings ("tyre" /
    "tire", "colour" / "color", "organise" / "organize"), whatever the word list says."""
    mine = set(_WORD.findall(text))
    theirs = set(_WORD.findall(other)) - mine
    if not theirs:
        return {}
    fixes: dict[str, str] = {}
    for word in mine - set(_WORD.findall(other)):
        for spelling in _american(word):
            if spelling in theirs:
                fixes[word] = spelling
                break
    return fixes


_BRITISH = (
    # six letters at least: "four", "hour", "your", "tour", "flour" are words of their own
    (re.compile(r"(?<=\w{3})our(s?)$"), r"or\1"),
    (re.compile(r"(?<=[^aeiou])re(s?)$"), r"er\1"),
    (re.compile(r"is(e|es|ed|ing|ation|ations)$"), r"iz\1"),
    (re.compile(r"ys(e|es|ed|ing)$"), r"yz\1"),
    (re.compile(r"ogue(s?)$"), r"og\1"),
    # "travelled", "cancelling", "modeller", never "filled" / "filed"
    (re.compile(r"(?<=\w{3})ell(ed|ing|er)$"), r"el\1"),
    (re.compile(r"^tyre"), "tire"),
)


def _american(word: str) -> list[str]:
    if len(word) < 4:
        return []
    return [pattern.sub(replacement, word) for pattern, replacement in _BRITISH if pattern.search(word)]


def compounds(text: str, other: str) -> dict[str, str]:
    """Two neighbouring words of ``text`` that ``other`` writes as one ("wi-fi" / "wifi", "e mail" /
    "email", "data base" / "database"): the pair (``"wi fi"``) -> the word."""
    words = _WORD.findall(text)
    theirs = set(_WORD.findall(other)) - set(words)
    return {f"{a} {b}": a + b for a, b in pairwise(words) if a + b in theirs}


_ANY_WORD = re.compile(r"[A-Za-z]+")


def apply(text: str, fixes: dict[str, str]) -> str:
    """``text`` with each typo (found lower-cased) replaced by its word; other words keep their case.
    A key of two words (from :func:`compounds`) replaces the two words with or without a hyphen."""
    if not fixes:
        return text
    for pair in [k for k in fixes if " " in k]:
        first, second = pair.split(" ")
        pattern = re.compile(rf"\b{first}[\s-]+{second}\b", re.IGNORECASE)
        text = pattern.sub(fixes[pair], text)
    single = {k: v for k, v in fixes.items() if " " not in k}
    if not single:
        return text
    return _ANY_WORD.sub(lambda m: single.get(m.group().lower(), m.group()), text)
