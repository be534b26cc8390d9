"""Gateway API keys in a real Redis: two workers sharing the store see a revocation on their very next
request, the CLI makes, lists and revokes keys (printing a key once, storing its digest), a key's own
limits refuse inside its tenant's budget, and a store that cannot be reached is a 503, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest
import redis
import redis.asyncio as aioredis
import yaml

from asgi_aigw.budget import BudgetConfig, BudgetMiddleware, Limits
from asgi_aigw.cli import main
from asgi_aigw.kernel.context import get_context
from asgi_aigw.tenant import TenantConfig, TenantMiddleware
from asgi_aigw.tenant.config import APIKeyEntry
from asgi_aigw.tenant.key_store import RedisKeyStore
from asgi_aigw.tenant.keys import KeyRecord, hash_key, key_id, new_key
from asgi_aigw.testing.server import free_port

from .budget_helpers import (
    JSONApp,
    chat,
    completion,
    fixed_clock,
    freeze_now,
    redis_budget_store,
    token_counter,
)

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"


class Inner:
    def __init__(self) -> None:
        self.seen: list[tuple[str | None, str | None]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        ctx = get_context(scope)
        assert ctx is not None
        self.seen.append((ctx.tenant_id, ctx.user_id))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def call(app: Any, key: str, path: str = CHAT, body: Any = None) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as client:
        return await client.post(path, json=body or chat(), headers={"authorization": f"Bearer {key}"})


@pytest.fixture
async def key_store(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisKeyStore]:
    store = RedisKeyStore(redis_url, prefix=redis_prefix)
    try:
        yield store
    finally:
        await store.aclose()
        client = aioredis.Redis.from_url(redis_url)
        found = [key async for key in client.scan_iter(match=f"{redis_prefix}*")]
        if found:
            await client.delete(*found)
        await client.aclose()


@pytest.fixture
def cleaned(redis_url: str, redis_prefix: str) -> Iterator[None]:
    """For sync tests (the CLI runs its own event loop): the prefix's keys deleted afterwards."""
    yield
    client = redis.Redis.from_url(redis_url)
    found = list(client.scan_iter(match=f"{redis_prefix}*"))
    if found:
        client.delete(*found)
    client.close()


async def stored_key(store: RedisKeyStore, tenant: str = "acme", **extra: Any) -> str:
    ident, key = new_key()
    await store.add(KeyRecord(ident, hash_key(key), tenant, created=1.0, **extra))
    return key


async def test_the_store_keeps_the_digest_and_lists_without_it(key_store: RedisKeyStore) -> None:
    key = await stored_key(key_store, user="alice", name="ci", limits={"tokens_per_day": 500})
    ident = key_id(key)
    record = await key_store.get(ident)
    assert record is not None
    assert (record.tenant, record.user, record.name, record.revoked) == ("acme", "alice", "ci", False)
    assert record.hash == hash_key(key)
    assert dict(record.limits) == {"tokens_per_day": 500}
    raw = await key_store._clients.redis().get(key_store.id_key(ident))
    assert hash_key(key).encode() in raw
    assert key.rsplit("_", 1)[1].encode() not in raw  # never the key itself
    listed = await key_store.list_keys("acme")
    assert [r.id for r in listed] == [ident]
    assert "hash" not in listed[0].public()
    assert await key_store.get("0" * 12) is None
    assert await key_store.revoke("0" * 12) is None
    assert not await key_store._clients.redis().exists(key_store.id_key("0" * 12))  # no half key made


async def test_a_revocation_applies_on_the_next_request_of_every_worker(
    redis_url: str, redis_prefix: str, key_store: RedisKeyStore
) -> None:
    key = await stored_key(key_store)
    config = TenantConfig(key_store=redis_url, key_store_prefix=redis_prefix)
    inner = Inner()
    workers = [TenantMiddleware(inner, config=config), TenantMiddleware(inner, config=config)]
    try:
        for worker in workers:  # each has served the key before it is revoked
            assert (await call(worker, key)).status_code == 200
            assert (await call(worker, key)).status_code == 200
        revoked = await key_store.revoke(key_id(key))
        assert revoked is not None
        assert (revoked.revoked, revoked.tenant, revoked.hash) == (True, "acme", hash_key(key))
        for worker in workers:
            refused = await call(worker, key, MESSAGES)
            assert refused.status_code == 401
            assert refused.json()["error"] == {
                "type": "authentication_error",
                "message": f"The API key {key_id(key)} has been revoked: ask for a new one.",
            }
        assert len(inner.seen) == 4
    finally:
        for worker in workers:
            await worker.aclose()


