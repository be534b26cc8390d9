"""Prefix routing (``openai/any-model``) is off as soon as the configuration lists its models, and says
so at startup when it is on: a gateway with a key must not serve every model that key can reach."""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from asgi_aigw.router import ProviderRouter
from asgi_aigw.router.config import RouterConfig
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

from .support import FAKE_URL, fake_config, served

HELLO = {"messages": [{"role": "user", "content": "Hello there"}]}
#: The provider's SDK variables set, as on any machine that has a key.
ENV = {"OPENAI_API_KEY": "test-env-key-not-real", "OPENAI_BASE_URL": FAKE_URL}


def _router(config: RouterConfig, fake: FakeProvider) -> ProviderRouter:
    return ProviderRouter(config, transports={FAKE_URL: StreamingASGITransport(fake)}, env=ENV)


def _listing(*names: str, **settings: object) -> RouterConfig:
    """A router configuration listing ``names`` (served by the fake), with ``settings``."""
    return fake_config(*names).router.model_copy(update=settings)


async def test_listed_models_turn_prefix_routing_off(fake: FakeProvider) -> None:
    router = _router(_listing("fast"), fake)
    async with served(router) as base, httpx.AsyncClient(base_url=base) as client:
        models = (await client.get("/v1/models")).json()
        listed = await client.post("/v1/chat/completions", json={**HELLO, "model": "fast"})
        unlisted = await client.post("/v1/chat/completions", json={**HELLO, "model": "openai/gpt-4o"})
    assert [m["id"] for m in models["data"]] == ["fast"]
    assert listed.status_code == 200
    assert unlisted.status_code == 404
    assert unlisted.json()["error"]["code"] == "model_not_found"
    assert "fast" in unlisted.json()["error"]["message"]
    assert [r.json["model"] for r in fake.requests] == ["fast"]  # the unlisted name reached no upstream


async def test_prefix_routing_can_still_be_turned_on_beside_models(fake: FakeProvider) -> None:
    config = _listing("fast", provider_prefix_routing=True)
    async with served(_router(config, fake)) as base, httpx.AsyncClient(base_url=base) as client:
        models = (await client.get("/v1/models")).json()
        prefixed = await client.post("/v1/chat/completions", json={**HELLO, "model": "openai/gpt-4o"})
    assert [m["id"] for m in models["data"]][:2] == ["fast", "openai/*"]
    assert prefixed.status_code == 200
    assert fake.last_request.json["model"] == "gpt-4o"


async def test_without_models_prefix_routing_is_on(fake: FakeProvider) -> None:
    async with served(_router(RouterConfig(), fake)) as base, httpx.AsyncClient(base_url=base) as client:
        prefixed = await client.post("/v1/chat/completions", json={**HELLO, "model": "openai/gpt-4o"})
    assert prefixed.status_code == 200


@pytest.mark.parametrize(
    ("config", "warned"),
    [
        (RouterConfig(), True),
        (_listing("fast"), False),
        (_listing("fast", provider_prefix_routing=True), True),
        (RouterConfig(provider_prefix_routing=False), False),
    ],
    ids=["no-models", "models", "models-and-explicitly-on", "explicitly-off"],
)
def test_startup_warns_when_prefix_routing_is_on(
    config: RouterConfig, warned: bool, fake: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="asgi_aigw.router"):
        _router(config, fake)
    warnings = [r.getMessage() for r in caplog.records if "prefix routing is on" in r.getMessage()]
    assert bool(warnings) is warned
    if warned:
        assert "openai/*" in warnings[0]
        assert "router.provider_prefix_routing: false" in warnings[0]


@pytest.mark.parametrize(("env", "listed"), [({}, []), ({"OLLAMA_HOST": "127.0.0.1:11434"}, ["ollama/*"])])
def test_ollama_is_offered_only_where_ollama_host_says_it_runs(
    env: dict[str, str], listed: list[str]
) -> None:
    assert [
        model_id for model_id, _ in ProviderRouter(RouterConfig(), env=env).registry.model_ids()
    ] == listed


async def test_an_unconfigured_ollama_is_a_quick_404_not_retries() -> None:
    async with (
        served(ProviderRouter(RouterConfig(), env={})) as base,
        httpx.AsyncClient(base_url=base) as client,
    ):
        started = time.monotonic()
        answer = await client.post("/v1/chat/completions", json={**HELLO, "model": "ollama/llama3.2"})
        elapsed = time.monotonic() - started
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "model_not_found"
    assert "Set OLLAMA_HOST." in answer.json()["error"]["message"]
    # no connection was tried (that ends in a 503, after 0.65 s of retries); loose for busy machines
    assert elapsed < 2.0
