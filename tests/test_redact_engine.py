"""The tuned analyzer finds what Presidio's stock recognizers find: NER gate, phone windows,
prefilters, context scoring."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgi_aigw.redact import RedactConfig
from asgi_aigw.redact.engine import PREFILTERS, build_analyzer, claimed_run, name_segments
from asgi_aigw.redact.scanner import Scanner

from .redact_support import CANARIES, base_analyzer

NAME_TEXTS = [
    "Maria called me yesterday about the invoice.",
    "I spoke with John Smith on Monday and he agreed.",
    "the report was written by Priya Patel and reviewed by Wei Chen.",
    "Thanks, Carlos! See you at the office.",
    "Please forward this to Angela Merkel before noon. Nothing else is needed.",
    "Summarise the thread. Then reply to Kenji Watanabe, who asked first.",
    "Our new hire, Fatima Al-Sayed, starts in March.\nHer manager is Tom Baker.",
]


def persons(scanner: Scanner, text: str) -> set[tuple[int, int]]:
    return {(f.start, f.end) for f in scanner.analyze_sync(text) if f.entity_type == "PERSON"}


@pytest.mark.parametrize("text", NAME_TEXTS)
def test_the_name_gate_finds_the_names_ner_finds_on_the_whole_text(text: str) -> None:
    gated = Scanner(RedactConfig(entities=["PERSON"]), base_analyzer(False))
    whole = Scanner(RedactConfig(entities=["PERSON"], ner_gate=False), base_analyzer(False))
    expected = persons(whole, text)
    assert expected, "the model should find a name here"
    assert persons(gated, text) == expected


def test_the_name_gate_skips_sentences_without_capitalised_words() -> None:
    text = "please summarise this. keep it short! The answer should be brief.\nFinish with a question."
    assert name_segments(text, {"the"}) == []
    hinted = "please summarise this. Ask Maria about it."
    assert [hinted[a:b] for a, b in name_segments(hinted, set())] == ["Ask Maria about it."]


PHONE_TEXTS = [
    "Call (425) 882-8080 or 425.882.8081 after six.",
    "UK office: +44 20 7946 0958, Paris +33 1 42 68 53 00.",
    "numbers: 425 882 8080 and 020 7946 0958",
    "card 4111 1111 1111 1111, order 12345, call 202-555-0173",
    "ssn 536-22-1234, tel 425-882-8080",
    "no phone here, only 2024-05-01 and 3.14159",
]


@pytest.mark.parametrize("text", PHONE_TEXTS)
def test_windowed_phone_recognizer_matches_presidio(text: str) -> None:
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    config = RedactConfig(regex_only=True, entities=["PHONE_NUMBER"], phone_regions=["US", "GB", "FR"])
    tuned = build_analyzer(base_analyzer(True), config)
    windowed = next(r for r in tuned.registry.recognizers if r.supported_entities == ["PHONE_NUMBER"])
    stock = PhoneRecognizer(supported_regions=("US", "GB", "FR"))
    found = {(r.start, r.end) for r in windowed.analyze(text, ["PHONE_NUMBER"])}
    expected = {(r.start, r.end) for r in stock.analyze(text, ["PHONE_NUMBER"])}
    # the card's digits are left to the card recognizer: Presidio's phone matcher may see numbers in it
    card = text.find("4111")
    if card >= 0:
        expected = {(s, e) for s, e in expected if not card <= s < card + 19}
    assert found == expected


def test_claimed_runs_are_cards_and_iban_tails() -> None:
    card = f"pay with {CANARIES['CREDIT_CARD']} now"
    start = card.index("4111")
    assert claimed_run(card, start, start + 19)
    iban = f"IBAN {CANARIES['IBAN_CODE']}."
    run = iban.index("1234")
    assert claimed_run(iban, run, iban.index("."))
    ssn = f"SSN {CANARIES['US_SSN']}"
    assert claimed_run(ssn, 4, len(ssn))
    phone = "call 425 882 8080 425 8"  # 13 digits, not Luhn-valid
    assert not claimed_run(phone, 5, len(phone))


_FRAGMENTS = st.sampled_from(
    [
        *CANARIES.values(),
        "192.168.10.25",
        "2001:db8::1",
        "+44 20 7946 0958",
        "a@b",
        "call",
        "ssn",
        "card",
        " ",
        "-",
        ".",
        "@",
        ":",
        "x",
        "GB",
        "12",
        "1234",
        "example.org",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_FRAGMENTS, min_size=1, max_size=8).map("".join))
def test_prefilters_never_reject_what_presidio_would_find(text: str) -> None:
    engine = _stock_regex_engine()
    for entity, check in PREFILTERS.items():
        if entity == "PHONE_NUMBER":
            continue  # checked against the windowed recognizer above
        if engine.analyze(text, "en", entities=[entity]):
            assert check(text), f"{entity} prefilter rejected {text!r}"


_STOCK: dict[str, Any] = {}


def _stock_regex_engine() -> Any:
    if "engine" not in _STOCK:
        _STOCK["engine"] = base_analyzer(True)
    return _STOCK["engine"]


def test_context_words_raise_scores_as_presidio_does() -> None:
    scanner = Scanner(RedactConfig(regex_only=True, score_threshold=0.0), base_analyzer(True))
    plain = [f for f in scanner.analyze_sync("ref 536 22 1234") if f.entity_type == "US_SSN"]
    context = [
        f for f in scanner.analyze_sync("my social security ssn: 536 22 1234") if f.entity_type == "US_SSN"
    ]
    # Presidio's own context enhancer needs spaCy's lemmas: compare with the NER engine
    stock = base_analyzer(False).analyze("my social security ssn: 536 22 1234", "en", entities=["US_SSN"])
    assert plain
    assert context
    assert context[0].score > plain[0].score
    assert context[0].score == pytest.approx(max(r.score for r in stock))


async def test_the_analysis_cache_is_kept_per_tenant() -> None:
    """A text another tenant sent is analysed again: a text found in the cache skips the analysis
    (milliseconds with NER), which would tell a tenant what another one sent."""
    scanner = Scanner(RedactConfig(entities=["PERSON"]), base_analyzer(False))
    text = NAME_TEXTS[1]
    first = await scanner.scan([text], "acme")
    assert (scanner.cache.hits, scanner.cache.misses) == (0, 1)
    assert await scanner.scan([text], "acme") == first
    assert (scanner.cache.hits, scanner.cache.misses) == (1, 1)  # the same tenant: found
    assert await scanner.scan([text], "globex") == first
    assert (scanner.cache.hits, scanner.cache.misses) == (1, 2)  # another tenant: analysed again
    assert scanner.cache.key(text, "a") != scanner.cache.key(text[1:], "a" + text[0])


_AS_FIRST_WRITTEN = {
    "CREDIT_CARD": r"\d(?:[ -]?\d){12}",
    "US_SSN": r"\d(?:[ .-]?\d){8}",
    "IBAN_CODE": r"[A-Za-z]{2}\d{2}",
    "IP_ADDRESS": r"\d\.\d{1,3}\.\d|[0-9A-Fa-f]*:[0-9A-Fa-f]*:",
}


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="0123456789٣abcdefGHxyz:. -@", max_size=40))
def test_prefilters_accept_exactly_what_their_patterns_first_written_accept(text: str) -> None:
    # each is now gated on a digit (or a colon), and two are written to start from fewer places: the
    # same texts must pass
    for entity, pattern in _AS_FIRST_WRITTEN.items():
        assert PREFILTERS[entity](text) == (re.search(pattern, text) is not None), (entity, text)
