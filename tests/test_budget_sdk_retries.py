"""The official openai SDK does not retry what retrying cannot fix: a request over a window's limit on its
own, and an upstream failure the gateway has already retried. Real uvicorn for the gateway and for
FakeProvider, real Redis, the SDK with its default retries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
import redis

from asgi_aigw import build_app
from asgi_aigw.budget import BudgetConfig, Limits
from asgi_aigw.kernel.types import ASGIApp, Receive, Scope, Send
from asgi_aigw.router import ProviderSettings, RetryConfig
from asgi_aigw.testing import FakeBehaviour, FakeProvider, ServerThread

from .support import fake_config

pytestmark = pytest.mark.e2e


class Counted:
    """Counts the HTTP requests that reach the gateway."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.calls += 1
        await self.app(scope, receive, send)


@pytest.fixture
def upstream(fake: FakeProvider) -> Iterator[str]:
    server = ServerThread(fake)
    server.start()
    try:
        yield server.base_url + "/v1"
    finally:
        server.stop()


@pytest.fixture
def cleanup(redis_url: str, redis_prefix: str) -> Iterator[None]:
    yield
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{redis_prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def serve(config: Any) -> tuple[ServerThread, Counted]:
    app = Counted(build_app(config, env={}))
    server = ServerThread(app)
    server.start()
    return server, app


def sdk(base_url: str) -> openai.AsyncOpenAI:
    # the SDK's own default: two retries, honouring Retry-After and x-should-retry
    return openai.AsyncOpenAI(base_url=f"{base_url}/ai/v1", api_key="test-client-key", max_retries=2)


async def test_a_request_that_can_never_fit_is_not_retried_by_the_sdk(
    fake: FakeProvider, upstream: str, redis_url: str, redis_prefix: str, cleanup: None
) -> None:
    config = fake_config(base_url=upstream)
    config.budget = BudgetConfig(
        store=redis_url,
        key_prefix=redis_prefix,
        limits=Limits(tokens_per_minute=500),
        default_max_tokens=4096,
    )
    server, gateway = serve(config)
    try:
        client = sdk(server.base_url)
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}]
            )
        await client.close()
    finally:
        server.stop()
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert "retry-after" not in caught.value.response.headers
    assert "alone exceeds the limit" in caught.value.message
    assert gateway.calls == 1  # the SDK's two retries were not made
    assert fake.requests == []


async def test_an_upstream_failure_the_gateway_retried_is_not_retried_again_by_the_sdk(
    fake: FakeProvider, upstream: str
) -> None:
    fake.behaviour = FakeBehaviour(status=503, error_message="The fake is overloaded.")
    config = fake_config(base_url=upstream)
    config.router.retry = RetryConfig(retries=2, backoff_base=0.01, backoff_max=0.02)
    config.router.cooldown.failures = 0
    server, gateway = serve(config)
    try:
        client = sdk(server.base_url)
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}]
            )
        await client.close()
    finally:
        server.stop()
    assert caught.value.status_code == 503
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert gateway.calls == 1
    assert len(fake.requests) == 3  # one series of the gateway's attempts, not three


async def test_a_single_attempt_leaves_the_retry_to_the_sdk(fake: FakeProvider, upstream: str) -> None:
    # with no gateway retry to repeat, the SDK's own retries are the only ones: they are kept
    fake.enqueue(FakeBehaviour(status=503), times=1)
    config = fake_config(base_url=upstream)
    config.router.retry = RetryConfig(retries=0)
    config.router.cooldown.failures = 0
    server, gateway = serve(config)
    try:
        client = sdk(server.base_url)
        completion = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}]
        )
        await client.close()
    finally:
        server.stop()
    assert completion.choices[0].message.content == "Echo: Hello"
    assert gateway.calls == 2
    assert len(fake.requests) == 2


async def test_a_prefix_routed_model_with_no_price_is_refused_under_a_money_limit(
    fake: FakeProvider, upstream: str, redis_url: str, redis_prefix: str, cleanup: None
) -> None:
    config = fake_config(base_url=upstream)
    config.router.providers = {"openai": ProviderSettings(base_url=upstream, api_key="test-openai-key")}  # type: ignore[arg-type]
    config.router.provider_prefix_routing = True  # off by default once models are listed
    config.budget = BudgetConfig(store=redis_url, key_prefix=redis_prefix, limits=Limits(cost_per_day=5.0))
    server, _ = serve(config)
    try:
        client = sdk(server.base_url)
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="openai/brand-new-model", messages=[{"role": "user", "content": "Hello"}]
            )
        priced = await client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}]
        )
        await client.close()
    finally:
        server.stop()
    assert caught.value.code == "model_not_priced"
    assert priced.choices[0].message.content == "Echo: Hello"
    assert [r.json["model"] for r in fake.requests] == ["gpt-4o-mini"]  # the unpriced one never went out
