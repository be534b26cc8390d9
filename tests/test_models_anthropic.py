"""``GET /v1/models`` and ``GET /v1/models/{id}`` answer Anthropic's clients (``anthropic-version`` sent)
in Anthropic's shape, paged as Anthropic pages, with Anthropic's errors, listing exactly what the OpenAI
listing lists; OpenAI's clients still get OpenAI's shape from the same router."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anthropic
import httpx
import openai
import pytest

from asgi_aigw.httpx2_bridge import httpx2_client
from asgi_aigw.router import ProviderRouter
from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RouterConfig
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

UPSTREAM = "http://fake-upstream.test"
#: Configured aliases, in the configuration's order.
ALIASES = ["gpt", "claude", "gemini", "llama", "mini"]
PROVIDERS = {"gpt": "openai", "claude": "anthropic", "gemini": "gemini", "llama": "ollama", "mini": "openai"}
#: Variables that would let prefix routing reach models nobody listed, were it on.
ENV = {"OPENAI_API_KEY": "sk-test-not-a-real-key", "ANTHROPIC_API_KEY": "test-anthropic-key-0000"}
VERSION = {"anthropic-version": "2023-06-01"}


def config(**settings: Any) -> RouterConfig:
    def deployment(alias: str) -> DeploymentConfig:
        provider = PROVIDERS[alias]
        return DeploymentConfig(
            provider=provider,  # type: ignore[arg-type]
            model=f"{alias}-upstream",
            base_url=f"{UPSTREAM}/v1" if provider == "openai" else UPSTREAM,
            api_key="test-key-not-real",  # type: ignore[arg-type]
        )

    models = [ModelConfig(name=alias, deployments=[deployment(alias)]) for alias in ALIASES]
    return RouterConfig(models=models, **settings)


class Gateway:
    """The router in process, with an ``anthropic`` SDK, an ``openai`` SDK and a bare HTTP client."""

    def __init__(self, router: ProviderRouter) -> None:
        self.router = router
        transport = StreamingASGITransport(router)
        # the anthropic SDK is built on httpx2: the in-process transport through the bridge
        self.anthropic = anthropic.AsyncAnthropic(
            base_url="http://app.test",
            api_key="test-key-not-real",
            http_client=httpx2_client(transport, base_url="http://app.test"),
            max_retries=0,
        )
        self.http = httpx.AsyncClient(transport=transport, base_url="http://app.test")
        self.openai = openai.AsyncOpenAI(
            base_url="http://app.test/v1", api_key="sk-test-not-a-real-key", http_client=self.http
        )

    async def aclose(self) -> None:
        await self.anthropic.close()
        await self.http.aclose()
        await self.router.aclose()


async def _gateway(fake: FakeProvider, **settings: Any) -> Gateway:
    transport = StreamingASGITransport(fake)
    router = ProviderRouter(config(**settings), transports={UPSTREAM: transport}, env=ENV)
    return Gateway(router)


@pytest.fixture
async def gateway(fake: FakeProvider) -> AsyncIterator[Gateway]:
    gw = await _gateway(fake)
    yield gw
    await gw.aclose()


# -- the listing -----------------------------------------------------------------------------------------


async def test_the_anthropic_sdk_lists_the_configured_models_in_its_shape(gateway: Gateway) -> None:
    page = await gateway.anthropic.models.list()
    assert [m.id for m in page.data] == ALIASES
    assert (page.first_id, page.last_id, page.has_more) == ("gpt", "mini", False)
    for model in page.data:
        assert model.type == "model"
        assert model.display_name == model.id
        # the release date is unknown: Anthropic's documented epoch, not a made-up date
        assert model.created_at == datetime(1970, 1, 1, tzinfo=UTC)
        assert model.lifecycle == "active"


async def test_the_sdk_pages_forward_through_the_whole_listing(gateway: Gateway) -> None:
    first = await gateway.anthropic.models.list(limit=2)
    assert [m.id for m in first.data] == ["gpt", "claude"]
    assert (first.first_id, first.last_id, first.has_more) == ("gpt", "claude", True)
    # auto-pagination follows last_id as after_id until has_more is false
    assert [m.id async for m in await gateway.anthropic.models.list(limit=2)] == ALIASES
    last = await gateway.anthropic.models.list(limit=2, after_id="gemini")
    assert [m.id for m in last.data] == ["llama", "mini"]
    assert last.has_more is False


async def test_before_id_pages_backwards(gateway: Gateway) -> None:
    page = await gateway.anthropic.models.list(limit=2, before_id="llama")
    assert [m.id for m in page.data] == ["claude", "gemini"]
    assert page.has_more is True  # "gpt" is still before
    # the SDK follows first_id as before_id while paging backwards
    seen = [m.id async for m in await gateway.anthropic.models.list(limit=2, before_id="mini")]
    assert sorted(seen) == sorted(ALIASES[:-1])
    head = await gateway.anthropic.models.list(limit=5, before_id="claude")
    assert ([m.id for m in head.data], head.has_more) == (["gpt"], False)


async def test_the_default_page_is_twenty_and_the_limit_goes_to_a_thousand() -> None:
    aliases = [f"m{i:02}" for i in range(25)]
    deployment = DeploymentConfig(
        provider="openai",
        model="up",
        base_url=f"{UPSTREAM}/v1",
        api_key="test-key-not-real",  # type: ignore[arg-type]
    )
    router = ProviderRouter(
        RouterConfig(models=[ModelConfig(name=a, deployments=[deployment]) for a in aliases])
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(router), base_url="http://app.test") as http:
        default = (await http.get("/v1/models", headers=VERSION)).json()
        most = (await http.get("/v1/models", params={"limit": 1000}, headers=VERSION)).json()
    assert [m["id"] for m in default["data"]] == aliases[:20]
    assert (default["last_id"], default["has_more"]) == ("m19", True)
    assert [m["id"] for m in most["data"]] == aliases
    assert most["has_more"] is False


async def test_a_lifecycle_filter_without_active_finds_nothing(gateway: Gateway) -> None:
    retired = await gateway.anthropic.models.list(lifecycle=["retired"])
    assert (retired.data, retired.first_id, retired.has_more) == ([], None, False)
    active = await gateway.anthropic.models.list(lifecycle=["active", "deprecated"])
    assert [m.id for m in active.data] == ALIASES


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"after_id": "gpt-upstream"}, "after_id"),
        ({"before_id": "nobody"}, "before_id"),
        ({"after_id": "gpt", "before_id": "mini"}, "before_id"),
        ({"lifecycle[]": "gone"}, "lifecycle"),
    ],
)
async def test_bad_paging_is_a_400_in_anthropics_shape(
    gateway: Gateway, query: dict[str, Any], param: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as refused:
        await gateway.anthropic.models.list(extra_query=query)
    body = refused.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert param in body["error"]["message"]


# -- one model -------------------------------------------------------------------------------------------


async def test_the_anthropic_sdk_retrieves_each_listed_model(gateway: Gateway) -> None:
    for alias in ALIASES:
        model = await gateway.anthropic.models.retrieve(alias)
        assert (model.type, model.id, model.display_name) == ("model", alias, alias)
        assert model.created_at == datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "name", ["openai/gpt-4o", "anthropic/claude-test-1", "gpt-upstream", "anthropic/*", "claude-3"]
)
async def test_models_not_listed_are_anthropics_404(gateway: Gateway, name: str) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        await gateway.anthropic.models.retrieve(name)
    body = missing.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "not_found_error"
    assert "gpt" in body["error"]["message"]  # it names what the gateway serves


# -- prefix routing --------------------------------------------------------------------------------------


async def test_prefix_routing_is_listed_as_the_openai_listing_lists_it(fake: FakeProvider) -> None:
    gw = await _gateway(fake, provider_prefix_routing=True)
    try:
        openai_ids = [m.id async for m in gw.openai.models.list()]
        page = await gw.anthropic.models.list(limit=1000)
        assert [m.id for m in page.data] == openai_ids
        assert {"openai/*", "anthropic/*"} <= set(openai_ids)
        wildcard = next(m for m in page.data if m.id == "openai/*")
        assert wildcard.display_name == "Any openai model (openai/MODEL)"
        routed = await gw.anthropic.models.retrieve("openai/gpt-4o")
        assert routed.id == "openai/gpt-4o"
    finally:
        await gw.aclose()


# -- OpenAI's clients ------------------------------------------------------------------------------------


async def test_openai_clients_still_get_openais_shape(gateway: Gateway) -> None:
    assert [m.id async for m in gateway.openai.models.list()] == ALIASES
    model = await gateway.openai.models.retrieve("claude")
    assert (model.object, model.owned_by) == ("model", "anthropic")
    with pytest.raises(openai.NotFoundError) as missing:
        await gateway.openai.models.retrieve("claude-3")
    assert missing.value.code == "model_not_found"
    bare = (await gateway.http.get("/v1/models")).json()
    assert bare["object"] == "list"
    assert "has_more" not in bare


async def test_the_anthropic_version_header_alone_decides(gateway: Gateway) -> None:
    """Claude Code and raw callers send the header without the SDK: the header is the rule."""
    listed = await gateway.http.get("/v1/models", headers={**VERSION, "x-api-key": "test-key-not-real"})
    assert listed.status_code == 200
    assert set(listed.json()) == {"data", "first_id", "last_id", "has_more"}
    one = await gateway.http.get("/models/gpt", headers=VERSION)
    assert one.json()["type"] == "model"
    keyed = await gateway.http.get("/v1/models", headers={"x-api-key": "test-key-not-real"})
    assert keyed.json()["object"] == "list"
