"""The whole stack, as build_app assembles it: PII in a prompt never reaches the provider, Redis (budget
counters, cached answers), Qdrant payloads or the request log, and the client still gets it back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aredis

from asgi_aigw import build_app
from asgi_aigw.budget.config import BudgetConfig, Limits
from asgi_aigw.cache import SemanticCacheMiddleware
from asgi_aigw.cache.config import CacheConfig
from asgi_aigw.logs import RequestLogMiddleware
from asgi_aigw.logs.config import LogConfig
from asgi_aigw.logs.sinks import MemorySink
from asgi_aigw.redact import RedactConfig
from asgi_aigw.tenant.config import TenantConfig
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

from .redact_support import CANARIES, CANARY_PROMPT
from .support import FAKE_URL, fake_config, layer, sse_payloads

CHAT = "/ai/v1/chat/completions"


class FullStack:
    def __init__(self, app: Any, fake: FakeProvider, redis: aredis.Redis, prefix: str) -> None:
        self.app = app
        self.fake = fake
        self.redis = redis
        self.prefix = prefix

    async def places(self) -> dict[str, list[bytes]]:
        """Everything each place holds once the requests are done."""
        log = layer(self.app, RequestLogMiddleware)
        assert await log.writer.flush()
        cache = layer(self.app, SemanticCacheMiddleware)
        await cache.drain()
        redis_blobs: list[bytes] = []
        async for key in self.redis.scan_iter(match=f"{self.prefix}*"):
            redis_blobs.append(key)
            kind = (await self.redis.type(key)).decode()
            if kind == "string":
                redis_blobs.append(await self.redis.get(key))
            elif kind == "hash":
                redis_blobs.append(
                    orjson.dumps({k.decode(): v.decode() for k, v in (await self.redis.hgetall(key)).items()})
                )
            else:
                redis_blobs.append(f"<{kind}>".encode())
        points, _ = await cache.vector.client.scroll(cache.config.collection, limit=1000, with_payload=True)
        return {
            "the provider": [request.body for request in self.fake.requests],
            "Redis": redis_blobs,
            "Qdrant payloads": [orjson.dumps(point.payload) for point in points],
            "the request log": [orjson.dumps(row, default=str) for row in log.writer.sink.rows],
        }


@pytest.fixture
async def full_stack(redis_url: str, redis_prefix: str, tmp_path: Path) -> AsyncIterator[FullStack]:
    fake = FakeProvider()
    config = fake_config()
    config.log = LogConfig(store="memory://", spool_dir=None, flush_interval=3600, log_bodies=True)
    config.tenant = TenantConfig(header="x-tenant-id")
    config.budget = BudgetConfig(
        store=redis_url, key_prefix=f"{redis_prefix}budget:", limits=Limits(tokens_per_minute=1_000_000)
    )
    config.redact = RedactConfig()
    config.cache = CacheConfig(
        store=redis_url,
        key_prefix=f"{redis_prefix}cache:",
        vector_store=f"qdrant+local://{tmp_path / 'qdrant'}",
    )
    app = build_app(config, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    assert isinstance(layer(app, RequestLogMiddleware).writer.sink, MemorySink)
    client = aredis.Redis.from_url(redis_url)
    yield FullStack(app, fake, client, redis_prefix)
    async for key in client.scan_iter(match=f"{redis_prefix}*"):
        await client.delete(key)
    await client.aclose()
    await layer(app, SemanticCacheMiddleware).aclose()


async def test_canaries_stay_out_of_every_store_and_come_back_to_the_client(full_stack: FullStack) -> None:
    headers = {"x-tenant-id": "acme"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": CANARY_PROMPT}]}
    async with httpx.AsyncClient(
        transport=StreamingASGITransport(full_stack.app), base_url="http://t"
    ) as client:
        first = await client.post(CHAT, json=body, headers=headers)
        streamed = await client.post(CHAT, json={**body, "stream": True}, headers=headers)
        again = await client.post(CHAT, json=body, headers=headers)

    expected = f"Echo: {CANARY_PROMPT}"
    assert first.status_code == 200
    assert first.headers["x-aigw-cache"] == "miss"
    assert first.json()["choices"][0]["message"]["content"] == expected
    # the stream is answered from the cache (same question), restored with this request's values
    payloads = sse_payloads(streamed.text)
    assert streamed.headers["x-aigw-cache"] == "hit-exact"
    assert (
        "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads[:-1] if p["choices"])
        == expected
    )
    assert again.headers["x-aigw-cache"] == "hit-exact"
    assert again.json()["choices"][0]["message"]["content"] == expected
    assert len(full_stack.fake.requests) == 1

    places = await full_stack.places()
    for where, blobs in places.items():
        assert blobs, f"nothing reached {where}: the test would pass vacuously"
        text = b"\n".join(blobs).decode("utf-8", "replace")
        squeezed = text.replace(" ", "")
        for entity, value in CANARIES.items():
            assert value not in text, f"{entity} reached {where}"
            assert value.replace(" ", "") not in squeezed, f"{entity} reached {where}"
    # the stores did receive the request, redacted
    assert any(b"<EMAIL_ADDRESS_1>" in blob for blob in places["Redis"])
    assert any(b"<EMAIL_ADDRESS_1>" in blob for blob in places["the request log"])
