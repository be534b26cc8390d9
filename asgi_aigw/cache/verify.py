"""The check after the vector match: do the two questions ask for the same answer?

Sentence embeddings put "chemical symbol for sodium" and "... for potassium" close together, and
"10 miles to km" next to "10 km to miles": on the project's labelled set (``tests/data/cache_pairs.jsonl``)
no cosine threshold alone gives a precision above 0.80. A semantic hit is therefore accepted only when the
cached question and the new one also agree on what usually changes the answer:

- **numbers**: the same numbers, as a multiset ("2 leap years", "chunks of 3", "Python 3.8");
- **negation**: the same count of negations ("do not contain", "without", "can't");
- **content words**: every word that is not a function word or a question-framing word ("how", "can",
  "explain", "way") must appear in both questions, after light stemming; a word in one question and not
  the other is a different entity, unit or action ("sodium"/"potassium", "add"/"drop") until proven
  otherwise, and the cache prefers a miss to a wrong answer;
- **direction**: the word after "to", "from", "into", "than", "per", "how many", "how much" must agree
  when both questions have that marker ("miles to km" against "km to miles").

- **order** (:mod:`.order`): who does what to whom. A word that crosses a relation word or another
  content word one way while another crosses it the other way swaps arguments ("10 divided by 2" /
  "2 divided by 10", "the dog chased the cat" / "the cat chased the dog"); a phrase moved as a whole
  ("in Python, ..." / "... in Python") does not;
- **quantifiers**: the same claims ("all", "some", "most", "few", "only");
- **negation scope**: each negation bears on the same word ("is it not safe to drink" / "is it safe
  to not drink");
- **literals**: code in backticks and quoted strings appear verbatim in both, identifiers with
  underscores are the same.

Synonyms (:mod:`.lexicon`) and symbols read as words ("/" = "divided by") are applied first, to both
questions alike. It is a handful of regular expressions over two short strings: tens of microseconds,
no model.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from .lexicon import COPULA, DERIVED, PHRASES, QUANTIFIERS, RELATIONS, SYMBOLS, SYNONYMS
from .order import Token, crossing
from .typos import apply as apply_fixes
from .typos import fixes_both
from .typos import words as words_of

_CONTRACTIONS = (
    (re.compile(r"\bcan't\b|\bcannot\b"), "can not"),
    (re.compile(r"\bwon't\b"), "will not"),
    (re.compile(r"\bshan't\b"), "shall not"),
    (re.compile(r"n't\b"), " not"),
    (re.compile(r"'re\b"), " are"),
    (re.compile(r"'ve\b"), " have"),
    (re.compile(r"'ll\b"), " will"),
    (re.compile(r"'d\b"), " would"),
    (re.compile(r"'m\b"), " am"),
    # "what's" and "France's": the verb and the possessive both carry nothing to compare
    (re.compile(r"'s\b"), ""),
)

_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[a-z]+(?:\.[a-z]+)*")

#: Number words, so "two weeks" and "2 weeks" agree. "one" is left out: "a tablespoon" and "one
#: tablespoon" ask the same thing.
_NUMBER_WORDS = {
    "zero": "0",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "twenty": "20",
    "thirty": "30",
    "forty": "40",
    "fifty": "50",
    "hundred": "100",
    "thousand": "1000",
    "million": "1000000",
    "billion": "1000000000",
    "dozen": "12",
    "twice": "2",
    "double": "2",
    "half": "0.5",
}

_NEGATIONS = frozenset({"not", "no", "never", "without", "none", "nothing", "nobody", "neither", "nor"})

#: Function words, and words that frame a question without changing what it asks ("how can I",
#: "explain", "what is the way to"). Their presence or absence never makes two questions differ.
_STOPWORDS = frozenset(
    """
    a an the and or but if so as of in on at by for with about into onto from to than per via between
    over under up out off then also just too very really actually exactly quite
    i me my mine myself you your yours we us our they them their he him his she her it its
    this that these those there here who whom whose what which when where why how
    is are was were be been being am do does did done doing have has had having
    can could should would will shall may might must
    some any all each every other another such own same
    one ones thing things something anything kind many much
    way ways best good better simple simply easy easily quick quickly possible
    please tell explain describe show give let know want need like help mean meaning
    convert calculate compute find determine
    hi hello hey thanks thank thx cheers pls plz kindly wondering wonder curious
    tip tips advice idea ideas suggestion suggestions someone anyone correct proper recommended
    setting settings sett
    easiest simplest easier simpler quickest quicker allowed allow permitted able
    define definition term terms say said call called
    go going get getting got make making use using used
    s t
    """.split()  # noqa: SIM905 (a word list reads better as text)
)

#: Nouns that only frame a request for help ("any tips for", "some ideas to"): dropped like stopwords.
_FRAMING_NOUNS = frozenset(
    {
        "tip",
        "tips",
        "advice",
        "idea",
        "ideas",
        "suggestion",
        "suggestions",
        "recommendation",
        "recommendations",
    }
)

#: Nouns that restate the kind of thing asked about ("status *code* 404", "in what *year*", "a CSV
#: *file*", "the *latest version*"): one question may have them and the other not. Kept short on purpose.
_CLASSIFIERS = frozenset(
    {
        "code",
        "file",
        "year",
        "date",
        "version",
        "latest",
        "new",
        "form",
        "item",
        "value",
        "city",
        "name",
        "number",
        "script",
        "command",
        "step",
        "process",
        "method",
        "function",
        "amount",
        "total",
    }
)

#: Markers after which a phrase names the target, the source, the unit asked for or the thing compared:
#: its head (last content word) must be the same in both questions when both have the marker.
_MARKER = re.compile(r"\b(how many|how much|to|into|from|than|per)\b")
_DETERMINERS = frozenset(
    {"a", "an", "the", "my", "your", "our", "their", "his", "her", "its", "this", "that"}
)
_PHRASE_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[a-z]+(?:\.[a-z]+)*|[^\sa-z0-9]")


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of :func:`verify`: ``ok``, or the first disagreement found (for logs and tests)."""

    ok: bool
    reason: str | None = None
    detail: str | None = None


