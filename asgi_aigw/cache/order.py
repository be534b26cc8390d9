"""Who does what to whom: an order-aware comparison of two questions with the same words.

Both questions are read as sequences of *items* (content words and numbers, after synonyms) and *pivots*
(items and relation words: "by", "than", "and", "is", ...). Moving a phrase keeps the meaning ("undo
the last git commit" / "undo the last commit in git", "in Python, how do I ..." / "how do I ... in
Python"): around every pivot, the moved words cross it in one direction only. Swapping the arguments
of a relation changes it ("10 divided by 2" / "2 divided by 10", "the dog chased the cat" / "the cat
chased the dog", "all cats are animals" / "all animals are cats"): one word crosses the pivot from its
left to its right and another from its right to its left. That crossing is what :func:`crossing` finds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from .lexicon import SYMMETRIC_CONJUNCTIONS, SYMMETRIC_TRIGGERS


@dataclass(frozen=True, slots=True)
class Token:
    """One word of a question in order: ``item`` when it is a content word or a number (what may move
    or swap), else a relation word (a pivot only)."""

    text: str
    item: bool
    #: Read from a noun naming an action ("renewal" -> "renew"): its object comes before it ("passport
    #: renewal") where the verb's comes after ("renew a passport").
    derived: bool = False


def crossing(a: Sequence[Token], b: Sequence[Token]) -> tuple[str, str, str] | None:
    """``(pivot, left-to-right word, right-to-left word)`` of the first swap of arguments between ``a``
    and ``b``, or ``None`` when every reordering is a phrase moved as a whole."""
    count_a = Counter(t.text for t in a)
    count_b = Counter(t.text for t in b)
    # Only words both questions have as often can be followed from one to the other.
    shared = {w for w, n in count_a.items() if count_b.get(w) == n}
    if not shared:
        return None
    symmetric = any(t.text in SYMMETRIC_TRIGGERS for t in a) and any(t.text in SYMMETRIC_TRIGGERS for t in b)
    derived = {t.text for t in (*a, *b) if t.derived}
    left_a = _lefts(a, shared)
    left_b = _lefts(b, shared)
    for key, before_a in left_a.items():
        before_b = left_b.get(key)
        if before_b is None:
            continue
        pivot = key[0]
        if pivot in derived:
            continue  # "a passport renewal" / "renew a passport": the noun's object comes first
        if pivot == "or" or (symmetric and pivot in SYMMETRIC_CONJUNCTIONS):
            continue  # "rent or buy" / "buy or rent"; "between TCP and UDP" / "between UDP and TCP"
        moved_right = set(before_a - before_b)
        moved_left = set(before_b - before_a)
        if symmetric:
            # "the difference between weather and climate" / "how does weather differ from climate":
            # the comparison word moving is the framing, not a swap of what is compared
            moved_right = {w for w in moved_right if _word(w) not in SYMMETRIC_TRIGGERS}
            moved_left = {w for w in moved_left if _word(w) not in SYMMETRIC_TRIGGERS}
        if moved_right and moved_left:
            return pivot, _word(min(moved_right)), _word(min(moved_left))
    # Two words side by side in both, in the other order ("are all cats animals" / "are all animals
    # cats"): no pivot lies between them to cross, and yet they swapped.
    pairs_a = {(x.text, y.text) for x, y in pairwise(a) if x.item and y.item and not (x.derived or y.derived)}
    for x, y in pairwise(b):
        if x.derived or y.derived:
            continue
        if x.item and y.item and x.text != y.text and (y.text, x.text) in pairs_a:
            if symmetric and (x.text in SYMMETRIC_TRIGGERS or y.text in SYMMETRIC_TRIGGERS):
                continue
            return "", y.text, x.text
    return None


def _lefts(tokens: Sequence[Token], shared: set[str]) -> dict[tuple[str, int], frozenset[str]]:
    """For each occurrence of a shared word (``(word, n-th occurrence)``), the shared items before it."""
    seen: Counter[str] = Counter()
    before: list[str] = []
    out: dict[tuple[str, int], frozenset[str]] = {}
    for token in tokens:
        if token.text not in shared:
            continue
        out[(token.text, seen[token.text])] = frozenset(before)
        seen[token.text] += 1
        if token.item:
            # a repeated item is told apart by its occurrence, so "2 times 2" compares cleanly
            before.append(f"{token.text}#{seen[token.text]}")
    return out


def _word(key: str) -> str:
    return key.partition("#")[0]
