"""The in-process client (``asgi_aigw.client``) and the framework-neutral endpoint: the identity is
set in the context by the transport (never read from a header), streams are not buffered, and a
Starlette ``Mount`` serves the stack at the path it chooses."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount

from asgi_aigw import build_stack
from asgi_aigw.budget import BudgetConfig, BudgetMiddleware
from asgi_aigw.client import StreamingASGITransport, anthropic_client, http_client, openai_client
from asgi_aigw.integrations import GatewayEndpoint, Identity
from asgi_aigw.integrations.starlette import gateway_routes
from asgi_aigw.router import ProviderRouter
from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RouterConfig
from asgi_aigw.testing import FakeBehaviour, FakeProvider
from asgi_aigw.testing import StreamingASGITransport as LegacyTransport

from .support import FAKE_URL, ContextSpy, eventually, fake_config


def make_stack(fake: FakeProvider) -> tuple[Any, ContextSpy]:
    """Budget (per tenant, bob small) in front of a spy recording each request's context."""
    router = ProviderRouter(fake_config().router, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    spy = ContextSpy(router)
    budget = BudgetConfig.model_validate(
        {"limits": {"tokens_per_minute": 100000}, "tenants": {"bob": {"tokens_per_minute": 1000}}}
    )
    return BudgetMiddleware(spy, config=budget), spy


def chat(content: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **extra}


def test_the_testing_transport_is_the_public_one() -> None:
    assert LegacyTransport is StreamingASGITransport


async def test_the_identity_reaches_every_layer_and_no_header_changes_it(fake: FakeProvider) -> None:
    stack, spy = make_stack(fake)
    alice = openai_client(
        stack, Identity(tenant="alice", user="alice"), default_headers={"x-tenant-id": "bob"}
    )
    answer = await alice.chat.completions.create(**chat(max_tokens=2000))
    assert answer.choices[0].message.content == "Echo: hi"
    ctx = spy.contexts[-1]
    assert (ctx.tenant_id, ctx.user_id, ctx.identity_source) == ("alice", "alice", "app")
    # the budget metered bob, not alice: his small limit refuses what alice was just given
    bob = openai_client(stack, Identity(tenant="bob", user="bob"))
    with pytest.raises(openai.RateLimitError):
        await bob.chat.completions.create(**chat(max_tokens=2000))


def test_clients_are_reused_per_identity_never_across(fake: FakeProvider) -> None:
    stack, _ = make_stack(fake)
    alice = openai_client(stack, Identity(tenant="acme", user="alice"))
    assert openai_client(stack, Identity(tenant="acme", user="alice")) is alice
    assert openai_client(stack, Identity(tenant="acme", user="bob")) is not alice
    assert openai_client(stack, Identity(tenant="other", user="alice")) is not alice
    assert openai_client(stack, Identity(tenant="acme", user="alice"), timeout=5) is not alice


async def test_the_anthropic_client_speaks_messages_in_process_as_the_identity(fake: FakeProvider) -> None:
    upstream = "http://fake-anthropic.test"
    deployment = DeploymentConfig(
        provider="anthropic",
        model="claude-test-1",
        base_url=upstream,
        api_key="test-key-not-real",  # type: ignore[arg-type]
    )
    router = ProviderRouter(
        RouterConfig(models=[ModelConfig(name="claude-test-1", deployments=[deployment])]),
        transports={upstream: StreamingASGITransport(fake)},
        env={},
    )
    spy = ContextSpy(router)
    alice = Identity(tenant="acme", user="alice")
    client = anthropic_client(spy, alice)
    message = await client.messages.create(
        model="claude-test-1", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "Echo: hi"
    ctx = spy.contexts[-1]
    assert (ctx.tenant_id, ctx.user_id, ctx.identity_source, ctx.route) == (
        "acme",
        "alice",
        "app",
        "messages",
    )
    assert anthropic_client(spy, alice) is client
    assert openai_client(spy, alice) is not client  # type: ignore[comparison-overlap]


async def test_without_an_identity_the_transport_sets_none(fake: FakeProvider) -> None:
    stack, spy = make_stack(fake)
    async with http_client(stack) as http:
        answer = await http.post("/v1/chat/completions", json=chat(max_tokens=10))
    assert answer.status_code == 200
    assert spy.contexts[-1].identity_source is None
    assert spy.contexts[-1].tenant_id is None  # the budget metered its anonymous tenant


async def test_an_in_process_stream_is_not_buffered(fake: FakeProvider) -> None:
    stack, _ = make_stack(fake)
    fake.behaviour = FakeBehaviour(chunk_delay=0.2)
    client = openai_client(stack, Identity(tenant="alice"))
    started = time.monotonic()
    stream = await client.chat.completions.create(**chat("one two three four five six"), stream=True)
    arrivals = [time.monotonic() - started async for c in stream if c.choices and c.choices[0].delta.content]
    # pieces 0.2 s apart: the first came long before the provider made the last
    assert len(arrivals) >= 7
    assert arrivals[0] < 0.5
    assert arrivals[-1] - arrivals[0] > 1.0


async def test_closing_a_stream_early_tells_the_provider(fake: FakeProvider) -> None:
    stack, _ = make_stack(fake)
    fake.behaviour = FakeBehaviour(chunk_delay=0.2)
    async with (
        http_client(stack, Identity(tenant="alice")) as http,
        http.stream(
            "POST", "/v1/chat/completions", json=chat("a b c d e f g h i j", stream=True)
        ) as response,
    ):
        async for _ in response.aiter_bytes():
            break
    assert await eventually(lambda: fake.disconnects == 1, seconds=3)


async def test_a_starlette_mount_serves_the_stack_as_the_app_says(fake: FakeProvider) -> None:
    stack = build_stack(fake_config(), transports={FAKE_URL: StreamingASGITransport(fake)}, env={})

    def who(request: Request) -> Identity | None:
        user = request.headers.get("x-session-user")  # stands in for the app's own session lookup
        return Identity(tenant=user) if user else None

    app = Starlette(routes=[Mount("/ai", routes=gateway_routes(GatewayEndpoint(stack), identity=who))])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as http:
        served = await http.post("/ai/v1/chat/completions", json=chat(), headers={"x-session-user": "alice"})
        assert served.status_code == 200
        assert served.json()["choices"][0]["message"]["content"] == "Echo: hi"
        models = await http.get("/ai/v1/models", headers={"x-session-user": "alice"})
        assert "gpt-4o-mini" in [m["id"] for m in models.json()["data"]]
        nobody = await http.post("/ai/v1/chat/completions", json=chat())
        assert nobody.status_code == 401
        assert nobody.json()["error"]["code"] == "not_authenticated"
        too_large = await http.post(
            "/ai/v1/chat/completions",
            content=b"x" * (21 * 1024 * 1024),
            headers={"x-session-user": "alice", "content-type": "application/json"},
        )
        assert too_large.status_code == 413
        assert too_large.json()["error"]["type"] == "invalid_request_error"


async def test_the_httpx2_bridge_maps_a_broken_transport_to_the_sdks_connection_error() -> None:
    import anthropic

    from asgi_aigw.httpx2_bridge import httpx2_client

    class Broken(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

    http = httpx2_client(Broken(), base_url="http://app.test")
    client = anthropic.AsyncAnthropic(
        base_url="http://app.test", api_key="test-key-not-real", http_client=http, max_retries=0
    )
    with pytest.raises(anthropic.APIConnectionError):
        await client.messages.create(
            model="claude-test-1", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    await http.aclose()
