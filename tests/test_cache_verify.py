"""The verification step, and precision / recall of semantic hits on the labelled pairs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_aigw.cache import CacheConfig
from asgi_aigw.cache.keys import cache_keys
from asgi_aigw.cache.verify import verify

DATA = Path(__file__).parent / "data"


#: The stored cosines of each embedder, with the threshold the cache uses with it: all-MiniLM-L6-v2
#: in process (float products) and its static vectors (the default).
EMBEDDERS = [("cosine", 0.80), ("cosine_static", 0.70)]


def _pairs(column: str = "cosine") -> list[dict[str, Any]]:
    pairs = [json.loads(line) for line in (DATA / "cache_pairs.jsonl").read_text().splitlines() if line]
    cosine = json.loads((DATA / "cache_pairs_minilm.json").read_text())[column]
    for pair in pairs:
        pair["cos"] = cosine[str(pair["id"])]
    return pairs


@pytest.mark.parametrize(
    ("cached", "new"),
    [
        ("How do I reset my password?", "How can I reset my password?"),
        ("What is the capital of France?", "What's the capital city of France?"),
        ("How many days are in a leap year?", "How many days does a leap year have?"),
        ("My car won't start, what should I do?", "My car does not start, what should I do?"),
        ("How many teaspoons are in a tablespoon?", "How many teaspoons make one tablespoon?"),
        ("How do I add a user to a group in Linux?", "How can I add a user to a Linux group?"),
        ("How do I reverse a list in Python?", "In Python, how do I reverse a list?"),
        ("How do I undo the last git commit?", "How can I undo my last commit in git?"),
        ("What is the difference between TCP and UDP?", "What is the difference between UDP and TCP?"),
        ("Is it better to rent or buy a house?", "Is it better to buy or rent a house?"),
        ("What is 10/2?", "What is 10 divided by 2?"),
        ("Who wrote Hamlet?", "Who is the author of Hamlet?"),
        ("How do I enable dark mode?", "How do I turn on dark mode?"),
        ("How do I reset my password?", "How do I reset my pasword?"),
        ("How do I write a resume?", "How do I wirte a resume?"),
        ("How do I tie a tie?", "Hey, could you show me how to tie a tie?"),
        ("How do I connect my printer to wifi?", "How can I connect my printer to Wi-Fi?"),
        ("How do I fix a flat bike tire?", "How do I repair a flat bike tyre?"),
        ("How long does a passport renewal take?", "How long does it take to renew a passport?"),
        ("How do I log into my account?", "How do I sign in to my account?"),
        ("Is it safe to eat raw eggs?", "Are raw eggs safe to eat?"),
        ("How can I save money on groceries?", "What are some ways to save money on groceries?"),
    ],
)
def test_same_question_passes(cached: str, new: str) -> None:
    assert verify(new, cached).ok


@pytest.mark.parametrize(
    ("cached", "new", "reason"),
    [
        ("What is the chemical symbol for sodium?", "What is the chemical symbol for potassium?", "content"),
        ("Convert 10 miles to kilometers", "Convert 12 miles to kilometers", "numbers"),
        ("How many hours are in a week?", "How many hours are in two weeks?", "numbers"),
        ("Convert 10 miles to km", "Convert 10 km to miles", "direction"),
        ("Is a whale bigger than a shark?", "Is a shark bigger than a whale?", "direction"),
        ("How many euros is one dollar?", "How many dollars is one euro?", "direction"),
        ("Which foods contain gluten?", "Which foods don't contain gluten?", "negation"),
        ("How do I cook rice with a rice cooker?", "How do I cook rice without a rice cooker?", "negation"),
        ("How do I add a column?", "How do I drop a column?", "content"),
        ("How do I reverse a list in Python?", "How do I reverse a linked list in Python?", "content"),
        ("What is 10 divided by 2?", "What is 2 divided by 10?", "order"),
        ("Why did the dog chase the cat?", "Why did the cat chase the dog?", "order"),
        ("Should I sell stocks and buy bonds?", "Should I buy stocks and sell bonds?", "order"),
        ("Are all cats animals?", "Are all animals cats?", "order"),
        ("Write a poem about love and death", "Write a poem about death and love", "order"),
        ("Is 2024-03-01 a weekend?", "Is 2024-01-03 a weekend?", "order"),
        ("Do all birds fly?", "Do some birds fly?", "quantifier"),
        ("What is 10 + 2?", "What is 10 - 2?", "content"),
        ("Set an alarm for 7am", "Set an alarm for 7pm", "content"),
        ("Is it safe to not drink water for a day?", "Is it not safe to drink water for a day?", "scope"),
        ("Why does `foo_bar()` return None?", "Why does `bar_foo()` return None?", "literal"),
        ("What does `String` mean in Java?", "What does `string` mean in Java?", "literal"),
        ("What is a desert?", "What is a dessert?", "content"),
        ("What is the boiling point of ethanol?", "What is the boiling point of methanol?", "content"),
        ("Have I filled in the form?", "Have I filed the form?", "content"),
        ("How do I log into my account?", "How do I log out of my account?", "content"),
        ("What does x >> 2 do?", "What does x << 2 do?", "literal"),
        ("What does a && b mean?", "What does a || b mean?", "literal"),
        ("How do I get from A to B by train?", "How do I get from B to A by train?", "direction"),
    ],
)
def test_different_question_fails_with_its_reason(cached: str, new: str, reason: str) -> None:
    verdict = verify(new, cached)
    assert not verdict.ok
    assert verdict.reason == reason


def test_labelled_set_is_large_and_hard_enough() -> None:
    pairs = _pairs()
    negatives = [p for p in pairs if not p["paraphrase"]]
    hard = [p for p in negatives if p["kind"].startswith("hard")]
    assert len(pairs) >= 550
    assert len(hard) >= 0.8 * len(negatives)
    kinds = {p["kind"] for p in hard}
    for kind in ("order", "quantifier", "comparative", "sequence", "unit", "date", "negation", "code"):
        assert sum(p["kind"] == f"hard-{kind}" for p in hard) >= 18, kind
    assert len(kinds) >= 12
    assert {p["split"] for p in pairs} == {"tune", "test"}
    assert len({(p["a"], p["b"]) for p in pairs}) == len(pairs)


def _measure(pairs: list[dict[str, Any]], threshold: float, verified: bool) -> tuple[float, float]:
    tp = fp = fn = 0
    for pair in pairs:
        hit = pair["cos"] >= threshold and (not verified or verify(pair["b"], pair["a"]).ok)
        tp += hit and pair["paraphrase"]
        fp += hit and not pair["paraphrase"]
        fn += (not hit) and pair["paraphrase"]
    return tp / max(1, tp + fp), tp / (tp + fn)


@pytest.mark.parametrize(("column", "threshold"), EMBEDDERS)
def test_default_settings_reach_the_targets_on_the_held_out_split(column: str, threshold: float) -> None:
    config = CacheConfig()
    held_out = [p for p in _pairs(column) if p["split"] == "test"]
    precision, recall = _measure(held_out, threshold, config.verify)
    assert precision >= 0.99
    assert recall >= 0.6
    # and cosine alone does not: the verification is what gets there
    raw_precision, _ = _measure(held_out, threshold, False)
    assert raw_precision < 0.8


@pytest.mark.parametrize(("column", "threshold"), EMBEDDERS)
def test_every_kind_reaches_its_target_on_the_held_out_split(column: str, threshold: float) -> None:
    """Issue 16: precision >= 0.99 overall and >= 0.97 on every kind of hard negative (a kind's
    precision counts its false hits against the paraphrases that hit), recall >= 0.6."""
    config = CacheConfig()
    held_out = [p for p in _pairs(column) if p["split"] == "test"]
    paraphrases = [p for p in held_out if p["paraphrase"]]
    precision, recall = _measure(held_out, threshold, config.verify)
    assert precision >= 0.99
    assert recall >= 0.6
    hits = round(recall * len(paraphrases))
    for kind in sorted({p["kind"] for p in held_out if p["kind"].startswith("hard")}):
        negatives = [p for p in held_out if p["kind"] == kind]
        false_hits = sum(p["cos"] >= threshold and verify(p["b"], p["a"]).ok for p in negatives)
        assert hits / (hits + false_hits) >= 0.97, kind
        # and no more than one false hit in the kind in any case
        assert false_hits <= max(1, len(negatives) // 33), kind


def test_scope_separates_context_and_key_ignores_stream() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "Hi there"}]}
    a = cache_keys(base, "t", max_question_chars=100)
    b = cache_keys({**base, "stream": True, "user": "x"}, "t", max_question_chars=100)
    c = cache_keys(
        {**base, "messages": [{"role": "user", "content": "Hello there"}]}, "t", max_question_chars=100
    )
    d = cache_keys({**base, "top_p": 0.5}, "t", max_question_chars=100)
    assert a.exact == b.exact
    assert a.scope == b.scope
    assert a.exact != c.exact
    assert a.scope == c.scope
    assert a.scope != d.scope
    assert a.question == "Hi there"
    assert cache_keys(base, "u", max_question_chars=100).scope != a.scope
    long = cache_keys(
        {**base, "messages": [{"role": "user", "content": "x" * 101}]}, "t", max_question_chars=100
    )
    assert long.scope is None
    assert long.question is None
    image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}
    assert cache_keys({**base, "messages": [image]}, "t", max_question_chars=100).scope is None


def test_the_features_computed_on_the_way_are_kept_per_tenant() -> None:
    """A question verified for one tenant is worked out again for another: a remembered one is verified
    sooner, which would tell a tenant what another asked."""
    from asgi_aigw.cache.verify import _details, _features

    _features.cache_clear()
    _details.cache_clear()

    def worked_out() -> tuple[int, int]:
        return _features.cache_info().misses, _details.cache_info().misses

    query, cached = "How do I reset my password?", "How can I reset my password?"
    assert verify(query, cached, tenant="acme").ok
    assert worked_out() == (2, 2)
    assert verify(query, cached, tenant="acme").ok
    assert worked_out() == (2, 2)  # the same tenant: both found
    assert _details.cache_info().hits == 2
    assert verify(query, cached, tenant="globex").ok
    assert worked_out() == (4, 4)  # another tenant: worked out again


def test_a_candidate_that_differs_in_a_content_word_is_not_worked_out_further() -> None:
    """Most candidates of a new question differ from it in a content word: their literals, identifiers,
    directions and word order are never worked out; a paraphrase's are."""
    from asgi_aigw.cache.verify import _details, _features

    _features.cache_clear()
    _details.cache_clear()
    query = "Tell me about the gridiron"
    for other in ("Tell me about the harbour", "Tell me about the pelican"):
        assert verify(query, other, tenant="acme").reason == "content"
    assert _features.cache_info().misses == 3
    assert _details.cache_info().misses == 0
    assert verify(query, "Please tell me about the gridiron", tenant="acme").ok
    assert _details.cache_info().misses == 2


