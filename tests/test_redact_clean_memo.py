"""Bodies in which redaction found nothing are remembered by their bytes, per tenant: sent again (an exact
cache hit, a retry) they are not walked and scanned again, and go on untouched as before. A body with
PII is scanned and redacted every time; another tenant's identical body is scanned for that tenant."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from asgi_aigw.kernel.context import ensure_context
from asgi_aigw.redact import RedactConfig, RedactMiddleware
from asgi_aigw.tenant import TenantConfig, TenantMiddleware

from .redact_support import CANARIES, base_analyzer, read_body


class Upstream:
    """Records each body it receives and whether it was marked redacted; answers a fixed completion."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.redacted: list[bool] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.bodies.append(await read_body(receive))
        self.redacted.append(ensure_context(scope)[1].body_redacted)
        answer = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
            ],
        }
        body = orjson.dumps(answer)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def chat(text: str) -> bytes:
    return orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})


async def test_a_clean_body_sent_again_is_not_scanned_again_and_pii_always_is() -> None:
    upstream = Upstream()
    redact = RedactMiddleware(upstream, config=RedactConfig(regex_only=True), analyzer=base_analyzer(True))
    scans: list[list[str]] = []
    scan = redact.scanner.scan

    async def counted(texts: Any, tenant: str = "") -> Any:
        scans.append(list(texts))
        return await scan(texts, tenant)

    redact.scanner.scan = counted  # type: ignore[method-assign]
    app = TenantMiddleware(redact, config=TenantConfig(header="x-tenant-id"))
    clean, personal = chat("What is the capital of Peru?"), chat(f"Mail {CANARIES['EMAIL_ADDRESS']} please")
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:

        async def post(body: bytes, tenant: str = "acme") -> None:
            response = await client.post(
                "/v1/chat/completions",
                content=body,
                headers={"content-type": "application/json", "x-tenant-id": tenant},
            )
            assert response.status_code == 200

        for _ in range(3):
            await post(clean)
        assert len(scans) == 1  # the clean body was scanned once
        assert upstream.bodies == [clean] * 3  # and went on untouched every time
        assert upstream.redacted == [True] * 3  # its log row may hold it: it was scanned
        for _ in range(2):
            await post(personal)
        assert len(scans) == 3  # personal data: scanned every time
        assert all(CANARIES["EMAIL_ADDRESS"].encode() not in body for body in upstream.bodies[3:])
        await post(clean, tenant="globex")
        assert len(scans) == 4  # another tenant's identical body is scanned for it


@pytest.mark.parametrize(
    ("path", "make"),
    [
        (
            "/v1/messages",
            lambda text: {
                "model": "claude-sonnet-4-5",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": text}],
            },
        ),
        ("/v1/responses", lambda text: {"model": "gpt-4o-mini", "input": text}),
    ],
    ids=["messages", "responses"],
)
async def test_every_dialect_remembers_clean_bodies_and_still_redacts_pii(path: str, make: Any) -> None:
    upstream = Upstream()
    redact = RedactMiddleware(upstream, config=RedactConfig(regex_only=True), analyzer=base_analyzer(True))
    scans: list[int] = []
    scan = redact.scanner.scan

    async def counted(texts: Any, tenant: str = "") -> Any:
        scans.append(1)
        return await scan(texts, tenant)

    redact.scanner.scan = counted  # type: ignore[method-assign]
    clean = orjson.dumps(make("What is the capital of Peru?"))
    personal = orjson.dumps(make(f"Mail {CANARIES['EMAIL_ADDRESS']} please"))
    transport = httpx.ASGITransport(redact)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for body in (clean, clean, personal, personal):
            response = await client.post(path, content=body, headers={"content-type": "application/json"})
            assert response.status_code == 200
    assert len(scans) == 3  # the clean body once, the personal one each time
    assert upstream.bodies[:2] == [clean, clean]
    assert all(CANARIES["EMAIL_ADDRESS"].encode() not in body for body in upstream.bodies[2:])
