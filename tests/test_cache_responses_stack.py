"""The stack ``build_app`` makes (request log, tenant, budget, cache, router) on ``/v1/responses``, over
a real uvicorn with the official ``openai`` SDK, against an OpenAI deployment (passed through) and an
Anthropic one (translated): the repeat of a ``store: false`` request is a hit in the other form (JSON
after a stream, a stream after JSON) that never reaches the provider, is charged as a cache hit (a
request, no tokens) and is logged with its cache status and the usage it stands for; a request that
omits ``store`` bypasses the cache."""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest

from asgi_aigw import build_app
from asgi_aigw.budget import RedisBudgetStore
from asgi_aigw.budget.config import BudgetConfig, Limits
from asgi_aigw.budget.windows import SlotClock
from asgi_aigw.cache import SemanticCacheMiddleware
from asgi_aigw.cache.config import CacheConfig
from asgi_aigw.config import GatewayConfig
from asgi_aigw.logs import RequestLogMiddleware
from asgi_aigw.logs.config import LogConfig
from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RetryConfig, RouterConfig
from asgi_aigw.tenant.config import TenantConfig
from asgi_aigw.testing import FakeProvider, ServerThread

from .budget_helpers import away_from_minute_boundary
from .support import eventually, layer, served

pytestmark = pytest.mark.e2e

KEY = "test-key-not-real"


@pytest.mark.parametrize("model", ["gpt", "claude"], ids=["passthrough", "translated"])
async def test_the_repeat_is_a_hit_charged_and_logged_as_one(
    fake: FakeProvider, redis_url: str, redis_prefix: str, tmp_path: Path, model: str
) -> None:
    upstream = ServerThread(fake)
    upstream.start()
    deployment = (
        DeploymentConfig(
            provider="openai",
            model="gpt-up",
            base_url=upstream.base_url + "/v1",
            api_key=KEY,  # type: ignore[arg-type]
            responses_api=True,
        )
        if model == "gpt"
        else DeploymentConfig(
            provider="anthropic",
            model="claude-up",
            base_url=upstream.base_url,
            api_key=KEY,  # type: ignore[arg-type]
        )
    )
    budget_prefix = f"{redis_prefix}budget:"
    config = GatewayConfig(
        router=RouterConfig(
            models=[ModelConfig(name=model, deployments=[deployment])], retry=RetryConfig(retries=0)
        ),
        tenant=TenantConfig(header="x-tenant-id"),
        budget=BudgetConfig(
            store=redis_url, key_prefix=budget_prefix, limits=Limits(requests_per_minute=100)
        ),
        cache=CacheConfig(
            store=redis_url,
            key_prefix=f"{redis_prefix}cache:",
            vector_store=f"qdrant-edge://{tmp_path / 'vectors'}",
        ),
        log=LogConfig(store="memory://", spool_dir=None, flush_interval=0.05),
    )
    app = build_app(config, env={})
    await away_from_minute_boundary()
    slots = SlotClock().slots(time.time())
    question = "How do I undo the last git commit?"
    try:
        async with served(app) as base_url:
            client = openai.AsyncOpenAI(
                base_url=f"{base_url}/ai/v1",
                api_key="gateway-key-not-real",
                default_headers={"x-tenant-id": "acme"},
                max_retries=0,
            )
            async with client.responses.stream(
                model=model, input=question, store=False, max_output_tokens=64
            ) as stream:
                streamed = await stream.get_final_response()
            raw = await client.responses.with_raw_response.create(
                model=model, input=question, store=False, max_output_tokens=64
            )
            replayed = raw.parse()
            stateful = await client.responses.with_raw_response.create(
                model=model, input=question, max_output_tokens=64
            )
            await client.close()
            sink = layer(app, RequestLogMiddleware).writer.sink
            assert await eventually(lambda: len(sink.rows) == 3)
    finally:
        upstream.stop()
        await layer(app, SemanticCacheMiddleware).purge()
        await layer(app, SemanticCacheMiddleware).aclose()
    assert raw.headers["x-aigw-cache"] == "hit-exact"
    assert stateful.headers["x-aigw-cache"] == "bypass"  # store omitted: OpenAI's default, true
    assert len(fake.requests) == 2  # the first and the bypassing one
    assert replayed.output_text == streamed.output_text == f"Echo: {question}"
    assert replayed.id != streamed.id
    assert raw.headers["x-aigw-provider"] == ("openai" if model == "gpt" else "anthropic")
    assert streamed.usage is not None
    assert replayed.usage is not None
    assert replayed.usage.total_tokens == streamed.usage.total_tokens > 0
    rows = sorted(sink.rows, key=lambda row: row["timestamp"])
    assert [(r["dialect"], r["status"], r["cache_status"]) for r in rows] == [
        ("responses", 200, "miss"),
        ("responses", 200, "hit-exact"),
        ("responses", 200, "bypass"),
    ]
    # the hit is logged with the usage it stands for
    assert rows[1]["total_tokens"] == streamed.usage.total_tokens
    store = RedisBudgetStore(redis_url, key_prefix=budget_prefix)
    try:
        used = dict(zip((s.window.name for s in slots), await store.usage("acme", slots), strict=True))
    finally:
        await store.aclose()
    # a hit costs a request and no tokens (the default cache_hits charge)
    assert used["requests_per_minute"] == 3
    assert used["tokens_per_month"] == rows[0]["total_tokens"] + rows[2]["total_tokens"]