def test_a_number_in_other_digits_is_still_a_number() -> None:
    """Digits of other scripts are numbers as ASCII ones are: a question with one never matches a
    question without it."""
    assert verify("Is \u0663 enough apples?", "Is three enough apples?").reason == "numbers"
    assert verify("Is \u0663 enough apples?", "Is enough apples?").reason == "numbers"
    assert verify("Is \u0663 enough apples?", "Is \u0663 enough apples for pie?").reason == "content"


def test_the_stems_kept_are_bounded_in_count_and_length_and_kept_per_tenant() -> None:
    """Stems are kept per word seen, for the next question: a client's words cannot grow them without
    bound, nor can one word as long as a body; a word one tenant used is not kept for another."""
    from asgi_aigw.cache import verify as module

    module._CANONICAL.clear()
    long_word = "x" * (module._MAX_KEPT_WORD + 1)
    assert module._canonical(long_word, "acme") == long_word
    assert ("acme", long_word) not in module._CANONICAL
    for n in range(module._MAX_CANONICAL + 5):
        module._canonical(f"word{n}s", "acme")
    assert len(module._CANONICAL) <= module._MAX_CANONICAL
    module._CANONICAL.clear()
    module._features.cache_clear()
    assert verify("Where do spiders live?", "Where does a spider live?", tenant="acme").ok
    assert module._CANONICAL[("acme", "spiders")] == "spider"
    assert ("globex", "spiders") not in module._CANONICAL


