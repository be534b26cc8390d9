"""The stack ``build_app`` makes (request log, tenant, budget, router) on ``/v1/responses``, over a real
uvicorn with the official ``openai`` SDK, against an OpenAI deployment (passed through) and an Anthropic
one (translated): each answer settles the budget at the usage it reported, a refusal is the SDK's
``RateLimitError``, and each request is one log row with dialect ``responses``."""

from __future__ import annotations

import time

import openai
import pytest

from asgi_aigw import build_app
from asgi_aigw.budget import RedisBudgetStore
from asgi_aigw.budget.config import BudgetConfig, Limits
from asgi_aigw.budget.windows import SlotClock
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


async def test_budget_and_log_follow_responses_through_both_kinds_of_deployment(
    fake: FakeProvider, redis_url: str, redis_prefix: str
) -> None:
    upstream = ServerThread(fake)
    upstream.start()
    deployments = {
        "gpt": DeploymentConfig(
            provider="openai",
            model="gpt-up",
            base_url=upstream.base_url + "/v1",
            api_key=KEY,  # type: ignore[arg-type]
            responses_api=True,
        ),
        "claude": DeploymentConfig(
            provider="anthropic",
            model="claude-up",
            base_url=upstream.base_url,
            api_key=KEY,  # type: ignore[arg-type]
        ),
    }
    prefix = f"{redis_prefix}budget:"
    config = GatewayConfig(
        router=RouterConfig(
            models=[ModelConfig(name=name, deployments=[d]) for name, d in deployments.items()],
            retry=RetryConfig(retries=0),
        ),
        tenant=TenantConfig(header="x-tenant-id"),
        budget=BudgetConfig(store=redis_url, key_prefix=prefix, limits=Limits(requests_per_minute=2)),
        log=LogConfig(store="memory://", spool_dir=None, flush_interval=0.05),
    )
    app = build_app(config, env={})
    # the middleware runs on the real clock: all three requests fall in the minute read back below
    await away_from_minute_boundary()
    slots = SlotClock().slots(time.time())
    try:
        async with served(app) as base_url:
            client = openai.AsyncOpenAI(
                base_url=f"{base_url}/ai/v1",
                api_key="gateway-key-not-real",
                default_headers={"x-tenant-id": "acme"},
                max_retries=0,
            )
            first = await client.responses.create(model="gpt", input="Hello", max_output_tokens=64)
            async with client.responses.stream(model="claude", input="Hello again") as stream:
                second = await stream.get_final_response()
            with pytest.raises(openai.RateLimitError) as caught:
                await client.responses.create(model="gpt", input="Hello", max_output_tokens=64)
            await client.close()
            sink = layer(app, RequestLogMiddleware).writer.sink
            assert await eventually(lambda: len(sink.rows) == 3)
    finally:
        upstream.stop()
    assert first.output_text == "Echo: Hello"
    assert second.output_text == "Echo: Hello again"
    assert "requests per minute (RPM)" in caught.value.message
    # the stream asked for no cap: the budget wrote default_max_tokens, which the translation sent
    assert fake.requests[-1].json["max_tokens"] == BudgetConfig().default_max_tokens
    assert len(fake.requests) == 2
    rows = sorted(sink.rows, key=lambda row: row["timestamp"])
    assert [(r["dialect"], r["route"], r["status"], r["provider"]) for r in rows] == [
        ("responses", "responses", 200, "openai"),
        ("responses", "responses", 200, "anthropic"),
        ("responses", "responses", 429, ""),
    ]
    assert first.usage is not None
    assert second.usage is not None
    assert (rows[0]["total_tokens"], rows[1]["total_tokens"]) == (
        first.usage.total_tokens,
        second.usage.total_tokens,
    )
    store = RedisBudgetStore(redis_url, key_prefix=prefix)
    try:
        used = dict(zip((s.window.name for s in slots), await store.usage("acme", slots), strict=True))
    finally:
        await store.aclose()
    assert used["requests_per_minute"] == 2
    assert used["tokens_per_month"] == first.usage.total_tokens + second.usage.total_tokens
