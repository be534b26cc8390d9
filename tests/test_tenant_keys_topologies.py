"""Gateway API keys kept in a Redis Cluster or Sentinel set, through the whole stack: the key
authenticates, its own budget limit (metered in the same topology) is a hard cap, a revoked key is
refused from the next request on, and the request log's ``key_id`` column holds the key's id, never the
key: no logged value contains the secret."""

from __future__ import annotations

import uuid

import httpx
import orjson

from asgi_aigw import build_app
from asgi_aigw.budget.config import BudgetConfig, Limits
from asgi_aigw.logs import LogConfig, RequestLogMiddleware
from asgi_aigw.stores.registry import KEY_STORES
from asgi_aigw.tenant import TenantConfig
from asgi_aigw.tenant.key_store import RedisKeyStore
from asgi_aigw.tenant.keys import KeyRecord, hash_key, new_key
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

from .support import FAKE_URL, fake_config, layer

CHAT = "/ai/v1/chat/completions"


async def test_keys_in_a_topology_authenticate_cap_and_never_reach_the_log(topology_url: str) -> None:
    prefix = f"rt-keys-{uuid.uuid4().hex[:8]}:"
    ident, key = new_key()
    store = KEY_STORES.open(topology_url, prefix=f"{prefix}keys:")
    assert isinstance(store, RedisKeyStore)
    # the key may spend 1 request a minute, its tenant many more
    await store.add(
        KeyRecord(id=ident, hash=hash_key(key), tenant="acme", user="ci", limits={"requests_per_minute": 1})
    )
    config = fake_config("gpt-4o-mini")
    config.tenant = TenantConfig(key_store=topology_url, key_store_prefix=f"{prefix}keys:")
    config.budget = BudgetConfig(
        store=topology_url, key_prefix=f"{prefix}budget:", limits=Limits(requests_per_minute=100)
    )
    config.log = LogConfig(store="memory://", spool_dir=None, flush_interval=3600, log_bodies=True)
    app = build_app(config, transports={FAKE_URL: StreamingASGITransport(FakeProvider())}, env={})
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hi"}]}
    try:
        async with httpx.AsyncClient(transport=StreamingASGITransport(app), base_url="http://t") as http:
            auth = {"authorization": f"Bearer {key}"}
            first = await http.post(CHAT, json=body, headers=auth)
            assert first.status_code == 200, first.text
            capped = await http.post(CHAT, json=body, headers={"x-api-key": key})
            assert capped.status_code == 429, capped.text
            # the secret's last hex digit changed (a key ending in 0 made "0" the key itself: 1 run in 16)
            wrong_key = key[:-1] + ("0" if key[-1] != "0" else "1")
            wrong = await http.post(CHAT, json=body, headers={"authorization": f"Bearer {wrong_key}"})
            assert wrong.status_code == 401
            await store.revoke(ident)
            revoked = await http.post(CHAT, json=body, headers=auth)
            assert revoked.status_code == 401
            assert revoked.json()["error"]["code"] == "revoked_api_key"
        log = layer(app, RequestLogMiddleware)
        await log.writer.flush()
        rows = log.writer.sink.rows
        assert [row["status"] for row in rows] == [200, 429, 401, 401]
        assert [row["key_id"] for row in rows[:2]] == [ident, ident]
        secret = key.rsplit("_", 1)[1]
        for row in rows:
            assert secret not in orjson.dumps(row, default=str).decode()
    finally:
        client = store._clients.redis()
        async for name in client.scan_iter(match=f"{prefix}*"):
            await client.delete(name)
        await store.aclose()
        aclose = getattr(app, "aclose", None)
        if aclose is not None:
            await aclose()
