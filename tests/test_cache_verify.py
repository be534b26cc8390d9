"""The verification step, and precision / recall of semantic hits on the labelled pairs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from asgi_aigw.cache import CacheConfig
from asgi_aigw.cache.keys import cache_keys
from asgi_aigw.cache.verify import verify

DATA = Path(__file__).parent / "data"


def _pairs() -> list[dict[str, Any]]:
    pairs = [json.loads(line) for line in (DATA / "cache_pairs.jsonl").read_text().splitlines() if line]
    cosine = json.loads((DATA / "cache_pairs_minilm.json").read_text())["cosine"]
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
    assert len(pairs) >= 200
    assert len(hard) >= 0.4 * len(negatives)
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


def test_default_settings_reach_the_targets_on_the_held_out_split() -> None:
    config = CacheConfig()
    held_out = [p for p in _pairs() if p["split"] == "test"]
    precision, recall = _measure(held_out, config.threshold, config.verify)
    assert precision >= 0.97
    assert recall >= 0.5
    # and cosine alone does not: the verification is what gets there
    raw_precision, _ = _measure(held_out, config.threshold, False)
    assert raw_precision < 0.8


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