@pytest.mark.parametrize(
    ("mine", "theirs", "expected"),
    [
        ("reset my pasword", "reset my password", {"pasword": "password"}),
        ("a flat bike tyre", "a flat bike tire", {"tyre": "tire"}),
        # the pair is found though every word of the first is in the second too
        ("wi fi password", "wi fi wifi password", {"wi fi": "wifi"}),
        # written together, but as three words, not two: no pair of neighbours spells it
        ("ice cream cone", "an icecreamcone", {}),
        ("the same words", "the same words", {}),
        # two known words never pass for each other, nor one unknown word for two candidates
        ("a desert", "a dessert", {}),
        ("the colur", "the color colour", {}),
    ],
)
def test_typo_fixes_read_one_question_s_words_as_the_other_s(
    mine: str, theirs: str, expected: dict[str, str]
) -> None:
    from asgi_aigw.cache.typos import fixes, words

    assert fixes(words(mine), words(theirs)) == expected


def test_a_candidate_s_words_are_read_from_its_kept_features_not_normalised_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three candidates that differ from the question by a word: the typo check reads the words kept with
    each question's features; nothing is normalised again per candidate."""
    from asgi_aigw.cache import verify as module

    module._features.cache_clear()
    query = "Tell me about the gridiron"
    candidates = [f"Tell me about the {word}" for word in ("harbour", "pelican", "glacier")]
    for text in [query, *candidates]:
        module._features(text, "acme")
    calls: list[str] = []
    real = module.normalise
    monkeypatch.setattr(module, "normalise", lambda text: calls.append(text) or real(text))
    assert [verify(query, c, tenant="acme").reason for c in candidates] == ["content"] * 3
    assert calls == []