_OK = Verdict(True)


def normalise(text: str) -> str:
    """Lower-case, compatibility-normalised text with contractions expanded."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    if "'" in text or "cannot" in text:  # every contraction has one or the other: most texts neither
        for pattern, replacement in _CONTRACTIONS:
            text = pattern.sub(replacement, text)
    return text


def _stem(word: str) -> str:
    """A light stemmer, applied to both questions alike: plurals, verb endings and a few derivations, so
    "spiders"/"spider", "boils"/"boil", "forgetting"/"forgot" stay apart but "difference"/"differ",
    "invented"/"inventor" meet."""
    if len(word) <= 3 or word[-1].isdigit():
        return word
    for suffix, replacement in (("ies", "y"), ("sses", "ss"), ("xes", "x"), ("ches", "ch"), ("shes", "sh")):
        if word.endswith(suffix):
            return word[: -len(suffix)] + replacement
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed", "ence", "ent", "or"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4 and not word.endswith("eed"):
            word = word[: -len(suffix)]
            if len(word) > 4 and word[-1] == word[-2] and word[-1] not in "aeiouls":
                word = word[:-1]  # "forgett" -> "forget", "stopp" -> "stop"
            break
    return word


class _Features(NamedTuple):
    """What every verification compares first. Counts are plain dicts of positive counts (compared in C,
    as ``Counter`` would compare them). A named tuple: made for every new question and every candidate,
    where a frozen dataclass took a microsecond more to make."""

    numbers: dict[str, int]
    negations: int
    content: frozenset[str]
    #: The words in order, as (text, is an item, derived) (see :class:`.order.Token`): made into tokens
    #: only for the order check, which two questions with different content words never reach.
    sequence: tuple[tuple[str, bool, bool], ...]
    quantifiers: dict[str, int]
    scopes: dict[str, int]
    #: The words of the text once normalised (:func:`normalise`): where typos are looked for.
    words: tuple[str, ...]
    #: The text normalised, symbols and phrases read as words: what :func:`_details` reads directions in.
    norm: str


class _Details(NamedTuple):
    """What only questions with the same content words go on to compare (:func:`_details`)."""

    literals: tuple[str, ...]
    identifiers: dict[str, int]
    flat: str
    directions: dict[str, tuple[tuple[str, frozenset[str]], ...]]
    sequence: tuple[Token, ...]


def _phrase_head(tokens: Iterable[str], tenant: str = "") -> tuple[str, frozenset[str]] | None:
    """The last content word of the phrase at the start of ``tokens`` ("a Linux group in" -> "group"),
    with all the phrase's content words."""
    head: str | None = None
    words: set[str] = set()
    for token in tokens:
        if token in _DETERMINERS and head is None:
            continue
        if token == "or" and head is not None:
            return None  # "to rent or buy": alternatives, in either order (the order check sees them)
        if token in _STOPWORDS or token in _NEGATIONS or not (token[0].isalnum()):
            break
        word = _NUMBER_WORDS.get(token) or _canonical(token, tenant)
        words.add(word)
        if head is None or word not in _CLASSIFIERS:
            head = word  # "to a CSV file": the head that matters is "csv"
    return None if head is None else (head, frozenset(words))


