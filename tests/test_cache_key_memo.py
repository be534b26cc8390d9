"""The cache remembers the view and exact key of recent bodies by their bytes, per tenant and route: a
question asked again (every exact hit) is not read, made canonical and hashed again. Another tenant's
identical body is keyed for that tenant (its own entry, never the first tenant's answer)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from asgi_aigw.cache import CacheConfig
from asgi_aigw.cache import keys as cache_keys_module
from asgi_aigw.testing import FakeProvider

from .cache_support import cache_stack, chat, post


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The objects hashed into keys, in order."""
    seen: list[Any] = []
    digest = cache_keys_module._digest

    def counted(value: Any) -> str:
        seen.append(value)
        return digest(value)

    monkeypatch.setattr(cache_keys_module, "_digest", counted)
    return seen


@pytest.fixture(params=["memory", "redis"])
def exact_store(request: pytest.FixtureRequest) -> tuple[str, CacheConfig]:
    """The exact layer in this process, and in the real Redis under the test's own key prefix."""
    if request.param == "memory":
        return "memory://", CacheConfig()
    request.getfixturevalue("redis_client")  # deletes the test's keys afterwards
    url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
    return url, CacheConfig(key_prefix=prefix)


async def test_a_body_asked_again_is_not_hashed_again_and_tenants_keep_their_own_keys(
    hashed: list[Any], exact_store: tuple[str, CacheConfig]
) -> None:
    fake = FakeProvider()
    url, config = exact_store
    app, cache = cache_stack(fake, config=config, exact=url, vector=None)  # exact only: one hash a key
    question = chat("What is the capital of Peru?")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as client:
        answers = [await post(client, question, **{"x-tenant": "acme"}) for _ in range(3)]
        assert [a.headers["x-aigw-cache"] for a in answers] == ["miss", "hit-exact", "hit-exact"]
        assert len(hashed) == 1  # hashed for the miss; the hits found its key remembered
        other = await post(client, question, **{"x-tenant": "globex"})
        again = await post(client, question, **{"x-tenant": "globex"})
    await cache.aclose()
    assert other.headers["x-aigw-cache"] == "miss"  # not acme's entry
    assert again.headers["x-aigw-cache"] == "hit-exact"
    assert len(hashed) == 2
    assert [value["tenant"] for value in hashed] == ["acme", "globex"]
    assert len(fake.requests) == 2


async def test_a_changed_body_is_hashed_anew(exact_store: tuple[str, CacheConfig]) -> None:
    fake = FakeProvider()
    url, config = exact_store
    app, cache = cache_stack(fake, config=config, exact=url, vector=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as client:
        first = await post(client, chat("What is the capital of Peru?"))
        warmer = await post(client, chat("What is the capital of Peru?", temperature=0.5))
        same = await post(client, chat("What is the capital of Peru?", temperature=0.5))
    await cache.aclose()
    assert [r.headers["x-aigw-cache"] for r in (first, warmer, same)] == ["miss", "miss", "hit-exact"]
