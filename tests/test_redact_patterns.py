"""The regex-only engine without Presidio or spaCy finds exactly what Presidio's finds."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap

import pytest

from asgi_aigw.redact.config import RedactConfig
from asgi_aigw.redact.patterns import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    RegexAnalyzer,
    UsSsnRecognizer,
    _stop_words,
)
from asgi_aigw.redact.scanner import Scanner

from .redact_support import CANARY_PROMPT, base_analyzer

pytest.importorskip("presidio_analyzer")

FRAGMENTS = [
    "Mail jane.doe@example.com today",
    "email: bob@mail.example.co.uk",
    "not an address: foo@bar",
    "write to x@localhost or a@b.c",
    "call +1 425 555 0100 now",
    "phone (425) 882-8080",
    "my number is 020 7946 0958",
    "telephone +44 20 7946 0958 ext. 12",
    "mobile 06 12 34 56 78",
    "+49 30 901820",
    "order 12345 shipped",
    "card 4111 1111 1111 1111",
    "credit card 5555-5555-5555-4444",
    "4111111111111112",
    "visa 4012888888881881 expires",
    "ssn 536-22-1234",
    "social security 078-05-1120",
    "SSN: 123 45 6789",
    "ids 536221234 and 536.22.1234 and 536-22 1234",
    "zip 98052-6399",
    "IBAN GB82 WEST 1234 5698 7654 32",
    "bank DE89370400440532013000 2 days from today",
    "iban: de89 3704 0044 0532 0130 00",
    "FR76 3000 6000 0112 3456 7890 189",
    "transaction NL91ABNA0417164300X",
    "ip 10.0.0.1 and 192.168.1.300",
    "server 2001:db8::1 or ::ffff:10.1.2.3",
    "ipv6 fe80::1%eth0/64 and ::",
    "version 1.2.3.4.5",
    "host 8.8.8.8/24",
    "Jane Doe said hi",
    "Employee EMP-123456 and emp-654321",
    "",
]


def corpus() -> list[str]:
    rng = random.Random(21)
    texts = [*FRAGMENTS, CANARY_PROMPT]
    for _ in range(150):
        texts.append(" ".join(rng.sample(FRAGMENTS, rng.randint(2, 6))))
    return texts


CONFIGS = {
    "defaults": {},
    "low threshold": {"score_threshold": 0.0},
    "allow list": {"allow_list": ["jane.doe@example.com", "10.0.0.1"]},
    "allow regex": {"allow_list": [r".*@example\.com", r"^4111"], "allow_list_match": "regex"},
    "some entities": {"entities": ["EMAIL_ADDRESS", "US_SSN", "PHONE_NUMBER"], "phone_regions": ["GB"]},
    "custom recognizer": {
        "recognizers": [
            {
                "name": "employee_id",
                "entity": "EMPLOYEE_ID",
                "patterns": [{"regex": r"\bEMP-\d{6}\b", "score": 0.3}],
                "context": ["employee"],
            }
        ]
    },
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_same_findings_as_presidio(name: str) -> None:
    config = RedactConfig(regex_only=True, **CONFIGS[name])
    ours = Scanner(config)
    presidio = Scanner(config, base_analyzer(True))
    assert isinstance(ours.engine(), RegexAnalyzer)
    assert not isinstance(presidio.engine(), RegexAnalyzer)
    assert ours._entities == presidio._entities
    found = 0
    for text in corpus():
        expected = presidio.analyze_sync(text)
        assert ours.analyze_sync(text) == expected, text
        found += len(expected)
    assert found > 50  # the corpus exercises the recognizers


def test_patterns_and_context_are_presidios() -> None:
    """The definitions match the installed Presidio's recognizers as its registry configures them."""
    registry = {type(r).__name__: r for r in base_analyzer(True).registry.recognizers}
    ours = [
        CreditCardRecognizer(),
        UsSsnRecognizer(),
        EmailRecognizer(str),
        IbanRecognizer({}),
        IpRecognizer(),
    ]
    for recognizer in ours:
        theirs = registry[recognizer.name]
        assert [(p.name, p.regex, p.score) for p, _ in recognizer._compiled] == [
            (p.name, p.regex, p.score) for p in theirs.patterns
        ]
        assert recognizer.context == theirs.context
        assert recognizer.flags == theirs.global_regex_flags
        assert recognizer.supported_entities == theirs.supported_entities


def test_stop_words_are_spacys() -> None:
    import spacy

    assert _stop_words() == frozenset(spacy.blank("en").Defaults.stop_words)


@pytest.mark.parametrize(
    "config",
    [
        RedactConfig(regex_only=False),
        RedactConfig(regex_only=True, entities=["EMAIL_ADDRESS", "URL"]),
        RedactConfig(regex_only=True, language="es"),
    ],
)
def test_presidio_where_not_covered(config: RedactConfig) -> None:
    from asgi_aigw.redact.patterns import supports

    assert not supports(config)


def test_presidio_for_other_entities() -> None:
    engine = Scanner(RedactConfig(regex_only=True, entities=["EMAIL_ADDRESS", "URL"])).engine()
    assert not isinstance(engine, RegexAnalyzer)
    assert "UrlRecognizer" in {type(r).__name__ for r in engine.registry.recognizers}


def test_regex_only_stack_never_imports_spacy() -> None:
    """A gateway with regex-only redaction redacts a request without importing spaCy or Presidio."""
    code = textwrap.dedent(
        """
        import asyncio, json, sys
        from asgi_aigw.redact import RedactMiddleware
        from asgi_aigw.redact.config import RedactConfig

        seen = []

        async def upstream(scope, receive, send):
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            seen.append(json.loads(body))
            answer = {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": json.dumps(answer).encode()})

        app = RedactMiddleware(upstream, config=RedactConfig(regex_only=True))

        async def main():
            body = json.dumps({"model": "m", "messages": [{"role": "user", "content": PROMPT}]}).encode()
            scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": [
                (b"content-type", b"application/json")], "query_string": b""}
            sent = []
            done = False

            async def receive():
                nonlocal done
                if done:
                    await asyncio.sleep(3600)
                done = True
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message):
                sent.append(message)

            await app(scope, receive, send)
            return sent

        sent = asyncio.run(main())
        print(json.dumps({
            "status": sent[0]["status"],
            "forwarded": seen[0]["messages"][0]["content"],
            "spacy": sorted(m for m in sys.modules if m.split(".")[0] in ("spacy", "presidio_analyzer", "thinc")),
        }))
        """
    ).replace("PROMPT", repr(CANARY_PROMPT))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == 200
    assert result["spacy"] == []
    forwarded = result["forwarded"]
    for value in ("maria.gonzalez@example.com", "(425) 882-8080", "4111 1111 1111 1111", "536-22-1234"):
        assert value not in forwarded
    assert "GB82 WEST 1234 5698 7654 32" not in forwarded


def test_presidio_when_the_runtime_analyzer_filters_recognizers(monkeypatch: pytest.MonkeyPatch) -> None:
    """``runtime.analyzer.entities`` narrows the shared Presidio engine: the same engine is used."""
    from asgi_aigw.runtime import tokens
    from asgi_aigw.runtime.config import RuntimeConfig

    narrowed = RuntimeConfig(analyzer={"regex_only": True, "entities": ["EMAIL_ADDRESS"]})  # type: ignore[arg-type]
    monkeypatch.setattr(tokens, "_runtime_config", narrowed)
    scanner = Scanner(RedactConfig(regex_only=True))
    assert not isinstance(scanner.engine(), RegexAnalyzer)
    assert scanner._entities == ["EMAIL_ADDRESS"]