#: Stems of words seen, kept per tenant (as everything the layers keep of what was asked: a word found
#: here is read sooner, which must not tell a tenant what another one asked): most questions are made
#: of words asked before. Bounded in count and in the length of a word kept (the client's text): a few
#: MB at most.
_CANONICAL: dict[tuple[str, str], str] = {}
_MAX_CANONICAL = 16_384
_MAX_KEPT_WORD = 40


def _canonical(word: str, tenant: str = "") -> str:
    """The stem of ``word`` with synonyms merged ("wrote", "author" -> "write")."""
    key = (tenant, word)
    stem = _CANONICAL.get(key)
    if stem is None:
        stem = SYNONYMS.get(word)
        if stem is None:
            stem = _stem(DERIVED.get(word, word))
            stem = SYNONYMS.get(stem, stem)
        if len(word) <= _MAX_KEPT_WORD:
            if len(_CANONICAL) >= _MAX_CANONICAL:
                _CANONICAL.clear()
            _CANONICAL[key] = stem
    return stem


_LITERAL = re.compile(r"`([^`]+)`|(?<![\w])\"([^\"\n]+)\"(?![\w])|(?<![\w])'([^'\n]+)'(?![\w])")
#: Identifiers with an underscore ("max_tokens"): whole words holding ``_`` and a letter a-z. Found as
#: words, then tested: a pattern that found them itself (``\b\w*[a-z]\w*_\w*|...``) backtracked through
#: every word, in time that grows with the square of its length (a word of 16,000 letters and an
#: underscore elsewhere held the event loop for half a second).
_WORD_RUN = re.compile(r"\w+")
_LETTER_AZ = re.compile(r"[a-z]")
_SPACES = re.compile(r"\s+")
#: Operators of code and logic ("x >> 2" / "x << 2", "a && b" / "a || b"): compared as written.
_OPERATOR = re.compile(r"[<>=&|~^!]{2,3}|(?<=\s)[<>&|~^](?=\s)|[-+*/%]=|\+\+|->|=>|::|//|\*\*")
#: A capital letter standing alone names something ("from A to B"); "I" and a sentence's first word
#: ("A dog ...") do not.
_LETTER = re.compile(r"(?<=[\w,;:(]\s)([A-HJ-Z])\b(?!')")
#: What each of the three above needs somewhere in a text, searched first: most questions have no
#: underscore, no operator and no lone capital, and the patterns themselves cost more than a search
#: for a character (the identifier pattern backtracks through every long word: 12 µs for a question
#: of 50 letters).
_MAY_HAVE_OPERATOR = re.compile(r"[<>=&|~^!+*/%:-]")
_MAY_HAVE_LETTER = re.compile(r"\s[A-HJ-Z]\b")


#: Whether any of the SYMBOLS or PHRASES could apply: most questions have none, and one search is
#: cheaper than thirty substitutions.
_MAY_HAVE_SYMBOL = re.compile(r"[-+*/^%<>=$\u2212\u00d7\u00f7\u2265\u2264\u20ac\u00a3]|\d\s*[ap]\.?m|\dx\d")
_MAY_HAVE_PHRASE = re.compile(
    r"\b(?:turn|switch|rid|find|look|set|sign|log|than|vs|versus|money|what time|how come|in order|back)"
)