async def test_an_unreachable_key_store_is_a_503(key_store: RedisKeyStore) -> None:
    down = TenantConfig(key_store=f"redis://127.0.0.1:{free_port()}/0", key_store_timeout=0.5)
    _, key = new_key()
    app = TenantMiddleware(Inner(), config=down)
    try:
        response = await call(app, key)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "key_store_unavailable"
    finally:
        await app.aclose()


async def test_a_stored_key_with_unreadable_limits_is_a_503_not_a_500(
    redis_url: str, redis_prefix: str, key_store: RedisKeyStore
) -> None:
    key = await stored_key(key_store)
    stored = orjson.loads(await key_store._clients.redis().get(key_store.id_key(key_id(key))))
    stored["limits"] = {"tokens_per_year": 1}
    await key_store._clients.redis().set(key_store.id_key(key_id(key)), orjson.dumps(stored))
    app = TenantMiddleware(Inner(), config=TenantConfig(key_store=redis_url, key_store_prefix=redis_prefix))
    try:
        assert (await call(app, key)).status_code == 503
    finally:
        await app.aclose()


async def test_a_keys_own_limit_refuses_inside_its_tenants_budget(
    redis_url: str, redis_prefix: str, key_store: RedisKeyStore
) -> None:
    freeze_now()
    limited = await stored_key(key_store, limits={"requests_per_minute": 1})
    free = await stored_key(key_store)
    inner = JSONApp(completion("hi", {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}))
    async with redis_budget_store(redis_url, redis_prefix + "b:") as budget_store:
        budget = BudgetMiddleware(
            inner,
            config=BudgetConfig(limits=Limits(requests_per_minute=3)),
            store=budget_store,
            token_counter=token_counter(),
            clock=fixed_clock,
        )
        app = TenantMiddleware(
            budget, config=TenantConfig(key_store=redis_url, key_store_prefix=redis_prefix)
        )
        try:
            first = await call(app, limited)
            assert first.status_code == 200
            assert first.headers["x-ratelimit-limit-key-requests"] == "1"
            assert first.headers["x-ratelimit-remaining-key-requests"] == "0"
            second = await call(app, limited)
            assert second.status_code == 429
            assert f"of API key {key_id(limited)}" in second.json()["error"]["message"]
            # the key's limit is its own: another key of the tenant still gets in, and the tenant's
            # tighter limit then refuses both
            assert (await call(app, free)).status_code == 200
            assert (await call(app, free)).status_code == 200
            tenant_full = await call(app, free)
            assert tenant_full.status_code == 429
            assert "tenant acme on requests per minute" in tenant_full.json()["error"]["message"]
            assert inner.calls == 3
        finally:
            await app.aclose()
            await budget.aclose()


def test_the_cli_creates_lists_and_revokes_keys_in_the_configured_store(
    redis_url: str,
    redis_prefix: str,
    cleaned: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({"tenant": {"key_store": redis_url, "key_store_prefix": redis_prefix}}))
    base = ["keys"]
    assert (
        main(
            [
                *base,
                "create",
                "acme",
                "--config",
                str(config),
                "--name",
                "laptop",
                "--limit",
                "tokens_per_day=900",
            ]
        )
        == 0
    )
    key = capsys.readouterr().out.strip()
    ident = key_id(key)

    assert main([*base, "list", "acme", "--config", str(config)]) == 0
    listing = capsys.readouterr().out
    assert ident in listing
    assert "laptop" in listing
    assert "tokens_per_day=900" in listing
    assert key not in listing
    assert key.rsplit("_", 1)[1] not in listing

    app = TenantMiddleware(Inner(), config=TenantConfig(key_store=redis_url, key_store_prefix=redis_prefix))
    assert anyio.run(call, app, key).status_code == 200
    assert main([*base, "revoke", ident, "--config", str(config)]) == 0
    assert "Revoked" in capsys.readouterr().out
    assert anyio.run(call, app, key).status_code == 401
    assert main([*base, "list", "acme", "--config", str(config), "--json"]) == 0
    assert '"revoked": true' in capsys.readouterr().out
    assert main([*base, "revoke", "0" * 12, "--config", str(config)]) == 1
    assert main([*base, "create", "acme"]) == 2  # no store anywhere: said so, no traceback
    assert "No key store" in capsys.readouterr().err


def test_print_config_gives_an_entry_the_configuration_accepts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        main(["keys", "create", "acme", "--user", "bob", "--limit", "cost_per_month=5", "--print-config"])
        == 0
    )
    out = capsys.readouterr().out
    key, rest = out.split("\n", 1)
    entries = yaml.safe_load(rest)
    assert key not in rest
    config = TenantConfig(api_keys=[APIKeyEntry.model_validate(entry) for entry in entries])
    inner = Inner()
    app = TenantMiddleware(inner, config=config)
    assert anyio.run(call, app, key).status_code == 200
    assert inner.seen == [("acme", "bob")]
    assert config.api_keys[0].limits.cost_per_month == 5