#: Characters the verification's patterns turn on: letters either side of the lone-capital rule,
#: spaces, underscores, operators and the punctuation before a lone capital.
_PATTERN_TEXT = st.text(alphabet="aBcIxAZ _<>=&|~^!+*/%:-,;()'\"\t12", max_size=24)
#: The identifiers' pattern as first written: what :func:`~asgi_aigw.cache.verify._identifiers` finds.
_IDENTIFIER = re.compile(r"\b\w*[a-z]\w*_\w*|\b\w*_\w*[a-z]\w*")


@settings(max_examples=3000, deadline=None)
@given(_PATTERN_TEXT)
def test_each_quick_search_of_the_verification_lets_through_whatever_its_pattern_finds(text: str) -> None:
    """The features skip a pattern when a search for what it needs finds nothing; that search must pass
    every text the pattern matches, or a difference would go unseen."""
    from asgi_aigw.cache import verify as module

    if _IDENTIFIER.search(text.lower()):
        assert "_" in text
    if module._OPERATOR.search(text):
        assert module._MAY_HAVE_OPERATOR.search(text), text
    if module._LETTER.search(text):
        assert module._MAY_HAVE_LETTER.search(text), text


_ENDINGS = [
    "our",
    "ours",
    "re",
    "res",
    "ise",
    "ised",
    "ising",
    "isation",
    "isations",
    "yse",
    "ysing",
    "ogue",
    "ogues",
    "elled",
    "elling",
    "eller",
    "ell",
    "is",
    "ation",
    "og",
    "tire",
]


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="aeiouctrlsy", max_size=6), st.sampled_from(["", *_ENDINGS]), st.booleans())
def test_the_quick_search_for_a_british_spelling_passes_every_word_a_spelling_rule_takes(
    stem: str, ending: str, tyre: bool
) -> None:
    from asgi_aigw.cache import typos

    word = ("tyre" if tyre else "") + stem + ending
    if any(pattern.search(word) for pattern, _ in typos._BRITISH):
        assert typos._MAY_BE_BRITISH.search(word), word


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="abZ_ 9-é\u00b2\u0660.\n", max_size=30))
def test_identifiers_are_found_as_the_pattern_as_first_written_found_them(text: str) -> None:
    """Found word by word (in time that grows with the text, not with the square of its longest word),
    the identifiers are those the pattern found, in order."""
    from asgi_aigw.cache.verify import _identifiers

    lowered = text.lower()
    assert _identifiers(lowered) == _IDENTIFIER.findall(lowered)


def test_each_direction_marker_reads_only_its_own_phrase(monkeypatch: pytest.MonkeyPatch) -> None:
    """A phrase after "to" ends within a few words: the words read for all the markers of a question
    grow with its length, not with its square (each marker read the rest of the text: "to " 600
    times, 180,000 words read and 36 ms)."""
    from asgi_aigw.cache import verify as module

    read = 0
    real = module._PHRASE_TOKEN

    class Counted:
        def finditer(self, text: str, pos: int = 0) -> Any:
            nonlocal read
            for match in real.finditer(text, pos):
                read += 1
                yield match

        def findall(self, text: str, pos: int = 0) -> list[str]:
            nonlocal read
            found = real.findall(text, pos)
            read += len(found)
            return found

    monkeypatch.setattr(module, "_PHRASE_TOKEN", Counted())
    question = "how to get from " + "to the station " * 600
    module._details.__wrapped__(question, "acme")
    words = len(question.split())
    assert 0 < read <= 3 * words
    # and the directions are still read: the phrase after each marker
    assert verify("convert 10 miles to km", "convert 10 km to miles").reason == "direction"