def _prepare(norm: str) -> str:
    """``norm`` (a text :func:`normalise` returned) with symbols and two-word phrases read as the words
    they stand for."""
    if _MAY_HAVE_SYMBOL.search(norm):
        for pattern, replacement in SYMBOLS:
            norm = pattern.sub(replacement, norm)
    if _MAY_HAVE_PHRASE.search(norm):
        for pattern, replacement in PHRASES:
            norm = pattern.sub(replacement, norm)
    return norm


def _identifiers(lowered: str) -> list[str]:
    """The words of ``lowered`` holding an underscore and a letter a-z, in order."""
    return [w for w in _WORD_RUN.findall(lowered) if "_" in w and _LETTER_AZ.search(w) is not None]


def _count(counts: dict[str, int], item: str, by: int = 1) -> None:
    counts[item] = counts.get(item, 0) + by


@lru_cache(maxsize=4096)
def _features(text: str, tenant: str = "") -> _Features:
    """What :func:`verify` compares first, kept for the hottest texts of each tenant: a question is
    verified against up to ``candidates`` cached ones, and a cached question against every paraphrase
    that finds it. Per tenant, as the cache is: a text found here is verified sooner, which
    must not tell a tenant that another one asked it. Callers never mutate the result."""
    normal = normalise(text)
    if _MAY_HAVE_LETTER.search(text):
        lettered = _LETTER.sub(r"letter\1", text)
        norm = _prepare(normal if lettered == text else normalise(lettered))
    else:
        norm = _prepare(normal)
    numbers: dict[str, int] = {}
    quantifiers: dict[str, int] = {}
    scopes: dict[str, int] = {}
    negations = 0
    pending = 0  # negations waiting for the word they bear on
    content: set[str] = set()
    sequence: list[tuple[str, bool, bool]] = []
    previous = ""
    tokens = _TOKEN.findall(norm)
    for index, token in enumerate(tokens):
        item: str | None = None
        # a token is a number when it starts with a digit (the other kind of token starts with a letter)
        if token[0].isdecimal():
            item = token.replace(",", "")
            _count(numbers, item)
        elif token in _NUMBER_WORDS:
            item = _NUMBER_WORDS[token]
            _count(numbers, item)
        elif token in _NEGATIONS:
            negations += 1
            pending += 1
            sequence.append(("not", False, False))
        elif (
            token in QUANTIFIERS
            and not (previous == "how" and token == "many")
            # "some ways to", "some tips for": framing, not a claim about how many
            and not (token == "some" and _framing(tokens, index + 1))
        ):
            _count(quantifiers, QUANTIFIERS[token])
            if token not in _STOPWORDS:
                item = _canonical(token, tenant)
                content.add(item)
        elif token in RELATIONS:
            sequence.append(("be" if token in COPULA else token, False, False))
        elif token not in _STOPWORDS:
            stem = _canonical(token, tenant)
            if stem not in _STOPWORDS:
                item = stem
                content.add(stem)
        if item is not None:
            sequence.append((item, True, token in DERIVED))
            if pending:
                _count(scopes, item, pending)
                pending = 0
        previous = token
    return _Features(
        numbers,
        negations,
        frozenset(content),
        tuple(sequence),
        quantifiers,
        scopes,
        words_of(normal),
        norm,
    )


def _framing(tokens: list[str], index: int) -> bool:
    """Whether the word at ``index`` (if any) makes a "some" before it framing ("some tips for")."""
    following = tokens[index] if index < len(tokens) else ""
    return following in _STOPWORDS or following in _FRAMING_NOUNS


