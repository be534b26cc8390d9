"""The header attack through build_app's whole stack on a real uvicorn: with a resolver configured, an
anonymous request naming a user's tenant in ``x-tenant-id`` got that user's cached answer and was charged
to their budget. Now it is refused before the cache, the budget or the provider see it."""

from __future__ import annotations

from typing import Any

import httpx
import redis.asyncio as aioredis

from asgi_aigw.app import build_app
from asgi_aigw.budget import BudgetConfig, Limits
from asgi_aigw.cache.config import CacheConfig
from asgi_aigw.kernel.context import Identity
from asgi_aigw.tenant import TenantConfig
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

from .support import FAKE_URL, fake_config, served

CHAT = "/ai/v1/chat/completions"
QUESTION = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "What is my plan?"}]}


def session_resolver(scope: Any) -> Identity | None:
    """The app's login, named in the configuration: one session token, user u3 of tenant u3."""
    for key, value in scope["headers"]:
        if key == b"authorization" and value == b"Bearer session-of-u3":
            return Identity("u3", "u3")
    return None


async def test_a_forged_tenant_header_gets_neither_the_cache_nor_the_budget(
    fake: FakeProvider, redis_url: str, redis_prefix: str, redis_client: aioredis.Redis
) -> None:
    config = fake_config()
    config.tenant = TenantConfig(resolver="tests.test_tenant_stack:session_resolver")
    config.budget = BudgetConfig(
        store=redis_url,
        key_prefix=f"{redis_prefix}budget:",
        per="tenant_and_user",
        limits=Limits(requests_per_minute=100),
    )
    config.cache = CacheConfig(store=redis_url, vector_store=None, key_prefix=f"{redis_prefix}cache:")
    app = build_app(config, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})

    async def snapshot() -> dict[bytes, Any]:
        return {k: await redis_client.dump(k) async for k in redis_client.scan_iter(match=f"{redis_prefix}*")}

    async with served(app) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        owner = {"authorization": "Bearer session-of-u3"}
        first = await client.post(CHAT, json=QUESTION, headers=owner)
        assert first.status_code == 200, first.text
        again = await client.post(CHAT, json=QUESTION, headers=owner)
        assert again.headers.get("x-aigw-cache") == "hit-exact"  # the control: the cache does serve u3
        assert len(fake.requests) == 1
        before = await snapshot()
        assert any(b"budget:{u3}:u:u3:" in key for key in before)  # u3's own windows were used

        for headers in ({"x-tenant-id": "u3"}, {"x-tenant-id": "u3", "authorization": "Bearer guess"}):
            forged = await client.post(CHAT, json=QUESTION, headers=headers)
            assert forged.status_code == 401
            assert forged.json()["error"]["code"] == "missing_tenant"
            assert "x-aigw-cache" not in forged.headers
        assert await snapshot() == before  # no budget counter, cache entry or marker touched
        assert len(fake.requests) == 1
