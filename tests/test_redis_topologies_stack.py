"""The gateway with every Redis-backed layer on a Redis Cluster, then on a Sentinel set, driven by the
official ``openai`` SDK: a gateway API key from the key store admits the request, the budget meters it
and then refuses past its limit, the repeat is answered from the exact cache, and a revoked key is
refused on its next request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from asgi_aigw import build_app
from asgi_aigw.budget.config import BudgetConfig, Limits
from asgi_aigw.cache import SemanticCacheMiddleware
from asgi_aigw.cache.config import CacheConfig
from asgi_aigw.stores.redis_clients import LoopRedisClients
from asgi_aigw.tenant.config import TenantConfig
from asgi_aigw.tenant.key_store import RedisKeyStore
from asgi_aigw.tenant.keys import KeyRecord, hash_key, new_key
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

from .support import FAKE_URL, fake_config, layer

pytestmark = pytest.mark.e2e

TOKENS_PER_MINUTE = 400


@pytest.fixture
async def app(topology_url: str, redis_prefix: str) -> AsyncIterator[Any]:
    config = fake_config("gpt-4o-mini").model_copy(
        update={
            "tenant": TenantConfig(key_store=topology_url, key_store_prefix=f"{redis_prefix}keys:"),
            "budget": BudgetConfig(
                store=topology_url,
                key_prefix=f"{redis_prefix}budget:",
                limits=Limits(tokens_per_minute=TOKENS_PER_MINUTE),
            ),
            "cache": CacheConfig(store=topology_url, key_prefix=f"{redis_prefix}cache:", vector_store=None),
        }
    )
    built = build_app(config, transports={FAKE_URL: StreamingASGITransport(FakeProvider())}, env={})
    yield built
    await layer(built, SemanticCacheMiddleware).aclose()
    clients = LoopRedisClients(topology_url)
    client = clients.redis()
    keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*")]
    if keys:
        await client.delete(*keys)
    await clients.aclose()


async def test_keys_budget_and_cache_on_the_topology(app: Any, topology_url: str, redis_prefix: str) -> None:
    store = RedisKeyStore(topology_url, prefix=f"{redis_prefix}keys:")
    ident, key = new_key()
    await store.add(KeyRecord(id=ident, hash=hash_key(key), tenant="acme"))
    http = httpx.AsyncClient(transport=StreamingASGITransport(app), base_url="http://app.test")
    client = openai.AsyncOpenAI(
        base_url="http://app.test/ai/v1", api_key=key, http_client=http, max_retries=0
    )

    async def ask(question: str) -> Any:
        return await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", max_tokens=50, messages=[{"role": "user", "content": question}]
        )

    first = await ask("What is a hash slot?")
    assert first.headers["x-aigw-cache"] == "miss"
    limit = int(first.headers["x-ratelimit-limit-tokens"])
    assert limit == TOKENS_PER_MINUTE
    assert int(first.headers["x-ratelimit-remaining-tokens"]) < limit
    repeat = await ask("What is a hash slot?")
    assert repeat.headers["x-aigw-cache"] == "hit-exact"
    assert repeat.parse().choices[0].message.content == first.parse().choices[0].message.content

    # different questions until the tenant's tokens run out: a 429 in OpenAI's shape
    refused: openai.RateLimitError | None = None
    for index in range(20):
        try:
            await ask(f"Question number {index}: what does a sentinel do?")
        except openai.RateLimitError as exc:
            refused = exc
            break
    assert refused is not None
    assert isinstance(refused.body, dict)
    assert refused.body["code"] == "rate_limit_exceeded"

    await store.revoke(ident)
    with pytest.raises(openai.AuthenticationError):
        await ask("What is a hash slot?")
    await store.aclose()
    await http.aclose()