@lru_cache(maxsize=4096)
def _details(text: str, tenant: str = "") -> _Details:
    """What :func:`verify` compares once two questions agree on numbers, negations, content words and
    quantifiers: worked out only for them (most candidates differ in a content word), kept as
    :func:`_features` is."""
    features = _features(text, tenant)
    raw = _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip()
    literals = tuple(_SPACES.sub(" ", "".join(m.groups(""))).strip() for m in _LITERAL.finditer(raw))
    identifiers: dict[str, int] = {}
    if "_" in raw:
        for word in _identifiers(raw.lower()):
            _count(identifiers, word)
    if _MAY_HAVE_OPERATOR.search(raw):
        for operator in _OPERATOR.findall(raw):
            _count(identifiers, operator)
    norm = features.norm
    directions: dict[str, list[tuple[str, frozenset[str]]]] = {}
    for match in _MARKER.finditer(norm):
        # read lazily: a phrase ends within a few words, and reading the rest of the text for each
        # marker took time that grows with the square of its length ("to " 5,000 times: 2.3 s)
        head = _phrase_head((m.group() for m in _PHRASE_TOKEN.finditer(norm, match.end())), tenant)
        if head is not None:
            directions.setdefault(match.group(1), []).append(head)
    return _Details(
        literals,
        identifiers,
        raw,
        {k: tuple(v) for k, v in directions.items()},
        tuple(Token(*word) for word in features.sequence),
    )


def _elements(counts: dict[str, int]) -> list[str]:
    """Each key of ``counts`` as many times as it counts, sorted (what ``Counter.elements`` lists)."""
    return sorted(key for key, count in counts.items() for _ in range(count))


def _same_targets(
    new: tuple[tuple[str, frozenset[str]], ...], old: tuple[tuple[str, frozenset[str]], ...]
) -> bool:
    """Whether the phrases after one marker name the same targets: the same heads, or a head found in
    the other phrase ("safe to eat raw eggs" / "raw eggs safe to eat": "to eat" is a verb, not a
    target, and "eat" is in both)."""
    if len(new) != len(old):
        return False
    return all(a[0] == b[0] or a[0] in b[1] or b[0] in a[1] for a, b in zip(new, old, strict=True))


def verify(query: str, cached: str, *, typos: bool = True, tenant: str = "") -> Verdict:
    """Whether ``cached`` (the question an answer was stored for) asks what ``query`` asks; with
    ``typos``, a misspelt word may stand for the other question's word (:mod:`.typos`). ``tenant``
    (whose cache is read) keeps the features computed on the way apart from other tenants'."""
    if query == cached:
        return _OK
    new, old = _features(query, tenant), _features(cached, tenant)
    if new.numbers != old.numbers:
        return Verdict(False, "numbers", f"{_elements(new.numbers)} != {_elements(old.numbers)}")
    if new.negations != old.negations:
        return Verdict(False, "negation", f"{new.negations} != {old.negations}")
    only_new = new.content - old.content - _CLASSIFIERS
    only_old = old.content - new.content - _CLASSIFIERS
    if only_new or only_old:
        if typos:
            # "pasword" / "password": read the misspelt word as the real one and check again
            fix_new, fix_old = fixes_both(new.words, old.words)
            if fix_new or fix_old:
                return verify(
                    apply_fixes(query, fix_new), apply_fixes(cached, fix_old), typos=False, tenant=tenant
                )
        return Verdict(False, "content", f"{sorted(only_new)} / {sorted(only_old)}")
    if new.quantifiers != old.quantifiers:
        return Verdict(False, "quantifier", f"{new.quantifiers} != {old.quantifiers}")
    ours, theirs = _details(query, tenant), _details(cached, tenant)
    if ours.identifiers != theirs.identifiers:
        return Verdict(False, "literal", f"{ours.identifiers} != {theirs.identifiers}")
    for literal in ours.literals:
        if literal not in theirs.flat:
            return Verdict(False, "literal", repr(literal))
    for literal in theirs.literals:
        if literal not in ours.flat:
            return Verdict(False, "literal", repr(literal))
    for marker, targets in ours.directions.items():
        other = theirs.directions.get(marker)
        if other is not None and not _same_targets(targets, other):
            heads = [t[0] for t in targets], [t[0] for t in other]
            return Verdict(False, "direction", f"{marker}: {heads[0]} != {heads[1]}")
    swap = crossing(ours.sequence, theirs.sequence)
    if swap is not None:
        pivot, right, left = swap
        return Verdict(False, "order", f"{right!r} and {left!r} swap around {pivot!r}")
    if new.scopes != old.scopes:
        return Verdict(False, "scope", f"{new.scopes} != {old.scopes}")
    return _OK
