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


def words(text: str) -> tuple[str, ...]:
    """The words of lower-cased ``text``, in order: what :func:`fixes` compares."""
    return tuple(_WORD.findall(text))


def fixes(mine: tuple[str, ...], theirs: tuple[str, ...]) -> dict[str, str]:
    """Typos, other spellings and split compounds among the words ``mine`` (:func:`words` of one
    question) that the other question's words ``theirs`` write as one word or spell another way."""
    own, other = set(mine), set(theirs)
    return _fixes(mine, own - other, other - own)


def fixes_both(mine: tuple[str, ...], theirs: tuple[str, ...]) -> tuple[dict[str, str], dict[str, str]]:
    """``(fixes(mine, theirs), fixes(theirs, mine))``, the words of each question counted once."""
    own, other = set(mine), set(theirs)
    only_mine, only_theirs = own - other, other - own
    return _fixes(mine, only_mine, only_theirs), _fixes(theirs, only_theirs, only_mine)


def _fixes(mine: tuple[str, ...], only_mine: set[str], only_theirs: set[str]) -> dict[str, str]:
    if not only_theirs:
        return {}  # every fix reads words of one question as a word only the other has
    found = compounds(mine, only_theirs)
    found.update(variants(only_mine, only_theirs))
    found.update(corrections(only_mine, only_theirs))
    return found


def corrections(mine: set[str], theirs: set[str]) -> dict[str, str]:
    """The words ``mine`` (of one question only) read as a word of ``theirs`` (of the other only):
    typo -> word."""
    if not WORDS:
        return {}
    unknown = [w for w in mine if len(w) >= _MIN_LENGTH and w not in WORDS]
    if not unknown:
        return {}
    known = [w for w in theirs if w in WORDS]
    found: dict[str, str] = {}
    for word in unknown:
        # the first letter is kept: typos seldom hit it, and other words often differ there
        # ("ethanol" / "methanol")
        matches = [w for w in known if w[0] == word[0] and one_edit(word, w)]
        if len(matches) == 1:  # two candidates: which one was meant is a guess
            found[word] = matches[0]
    return found


def variants(mine: set[str], theirs: set[str]) -> dict[str, str]:
    """Words ``mine`` (of one question only) that ``theirs`` (of the other only) spell another way:
    British and American spellings ("tyre" / "tire", "colour" / "color", "organise" / "organize"),
    whatever the word list says."""
    found: dict[str, str] = {}
    for word in mine:
        for spelling in _american(word):
            if spelling in theirs:
                found[word] = spelling
                break
    return found


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


#: An ending (or the start) one of the patterns above needs: most words have none, and one search costs
#: less than seven.
_MAY_BE_BRITISH = re.compile(
    r"(?:ours?|res?|is(?:e|es|ed|ing|ations?)|ys(?:e|es|ed|ing)|ogues?|ell(?:ed|ing|er))$|^tyre"
)


def _american(word: str) -> list[str]:
    if len(word) < 4 or not _MAY_BE_BRITISH.search(word):
        return []
    return [pattern.sub(replacement, word) for pattern, replacement in _BRITISH if pattern.search(word)]


def compounds(mine: tuple[str, ...], theirs: set[str]) -> dict[str, str]:
    """Two neighbouring words of ``mine`` (one question's, in order) that the other question writes as
    one of ``theirs`` (its words the first has not): "wi-fi" / "wifi", "e mail" / "email", "data base" /
    "database". The pair (``"wi fi"``) -> the word."""
    # such a word is in the words of ``mine`` written together: most pairs of questions have none, and
    # one search of the joined words for each of ``theirs`` is cheaper than joining every pair
    joined = "".join(mine)
    for word in theirs:
        if word in joined:
            return {f"{a} {b}": a + b for a, b in pairwise(mine) if a + b in theirs}
    return {}


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
