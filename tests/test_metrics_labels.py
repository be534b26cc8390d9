"""Requests a middleware answers itself (401, 429, cache hits) are labelled with the route and model the
request named, not ``route="other", model=""``; model labels stay bounded. Scraped from a real uvicorn."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from asgi_aigw.app import build_app
from asgi_aigw.budget.config import BudgetConfig, Limits
from asgi_aigw.cache.config import CacheConfig
from asgi_aigw.kernel.body import JSONBody
from asgi_aigw.kernel.context import RequestContext
from asgi_aigw.logs.config import LogConfig, MetricsConfig
from asgi_aigw.logs.metrics import GatewayMetrics
from asgi_aigw.tenant.config import TenantConfig
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

from .support import FAKE_URL, fake_config, served

CHAT = "/ai/v1/chat/completions"
EMBED = "/ai/v1/embeddings"
HELLO = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there"}]}

Samples = dict[tuple[str, str, str], float]


def requests_total(text: str) -> Samples:
    """``aigw_requests_total`` by (route, model, status)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "aigw_requests_total":
                labels = sample.labels
                out[(labels["route"], labels["model"], labels["status"])] = sample.value
    return out


def _stack() -> object:
    config = fake_config("gpt-4o-mini", "text-embedding-3-small").model_copy(
        update={
            "tenant": TenantConfig(header="x-tenant-id", required=True),
            "budget": BudgetConfig(store="memory://", limits=Limits(requests_per_minute=2)),
            "cache": CacheConfig(store="memory://", vector_store=None),
            "log": LogConfig(store=None, metrics=MetricsConfig()),
        }
    )
    return build_app(config, transports={FAKE_URL: StreamingASGITransport(FakeProvider())}, env={})


async def test_answers_from_middlewares_carry_the_requested_route_and_model() -> None:
    async with served(_stack()) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        anonymous = await client.post(CHAT, json=HELLO)
        miss = await client.post(CHAT, json=HELLO, headers={"x-tenant-id": "a"})
        hit = await client.post(CHAT, json=HELLO, headers={"x-tenant-id": "a"})
        over = await client.post(CHAT, json=HELLO, headers={"x-tenant-id": "a"})
        embedding_over = await client.post(
            EMBED, json={"model": "text-embedding-3-small", "input": "hi"}, headers={"x-tenant-id": "a"}
        )
        unlisted_over = await client.post(
            CHAT, json={**HELLO, "model": "junk-1"}, headers={"x-tenant-id": "a"}
        )
        text = (await client.get("/ai/metrics")).text
    assert [r.status_code for r in (anonymous, miss, hit, over, embedding_over, unlisted_over)] == [
        401,
        200,
        200,
        429,
        429,
        429,
    ]
    assert hit.headers["x-aigw-cache"] == "hit-exact"
    samples = requests_total(text)
    assert samples == {
        ("chat", "", "401"): 1,  # the tenant layer refuses before any layer reads the body
        ("chat", "gpt-4o-mini", "200"): 2,  # the miss and the cache hit
        ("chat", "gpt-4o-mini", "429"): 1,
        ("embeddings", "text-embedding-3-small", "429"): 1,
        ("chat", "other", "429"): 1,  # a name outside the configured models is not a label of its own
    }


def _ctx(model: str, *, served: bool) -> RequestContext:
    ctx = RequestContext()
    ctx.route, ctx.status = "chat", 200 if served else 429
    ctx.body = JSONBody(b"{}", {"model": model})
    ctx.model = model
    if served:
        ctx.provider, ctx.upstream_model = "openai", model
    return ctx


def _labels(metrics: GatewayMetrics) -> set[str]:
    return {
        sample.labels["model"]
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == "aigw_requests_total"
    }


def test_without_configured_models_only_served_names_become_labels() -> None:
    metrics = GatewayMetrics(max_models=2)
    for name in ("junk-1", "junk-2", "junk-3"):
        metrics.observe(_ctx(name, served=False))  # refused: the client's text, not a model
    metrics.observe(_ctx("gpt-4o-mini", served=True))
    metrics.observe(_ctx("gpt-4o-mini", served=False))  # known now: its own label even when refused
    metrics.observe(_ctx("gpt-4o", served=True))
    metrics.observe(_ctx("gpt-4.1", served=True))  # past max_models
    assert _labels(metrics) == {"other", "gpt-4o-mini", "gpt-4o"}
    sample = metrics.registry.get_sample_value
    assert sample("aigw_requests_total", {"route": "chat", "model": "gpt-4o-mini", "status": "429"}) == 1
    assert sample("aigw_requests_total", {"route": "chat", "model": "other", "status": "429"}) == 3
