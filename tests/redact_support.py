"""Helpers for the redaction tests: the shared Presidio engines, canary values, tiny upstream apps."""

from __future__ import annotations

import functools
from typing import Any

import orjson

from asgi_aigw.kernel.sse import encode_data

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


@functools.cache
def base_analyzer(regex_only: bool = False) -> Any:
    """The shared Presidio engine the middleware derives its own from (built once per process)."""
    from asgi_aigw.runtime.config import RuntimeConfig
    from asgi_aigw.runtime.pii import get_analyzer

    return get_analyzer(RuntimeConfig(analyzer={"regex_only": regex_only}))  # type: ignore[arg-type]


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


async def read_body(receive: Any) -> bytes:
    """The whole request body an upstream app receives."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


class ScriptedApp:
    """A tiny OpenAI-format app: answers each chat request with the given SSE events (or JSON body),
    and records the request bodies it received."""

    def __init__(self, events: list[bytes] | None = None, json_body: Any = None) -> None:
        self.events = events or []
        self.json_body = json_body
        self.bodies: list[Any] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.bodies.append(orjson.loads(await read_body(receive)))
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


def assert_nowhere(blobs: list[bytes], canaries: dict[str, str] = CANARIES) -> None:
    """No canary value, spaced or not, is in any of the bodies the provider received."""
    assert blobs, "nothing reached the provider: the test would pass vacuously"
    for blob in blobs:
        text = blob.decode()
        for entity, value in canaries.items():
            assert value not in text, f"{entity} reached the provider"
            assert value.replace(" ", "") not in text.replace(" ", ""), f"{entity} reached the provider"


class AnsweringApp:
    """A small upstream: answers each request with ``answers`` in turn (a JSON body, or a list of SSE
    events; the last one again once the others are used), and keeps the bytes it received."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.bodies: list[bytes] = []

    @property
    def last(self) -> Any:
        return orjson.loads(self.bodies[-1])

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return  # no lifespan to serve
        self.bodies.append(await read_body(receive))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, list):
            headers = [(b"content-type", b"text/event-stream")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            for event in answer:
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        raw = orjson.dumps(answer)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": raw, "more_body": False})
